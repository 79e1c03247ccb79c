"""Helpers of the CUDA tests, which run in Numba's CUDA simulator or on a real GPU.

``tests/test_cuda_simulator.py`` runs this directory in a subprocess with
``NUMBA_ENABLE_CUDASIM=1``, so that the main ``python -m pytest`` covers the CUDA
code on every machine. Each test module here starts with ``cudatest.require()``,
which skips the module, before anything imports ``numba.cuda``, unless the
simulator is enabled or an NVIDIA GPU is usable (then the tests run on the GPU).
The helpers are in this plain module, imported with ``from cudatest import ...``
(pytest puts the directory of a test module without ``__init__.py`` on ``sys.path``);
``reference`` and ``helpers`` of ``tests/`` import the same way because pytest puts
``tests/`` on ``sys.path`` too (``pythonpath = ["tests"]`` in pyproject.toml, which
applies wherever pytest is started in the repository: the subprocess of
test_cuda_simulator.py and gpu_check.sh run ``python -m pytest tests/cuda`` from the root).

``FASTFACTOR_TEST_SIZE=large`` switches to sizes worth a real GPU (asv_benchmarks/gpu_check.sh).
"""

import os
import sys

import numpy as np
import pytest

from helpers import gradient_stream

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")
LARGE = os.environ.get("FASTFACTOR_TEST_SIZE", "small") == "large"


def _gpu_present():
    """A cheap look for an NVIDIA driver, then numba.cuda's own check."""
    if not (os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")):
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


ACTIVE = SIMULATOR or _gpu_present()


def require():
    """Skip the calling test module unless the simulator or a GPU is active."""
    if not ACTIVE:
        pytest.skip("CUDA tests need NUMBA_ENABLE_CUDASIM=1 or an NVIDIA GPU "
                    "(tests/test_cuda_simulator.py runs them in the simulator)",
                    allow_module_level=True)
    if SIMULATOR:
        # The simulator runs each CUDA thread as a Python thread: switch often.
        sys.setswitchinterval(2e-4)


@pytest.fixture
def many_blocks(monkeypatch):
    """Grids of several blocks even for tiny arrays (column tiles, row strips, partial
    sums), with blocks of ``stats`` looping over more than one column tile."""
    from fastfactor._backends.cuda import _launch  # the geometry is read there at every launch
    monkeypatch.setattr(_launch, "BLOCKS_TARGET", 8)
    monkeypatch.setattr(_launch, "SPANS_MAX", 2)
    return _launch


def size(small, large):
    return large if LARGE else small


def to_dev(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    """A NumPy copy of a device array (any layout)."""
    import fastfactor._backends.cuda as fc
    return fc.to_host(d)


class Foreign:
    """A foreign device array: only ``__cuda_array_interface__`` (as CuPy or PyTorch give).

    On a GPU it forwards the interface of a Numba device array; in the simulator,
    where "device memory" is host memory, the pointer is that of the simulated
    array's NumPy buffer.
    """

    def __init__(self, dev, readonly=False):
        self.dev = dev
        self.readonly = readonly

    @property
    def __cuda_array_interface__(self):
        if SIMULATOR:
            ai = self.dev._ary.__array_interface__
            desc = {"shape": ai["shape"], "typestr": ai["typestr"], "strides": ai["strides"],
                    "data": (ai["data"][0], self.readonly), "version": 3}
        else:
            desc = dict(self.dev.__cuda_array_interface__)
            desc["data"] = (desc["data"][0], self.readonly)
        return desc

    @property
    def shape(self):
        return tuple(self.dev.shape)


#: Agreement with the CPU path and the NumPy reference (relative, per dtype).
RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-4}


def assert_agree(actual, expected, dtype, err_msg=""):
    """Relative agreement for ``dtype``, the absolute floor scaled by the values' size."""
    expected = np.asarray(expected, dtype=np.float64)
    r = RTOL[np.dtype(dtype)]
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=r,
                               atol=r * scale, err_msg=err_msg)


def gradients(rng, shapes, dtype, n_steps):
    """Random gradients whose scale and per-row scales change from step to step (the
    stream of ``helpers.gradient_stream``)."""
    return gradient_stream(rng, shapes, dtype, n_steps)
