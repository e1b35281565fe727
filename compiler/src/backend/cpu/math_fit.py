#!/usr/bin/env python3
"""The polynomial coefficients of math.rs: interpolation at Chebyshev nodes (near-minimax) in 60-digit arithmetic.

Run with mpmath installed (`pip install mpmath`): prints each table, rounded to its format, and the fit's max error.
"""
import struct

from mpmath import atanh, cos, exp, log, lu_solve, matrix, mp, mpf, pi, sqrt, tanh

mp.dps = 60


def fit(g, a, b, degree):
    """Coefficients c[0..=degree] of the polynomial interpolating g at Chebyshev nodes of [a, b], and its max error."""
    n = degree + 1
    nodes = [(a + b) / 2 + (b - a) / 2 * cos(pi * (2 * k + 1) / (2 * n)) for k in range(n)]
    A, y = matrix(n, n), matrix(n, 1)
    for i, t in enumerate(nodes):
        for j in range(n):
            A[i, j] = t**j
        with mp.workdps(250):  # g cancels badly near 0
            y[i] = g(t if abs(t) > mpf(10) ** -30 else mpf(10) ** -60)
    c = lu_solve(A, y)
    grid = [a + (b - a) * k / 2000 for k in range(2001)]
    with mp.workdps(250):
        err = max(abs(sum(c[j] * t**j for j in range(n)) - g(t if t != 0 else mpf(10) ** -60)) for t in grid)
    return [c[j] for j in range(n)], err


def shortest_f32(v):
    t = struct.unpack("f", struct.pack("f", float(v)))[0]
    return next(s for s in ("%.*e" % (d - 1, t) for d in range(6, 12)) if struct.unpack("f", struct.pack("f", float(s)))[0] == t)


def show(name, coefficients, err, f32):
    print(f"{name}: max error {mp.nstr(err, 3)}")
    print("  [" + ", ".join(shortest_f32(c) if f32 else repr(float(c)) for c in coefficients) + "]")


half_ln2 = log(2) / 2 * mpf("1.0001")
exp_p = lambda r: (exp(r) - 1 - r) / r**2  # e^r = 1 + r + r²·P(r)
show("exp f32", *fit(exp_p, -half_ln2, half_ln2, 4), True)
show("exp f64", *fit(exp_p, -half_ln2, half_ln2, 10), False)
log_p = lambda f: (log(1 + f) - f + f**2 / 2) / f**3  # log(1+f) = f - f²/2 + f³·P(f)
show("log f32", *fit(log_p, sqrt(mpf(1) / 2) - 1, sqrt(mpf(2)) - 1, 8), True)
s_max = (sqrt(mpf(2)) - 1) / (sqrt(mpf(2)) + 1)
log_s = lambda z: (2 * atanh(sqrt(z)) / sqrt(z) - 2) / z  # 2·atanh(s) = 2s + s·z·P(z), z = s²
show("log f64", *fit(log_s, mpf(0), s_max**2, 6), False)
tanh_p = lambda z: (tanh(sqrt(z)) / sqrt(z) - 1) / z  # tanh a = a + a³·P(a²)
show("tanh f32", *fit(tanh_p, mpf(0), mpf("0.625") ** 2, 5), True)
show("tanh f64", *fit(tanh_p, mpf(0), mpf("0.625") ** 2, 11), False)
