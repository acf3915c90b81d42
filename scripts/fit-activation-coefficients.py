#!/usr/bin/env python3
"""Fits the polynomial coefficients of the vector sigmoid and tanh in
Sources/Network/Kernels/VectorActivations.swift, and prints them as Swift.

Two polynomials, each fitted for the least maximum *relative* error of the
function it serves (Lawson's iteratively reweighted least squares, which
converges to the minimax solution of a linear problem), in float64 against
mpmath at 40 digits, then rounded to float32 one coefficient at a time, lowest power first, the
higher ones refitted after each rounding so they absorb its error:

  exp:  e^r ≈ 1 + r + r² · Q(r)        for |r| ≤ ln(2)/2
  tanh: tanh(x) ≈ x + x³ · P(x²)       for 0 ≤ x ≤ TANH_SPLIT

    python3 scripts/fit-activation-coefficients.py
"""
import mpmath
import numpy as np

mpmath.mp.dps = 40
TANH_SPLIT = 0.625
EXP_DEGREE = 5    # Q: r^0 .. r^5, so e^r to r^7
TANH_DEGREE = 5   # P: w^0 .. w^5, so tanh to x^13


def lawson(basis, target, weight, iterations=400):
    """Coefficients c minimising max_i |weight_i · (basis_i · c − target_i)|."""
    lam = np.full(len(target), 1.0 / len(target))
    for _ in range(iterations):
        w = np.sqrt(lam) * weight
        c, *_ = np.linalg.lstsq(basis * w[:, None], target * w, rcond=None)
        err = np.abs(weight * (basis @ c - target))
        lam = lam * err
        lam /= lam.sum()
    return c


def lawson_float32(basis, target, weight):
    """Like lawson, but every coefficient a float32: each is rounded in
    turn and the remaining ones are refitted to what is left."""
    fixed = []
    for i in range(basis.shape[1]):
        rest = target - basis[:, :i] @ np.array(fixed, dtype=np.float64)
        c = lawson(basis[:, i:], rest, weight)
        fixed.append(float(np.float32(c[0])))
    return np.array(fixed)


def fit_exp():
    half = float(mpmath.log(2)) / 2
    # Chebyshev-like nodes, dense near the ends where the error peaks.
    r = half * np.cos(np.linspace(0, np.pi, 3001))
    r = r[np.abs(r) > 1e-6]
    exact = np.array([float(mpmath.exp(mpmath.mpf(x))) for x in r])
    # (e^r − 1 − r) / r², and the weight that turns the error of r²·Q
    # into a relative error of e^r.
    q_target = np.array([
        float((mpmath.exp(mpmath.mpf(x)) - 1 - mpmath.mpf(x)) / mpmath.mpf(x) ** 2)
        for x in r])
    basis = np.vander(r, EXP_DEGREE + 1, increasing=True)
    weight = r ** 2 / exact
    return r, exact, lawson(basis, q_target, weight), lawson_float32(
        basis, q_target, weight)


def fit_tanh():
    x = TANH_SPLIT * np.cos(np.linspace(0, np.pi / 2, 3001))
    x = x[x > 1e-5]
    w = x ** 2
    exact = np.array([float(mpmath.tanh(mpmath.mpf(v))) for v in x])
    p_target = np.array([
        float((mpmath.tanh(mpmath.mpf(v)) - mpmath.mpf(v)) / mpmath.mpf(v) ** 3)
        for v in x])
    basis = np.vander(w, TANH_DEGREE + 1, increasing=True)
    weight = x ** 3 / exact
    return x, exact, lawson(basis, p_target, weight), lawson_float32(
        basis, p_target, weight)


def horner(c, t):
    acc = np.zeros_like(t) + c[-1]
    for coefficient in c[-2::-1]:
        acc = acc * t + coefficient
    return acc


def swift_hex(v):
    """A float32 as a Swift hexadecimal literal, without trailing zeros."""
    mantissa, exponent = float(v).hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}"


def main():
    r, exact, c, c32 = fit_exp()
    for name, cc in (("float64", c), ("float32", c32)):
        approx = 1 + r + r ** 2 * horner(cc, r)
        print(f"// exp: max relative error with {name} coefficients: "
              f"{np.max(np.abs(approx / exact - 1)):.3e} "
              f"(2^{np.log2(np.max(np.abs(approx / exact - 1))):.1f})")
    print("    /// Q in e^r ≈ 1 + r + r²·Q(r), |r| ≤ ln 2 / 2, lowest power first.")
    print("    static let expCoefficients: [Float] = [")
    for v in c32.astype(np.float32):
        print(f"        {swift_hex(v)},  // {float(v):.9g}")
    print("    ]")

    x, exact, c, c32 = fit_tanh()
    for name, cc in (("float64", c), ("float32", c32)):
        approx = x + x ** 3 * horner(cc, x ** 2)
        print(f"// tanh: max relative error with {name} coefficients: "
              f"{np.max(np.abs(approx / exact - 1)):.3e} "
              f"(2^{np.log2(np.max(np.abs(approx / exact - 1))):.1f})")
    print(f"    /// P in tanh(x) ≈ x + x³·P(x²), |x| ≤ {TANH_SPLIT}, lowest power first.")
    print("    static let tanhCoefficients: [Float] = [")
    for v in c32.astype(np.float32):
        print(f"        {swift_hex(v)},  // {float(v):.9g}")
    print("    ]")


if __name__ == "__main__":
    main()
