"""A factored step never builds an n x m array (V, U, Û or any temporary).

NumPy reports its allocations to ``tracemalloc`` (and so, here, do arrays that
Numba kernels allocate), so the traced peak of one step (after a warm-up step, which
compiles the kernels and allocates the state) bounds what the step allocates. As a
second, allocator-independent check, the resident set is watched too (Linux: the
peak RSS, reset through /proc/self/clear_refs).
"""

import ctypes
import ctypes.util
import os
import tracemalloc

import numpy as np
import pytest

from fastfactor import Adafactor

# name: (shape, dtype, hyper); each case's parameter is 32 MiB or less.
CASES = {
    "matrix_f64": ((2048, 2048), np.float64, {}),
    "matrix_f64_momentum_decay": ((2048, 2048), np.float64, dict(beta1=0.9, weight_decay=0.01)),
    "matrix_f32_wide": ((512, 8192), np.float32, {}),
    "batch_3d_f64": ((4, 1024, 1024), np.float64, {}),
    "batch_3d_f64_momentum": ((8, 512, 1024), np.float64, dict(beta1=0.5)),
    "batch_4d_f32": ((2, 2, 1024, 1024), np.float32, dict(lr=lambda t: 1e-3)),
}


def _one_matrix_bytes(shape, dtype):
    """Bytes of one n x m matrix of the block (the last two axes)."""
    return shape[-2] * shape[-1] * np.dtype(dtype).itemsize


def _setup(shape, dtype, hyper):
    r = np.random.default_rng(0)
    x = r.standard_normal(shape, dtype=dtype)
    g1 = r.standard_normal(shape, dtype=dtype)
    g2 = r.standard_normal(shape, dtype=dtype)
    opt = Adafactor(shape, **hyper)
    opt.step(x, g1)  # warm-up: compilation and state allocation
    return opt, x, g2


def _traced_peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


@pytest.mark.parametrize("shape, dtype, hyper", CASES.values(), ids=CASES.keys())
def test_step_allocates_no_n_by_m_array_traced(shape, dtype, hyper):
    opt, x, g = _setup(shape, dtype, hyper)
    before = x.copy()
    peak = _traced_peak(lambda: opt.step(x, g))
    assert not np.array_equal(x, before)  # the step did happen
    matrix = _one_matrix_bytes(shape, dtype)
    # 5% of one n x m matrix: the kernels' scratch is O(threads * m + B), never O(n m)
    limit = 0.05 * matrix
    assert peak < limit, (f"one step allocated {peak / 2**20:.2f} MiB "
                          f"(limit {limit / 2**20:.2f} MiB)")


def test_tracemalloc_sees_numpy_temporaries():
    """The premise of the test above: a NumPy n x m temporary is traced."""
    x = np.ones((2048, 2048))
    peak = _traced_peak(lambda: np.sqrt(x * x))
    assert peak >= x.nbytes


def _read_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _release_free_heap():
    """Give freed heap memory back to the OS (glibc), so a new allocation shows in the RSS."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_growth(fn):
    """Peak RSS during fn() minus RSS before it (bytes), or None if it cannot be measured."""
    _release_free_heap()
    if not os.path.exists("/proc/self/status") or not _reset_peak_rss():
        return None
    base = _read_status_kib("VmRSS")
    if _read_status_kib("VmHWM") > base + 1024:  # the reset did not take
        return None
    fn()
    return (_read_status_kib("VmHWM") - base) * 1024


@pytest.mark.parametrize(
    "shape, dtype, hyper",
    [CASES["matrix_f64"], CASES["batch_3d_f64"]],
    ids=["matrix_f64", "batch_3d_f64"],
)
def test_step_allocates_no_n_by_m_array_rss(shape, dtype, hyper):
    """Also the memory Numba allocates: the resident set must not grow by an n x m array."""
    opt, x, g = _setup(shape, dtype, hyper)
    opt.step(x, g)  # a second warm-up: thread pools and first-touch pages
    matrix = _one_matrix_bytes(shape, dtype)
    premise = _rss_growth(lambda: np.ones(shape[-2:], dtype).sum())
    if premise is None or premise < 0.9 * matrix:
        pytest.skip("the peak RSS cannot be reset here, or does not show a new n x m array")
    growth = _rss_growth(lambda: opt.step(x, g))
    assert growth < 0.25 * matrix, (f"the resident set grew by {growth / 2**20:.1f} MiB "
                                    "during one step")
