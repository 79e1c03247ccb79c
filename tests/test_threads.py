"""The CPU threading policy (fastfactor/_backends/cpu/_threads.py), under the default
configuration and the other Numba layers:

- serial and parallel builds give bit-identical results for the same chunks, so which
  one runs never shows;
- a step in a child forked after parallel steps in the parent works (GNU OpenMP would
  kill it), with ``multiprocessing`` fork pools and ``ProcessPoolExecutor``; spawn too;
- threads with optimizers of their own give the results of sequential runs, under the
  default layer and ``workqueue`` (which aborts on concurrent parallel use);
- a thread finding another in a parallel kernel runs the serial build;
- ``OMP_WAIT_POLICY`` defaults to passive before the first parallel kernel, unless set;
- the threshold: 16 MiB by default, ``FASTFACTOR_PARALLEL_MIN_BYTES`` sets it;
  ``numba.set_num_threads`` sets the threads.
"""

import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

import fastfactor
from fastfactor._backends.cpu import _kernels as K
from fastfactor._backends.cpu import _step, _threads
from fastfactor._hyper import Hyper
from helpers import DTYPES, dtype_id

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = (300, 256)  # parallel in the suite (FASTFACTOR_PARALLEL_MIN_BYTES=2**18, conftest.py)


def _python(code, timeout=300, **env):
    environment = dict(os.environ, **env)
    for key, value in env.items():
        if value is None:
            environment.pop(key)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=timeout)


def _steps(shape, dtype, n, seed=0):
    """``n`` steps of one optimizer from a seeded start; the final parameters."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(shape).astype(dtype)
    opt = fastfactor.Adafactor(shape, beta1=0.9)
    for _ in range(n):
        opt.step(p, rng.standard_normal(shape).astype(dtype))
    return p


# --- the two builds agree bit for bit ---------------------------------------------------------

S = Hyper(beta1=0.9, weight_decay=0.01).scalars(3)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nchunks", [2, 3, 7])
def test_unfactored_builds_agree_bit_for_bit(dtype, nchunks):
    rng = np.random.default_rng(nchunks)
    x, g = rng.standard_normal((2, 10_007)).astype(dtype)
    v = rng.uniform(0.5, 2.0, 10_007).astype(dtype)
    outs = []
    for build in ("serial", "parallel"):
        stats = getattr(K, "unfactored_stats_" + build)
        apply = getattr(K, "unfactored_apply_" + build)
        vv, mom, out = v.copy(), np.zeros_like(x), np.empty_like(x)
        usum, xsum, gmax = stats(x, g, vv, S, nchunks)
        apply(x, out, g, vv, mom, usum, xsum, S, nchunks)
        outs.append((usum, xsum, gmax, vv, mom, out))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(1, 301, 67), (4, 37, 29)], ids=str)
def test_factored_builds_agree_bit_for_bit(dtype, shape):
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((2,) + shape).astype(dtype)
    r = rng.uniform(0.5, 2, shape[:2]).astype(dtype)
    c = rng.uniform(0.5, 2, shape[::2]).astype(dtype)
    outs = []
    for build in ("serial", "parallel"):
        rr, cc = r.copy(), c.copy()
        rn, cn = np.empty_like(r), np.empty_like(c)
        mom, out = np.zeros_like(x), np.empty_like(x)
        sums = getattr(K, "factored_stats_" + build)(x, g, rr, cc, rn, cn, S, 5)
        getattr(K, "factored_apply_" + build)(x, out, g, rr, cc, rn, cn, mom, sums[2],
                                              sums[1], S, 5)
        outs.append((np.array(sums), rr, cc, mom, out))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


# --- the gate -----------------------------------------------------------------------------------

KERNELS = [f"{kind}_{phase}_{build}" for kind in ("factored", "unfactored")
           for phase in ("stats", "apply") for build in ("serial", "parallel")]


def _count_builds(monkeypatch):
    """Record which build ("serial" or "parallel") each kernel call runs."""
    ran = []
    def recording(kernel, build):
        def wrapped(*args):
            ran.append(build)
            return kernel(*args)
        return wrapped

    for name in KERNELS:
        monkeypatch.setattr(K, name, recording(getattr(K, name), name.rsplit("_", 1)[1]))
    return ran


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one Numba thread")
def test_a_thread_finding_a_parallel_kernel_busy_runs_the_serial_build(monkeypatch):
    want = _steps(BIG, np.float64, 3)
    ran = _count_builds(monkeypatch)
    assert _threads._busy.acquire(blocking=False)
    try:
        got = _steps(BIG, np.float64, 3)
    finally:
        _threads._busy.release()
    assert set(ran) == {"serial"}
    np.testing.assert_array_equal(got, want)
    ran.clear()
    _steps(BIG, np.float64, 1)
    assert set(ran) == {"parallel"}


def test_one_numba_thread_runs_the_serial_build(monkeypatch):
    ran = _count_builds(monkeypatch)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        _steps(BIG, np.float32, 2)
    finally:
        numba.set_num_threads(before)
    assert set(ran) == {"serial"}


def test_small_blocks_run_serially(monkeypatch):
    ran = _count_builds(monkeypatch)
    _steps((100, 100), np.float64, 2)
    assert set(ran) == {"serial"}
    assert _step.n_chunks(_threads.PARALLEL_MIN_BYTES - 1, 10**6) == 1


def test_the_default_threshold_and_its_variable():
    code = """
        from fastfactor._backends.cpu import _threads
        print(_threads.PARALLEL_MIN_BYTES)
    """
    assert _python(code, FASTFACTOR_PARALLEL_MIN_BYTES=None).stdout.split() == [str(16 << 20)]
    assert _python(code, FASTFACTOR_PARALLEL_MIN_BYTES="5000").stdout.split() == ["5000"]
    bad = _python(code, FASTFACTOR_PARALLEL_MIN_BYTES="many")
    assert bad.returncode != 0 and "FASTFACTOR_PARALLEL_MIN_BYTES" in bad.stderr


# --- processes -------------------------------------------------------------------------------

_FORK = """
    import multiprocessing as mp, sys
    from concurrent.futures import ProcessPoolExecutor
    import numpy as np, numba, fastfactor

    def steps(seed):
        rng = np.random.default_rng(seed)
        p = rng.standard_normal((300, 256))
        opt = fastfactor.Adafactor((300, 256))
        for _ in range(3):
            opt.step(p, rng.standard_normal((300, 256)))
        return p

    if __name__ == "__main__":
        want = [steps(s) for s in range(3)]  # parallel steps in the parent first
        layer = numba.threading_layer()
        ctx = mp.get_context("{method}")
        with ctx.Pool(2) as pool:
            got = pool.map(steps, range(3))
        with ProcessPoolExecutor(2, mp_context=ctx) as ex:
            got2 = list(ex.map(steps, range(3)))
        for w, a, b in zip(want, got, got2):
            assert np.array_equal(w, a) and np.array_equal(w, b)
        print("ok", layer)
"""


@pytest.mark.parametrize("layer", [None, "workqueue", "omp"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pools_after_parallel_steps(tmp_path, method, layer):
    if layer == "omp":
        try:
            from numba.np.ufunc import omppool  # noqa: F401
        except ImportError:
            pytest.skip("no OpenMP layer here")
    script = tmp_path / "pools.py"  # spawn re-imports the main module: a file
    script.write_text(textwrap.dedent(_FORK.format(method=method)))
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


# --- threads ----------------------------------------------------------------------------------

_THREADS = """
    import threading
    import numpy as np, numba, fastfactor

    def steps(seed, out):
        rng = np.random.default_rng(seed)
        shape = (300, 256) if seed % 2 else (80_000,)
        p = rng.standard_normal(shape)
        opt = fastfactor.Adafactor(shape, beta1=0.9)
        for _ in range(20):
            opt.step(p, rng.standard_normal(shape))
        out[seed] = p

    want = {}
    for s in range(4):
        steps(s, want)
    got = {}
    ts = [threading.Thread(target=steps, args=(s, got)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(np.array_equal(want[s], got[s]) for s in range(4))
    print("ok", numba.threading_layer())
"""


@pytest.mark.parametrize("layer", [None, "workqueue"])
def test_threads_with_their_own_optimizers_equal_sequential_runs(layer):
    env = {"NUMBA_THREADING_LAYER": layer}
    out = _python(_THREADS, **env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_threads_in_this_process(rng):
    want = [_steps(BIG if s % 2 else (80_000,), np.float32, 5, s) for s in range(4)]
    got = [None] * 4

    def work(s):
        got[s] = _steps(BIG if s % 2 else (80_000,), np.float32, 5, s)

    ts = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


# --- the wait policy ----------------------------------------------------------------------

_POLICY = """
    import os
    import numpy as np, fastfactor
    before = os.environ.get("OMP_WAIT_POLICY")
    fastfactor.Adafactor((100, 100)).step(np.ones((100, 100)), np.ones((100, 100)))
    small = os.environ.get("OMP_WAIT_POLICY")  # serial: nothing started
    fastfactor.Adafactor((300, 256)).step(np.ones((300, 256)), np.ones((300, 256)))
    print(before, small, os.environ.get("OMP_WAIT_POLICY"))
"""


def test_omp_wait_policy_defaults_to_passive_at_the_first_parallel_kernel():
    out = _python(_POLICY, OMP_WAIT_POLICY=None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None", "PASSIVE"]


def test_a_wait_policy_of_the_user_is_kept():
    out = _python(_POLICY, OMP_WAIT_POLICY="active")
    assert out.stdout.split() == ["active", "active", "active"]
