#!/usr/bin/env python3
"""Times the shapes kernel-bench printed with a BLAS from Python, the same
way kernel-bench times ours: best of REPEATS rounds of as many calls as
fill MIN_MS milliseconds. Used by scripts/bench-kernels.sh.

    python3 scripts/bench_blas.py numpy|torch REPEATS MIN_MS < kernel-bench-output

Prints one line per shape, "blas NAME GFLOP/s", and first a line "# ..."
saying which library and kernel it measured.
"""
import sys
import time


def best_seconds(call, repeats, min_seconds):
    call()
    calls = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            break
        calls = calls * 10 if elapsed <= 0 else max(
            calls + 1, int(calls * min_seconds / elapsed * 1.1))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def describe_numpy():
    import numpy as np
    try:
        import threadpoolctl
        info = threadpoolctl.threadpool_info()
        blas = [i for i in info if i.get("user_api") == "blas"]
        return "; ".join(
            f"{i.get('internal_api')} {i.get('version')} "
            f"kernel {i.get('architecture')} threads {i.get('num_threads')}"
            for i in blas) or "no BLAS found by threadpoolctl"
    except ImportError:
        pass
    # Without threadpoolctl: ask OpenBLAS itself, through the library numpy
    # has loaded.
    import ctypes
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
                threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if core is not None:
                    core.restype = ctypes.c_char_p
                    n = threads() if threads is not None else "?"
                    return (f"numpy {np.__version__}, OpenBLAS ({path.split('/')[-1]}) "
                            f"kernel {core().decode()} threads {n} "
                            "(threadpoolctl not installed; asked OpenBLAS)")
    return f"numpy {np.__version__}, BLAS kernel unknown"


def main():
    backend, repeats, min_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    shapes = []
    for line in sys.stdin:
        parts = line.split()
        if parts and parts[0] == "gemm":
            _, name, form, m, n, k = parts[:6]
            shapes.append((name, form, int(m), int(n), int(k)))

    if backend == "numpy":
        import numpy as np
        print("# " + describe_numpy())

        def make(form, m, n, k):
            rng = np.random.default_rng(0)
            a = rng.uniform(-1, 1, (m, k) if form != "Aᵀ·B" else (k, m)).astype(np.float32)
            b = rng.uniform(-1, 1, (n, k) if form == "A·Bᵀ" else (k, n)).astype(np.float32)
            c = np.empty((m, n), np.float32)
            a_op = a.T if form == "Aᵀ·B" else a
            b_op = b.T if form == "A·Bᵀ" else b
            return lambda: np.matmul(a_op, b_op, out=c)
    else:
        import torch
        torch.set_num_threads(1)
        print(f"# torch {torch.__version__}, MKL {torch.backends.mkl.is_available()}, "
              f"threads {torch.get_num_threads()}, "
              f"CPU capability {torch.backends.cpu.get_cpu_capability()}")

        def make(form, m, n, k):
            g = torch.Generator().manual_seed(0)
            a = torch.rand((m, k) if form != "Aᵀ·B" else (k, m), generator=g) * 2 - 1
            b = torch.rand((n, k) if form == "A·Bᵀ" else (k, n), generator=g) * 2 - 1
            c = torch.empty((m, n))
            a_op = a.t() if form == "Aᵀ·B" else a
            b_op = b.t() if form == "A·Bᵀ" else b
            return lambda: torch.mm(a_op, b_op, out=c)

    for name, form, m, n, k in shapes:
        seconds = best_seconds(make(form, m, n, k), repeats, min_ms / 1000)
        print(f"blas {name} {2 * m * n * k / seconds / 1e9:.1f}")


if __name__ == "__main__":
    main()
