"""Fixtures of the fastfactor test suite (helpers to import are in helpers.py)."""

import os

import numpy as np
import pytest

# The parallel kernels from 256 KiB (65,536 float32 elements), so that the suite's
# small blocks exercise them (the default threshold is larger; test_threads.py checks
# it). Set before fastfactor is imported, and inherited by the suite's subprocesses.
os.environ.setdefault("FASTFACTOR_PARALLEL_MIN_BYTES", str(1 << 18))


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)
