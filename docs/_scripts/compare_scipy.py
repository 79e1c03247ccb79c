"""Adafactor against SciPy's L-BFGS-B on two small problems (the numbers quoted in
the "When to use Adafactor" page).

Run: ``python docs/_scripts/compare_scipy.py``. Iteration and evaluation counts and
errors are deterministic (fixed seeds); times depend on the machine and include no
Numba compilation (a warm-up run is made first).
"""

import time

import numpy as np
import scipy.optimize as so

import fastfactor


def low_rank(n=300, m=200, rank=5, seed=0):
    """f(U, V) = ||U V^T - M||^2 / 2 for a rank-5 M; x = [U.ravel(), V.ravel()]."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, m)) / np.sqrt(rank)
    k = n * rank

    def fg(x):
        U, V = x[:k].reshape(n, rank), x[k:].reshape(m, rank)
        E = U @ V.T - M
        return 0.5 * np.sum(E * E), np.concatenate([(E @ V).ravel(), (E.T @ U).ravel()])

    def rel_err(x):
        U, V = x[:k].reshape(n, rank), x[k:].reshape(m, rank)
        return np.linalg.norm(U @ V.T - M) / np.linalg.norm(M)

    x0 = 0.1 * rng.standard_normal(k + m * rank)
    return fg, rel_err, x0, [(n, rank), (m, rank)]


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def deterministic():
    fg, rel_err, x0, shapes = low_rank()
    print(f"A. deterministic low-rank fit, {x0.size} unknowns, exact gradient")
    res, s = timed(lambda: so.minimize(fg, x0, jac=True, method="L-BFGS-B",
                                       options={"maxiter": 5000, "gtol": 1e-5}))
    print(f"  L-BFGS-B                 nit={res.nit:5d} nfev={res.nfev:5d} "
          f"rel.err={rel_err(res.x):.1e} {s:.2f} s")
    for label, lr in [("0.05/sqrt(t)", lambda t: 0.05 / np.sqrt(t)),
                      ("fixed 0.01  ", 0.01),
                      ("default     ", None)]:
        opts = {"shapes": shapes, "maxiter": 5000, "gtol": 1e-5, "lr": lr}
        so.minimize(fg, x0, jac=True, method=fastfactor.adafactor,
                    options=dict(opts, maxiter=2))  # compile first
        res, s = timed(lambda opts=opts: so.minimize(fg, x0, jac=True,
                                                     method=fastfactor.adafactor, options=opts))
        print(f"  Adafactor lr={label} nit={res.nit:5d} nfev={res.nfev:5d} "
              f"rel.err={rel_err(res.x):.1e} {s:.2f} s")


def stochastic(N=20000, d=100, k=20, batch=100, epochs=5, seed=1):
    """Multi-output least squares; the gradient is only sampled (mini-batches)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    W_true = rng.standard_normal((d, k))
    Y = X @ W_true + 0.1 * rng.standard_normal((N, k))
    W_best = np.linalg.lstsq(X, Y, rcond=None)[0]

    def err(W):
        return np.linalg.norm(W - W_best) / np.linalg.norm(W_best)

    print(f"B. stochastic least squares, W is {d}x{k}, {N} samples, batches of {batch}")
    print(f"  statistical error of the least-squares solution itself: "
          f"||W_best - W_true|| / ||W_best|| = {err(W_true):.1e}")
    draws = np.random.default_rng(seed + 1)

    def noisy_fg(w):  # a fresh mini-batch at every call
        idx = draws.integers(0, N, batch)
        W = w.reshape(d, k)
        E = X[idx] @ W - Y[idx]
        return 0.5 * np.sum(E * E) / batch, (X[idx].T @ E / batch).ravel()

    w0 = np.zeros(d * k)
    res = so.minimize(noisy_fg, w0, jac=True, method="L-BFGS-B",
                      options={"maxfun": epochs * N // batch})
    print(f"  L-BFGS-B on mini-batches      nfev={res.nfev:5d} "
          f"rel.err={err(res.x.reshape(d, k)):.1e}"
          f" success={res.success}"
          f"  ({res.message})")

    for label, kw in [("lr=0.3/sqrt(t)", {"lr": lambda t: 0.3 / np.sqrt(t)}),
                      ("lr=0.1/sqrt(t)", {"lr": lambda t: 0.1 / np.sqrt(t)}),
                      ("lr=0.1/sqrt(t), scale_parameter=False",
                       {"lr": lambda t: 0.1 / np.sqrt(t), "scale_parameter": False})]:
        W = np.zeros((d, k))
        opt = fastfactor.Adafactor((d, k), **kw)
        steps = 0
        for _ in range(epochs):
            for idx in np.array_split(draws.permutation(N), N // batch):
                E = X[idx] @ W - Y[idx]
                opt.step(W, X[idx].T @ E / len(idx))
                steps += 1
        print(f"  Adafactor stepper, {epochs} epochs, {label}: steps={steps} rel.err={err(W):.1e}")

    def full_fg(w):
        E = X @ w.reshape(d, k) - Y
        return 0.5 * np.sum(E * E) / N, (X.T @ E / N).ravel()

    res = so.minimize(full_fg, w0, jac=True, method="L-BFGS-B")
    print(f"  L-BFGS-B on the full batch    nfev={res.nfev:5d} "
          f"rel.err={err(res.x.reshape(d, k)):.1e}"
          f"  (each evaluation reads all {N} samples)")


if __name__ == "__main__":
    deterministic()
    print()
    stochastic()
