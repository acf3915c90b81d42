#!/usr/bin/env bash
# Builds kernel-bench in release, runs it, times the same shapes with numpy
# (OpenBLAS) and, when an interpreter with PyTorch is at hand, with torch
# (MKL), all on one thread, and prints GFLOP/s side by side with the ratio
# of ours to each.
#
#     scripts/bench-kernels.sh [REPEATS [MIN_MS]]
#
# TORCH_PYTHON names the interpreter to try for torch (default python3);
# nothing is installed. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for
# the numpy run, so OpenBLAS picks its kernel for this CPU by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

repeats="${1:-9}"
min_ms="${2:-20}"
torch_python="${TORCH_PYTHON:-python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

swift build -c release --product kernel-bench >&2
.build/release/kernel-bench --repeats "$repeats" --min-ms "$min_ms" \
    | tee "$out/ours.txt" >&2

env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 python3 scripts/bench_blas.py numpy "$repeats" "$min_ms" \
    < "$out/ours.txt" > "$out/numpy.txt"
if OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$torch_python" -c 'import torch' \
    2>/dev/null; then
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$torch_python" scripts/bench_blas.py \
        torch "$repeats" "$min_ms" < "$out/ours.txt" > "$out/torch.txt"
else
    echo "# torch: not importable by $torch_python; numpy only" > "$out/torch.txt"
fi

python3 - "$out" <<'PY'
import sys
folder = sys.argv[1]
def read(name):
    notes, rates = [], {}
    for line in open(f"{folder}/{name}.txt"):
        parts = line.split()
        if line.startswith("#"):
            notes.append(line.strip())
        elif parts[0] == "blas":
            rates[parts[1]] = float(parts[2])
    return notes, rates
ours = []
for line in open(f"{folder}/ours.txt"):
    parts = line.split()
    if parts and parts[0] == "gemm":
        ours.append((parts[1], parts[2], parts[3], parts[4], parts[5], float(parts[7])))
numpy_notes, numpy = read("numpy")
torch_notes, torch = read("torch")
for note in numpy_notes + torch_notes:
    print(note)
print()
header = f"{'shape':<14} {'form':<5} {'m':>5} {'n':>4} {'k':>5} {'ours':>7} {'numpy':>7} {'torch':>7} {'/numpy':>7} {'/torch':>7} {'/best':>6}"
print(header)
print("-" * len(header))
for name, form, m, n, k, rate in ours:
    def cell(v):
        return f"{v:7.1f}" if v is not None else f"{'-':>7}"
    def ratio(v):
        return f"{rate / v:7.2f}" if v else f"{'-':>7}"
    p, t = numpy.get(name), torch.get(name)
    best = max(v for v in (p, t, 0.0) if v is not None)
    print(f"{name:<14} {form:<5} {m:>5} {n:>4} {k:>5} {cell(rate)} {cell(p)} "
          f"{cell(t)} {ratio(p)} {ratio(t)} {rate / best if best else 0:6.2f}")
print("\nGFLOP/s on one thread, best round; recurrence shapes are a few "
      "microseconds, where Python's per-call overhead dominates numpy/torch.")
PY
