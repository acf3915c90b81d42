#!/usr/bin/env bash
# Builds kernel-bench in release, runs it, times the same shapes with numpy
# (OpenBLAS) and, when an interpreter with PyTorch is at hand, with torch
# (MKL), all on one thread, and prints GFLOP/s side by side with the ratio
# of ours to each.
#
#     scripts/bench-kernels.sh [REPEATS [MIN_MS [ROUNDS]]]
#
# The three take turns ROUNDS times (default 3) and the table shows each
# one's best, so that load from other users of the machine, which comes
# and goes, is less likely to favour one side.
#
# TORCH_PYTHON names the interpreter to try for torch (default python3);
# nothing is installed. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for
# the numpy run, so OpenBLAS picks its kernel for this CPU by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

repeats="${1:-9}"
min_ms="${2:-20}"
rounds="${3:-3}"
torch_python="${TORCH_PYTHON:-python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

swift build -c release --product kernel-bench >&2
have_torch=0
if OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$torch_python" -c 'import torch' \
    2>/dev/null; then
    have_torch=1
fi
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    .build/release/kernel-bench --repeats "$repeats" --min-ms "$min_ms" \
        > "$out/ours.$round.txt"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        OMP_NUM_THREADS=1 python3 scripts/bench_blas.py numpy "$repeats" \
        "$min_ms" < "$out/ours.$round.txt" > "$out/numpy.$round.txt"
    if [ "$have_torch" = 1 ]; then
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$torch_python" \
            scripts/bench_blas.py torch "$repeats" "$min_ms" \
            < "$out/ours.$round.txt" > "$out/torch.$round.txt"
    else
        echo "# torch: not importable by $torch_python; numpy only" \
            > "$out/torch.$round.txt"
    fi
done
grep -h '^activation' "$out"/ours.*.txt | sort -k2,2 -k3,3n \
    | awk '!seen[$2]++ { print "# ours: " $2 " " $3 " ns/element" }' \
    > "$out/activations.txt"

python3 - "$out" <<'PY'
import glob
import sys
folder = sys.argv[1]

def best_rates(pattern, tag, column):
    """Notes (first file's '#' lines) and the best GFLOP/s per shape."""
    notes, rates = [], {}
    for i, path in enumerate(sorted(glob.glob(f"{folder}/{pattern}"))):
        for line in open(path):
            parts = line.split()
            if not parts:
                continue
            if line.startswith("#"):
                if i == 0:
                    notes.append(line.strip())
            elif parts[0] == tag:
                rates[parts[1]] = max(rates.get(parts[1], 0.0), float(parts[column]))
    return notes, rates

shapes = []
for line in open(sorted(glob.glob(f"{folder}/ours.*.txt"))[0]):
    parts = line.split()
    if parts and parts[0] == "gemm":
        shapes.append(parts[1:6])
_, ours = best_rates("ours.*.txt", "gemm", 7)
numpy_notes, numpy = best_rates("numpy.*.txt", "blas", 2)
torch_notes, torch = best_rates("torch.*.txt", "blas", 2)
rounds = len(glob.glob(f"{folder}/ours.*.txt"))
for note in numpy_notes + torch_notes + open(f"{folder}/activations.txt").read().split("\n"):
    if note:
        print(note)
print()
header = (f"{'shape':<14} {'form':<5} {'m':>5} {'n':>4} {'k':>5} {'ours':>7} "
          f"{'numpy':>7} {'torch':>7} {'/numpy':>7} {'/torch':>7} {'/best':>6}")
print(header)
print("-" * len(header))
for name, form, m, n, k in shapes:
    rate = ours[name]
    p, t = numpy.get(name), torch.get(name)
    def cell(v):
        return f"{v:7.1f}" if v is not None else f"{'-':>7}"
    def ratio(v):
        return f"{rate / v:7.2f}" if v else f"{'-':>7}"
    best = max(v for v in (p, t, 0.0) if v is not None)
    print(f"{name:<14} {form:<5} {m:>5} {n:>4} {k:>5} {cell(rate)} {cell(p)} "
          f"{cell(t)} {ratio(p)} {ratio(t)} {rate / best if best else 0:6.2f}")
print(f"\nGFLOP/s on one thread, best of {rounds} alternating rounds. The "
      "recurrence shapes take a few microseconds a call, where Python's\n"
      "per-call overhead weighs on numpy and torch; the model calls "
      "rec_dz·Rt (Rᵀ transposed once per pass), not rec_dz·Rᵀ.")
PY
