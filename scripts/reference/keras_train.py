"""Trains the seed model with Keras on a prepared folder, for comparison.

    python scripts/reference/keras_train.py --data DIR [--epochs N]
        [--seed S] [--batch-size B] [--backend tensorflow|jax]
        [--metrics FILE.jsonl]

Same model, loss, loss weights, optimizer and metrics as headline-trainer's
defaults; the split follows the folder's prepare.json (`rows.training`), or
--validation-split with Keras' own rule when the folder has none. Runs on
one CPU thread. Prints one line per epoch and writes Keras' History, one
JSON object per epoch, to --metrics.
"""

import argparse
import json
import os
import sys


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--validation-split", type=float, default=None)
    p.add_argument("--backend", default="tensorflow",
                   choices=["tensorflow", "jax"])
    p.add_argument("--metrics")
    p.add_argument("--embedding-dim", type=int, default=512)
    p.add_argument("--lstm-units", type=int, default=32)
    p.add_argument("--dense-units", type=int, default=64)
    return p.parse_args()


def single_thread(backend):
    # Set before the backend loads: both read these at start-up.
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault(
        "XLA_FLAGS",
        "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build(keras, vocab, steps, aux_features, args):
    L = keras.layers
    main_input = keras.Input(shape=(steps,), dtype="int32", name="main_input")
    x = L.Embedding(vocab, args.embedding_dim, name="embedding")(main_input)
    lstm_out = L.LSTM(args.lstm_units, name="lstm")(x)
    aux_output = L.Dense(1, activation="sigmoid", name="aux_output")(lstm_out)
    aux_input = keras.Input(shape=(aux_features,), name="aux_input")
    x = L.concatenate([lstm_out, aux_input])
    for name in ("dense", "dense_1", "dense_2"):
        x = L.Dense(args.dense_units, activation="relu", name=name)(x)
    main_output = L.Dense(1, activation="sigmoid", name="main_output")(x)
    model = keras.Model([main_input, aux_input], [main_output, aux_output])
    model.compile(
        optimizer=keras.optimizers.RMSprop(),
        loss={"main_output": "binary_crossentropy",
              "aux_output": "binary_crossentropy"},
        loss_weights={"main_output": 1.0, "aux_output": 0.2},
        metrics={"main_output": ["accuracy", keras.metrics.AUC(name="auc")],
                 "aux_output": ["accuracy", keras.metrics.AUC(name="auc")]})
    return model


def main():
    args = parse()
    single_thread(args.backend)
    import numpy as np
    import keras

    keras.utils.set_random_seed(args.seed)
    ids = np.load(os.path.join(args.data, "main_input.npy")).astype("int32")
    aux = np.load(os.path.join(args.data, "aux_input.npy")).astype("float32")
    labels = np.load(os.path.join(args.data, "labels.npy"))
    labels = labels.reshape(-1, 1).astype("float32")
    record = os.path.join(args.data, "prepare.json")
    n = len(ids)
    if args.validation_split is None and os.path.exists(record):
        with open(record) as f:
            train_rows = json.load(f)["rows"]["training"]
        vocab = json.load(open(record))["vocab_size"]
    else:
        split = args.validation_split or 0.0
        train_rows = int(n * (1.0 - split))
        vocab = int(ids.max()) + 1
    model = build(keras, vocab, ids.shape[1], aux.shape[1], args)
    t = slice(0, train_rows)
    v = slice(train_rows, n)
    validation = None
    if train_rows < n:
        validation = ([ids[v], aux[v]], {"main_output": labels[v],
                                         "aux_output": labels[v]})
    history = model.fit(
        [ids[t], aux[t]], {"main_output": labels[t], "aux_output": labels[t]},
        epochs=args.epochs, batch_size=args.batch_size, shuffle=True,
        validation_data=validation, verbose=2)
    if args.metrics:
        with open(args.metrics, "w") as f:
            for epoch in range(args.epochs):
                row = {"epoch": epoch + 1}
                row.update({k: float(vals[epoch])
                            for k, vals in history.history.items()})
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
