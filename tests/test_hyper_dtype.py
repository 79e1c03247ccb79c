"""Hyper-parameters that do not fit the parameters' dtype are refused at the first step,
naming the hyper-parameter, and a refused first step leaves no state behind."""

import numpy as np
import pytest

import fastfactor
from fastfactor import Adafactor


@pytest.mark.parametrize("hyper, name", [
    (dict(lr=1e39), "lr"), (dict(eps1=1e39), "eps1"), (dict(eps1=1e-50), "eps1"),
    (dict(weight_decay=1e39), "weight_decay"), (dict(clip_threshold=1e39), "clip_threshold"),
    (dict(lr=lambda t: 1e39), "lr schedule"),
])
@pytest.mark.parametrize("shape", [(2, 3), (4,)], ids=str)
def test_float32_overflowing_hyper_is_refused(hyper, name, shape):
    opt = Adafactor(shape, **hyper)
    x = np.ones(shape, np.float32)
    with pytest.raises(ValueError, match=name):
        opt.step(x, np.ones(shape, np.float32))
    assert opt.t == 0 and opt.dtype is None and np.all(x == 1)
    # the same hyper-parameters fit float64
    x64 = np.ones(shape)
    opt.step(x64, np.ones(shape))
    assert opt.t == 1


def test_refused_first_step_leaves_no_state():
    opt = Adafactor(3)
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.step(np.ones(3, np.float32), np.array([1, np.nan, 1], np.float32))
    assert opt.dtype is None and opt.state_dict()["blocks"] == []
    opt.step(np.ones(3), np.ones(3))  # float64 after a refused float32 first step
    assert opt.dtype == np.float64


def test_minimize_refuses_before_running():
    with pytest.raises(ValueError, match="lr=1e[+]39 overflows float32"):
        fastfactor.minimize(lambda x: (float(np.sum(x * x)), 2 * x), np.ones(3, np.float32),
                            jac=True, options={"lr": 1e39})
