"""Fixtures of the fastfactor test suite (helpers to import are in helpers.py)."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)
