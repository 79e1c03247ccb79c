"""``python -m fastfactor --precompile``: a later process's first solve compiles nothing.

Each process starts with the same fresh Numba cache folder; the second counts the cache
misses of every kernel (a miss is a compilation)."""

import json
import os
import subprocess
import sys

import pytest

#: A later process's uses of the kernels: solves (steps into a new array) and
#: ``Adafactor.step`` (in place) of matrices and vectors, bounded and not, with and
#: without momentum, and both big enough for the parallel kernels; solves of a
#: ``numba.njit`` objective (the compiled loop).
LATER = r"""
import json
import numba
import numpy as np
import fastfactor
from fastfactor._backends.cpu import _kernels as K
from fastfactor._backends.cpu._threads import PARALLEL_MIN_BYTES
t = np.linspace(-1.0, 1.0, 12)
for shape in [(4, 3), (12,)]:
    T = t.reshape(shape)
    for bounds in [None, [(-0.5, 0.5)] * 12]:
        for beta1 in [0.0, 0.9]:
            fastfactor.minimize(lambda X: (0.5 * float(np.sum((X - T) ** 2)), X - T),
                                np.zeros(shape), jac=True, bounds=bounds,
                                options=dict(maxiter=5, beta1=beta1))
rows = 2 * PARALLEL_MIN_BYTES // (64 * 8)
for shape in [(4, 3), (12,), (rows, 64), (rows * 64,)]:
    for beta1 in [None, 0.9]:
        fastfactor.Adafactor([shape], beta1=beta1).step([np.ones(shape)],
                                                        [np.full(shape, 0.5)])
    if shape[0] == rows:
        fastfactor.minimize(lambda X: (0.5 * float(np.sum(X ** 2)), X), np.ones(shape),
                            jac=True, options=dict(maxiter=2))


@numba.njit
def fg(x):
    return 0.5 * np.sum((x - 1.0) ** 2), x - 1.0


for shape in [(4, 3), (12,)]:  # the compiled loop, with and without bounds
    for bounds in [None, [(-0.5, 0.5)] * 12]:
        fastfactor.minimize(fg, np.zeros(shape), jac=True, bounds=bounds,
                            options=dict(maxiter=5, beta1=0.9))
for residuals, jacobian in [(lambda x: x - 1.0, lambda x: np.eye(x.size)),
                            (numba.njit(lambda x: x - 1.0), numba.njit(lambda x: np.eye(x.size)))]:
    for bounds in [(-np.inf, np.inf), (-0.5, 0.5)]:  # least squares, both loops
        fastfactor.least_squares(residuals, np.zeros(4), jacobian, bounds=bounds,
                                 options=dict(maxiter=5, finish=False))
line = numba.njit(lambda x, a, b: a * x + b)
line_jac = numba.njit(lambda x, a, b: np.column_stack((x, np.ones_like(x))))
for sigma in [None, 0.5]:  # curve_fit's compiled residuals on 1-D data
    fastfactor.curve_fit(line, t, 2.0 * t + 1.0, sigma=sigma, jac=line_jac)
import fastfactor._compiled as compiled
import fastfactor._compiled._lsq as compiled_lsq
from fastfactor._lsq import _reductions
kernels = [f for f in vars(K).values() if hasattr(f, "stats")]
kernels += [f for f in vars(_reductions).values() if hasattr(f, "stats")]
kernels += list(compiled._solvers.values()) + list(compiled_lsq._solvers.values())
print(json.dumps(sum(sum(f.stats.cache_misses.values()) for f in kernels)))
"""


def _env(cache):
    # a small parallel threshold keeps the big step small; two threads allow parallel
    return dict(os.environ, NUMBA_CACHE_DIR=str(cache), FASTFACTOR_NUMBA_CACHE="1",
                FASTFACTOR_PARALLEL_MIN_BYTES=str(1 << 16), NUMBA_NUM_THREADS="2")


@pytest.mark.slow
def test_precompiled_kernels_are_not_compiled_again(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastfactor", "--precompile", "float64"],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "float64 kernels for matrices" in done.stdout
    assert "float64 kernels for vectors" in done.stdout
    assert "float64 solve loop for numba.njit objectives" in done.stdout
    assert "float64 least_squares loop for numba.njit residuals" in done.stdout
    assert "float64 curve_fit loop for numba.njit models" in done.stdout
    assert done.stdout.count("compiling the float64") == 6  # a line before each part
    assert f"(in {tmp_path})" in done.stdout
    later = subprocess.run([sys.executable, "-c", LATER], env=_env(tmp_path),
                           capture_output=True, text=True, timeout=600)
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout.strip().splitlines()[-1]) == 0


@pytest.mark.parametrize("name", ["float16", "Float64", "f8", "float"])
def test_a_dtype_it_cannot_compile_for_is_refused(tmp_path, name):
    done = subprocess.run([sys.executable, "-m", "fastfactor", "--precompile", name],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"precompile takes float32 and float64, got {name!r}" in done.stderr


def test_with_the_disk_cache_off_nothing_is_compiled(tmp_path):
    env = dict(_env(tmp_path), FASTFACTOR_NUMBA_CACHE="0")
    done = subprocess.run([sys.executable, "-m", "fastfactor", "--precompile", "float64"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "disk cache is off" in done.stderr and not done.stdout


def test_without_arguments_the_demo_runs(monkeypatch):
    import fastfactor.__main__ as demo

    calls = []
    monkeypatch.setattr(demo, "main", lambda: calls.append("demo") or 0)
    assert demo.cli([]) == 0 and calls == ["demo"]
