"""Without a writable cache location the kernels compile in memory, with one warning
(Numba's own failure: "cannot cache function ...: no locator available")."""

import subprocess
import sys
import textwrap

CODE = textwrap.dedent("""
    import warnings
    from numba.core import caching
    # as on a read-only install with a read-only home: Numba finds no cache location
    caching.CacheImpl._locator_classes = []
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import numpy as np
        import fastfactor
        opt = fastfactor.Adafactor((3, 4))
        opt.step(np.ones((3, 4)), np.ones((3, 4)))
    ours = [w for w in caught if "without a disk cache" in str(w.message)]
    print(len(ours), opt.t)
""")


def test_no_cache_location_compiles_in_memory():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"], done.stdout + done.stderr
