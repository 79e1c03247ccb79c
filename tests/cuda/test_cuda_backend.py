"""The CUDA backend against the backend contract (the checks of
tests/backend_conformance.py, run in the simulator or on a GPU)."""

import cudatest

cudatest.require()

import pytest  # noqa: E402

import backend_conformance as conformance  # noqa: E402
from cudatest import to_dev  # noqa: E402
from fastfactor._backends import get_backend  # noqa: E402

pytestmark = pytest.mark.cuda

CUDA = get_backend("cuda")


@pytest.mark.parametrize("member", conformance.members(CUDA))
def test_cuda_backend_member(member):
    conformance.check(member, CUDA, to_dev)


def test_cuda_backend_has_no_two_phase_step():
    """Deciding on the host whether a gradient is finite would make every step wait for
    the GPU: the CUDA backend has the one-call steps only."""
    assert CUDA.refuses_nonfinite is False
    assert not any(hasattr(CUDA, m) for m in ("factored_stats", "factored_apply",
                                              "unfactored_stats", "unfactored_apply"))
