"""load_state_dict checks the whole state before it changes anything."""

import numpy as np
import pytest

from fastfactor import Adafactor

SHAPES = [(3, 4), (5,)]


def _stepped():
    opt = Adafactor(SHAPES)
    opt.step([np.ones((3, 4)), np.ones(5)], [np.full((3, 4), 0.5), np.full(5, 0.5)])
    return opt


def _bad(state, how):
    blocks = [dict(b) for b in state["blocks"]]
    out = dict(state, blocks=blocks)
    if how == "short_second_block":
        blocks[1]["v"] = np.ones(4)
    elif how == "nan":
        blocks[1]["v"] = np.full(5, np.nan)
    elif how == "negative":
        blocks[0]["row"] = -np.ones(3)
    elif how == "missing_key":
        del blocks[1]["v"]
    elif how == "t_negative":
        out["t"] = -5
    elif how == "t_fraction":
        out["t"] = 2.5
    elif how == "no_shapes":
        del out["shapes"]
    elif how == "complex":
        blocks[1]["v"] = np.ones(5, complex)
    return out


@pytest.mark.parametrize("how", ["short_second_block", "nan", "negative", "missing_key",
                                 "t_negative", "t_fraction", "no_shapes", "complex"])
def test_refused_state_changes_nothing(how):
    source = _stepped()
    source.step([np.ones((3, 4)), np.ones(5)], [np.full((3, 4), 2.0), np.full(5, 2.0)])
    target = _stepped()
    before = target.state_dict()
    with pytest.raises((ValueError, TypeError)):
        target.load_state_dict(_bad(source.state_dict(), how))
    after = target.state_dict()
    assert after["t"] == before["t"] == 1
    for b0, b1 in zip(before["blocks"], after["blocks"], strict=True):
        for key in b0:
            np.testing.assert_array_equal(b0[key], b1[key])
