"""The CPU backend against the backend contract (CUDA: tests/cuda/test_cuda_backend.py)."""

import numpy as np
import pytest

import backend_conformance as conformance
from fastfactor._backends import DEVICES, _protocol, get_backend

CPU = get_backend("cpu")


def test_every_member_checked():
    assert set(_protocol.ALWAYS + _protocol.TWO_PHASE) == set(conformance.CHECKS)


@pytest.mark.parametrize("member", conformance.members(CPU))
def test_cpu_backend_member(member):
    conformance.check(member, CPU, lambda a: np.array(a, copy=True))


def test_get_backend_names_the_devices():
    assert DEVICES == ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda'\), got 'tpu'"):
        get_backend("tpu")
