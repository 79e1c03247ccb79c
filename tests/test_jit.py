"""Numba discipline: nothing compiles at import; the on-disk cache keeps the serial and
the parallel build of a kernel apart, and serves kernels taking the step's scalars as
one ``StepScalars`` named tuple to a second process."""

import os
import subprocess
import sys
import textwrap

import pytest

RUN_KERNEL = textwrap.dedent("""
    import sys, numpy as np
    from fastfactor._backends.cpu import _kernels as K
    from fastfactor._hyper import Hyper
    s = Hyper(eps1=1e-30).scalars(2)._replace(beta2=0.5)
    x = np.ones((1, 300, 256)); r = np.ones((1, 300)); c = np.ones((1, 256))
    f = getattr(K, "factored_stats_" + sys.argv[1])
    out = f(x, x, r, c, np.empty_like(r), np.empty_like(c), s, 2)
    assert out == (76800.0, 76800.0, 76800.0), out  # sums of g**2, x**2, U**2
    print(sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
""")


def _run(code, *args, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


def test_import_compiles_nothing():
    code = textwrap.dedent("""
        import numba.core.registry
        import fastfactor
        from fastfactor._backends.cpu import _kernels as K
        compiled = [name for name, f in vars(K).items()
                    if hasattr(f, "signatures") and f.signatures]
        print(len(compiled), *compiled)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "0", out.stdout


@pytest.mark.parametrize("first, second", [("serial", "parallel"), ("parallel", "serial")])
def test_serial_and_parallel_builds_have_their_own_cache_entries(first, second, tmp_path):
    hits, misses = _run(RUN_KERNEL, first, cache_dir=tmp_path)
    assert (hits, misses) == ("0", "1")  # compiled and cached
    hits, misses = _run(RUN_KERNEL, second, cache_dir=tmp_path)
    assert (hits, misses) == ("0", "1")  # the other build's entry is not taken
    hits, misses = _run(RUN_KERNEL, second, cache_dir=tmp_path)
    assert (hits, misses) == ("1", "0")  # its own entry is


RUN_STEPS = textwrap.dedent("""
    import numpy as np
    from fastfactor._backends._protocol import FactoredState, UnfactoredState
    from fastfactor._backends.cpu import _kernels as K, _step
    from fastfactor._hyper import Hyper
    s = Hyper(beta1=0.9).scalars(3)
    x = np.ones((2, 5, 7)); out = np.empty_like(x)
    st = FactoredState(np.ones((2, 5)), np.ones((2, 7)), np.zeros_like(x))
    assert _step.factored_step(x, out, x, st, s) and _step.factored_step(x, x, x, st, s)
    v = np.ones(9)
    assert _step.unfactored_step(v, v, v, UnfactoredState(v.copy(), np.zeros(9)), s)
    fs = [K.factored_stats_serial, K.factored_apply_serial, K.unfactored_stats_serial,
          K.unfactored_apply_serial]
    print(*(sum(f.stats.cache_hits.values()) for f in fs),
          *(sum(f.stats.cache_misses.values()) for f in fs))
""")


def test_kernels_taking_step_scalars_are_cached(tmp_path):
    """The four step kernels, called with a ``StepScalars`` (and the apply kernels both in
    place and out of place), compile once and load from the cache in the next process."""
    out = _run(RUN_STEPS, cache_dir=tmp_path)
    assert out[4:] != ["0"] * 4, out  # compiled
    assert out[:4] == ["0"] * 4, out
    out = _run(RUN_STEPS, cache_dir=tmp_path)
    assert out[4:] == ["0"] * 4, out  # nothing compiled
    assert all(int(h) >= 1 for h in out[:4]), out  # every kernel loaded from the cache


def test_import_loads_no_numba():
    """`import fastfactor` stays light: Numba loads at the first step, not at import."""
    code = "import sys, fastfactor; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]
