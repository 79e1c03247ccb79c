"""Numba discipline: nothing compiles at import; the on-disk cache keeps the serial and
the parallel build of a kernel apart."""

import os
import subprocess
import sys
import textwrap

import pytest

RUN_KERNEL = textwrap.dedent("""
    import sys, numpy as np
    from fastfactor._backends.cpu import _kernels as K
    x = np.ones((1, 300, 256)); r = np.ones((1, 300)); c = np.ones((1, 256))
    f = getattr(K, "factored_stats_" + sys.argv[1])
    out = f(x, x, r, c, np.empty_like(r), np.empty_like(c), 0.5, 1e-30, True, 2)
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
