"""The benchmarks' plain-NumPy baseline (asv_benchmarks/benchmarks/_numpy_step.py) computes
the same Adafactor update as the test oracle (tests/reference.py).

The asv suite times fastfactor against ``NumpyAdafactor``; that comparison only means
something if the baseline is Adafactor too. The module is loaded from its file, so this
test needs neither asv nor the benchmark package.

``NumpyAdafactor`` keeps the paper's defaults, with no option for them: relative step
``min(1e-2, 1/sqrt(t))``, parameter scaling (``scale_parameter=True``), no first moment
(``beta1=None``), no weight decay. The reference runs with those same defaults; the
options the baseline does take (``eps1``, ``eps2``, ``clip_threshold``, ``decay_rate``)
are varied, and so is the size of the parameters (so that the ``eps2`` floor of the
parameter scale is reached).
"""

import importlib.util
import inspect
import os

import numpy as np
import pytest

from helpers import DTYPES, assert_close, dtype_id, gradient_stream, random_blocks
from reference import ReferenceAdafactor

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "asv_benchmarks", "benchmarks", "_numpy_step.py")


def _load():
    spec = importlib.util.spec_from_file_location("fastfactor_bench_numpy_step", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


numpy_step = _load()

#: One vector (unfactored), one matrix, one batch of 3 matrices (factored over the last two
#: axes), and all three in one optimizer (they share t).
CASES = {
    "vector": [(37,)],
    "matrix": [(6, 11)],
    "tensor3d": [(3, 5, 8)],
    "three_blocks": [(37,), (6, 11), (3, 5, 8)],
}

#: (options of both implementations, scale of the starting parameters).
HYPER = {
    "defaults": ({}, 1.0),
    "eps2_floor": ({}, 1e-6),           # RMS(x) < eps2: alpha = eps2 * rho
    "eps2_large": ({"eps2": 0.5}, 1.0),
    "clip_always": ({"clip_threshold": 0.25}, 1.0),
    "decay_rate": ({"decay_rate": -0.5}, 1.0),
    "eps1_large": ({"eps1": 1e-3}, 1.0),
}

N_STEPS = 6


def test_baseline_takes_no_other_options():
    """The options varied here are all the baseline has; should it gain lr,
    scale_parameter or beta1, this test (and HYPER) must grow with it."""
    names = set(inspect.signature(numpy_step.NumpyAdafactor).parameters) - {"shapes"}
    assert names == {"eps1", "eps2", "clip_threshold", "decay_rate"}, names


@pytest.mark.parametrize("hyper", list(HYPER))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_numpy_baseline_matches_reference(dtype, case, hyper, rng):
    shapes = CASES[case]
    options, x_scale = HYPER[hyper]
    xs = random_blocks(rng, shapes, dtype, scale=x_scale)
    grads = gradient_stream(rng, shapes, dtype, N_STEPS)
    baseline = numpy_step.NumpyAdafactor(shapes, **options)
    ref = ReferenceAdafactor(shapes, **options)
    for k, gs in enumerate(grads, start=1):
        before = [x.copy() for x in xs]
        out = baseline.step(xs, gs)                     # in place
        assert out is xs
        expected = ref.step(before, gs)
        for i, (x, x0, e) in enumerate(zip(xs, before, expected, strict=True)):
            assert x.dtype == np.dtype(dtype) and x.shape == shapes[i]
            where = f"step {k}, block {i} {shapes[i]}"
            # The update itself, at its own scale (x - u loses u's low digits to x's).
            u_ref = x0 - e
            scale = float(np.max(np.abs(u_ref)))
            assert scale > 0
            assert_close(x0 - x, u_ref, dtype=dtype, scale=scale, err_msg="update, " + where)
            assert_close(x, e, dtype=dtype, scale=x_scale, err_msg="parameters, " + where)
            np.copyto(x, e)  # both go on from the same point; their states stay their own
    assert baseline.t == ref.t == N_STEPS
    for i, (st, block) in enumerate(zip(baseline.state, ref.blocks, strict=True)):
        if block.factored:
            assert_close(st["r"], block.R, dtype=dtype, scale=float(np.max(block.R)),
                         err_msg=f"R of block {i}")
            assert_close(st["c"], block.C, dtype=dtype, scale=float(np.max(block.C)),
                         err_msg=f"C of block {i}")
        else:
            assert_close(st["v"], block.V, dtype=dtype, scale=float(np.max(block.V)),
                         err_msg=f"V of block {i}")
