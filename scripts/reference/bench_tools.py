"""Helpers of scripts/bench.sh that need no deep-learning framework.

    bench_tools.py synthetic --out DIR --rows N [--seed S]
    bench_tools.py default-prepare-args --source BundledDataset.swift
    bench_tools.py measure --out PREFIX [--core C] -- COMMAND...
    bench_tools.py ours-result --log FILE --rss PREFIX --data-name NAME
        --ranks N --batch B --out FILE.json
    bench_tools.py best-of --out FILE.json RUN.json...
    bench_tools.py predict-result --rss PREFIX --predictions FILE.npy
        --batch B --data-name NAME --out FILE.json
    bench_tools.py report --results DIR --out FILE.md [--wall-seconds S]
        [--core C]

`measure` runs COMMAND as its child and writes the child's peak resident
set size, wall time and CPU time to PREFIX.rankR.json (R from
OMPI_COMM_WORLD_RANK, 0 without mpirun); it exits with the child's status.
With --core the command runs on that one core.
"""

import argparse
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time


def fail(message):
    print(f"bench_tools: error: {message}", file=sys.stderr)
    sys.exit(1)


# --- data -----------------------------------------------------------------

def synthetic(args):
    import numpy as np
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    ids = rng.integers(0, 10000, size=(args.rows, 100), dtype=np.int32)
    aux = rng.standard_normal((args.rows, 5), dtype=np.float32)
    labels = rng.integers(0, 2, size=(args.rows, 1)).astype(np.float32)
    np.save(os.path.join(args.out, "main_input.npy"), ids)
    np.save(os.path.join(args.out, "aux_input.npy"), aux)
    np.save(os.path.join(args.out, "labels.npy"), labels)


def default_prepare_args(args):
    """Prints the literal arguments of defaultPrepareArguments, one a line
    (everything but --csv and --out, which are the function's parameters)."""
    try:
        source = open(args.source, encoding="utf-8").read()
    except OSError as error:
        fail(f"cannot read {args.source}: {error}")
    match = re.search(
        r"func defaultPrepareArguments\([^)]*\)[^{]*\{(.*?)\n\}", source,
        re.S)
    if not match:
        fail(f"{args.source}: no func defaultPrepareArguments found")
    body = match.group(1)
    words = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    if "\\(" in body or not words or words[:2] != ["--csv", "--out"]:
        fail(f"{args.source}: defaultPrepareArguments is no longer a plain "
             "list starting with --csv csv, --out out; update bench_tools.py")
    rest = words[2:]
    for flag in ("--text-column", "--label-column"):
        if flag not in rest:
            fail(f"{args.source}: defaultPrepareArguments has no {flag}")
    print("\n".join(rest))


# --- measuring a process --------------------------------------------------

def measure(args):
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        fail("measure needs a command after --")
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    if args.core is not None:
        # The child inherits this process's CPU set.
        os.sched_setaffinity(0, {args.core})
    started = time.perf_counter()
    try:
        # A pipe, not this process's (pseudo-)terminal: under mpirun the
        # trainer would otherwise draw its progress bar into the log.
        child = subprocess.Popen(command, stdout=subprocess.PIPE)
    except OSError as error:
        fail(f"cannot start {command[0]}: {error}")
    for line in child.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    record = {"rank": rank, "peak_kib": usage.ru_maxrss, "wall_s": wall,
              "cpu_s": usage.ru_utime + usage.ru_stime, "exit": code}
    with open(f"{args.out}.rank{rank}.json", "w") as f:
        json.dump(record, f)
    sys.exit(code if code >= 0 else 128 - code)


def read_rss(prefix, ranks):
    records = []
    for rank in range(ranks):
        path = f"{prefix}.rank{rank}.json"
        try:
            with open(path) as f:
                records.append(json.load(f))
        except (OSError, ValueError) as error:
            fail(f"cannot read {path}: {error}")
    return records


# "phases, ms/step (rank R): agreement 0.011, ..., sharing 0.084 = 2.981"
PHASES = re.compile(r"phases, ms/step \(rank (\d+)\): (.*) = ([\d.]+)")


def phases(text):
    """Each rank's time per phase of a step, as the trainer printed it for
    the last epoch: {rank: "name ms, name ms, ... = total"}."""
    found = {}
    for rank, parts, total in PHASES.findall(text):
        found[int(rank)] = f"{parts} = {total}"
    return found


STEADY = re.compile(
    r"steady state: steps (\d+)-(\d+) of (\d+) - ([\d.]+)s ([\d.]+)ms/step"
    r" - ([\d.]+) samples/s - cpu ([\d.]+)s")


def ours_result(args):
    text = open(args.log, errors="replace").read()
    found = STEADY.findall(text)
    if len(found) != 1:
        fail(f"{args.log}: expected one 'steady state:' line, found "
             f"{len(found)}; too few steps for --warmup?")
    first, last, total, seconds, ms, rate, cpu = found[0]
    rss = read_rss(args.rss, args.ranks)
    result = {
        "system": "ours", "task": "train", "data": args.data_name,
        "ranks": args.ranks, "batch": args.batch,
        "steps": int(last) - int(first) + 1, "steps_in_epoch": int(total),
        "samples_per_s": float(rate), "ms_per_step": float(ms),
        "cpu_per_wall": float(cpu) / float(seconds),
        "peak_mb": [r["peak_kib"] / 1024 for r in rss],
        "phases": phases(text),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


def pair_result(args):
    """Two one-process runs of ours made at the same time: their summed
    samples/s, as if one job of two ranks."""
    runs = []
    for log, rss in zip(args.logs, args.rss):
        text = open(log, errors="replace").read()
        found = STEADY.findall(text)
        if len(found) != 1:
            fail(f"{log}: expected one 'steady state:' line, found "
                 f"{len(found)}")
        first, last, total, seconds, ms, rate, cpu = found[0]
        runs.append({"steps": int(last) - int(first) + 1,
                     "rate": float(rate), "ms": float(ms),
                     "cpu_per_wall": float(cpu) / float(seconds),
                     "peak_mb": read_rss(rss, 1)[0]["peak_kib"] / 1024,
                     "phases": phases(text).get(0)})
    result = {
        "system": "pair", "task": "train", "data": args.data_name,
        "ranks": 2, "batch": 64, "steps": min(r["steps"] for r in runs),
        "samples_per_s": sum(r["rate"] for r in runs),
        "ms_per_step": max(r["ms"] for r in runs),
        "cpu_per_wall": min(r["cpu_per_wall"] for r in runs),
        "peak_mb": [r["peak_mb"] for r in runs],
        "phases": {k: r["phases"] for k, r in enumerate(runs)
                   if r["phases"]},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


def best_of(args):
    """The fastest of several runs of one configuration of ours, with every
    run's samples/s and the highest peak memory of any run."""
    runs = []
    for path in args.runs:
        try:
            with open(path) as f:
                runs.append(json.load(f))
        except (OSError, ValueError) as error:
            fail(f"cannot read {path}: {error}")
    if not runs:
        fail("best-of: no runs given")
    best = dict(max(runs, key=lambda r: r["samples_per_s"]))
    best["tries"] = [r["samples_per_s"] for r in runs]
    best["peak_mb"] = [max(r["peak_mb"][k] for r in runs)
                       for k in range(len(best["peak_mb"]))]
    with open(args.out, "w") as f:
        json.dump(best, f, indent=1)


def predict_result(args):
    import numpy as np
    rows = np.load(args.predictions, mmap_mode="r").shape[0]
    rss = read_rss(args.rss, 1)[0]
    batches = -(-rows // args.batch)
    result = {
        "system": "ours", "task": "predict", "data": args.data_name,
        "ranks": 1, "batch": args.batch, "rows": rows,
        "samples_per_s": rows / rss["wall_s"],
        "ms_per_step": rss["wall_s"] * 1000 / batches,
        "cpu_per_wall": rss["cpu_s"] / rss["wall_s"],
        "peak_mb": [rss["peak_kib"] / 1024],
        "notes": "whole command: start, loading, all batches, writing",
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


# --- the table ------------------------------------------------------------

NAMES = {
    "ours": "ours (headline-trainer)",
    "keras-jax": "Keras 3 on JAX",
    "keras-tf": "Keras 3 on TensorFlow",
    "torch": "PyTorch",
    "torch-ddp": "PyTorch DDP, gloo",
    "pair": "ours, 2 independent processes",
}

# (system, task, data, ranks) -> the target of its ratio column.
TARGETS = {
    ("keras-jax", "train", "synthetic", 1): 2.0,
    ("torch", "train", "synthetic", 1): 2.4,
    ("keras-jax", "train", "real", 1): 5.0,
    ("ours", "train", "real", 2): 1.85,
    ("ours", "train", "synthetic", 2): 1.7,
    ("keras-jax", "predict", "real", 1): 10.0,
}
MEMORY_TARGET_MB = 150


def command_line(command):
    try:
        return subprocess.run(command, capture_output=True, text=True,
                              timeout=60).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.platform()}"


def loadavg(results):
    """The load averages saved before the runs, and now."""
    try:
        before = open(os.path.join(results, "loadavg.start")).read().split()
        now = open("/proc/loadavg").read().split()
    except OSError:
        return None
    return " ".join(before[:3]), " ".join(now[:3])


def report(args):
    results = []
    for path in sorted(glob.glob(os.path.join(args.results, "*.json"))):
        if ".rank" in os.path.basename(path):
            continue
        with open(path) as f:
            results.append(json.load(f))
    if not results:
        fail(f"no results in {args.results}")
    index = {(r["system"], r["task"], r["data"], r["ranks"]): r
             for r in results}

    def ours(task, data, ranks):
        return index.get(("ours", task, data, ranks))

    lines = [
        "| system | data | ranks | samples/s | ms/step | peak MB per rank "
        "| CPU/wall | ratio | ratio target | memory target |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    order = ["ours", "pair", "keras-jax", "keras-tf", "torch", "torch-ddp"]

    def row(r):
        key = (r["system"], r["task"], r["data"], r["ranks"])
        name = NAMES[r["system"]] + (" predict" if r["task"] == "predict"
                                     else "")
        ratio = ""
        if r["system"] == "ours" and r["ranks"] > 1:
            base = ours(r["task"], r["data"], 1)
            if base:
                ratio = (f"{r['samples_per_s'] / base['samples_per_s']:.2f}x"
                         " (2 ranks / 1 rank)")
            ceiling = index.get(("pair", r["task"], r["data"], 2))
            if base and ceiling:
                ratio += (f"; {r['samples_per_s'] / ceiling['samples_per_s']:.0%}"
                          " of the 2 independent processes")
        elif r["system"] == "pair":
            base = ours(r["task"], r["data"], 1)
            if base:
                ratio = (f"{r['samples_per_s'] / base['samples_per_s']:.2f}x"
                         " (both / 1 rank: the machine's ceiling for 2 ranks)")
        elif r["system"] != "ours":
            mine = ours(r["task"], r["data"], r["ranks"])
            if mine:
                who = "ours" if r["ranks"] == 1 else f"ours {r['ranks']} ranks"
                ratio = (f"{mine['samples_per_s'] / r['samples_per_s']:.2f}x"
                         f" ({who} / this)")
        target = f">= {TARGETS[key]}x" if key in TARGETS else ""
        memory = (f"<= {MEMORY_TARGET_MB}" if r["system"] == "ours" else "")
        peak = " / ".join(f"{mb:.0f}" for mb in r["peak_mb"])
        lines.append(
            f"| {name} | {r['data']} | {r['ranks']} "
            f"| {r['samples_per_s']:.0f} | {r['ms_per_step']:.1f} | {peak} "
            f"| {r['cpu_per_wall']:.2f} | {ratio} | {target} | {memory} |")

    for task in ("train", "predict"):
        for data in ("synthetic", "real"):
            for ranks in (1, 2):
                for system in order:
                    r = index.get((system, task, data, ranks))
                    if r:
                        row(r)

    versions = {}
    for r in results:
        versions.update(r.get("versions", {}))
    xla_flags = versions.pop("XLA_FLAGS", "not recorded")
    versions["swift"] = command_line(["swift", "--version"])
    versions["Open MPI"] = command_line(["mpirun", "--version"]).split()[-1]
    versions["headline-trainer"] = command_line(
        ["git", "describe", "--always", "--dirty"])
    torch_source = os.environ.get("TORCH_SOURCE")
    steps = sorted({(r["system"], r["data"], r["ranks"], r.get("steps"))
                    for r in results if r["task"] == "train"})
    timed = ", ".join(
        f"{s} {d} {n}: {k}" for s, d, n, k in steps if s == "ours")
    anchor_steps = sorted({r.get("steps") for r in results
                           if r["task"] == "train" and r["system"] != "ours"})
    def runs_name(r):
        if r["system"] == "pair":
            return f"{r['data']} 2 independent processes"
        return (f"{r['data']} {r['ranks']} "
                f"rank{'s' if r['ranks'] > 1 else ''}")

    tries = "; ".join(
        f"{runs_name(r)}: " + ", ".join(f"{t:.0f}" for t in r["tries"])
        for r in sorted((r for r in results if "tries" in r),
                        key=lambda r: (r["data"], r["ranks"], r["system"])))
    notes = [
        f"Machine: {machine()}.",
        "Batch 32 per process (global 64 on 2 ranks/processes); samples/s "
        "and ms/step are per global step, steady state: the warm-up (and "
        "compile) steps and the validation pass are left out. Anchors time "
        f"{', '.join(map(str, anchor_steps))} steps; ours times every step "
        f"of one epoch after the warm-up ({timed}), in the fastest of "
        "several runs, one and two ranks in turn (noise on this machine "
        f"only adds time); every run's samples/s: {tries or 'one run'}.",
        "Threads: TensorFlow intra- and inter-op threads 1; JAX "
        f"XLA_FLAGS={xla_flags}; torch.set_num_threads(1) and "
        "set_num_interop_threads(1). XLA still runs a compute thread beside "
        "Python's, so every one-process run (ours included) is also pinned "
        f"to one core ({args.core if args.core is not None else '?'}); "
        "two-process runs get one core each (mpirun --bind-to core; the DDP "
        "processes set their own affinity).",
        "Anchor details: " + " ".join(sorted({
            f"{NAMES[r['system']]}"
            f"{' predict' if r['task'] == 'predict' else ''}: {r['notes']}."
            for r in results if r["system"] != "ours" and r.get("notes")})),
        "2 independent processes: two one-process runs of ours at the same "
        "time, one on each core of the two-rank runs, each over the whole "
        "set at batch 32, their samples/s summed. Nothing ties them "
        "together, so this is what two busy cores of this machine give at "
        "that moment (on a shared host, less than twice one), the most any "
        "two-rank run could reach; the two-rank row says what share of it "
        "ours reached. (The one that ends first leaves the other alone for "
        "its last steps, which flatters the ceiling a little.)",
        "Peak MB: the maximum resident set size (2^20 bytes) of each "
        "process (per rank for 2 ranks). CPU/wall: CPU time of the process "
        "over wall time in the timed steps (ours: rank 0); about 1.00 is "
        "one busy core, less means it waited for the CPU or for the other "
        "rank.",
        "Ratios compare samples/s. Predict: every row of the real set, "
        "batch 256; ours is the whole `predict` command (start, loading, "
        "writing included), Keras is a second `model.predict` call.",
        "PyTorch's RMSprop adds eps outside the square root "
        "(g / (sqrt(v) + eps)), Keras and ours inside (g / sqrt(v + eps)); "
        "it makes no difference to the speed.",
    ]
    split = []
    for r in sorted((r for r in results if r.get("phases")),
                    key=lambda r: (r["data"], r["ranks"], r["system"])):
        for rank, line in sorted(r["phases"].items(),
                                 key=lambda item: int(item[0])):
            who = ("process" if r["system"] == "pair"
                   else "rank" if r["ranks"] > 1 else "")
            split.append(f"{runs_name(r)}{f' ({who} {rank})' if who else ''}"
                         f": {line}")
    if split:
        notes.append(
            "Where the steps of ours went, in the fastest run of each "
            "(ms/step per phase, as --timing-skip prints them; a phase ends "
            "where the next begins, so they add up to the step): "
            + "; ".join(split) + ".")
    load = loadavg(args.results)
    if load:
        notes.append(f"Load average (1, 5, 15 min) before the runs: {load[0]}; "
                     f"after: {load[1]}. Other work on the machine shows as "
                     "CPU/wall below 1 and makes every figure slower, the "
                     "two-rank runs most (each step waits for the slower "
                     "rank).")
    if torch_source:
        notes.append(f"torch installed from: {torch_source}.")
    if args.wall_seconds is not None:
        notes.append(f"Whole bench.sh run: {args.wall_seconds} s.")
    version_line = "Versions: " + "; ".join(
        f"{k} {v}" for k, v in sorted(versions.items())) + "."
    text = "\n".join(lines) + "\n\n" + "\n".join(
        f"- {n}" for n in notes + [version_line]) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text, end="")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("synthetic")
    s.add_argument("--out", required=True)
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--seed", type=int, default=7)
    s = sub.add_parser("default-prepare-args")
    s.add_argument("--source", required=True)
    s = sub.add_parser("measure")
    s.add_argument("--out", required=True)
    s.add_argument("--core", type=int, help="run the command on this core")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("ours-result")
    for name in ("--log", "--rss", "--data-name", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--ranks", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s = sub.add_parser("pair-result")
    s.add_argument("--logs", nargs=2, required=True)
    s.add_argument("--rss", nargs=2, required=True)
    s.add_argument("--data-name", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("best-of")
    s.add_argument("--out", required=True)
    s.add_argument("runs", nargs="+")
    s = sub.add_parser("predict-result")
    for name in ("--rss", "--predictions", "--data-name", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--batch", type=int, required=True)
    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--wall-seconds", type=int)
    s.add_argument("--core", type=int, help="the core of one-process runs")
    args = p.parse_args()
    {"synthetic": synthetic, "default-prepare-args": default_prepare_args,
     "measure": measure, "ours-result": ours_result, "best-of": best_of,
     "pair-result": pair_result,
     "predict-result": predict_result, "report": report}[args.what](args)


if __name__ == "__main__":
    main()
