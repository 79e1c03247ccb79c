"""A truncated, garbled or empty file in the kernels' disk cache costs a compile and one
warning, never a crash: Numba itself unpickles the index (``.nbi``) and data (``.nbc``)
files unguarded, so such a file made every later process fail (``EOFError``,
``UnpicklingError``) on the kernel's first call. The entry is rewritten, so the process
after that loads it again, silently."""

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CODE = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import numpy as np
        import fastfactor
        from fastfactor._backends.cpu import _kernels as K
        rng = np.random.default_rng(0)
        p, g = rng.standard_normal((30, 20)), rng.standard_normal((30, 20))
        fastfactor.Adafactor((30, 20)).step(p, g)
        c = np.arange(6.0)
        res = fastfactor.minimize(lambda x: 0.5 * np.sum((x - c) ** 2), np.zeros(6),
                                  jac=lambda x: x - c, options=dict(maxiter=20))
    kernels = [f for f in vars(K).values() if hasattr(f, "stats")]
    print(json.dumps(dict(
        x=[*p.ravel().tolist(), *res.x.tolist()],
        warnings=[str(w.message) for w in caught if "cache" in str(w.message)],
        misses=sum(sum(f.stats.cache_misses.values()) for f in kernels))))
""")


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), FASTFACTOR_NUMBA_CACHE="1")
    done = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def primed(tmp_path_factory):
    """A cache filled by one run, and that run's output."""
    cache_dir = tmp_path_factory.mktemp("primed")
    first = _run(cache_dir)
    assert first["warnings"] == [] and first["misses"] > 0, first
    return cache_dir, first


def _truncate(data):
    return data[:len(data) // 2]


def _garble(data):
    return random.Random(len(data)).randbytes(len(data))


def _empty(data):
    return b""


CASES = {  # kernels whose files are spoiled (called by minimize, by the step), which, how
    "index truncated": (("_unfactored_stats",), (".nbi",), _truncate),
    "data truncated": (("_unfactored_apply",), (".nbc",), _truncate),
    "garbage, two kernels": (("_unfactored_stats", "_unfactored_apply"), (".nbi", ".nbc"),
                             _garble),
    "empty files": (("_factored_stats",), (".nbi", ".nbc"), _empty),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_cache_file_is_recompiled_and_rewritten(primed, tmp_path, case):
    kernels, suffixes, spoil = CASES[case]
    source, first = primed
    cache_dir = tmp_path / "cache"
    shutil.copytree(source, cache_dir)
    spoiled = [f for f in cache_dir.rglob("*") if f.suffix in suffixes
               and f.name.startswith(tuple(f"_kernels.{k}-" for k in kernels))]
    assert len(spoiled) == len(kernels) * len(suffixes), sorted(cache_dir.rglob("*"))
    for f in spoiled:
        f.write_bytes(spoil(f.read_bytes()))

    second = _run(cache_dir)
    assert second["x"] == first["x"]
    assert len(second["warnings"]) == 1, second["warnings"]
    assert str(spoiled[0].parent) in second["warnings"][0]
    assert second["misses"] > 0

    third = _run(cache_dir)
    assert third["x"] == first["x"]
    assert third["warnings"] == [] and third["misses"] == 0, third


def test_unreadable_unwritable_cache_entry_only_warns(primed, tmp_path):
    """An index that can be neither read nor replaced (a folder in its place): the kernel
    is compiled, and not cached."""
    source, first = primed
    cache_dir = tmp_path / "cache"
    shutil.copytree(source, cache_dir)
    index = next(cache_dir.rglob("_kernels._unfactored_stats-*.nbi"))
    index.unlink()
    index.mkdir()
    Path(index, "keep").touch()
    second = _run(cache_dir)
    assert second["x"] == first["x"]
    assert len(second["warnings"]) == 1, second["warnings"]
