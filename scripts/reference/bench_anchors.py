"""The anchors of scripts/bench.sh: the headline model's training speed in
Keras 3 (TensorFlow or JAX backend) and PyTorch 2 (one process, or DDP
over gloo on loopback), one thread per process, and Keras' predict speed.

    bench_anchors.py train --system keras-jax|keras-tf|torch|torch-ddp
        --data DIR [--batch-size 32] [--warmup 10] [--steps 100]
        [--procs 2] [--core C] --out FILE.json
    bench_anchors.py predict --system keras-jax --data DIR
        [--batch-size 256] [--core C] --out FILE.json

Training runs `warmup + steps` batches of the folder's training rows (the
first `rows.training` of prepare.json, else all; repeated if too few) and
times the last `steps`. Keras builds its model with keras_train.build, the same code that
the parity runs use. The JSON result holds samples/s and ms per global
step, the CPU time over wall time of the timed steps, the peak RSS of each
process and the versions used. With --core the process (all its threads)
runs on that one core: XLA keeps a compute thread beside Python's even
with its single-thread flags. The DDP processes pin themselves to one core
each.
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

import keras_train

SIZES = argparse.Namespace(embedding_dim=512, lstm_units=32, dense_units=64)
VOCAB = 10000


def fail(message):
    print(f"bench_anchors: error: {message}", file=sys.stderr)
    sys.exit(1)


def load(folder, rows, training_only=True):
    """The first `rows` rows (all when None) of the folder's training part,
    repeated when it has fewer."""
    import numpy as np
    try:
        ids = np.load(os.path.join(folder, "main_input.npy"))
        aux = np.load(os.path.join(folder, "aux_input.npy")).astype("float32")
        path = os.path.join(folder, "labels.npy")
        labels = (np.load(path).reshape(-1, 1).astype("float32")
                  if os.path.exists(path) else None)
    except (OSError, ValueError) as error:
        fail(f"cannot read {folder}: {error}")
    available = len(ids)
    record = os.path.join(folder, "prepare.json")
    if training_only and os.path.exists(record):
        with open(record) as f:
            available = json.load(f)["rows"]["training"]
    if rows is None:
        rows = available
    # More rows than the folder has: start again from its first row.
    take = np.arange(rows) % available
    ids = ids[take].astype("int32")
    return ids, aux[take], None if labels is None else labels[take]


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Wall and CPU time at two marks."""

    def __init__(self):
        self.marks = []

    def mark(self):
        self.marks.append((time.perf_counter(), cpu_seconds()))

    def span(self):
        (w0, c0), (w1, c1) = self.marks[0], self.marks[-1]
        return w1 - w0, (c1 - c0) / (w1 - w0)


# --- Keras ----------------------------------------------------------------

def keras_setup(system):
    backend = {"keras-jax": "jax", "keras-tf": "tensorflow"}[system]
    keras_train.single_thread(backend)
    versions = {"python": sys.version.split()[0]}
    if backend == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        versions["tensorflow"] = tf.__version__
    else:
        import jax
        import jaxlib
        versions["jax"] = jax.__version__
        versions["jaxlib"] = jaxlib.__version__
        versions["XLA_FLAGS"] = repr(os.environ.get("XLA_FLAGS"))
    import keras
    import numpy
    versions["keras"] = keras.__version__
    versions["numpy"] = numpy.__version__
    keras.utils.set_random_seed(1)
    return keras, versions


def keras_train_speed(args):
    keras, versions = keras_setup(args.system)
    rows = (args.warmup + args.steps) * args.batch_size
    ids, aux, labels = load(args.data, rows)
    model = keras_train.build(keras, VOCAB, ids.shape[1], aux.shape[1], SIZES)
    clock = Clock()

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 in (args.warmup, args.warmup + args.steps):
                # Reading the loss waits for the step to finish.
                float((logs or {}).get("loss", 0.0))
                clock.mark()

    model.fit([ids, aux], {"main_output": labels, "aux_output": labels},
              batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0,
              callbacks=[Timer()])
    if len(clock.marks) != 2:
        fail("the timer saw fewer steps than asked for")
    seconds, cpu = clock.span()
    return {
        "ranks": 1, "batch": args.batch_size, "steps": args.steps,
        "samples_per_s": args.steps * args.batch_size / seconds,
        "ms_per_step": seconds * 1000 / args.steps, "cpu_per_wall": cpu,
        "peak_mb": [peak_mb()], "versions": versions,
        "notes": f"model.fit, jit_compile={getattr(model, 'jit_compile', '?')}",
    }


def keras_predict_speed(args):
    keras, versions = keras_setup(args.system)
    ids, aux, _ = load(args.data, None, training_only=False)
    model = keras_train.build(keras, VOCAB, ids.shape[1], aux.shape[1], SIZES)
    model.predict([ids, aux], batch_size=args.batch_size, verbose=0)
    clock = Clock()
    clock.mark()
    model.predict([ids, aux], batch_size=args.batch_size, verbose=0)
    clock.mark()
    seconds, cpu = clock.span()
    batches = -(-len(ids) // args.batch_size)
    return {
        "ranks": 1, "batch": args.batch_size, "rows": len(ids),
        "samples_per_s": len(ids) / seconds,
        "ms_per_step": seconds * 1000 / batches, "cpu_per_wall": cpu,
        "peak_mb": [peak_mb()], "versions": versions,
        "notes": "second model.predict call",
    }


# --- PyTorch --------------------------------------------------------------

def torch_setup():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    return torch


def torch_model(torch, steps, aux_features):
    nn = torch.nn

    class Headline(nn.Module):
        def __init__(self):
            super().__init__()
            e, u, h = SIZES.embedding_dim, SIZES.lstm_units, SIZES.dense_units
            self.embedding = nn.Embedding(VOCAB, e)
            self.lstm = nn.LSTM(e, u, batch_first=True)
            self.aux_output = nn.Linear(u, 1)
            self.dense = nn.Sequential(
                nn.Linear(u + aux_features, h), nn.ReLU(),
                nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
            self.main_output = nn.Linear(h, 1)

        def forward(self, ids, aux):
            _, (state, _) = self.lstm(self.embedding(ids))
            lstm_out = state[-1]
            main = self.main_output(self.dense(torch.cat([lstm_out, aux], 1)))
            return main, self.aux_output(lstm_out)

    return Headline()


def torch_loop(torch, args, rank, world, model, barrier=lambda: None):
    """Runs warmup + steps steps of global batch `batch * world`, this
    process taking rows [rank * batch, (rank + 1) * batch) of each."""
    import numpy as np
    global_batch = args.batch_size * world
    ids, aux, labels = load(args.data, (args.warmup + args.steps) * global_batch)
    order = np.random.default_rng(1).permutation(len(ids))
    ids = torch.from_numpy(ids[order]).long()
    aux = torch.from_numpy(aux[order])
    labels = torch.from_numpy(labels[order])
    bce = torch.nn.BCEWithLogitsLoss()
    # PyTorch adds eps outside the square root; Keras and ours inside.
    optimizer = torch.optim.RMSprop(
        model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    clock = Clock()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            barrier()
            clock.mark()
        start = step * global_batch + rank * args.batch_size
        rows = slice(start, start + args.batch_size)
        optimizer.zero_grad(set_to_none=True)
        main, aux_out = model(ids[rows], aux[rows])
        loss = bce(main, labels[rows]) + 0.2 * bce(aux_out, labels[rows])
        loss.backward()
        optimizer.step()
    barrier()
    clock.mark()
    seconds, cpu = clock.span()
    return {
        "ranks": world, "batch": global_batch, "steps": args.steps,
        "samples_per_s": args.steps * global_batch / seconds,
        "ms_per_step": seconds * 1000 / args.steps, "cpu_per_wall": cpu,
        "peak_mb": [peak_mb()],
        "versions": {"torch": torch.__version__,
                     "torch_cpu_capability":
                         torch.backends.cpu.get_cpu_capability()},
    }


def torch_train_speed(args):
    torch = torch_setup()
    torch.manual_seed(1)
    import numpy as np
    probe = np.load(os.path.join(args.data, "aux_input.npy"), mmap_mode="r")
    steps = np.load(os.path.join(args.data, "main_input.npy"),
                    mmap_mode="r").shape[1]
    model = torch_model(torch, steps, probe.shape[1])
    result = torch_loop(torch, args, 0, 1, model)
    result["notes"] = ("BCEWithLogitsLoss per output, RMSprop(alpha=0.9, "
                       "eps=1e-7; eps outside the sqrt)")
    return result


def ddp_worker(args):
    """One DDP process: pinned to core `rank`, one thread, gloo on lo."""
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[args.rank % len(cores)]})
    torch = torch_setup()
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{args.port}",
        rank=args.rank, world_size=args.procs)
    torch.manual_seed(1)
    import numpy as np
    probe = np.load(os.path.join(args.data, "aux_input.npy"), mmap_mode="r")
    steps = np.load(os.path.join(args.data, "main_input.npy"),
                    mmap_mode="r").shape[1]
    model = DistributedDataParallel(torch_model(torch, steps, probe.shape[1]))
    result = torch_loop(torch, args, args.rank, args.procs, model,
                        barrier=dist.barrier)
    dist.destroy_process_group()
    with open(args.out, "w") as f:
        json.dump(result, f)


def torch_ddp_speed(args):
    """Starts `procs` DDP processes on loopback and merges their results."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    workers = []
    for rank in range(args.procs):
        command = [sys.executable, os.path.abspath(__file__), "ddp-worker",
                   "--rank", str(rank), "--procs", str(args.procs),
                   "--port", str(port), "--data", args.data,
                   "--batch-size", str(args.batch_size),
                   "--warmup", str(args.warmup), "--steps", str(args.steps),
                   "--out", f"{args.out}.rank{rank}"]
        workers.append(subprocess.Popen(command, env=env))
    codes = [w.wait() for w in workers]
    if any(codes):
        fail(f"DDP workers exited with {codes}")
    parts = []
    for rank in range(args.procs):
        with open(f"{args.out}.rank{rank}") as f:
            parts.append(json.load(f))
        os.remove(f"{args.out}.rank{rank}")
    result = parts[0]
    result["peak_mb"] = [p["peak_mb"][0] for p in parts]
    result["cpu_per_wall"] = sum(p["cpu_per_wall"] for p in parts) / len(parts)
    result["notes"] = (f"{args.procs} processes pinned to one core each, "
                       "gloo on 127.0.0.1; CPU/wall is their mean")
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["train", "predict", "ddp-worker"])
    p.add_argument("--system", default="torch-ddp",
                   choices=["keras-jax", "keras-tf", "torch", "torch-ddp"])
    p.add_argument("--data", required=True)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--core", type=int,
                   help="run on this one core (DDP pins each process itself)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.core is not None and args.what == "train" \
            and args.system == "torch-ddp":
        fail("--core is for one process; the DDP processes pin themselves")
    if args.core is not None:
        # Before any framework starts a thread: all of them stay on it.
        os.sched_setaffinity(0, {args.core})
    if args.what == "ddp-worker":
        ddp_worker(args)
        return
    if args.warmup < 1 or args.steps < 1:
        fail("--warmup and --steps must be at least 1")
    if args.what == "predict":
        if args.system != "keras-jax" and args.system != "keras-tf":
            fail("predict is measured for keras-jax and keras-tf only")
        args.batch_size = args.batch_size or 256
        result = keras_predict_speed(args)
        task = "predict"
    else:
        args.batch_size = args.batch_size or 32
        result = {"keras-jax": keras_train_speed,
                  "keras-tf": keras_train_speed,
                  "torch": torch_train_speed,
                  "torch-ddp": torch_ddp_speed}[args.system](args)
        task = "train"
    name = os.path.basename(os.path.normpath(args.data))
    result.update(system=args.system, task=task, data=name)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
