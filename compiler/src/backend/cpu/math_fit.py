#!/usr/bin/env python3
"""The polynomial coefficients of math.rs: interpolation at Chebyshev nodes (near-minimax) in 60-digit arithmetic.

Run with mpmath installed (`pip install mpmath`): prints each table, rounded to its format, and the fit's max error.
"""
import struct

from mpmath import atanh, cos, erf, erfc, exp, log, lu_solve, matrix, mp, mpf, pi, sqrt, tanh

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


def fit_weighted(g, w, a, b, degree, iterations=12, points=240):
    """Coefficients of P(v), v = t - (a+b)/2, minimizing max |w(t)·(P(v) - g(t))| on [a, b] (Lawson's iteratively
    reweighted least squares on Chebyshev-spaced points), and that max."""
    mid, half = (a + b) / 2, (b - a) / 2
    ts = [mid - half * cos(pi * k / (points - 1)) for k in range(points)]
    gs, ws = [g(t) for t in ts], [w(t) for t in ts]
    n = degree + 1
    basis = [[((t - mid) / half) ** j for j in range(n)] for t in ts]  # normalized, for conditioning
    lam = [mpf(1) / points] * points
    for _ in range(iterations):
        A, y = matrix(n, n), matrix(n, 1)
        for k in range(points):
            weight = lam[k] * ws[k] ** 2
            for i in range(n):
                y[i] += weight * basis[k][i] * gs[k]
                for j in range(n):
                    A[i, j] += weight * basis[k][i] * basis[k][j]
        c = lu_solve(A, y)
        errs = [abs(ws[k] * (sum(c[j] * basis[k][j] for j in range(n)) - gs[k])) for k in range(points)]
        total = sum(lam[k] * errs[k] for k in range(points))
        lam = [lam[k] * errs[k] / total for k in range(points)]
    return [c[j] / half**j for j in range(n)], max(errs)


# erf a = a + a·Q(a²) below the split; above it, 1 - e^(-a²)·R(a - mid) with R fitted for the absolute error of
# e^(-a²)·R (that is, of erf) up to where erf rounds to 1 (the emitter clamps a there).
erf_q = lambda z: erf(sqrt(z)) / sqrt(z) - 1 if z > 0 else 2 / sqrt(pi) - 1
erf_r = lambda t: erfc(t) * exp(t * t)
gauss = lambda t: exp(-t * t)
show("erf small f32", *fit(erf_q, mpf(0), mpf(1), 6), True)
show("erf large f32 (mid 2.5)", *fit_weighted(erf_r, gauss, mpf(1), mpf(4), 8), True)
show("erf small f64", *fit(erf_q, mpf(0), mpf(1), 12), False)
show("erf large f64 (mid 3.5)", *fit_weighted(erf_r, gauss, mpf(1), mpf(6), 22), False)
