"""Inputs that once reached a kernel wrongly or failed obscurely, by kind (see the
replayed public bug reports): read-only stepper layout, parameters that share memory,
sparse gradients, misplaced arguments, misspelled options, NumPy scalars, threads."""

import threading
import warnings

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from scipy.optimize import OptimizeWarning

import fastfactor
from fastfactor import Adafactor


@pytest.mark.parametrize("name", ["shapes", "factored", "hyper", "t", "dtype", "device",
                                  "backend"])
def test_stepper_layout_is_read_only(name):
    opt = Adafactor([(3, 4), (5,)])
    opt.step([np.ones((3, 4)), np.ones(5)], [np.ones((3, 4)), np.ones(5)])
    with pytest.raises(AttributeError):
        setattr(opt, name, getattr(opt, name))
    opt.shapes.append((7,))  # a copy: the optimizer is unchanged
    assert opt.shapes == [(3, 4), (5,)]


@pytest.mark.parametrize("kind, refused", [("overlap", True), ("disjoint", False),
                                           ("interleaved", False), ("same", True)])
def test_parameters_sharing_memory_are_refused(kind, refused):
    base = np.zeros(40)
    if kind == "overlap":
        params = [base[:12].reshape(3, 4), base[8:12]]
    elif kind == "disjoint":
        params = [base[:12].reshape(3, 4), base[12:16]]
    elif kind == "interleaved":
        params = [base[0:24:2].reshape(3, 4), base[1:9:2]]
    else:
        a = np.zeros(4)
        params = [np.zeros((3, 4)), a, a]
    shapes = [p.shape for p in params]
    opt = Adafactor(shapes)
    grads = [np.ones(s) for s in shapes]
    before = [p.copy() for p in params]
    if refused:
        with pytest.raises(ValueError, match="share memory"):
            opt.step(params, grads)
        assert opt.t == 0
        for p, b in zip(params, before, strict=True):
            np.testing.assert_array_equal(p, b)
    else:
        opt.step(params, grads)
        assert opt.t == 1


def test_zero_stride_parameter_is_refused():
    p = np.lib.stride_tricks.as_strided(np.zeros(1), (4, 3), (0, 0), writeable=True)
    with pytest.raises(ValueError, match="overlapping elements"):
        Adafactor((4, 3)).step(p, np.ones((4, 3)))


def _sparse_calls():
    g = sp.csr_matrix(np.ones((1, 3)))
    return {
        "stepper": lambda: Adafactor((1, 3)).step(np.ones((1, 3)), g),
        "minimize": lambda: fastfactor.minimize(lambda x: (0.0, g), np.ones((1, 3)),
                                                jac=True),
        "scipy": lambda: so.minimize(lambda x: 0.0, np.ones(3), jac=lambda x: g.T,
                                     method=fastfactor.adafactor),
        "stochastic": lambda: fastfactor.minimize_stochastic(
            lambda x, b: (0.0, g), np.ones((1, 3)), [0], jac=True),
    }


@pytest.mark.parametrize("entry", list(_sparse_calls()))
def test_sparse_gradient_is_named(entry):
    with pytest.raises(TypeError, match=r"sparse matrix of shape \((1, 3|3, 1)\)"):
        _sparse_calls()[entry]()


def test_stepper_class_as_scipy_method_points_to_adafactor():
    with pytest.raises(TypeError, match="method=fastfactor.adafactor"):
        so.minimize(lambda x: 0.0, np.ones(2), method=Adafactor)


def test_shapes_as_several_arguments_are_explained():
    with pytest.raises(TypeError, match=r"Adafactor\(\[\(2, 2\), \(3,\)\]\)"):
        Adafactor((2, 2), (3,))


def test_single_array_for_several_blocks_is_explained():
    opt = Adafactor([(3,), (3,)])
    with pytest.raises(ValueError, match="pass lists of 2 arrays"):
        opt.step(np.ones(3), np.ones(3))


def test_misspelled_option_gets_a_suggestion():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastfactor.minimize(lambda x: (0.5 * float(x @ x), x.copy()), np.ones(3), jac=True,
                            options={"max_iter": 3, "maxiter": 1})
    msgs = [str(w.message) for w in caught if issubclass(w.category, OptimizeWarning)]
    assert msgs == ["Unknown solver options: max_iter (did you mean maxiter?)"]


def test_numpy_bools_are_bools():
    opt = Adafactor((2, 2), scale_parameter=np.True_, warmup_init=np.False_)
    assert opt.hyper.scale_parameter and not opt.hyper.warmup_init


def test_threads_sharing_one_stepper_lose_no_step():
    opt = Adafactor((64, 32))
    params = [np.ones((64, 32)) for _ in range(4)]

    def work(p):
        for _ in range(100):
            opt.step(p, np.full((64, 32), 0.1))

    threads = [threading.Thread(target=work, args=(p,)) for p in params]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert opt.t == 400
