"""FASTFACTOR_NUMBA_CACHE=0 turns the kernels' disk cache off."""

import os
import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent("""
    import numpy as np
    import fastfactor
    opt = fastfactor.Adafactor((3, 4))
    opt.step(np.ones((3, 4)), np.ones((3, 4)))
    from fastfactor._backends.cpu import _jit
    print(_jit.CACHE)
""")


@pytest.mark.parametrize("setting, cached", [("0", False), ("1", True)])
def test_cache_switch(tmp_path, setting, cached):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTFACTOR_NUMBA_CACHE=setting)
    done = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(cached)
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith((".nbi", ".nbc"))]
    assert bool(files) == cached, files
