"""Warnings about the user's call point at the user's line, from every entry point."""

import warnings

import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize import OptimizeWarning

import fastfactor


def _quad(x):
    return 0.5 * float(np.sum(x * x)), x.copy()


CALLS = {
    "minimize": lambda o: fastfactor.minimize(_quad, np.ones(3), jac=True, options=o),
    "adafactor": lambda o: fastfactor.adafactor(_quad, np.ones(3), jac=True, **o),
    "scipy": lambda o: so.minimize(_quad, np.ones(3), jac=True, method=fastfactor.adafactor,
                                   options=o),
    "least_squares": lambda o: fastfactor.least_squares(lambda x: x - 1.0, np.ones(3),
                                                        options=o),
    "minimize_stochastic": lambda o: fastfactor.minimize_stochastic(
        lambda x, b: _quad(x), np.ones(3), [0, 1], jac=True, options=o),
}


@pytest.mark.parametrize("entry", list(CALLS))
def test_unknown_option_warns_at_the_callers_line(entry):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CALLS[entry]({"maxiter": 2, "not_an_option": 1})
    ours = [w for w in caught if issubclass(w.category, OptimizeWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "not_an_option" in str(ours[0].message)
    assert ours[0].filename == __file__, ours[0].filename


@pytest.mark.parametrize("via_scipy", [False, True])
def test_hess_warning_at_the_callers_line(via_scipy):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if via_scipy:
            so.minimize(_quad, np.ones(3), jac=True, hess=lambda x: np.eye(3),
                        method=fastfactor.adafactor, options={"maxiter": 1})
        else:
            fastfactor.adafactor(_quad, np.ones(3), jac=True, hess=lambda x: np.eye(3),
                                 maxiter=1)
    ours = [w for w in caught if issubclass(w.category, RuntimeWarning)
            and "first-order" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__


# --- keyword arguments that belong in ``options`` ------------------------------------------

def _sumsq(x, *args):
    return float(np.sum(x * x))


@pytest.mark.parametrize("call, shown", [
    (lambda: fastfactor.minimize(_sumsq, np.ones(3), maxiter=5), "options={'maxiter': 5}"),
    (lambda: fastfactor.minimize(_sumsq, np.ones(3), maxiter=5, lr=0.1),
     "options={'maxiter': 5, 'lr': 0.1}"),
    (lambda: fastfactor.least_squares(lambda x: x, np.ones(3), maxiter=5, finish=False),
     "options={'maxiter': 5, 'finish': False}"),
    (lambda: fastfactor.minimize_stochastic(_sumsq, np.ones(3), [1], epochs=2),
     "options={'epochs': 2}"),
], ids=["minimize", "minimize-two", "least_squares", "minimize_stochastic"])
def test_an_option_given_as_keyword_shows_the_options_call(call, shown):
    with pytest.raises(TypeError, match="unexpected keyword argument") as info:
        call()
    assert shown in str(info.value)


@pytest.mark.parametrize("call, hint", [
    (lambda: fastfactor.minimize(_sumsq, np.ones(3), callbak=None), "did you mean 'callback'?"),
    (lambda: fastfactor.minimize(_sumsq, np.ones(3), max_iter=3),
     "did you mean 'maxiter' (an option: pass it in options)?"),
    (lambda: fastfactor.least_squares(lambda x: x, np.ones(3), bound=(0, 1)),
     "did you mean 'bounds'?"),
])
def test_a_misspelled_keyword_gets_a_did_you_mean(call, hint):
    with pytest.raises(TypeError) as info:
        call()
    assert hint in str(info.value)


def test_the_signatures_stay_those_of_the_functions():
    import inspect
    assert list(inspect.signature(fastfactor.minimize).parameters) == [
        "fun", "x0", "args", "jac", "bounds", "callback", "tol", "options"]
    lsq = list(inspect.signature(fastfactor.least_squares).parameters)
    assert lsq[0] == "fun" and lsq[-1] == "options" and "xtol" in lsq
    assert "options" in inspect.signature(fastfactor.minimize_stochastic).parameters
