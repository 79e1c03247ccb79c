"""Messages that say what went wrong: the did-you-mean of unknown options (names other
libraries use first, then the closest spelling), ``fun`` returning ``(f, g)`` without
``jac=True``, the checks of ``target`` and ``seed``, and the closing line of ``disp``
at a planned end."""

import os
import re
import warnings

import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize import OptimizeWarning

import fastfactor
from fastfactor._stochastic._loop import STOCHASTIC_MESSAGES
from helpers import DTYPES, dtype_id

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quad(x, *batch):
    return 0.5 * float(np.sum(x * x)), x.copy()


ENTRIES = {
    "minimize": lambda o: fastfactor.minimize(_quad, np.ones(3), jac=True, options=o),
    "scipy": lambda o: so.minimize(_quad, np.ones(3), jac=True, method=fastfactor.adafactor,
                                   options=o),
    "least_squares": lambda o: fastfactor.least_squares(lambda x: x - 1.0, np.ones(3),
                                                        options=o),
    "minimize_stochastic": lambda o: fastfactor.minimize_stochastic(
        _quad, np.ones(3), [0, 1], jac=True, options=o),
}
FD_ENTRIES = ("minimize", "scipy", "minimize_stochastic")  # those with finite_diff_*


def _unknown_warning(entry, name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ENTRIES[entry]({"maxiter": 1, name: 1})
    ours = [str(w.message) for w in caught if issubclass(w.category, OptimizeWarning)]
    assert len(ours) == 1, ours
    return ours[0]


def _expected(entry, name):
    """The whole warning, as each front end's option names make it."""
    fd = entry in FD_ENTRIES
    hint = {
        "learning_rate": "did you mean lr?",
        "LearningRate": "did you mean lr?",
        "step_size": "did you mean lr?",
        "max_iter": "did you mean maxiter?",
        "maxiterr": "did you mean maxiter?",
        "maxfev": "did you mean maxiter? maxfev is SciPy's limit on evaluations; maxiter "
                  "counts iterations",
        "max_nfev": "did you mean maxiter? max_nfev is SciPy's limit on evaluations; "
                    "maxiter counts iterations",
        "momentum": "did you mean beta1?",
        "beta2": "did you mean decay_rate? the second-moment decay is "
                 "beta2_t = 1 - t**decay_rate, not a constant",
        "verbose": "did you mean disp?",
        "max_grad_norm": "did you mean clip_threshold? Adafactor clips the update's RMS, "
                         "not the gradient",
        "eps": ("did you mean eps1 or finite_diff_rel_step? Adafactor's eps is the pair "
                "(eps1, eps2); SciPy's eps is an absolute finite-difference step, "
                "finite_diff_rel_step a relative one") if fd else
               "did you mean eps1? Adafactor's eps is the pair (eps1, eps2)",
        "diff_step": "did you mean finite_diff_rel_step?" if fd else
                     "not supported yet: finite differences take the default relative "
                     "step here",
    }[name]
    return f"Unknown solver options: {name} ({hint})"


NAMES = ["learning_rate", "LearningRate", "step_size", "max_iter", "maxiterr", "maxfev",
         "max_nfev", "momentum", "beta2", "verbose", "max_grad_norm", "eps", "diff_step"]
#: Names that are keyword arguments of least_squares (SciPy's), refused in its options
#: (``maxfev``: another name of ``max_nfev``).
LSQ_KEYWORDS = ("max_nfev", "verbose", "diff_step", "maxfev")


@pytest.mark.parametrize("entry, name", [
    (entry, name) for entry in ENTRIES for name in NAMES
    if not (entry == "least_squares" and name in LSQ_KEYWORDS)])
def test_unknown_option_names_the_option_meant(entry, name):
    assert _unknown_warning(entry, name) == _expected(entry, name)


@pytest.mark.parametrize("name", LSQ_KEYWORDS)
def test_a_least_squares_keyword_in_options_is_refused(name):
    with pytest.raises(TypeError, match=re.escape(
            f"{name!r} is a keyword argument of fastfactor.least_squares")) as info:
        ENTRIES["least_squares"]({"maxiter": 1, name: 1})
    assert f"{'max_nfev' if name == 'maxfev' else name}=" in str(info.value)


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_a_synonym_of_an_option_the_entry_lacks_falls_back(entry):
    """``random_state`` is ``seed`` only where there is a seed; elsewhere no hint (or
    difflib's), never a name the entry point does not take."""
    message = _unknown_warning(entry, "random_state")
    if entry == "minimize_stochastic":
        assert message == "Unknown solver options: random_state (did you mean seed?)"
    else:
        assert "seed" not in message


def test_several_unknown_options_each_get_their_hint():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ENTRIES["minimize"]({"maxiter": 1, "learning_rate": 1, "max_iter": 1, "zzz": 1})
    ours = [str(w.message) for w in caught if issubclass(w.category, OptimizeWarning)]
    assert ours == ["Unknown solver options: learning_rate (did you mean lr?), "
                    "max_iter (did you mean maxiter?), zzz"]


# --- fun returning (f, g) without jac=True --------------------------------------------------


def _run(entry, fun, x0, jac):
    if entry == "minimize":
        return fastfactor.minimize(fun, x0, jac=jac, options={"maxiter": 2})
    if entry == "scipy":
        return so.minimize(fun, x0.ravel(), jac=jac, method=fastfactor.adafactor,
                           options={"maxiter": 2, "shapes": [x0.shape]})
    return fastfactor.minimize_stochastic(fun, x0, [0, 1], jac=jac, options={"maxiter": 2})


@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("kind", [tuple, list])
@pytest.mark.parametrize("jac", [None, "separate"])
@pytest.mark.parametrize("entry", ["minimize", "scipy", "minimize_stochastic"])
def test_a_pair_from_fun_without_jac_true_says_so(entry, jac, kind, dtype, shape):
    x0 = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape).astype(dtype)

    def grad(x, *batch):
        return x.copy()

    def fun(x, *batch):
        return kind((0.5 * np.sum(x * x), grad(x)))

    with pytest.raises(TypeError, match=re.escape(
            "fun returned a tuple of 2 (f, g?): pass jac=True when fun returns the "
            "gradient too")):
        _run(entry, fun, x0, grad if jac == "separate" else None)
    # with jac=True the same fun runs, and its gradient is the one NumPy computes
    res = _run(entry, fun, x0, True)
    assert res.nit == 2
    if entry != "minimize_stochastic":
        np.testing.assert_allclose(np.reshape(res.jac, shape), np.reshape(res.x, shape),
                                   rtol=1e-6)


@pytest.mark.parametrize("entry", ["minimize", "scipy"])
def test_a_scalar_in_a_one_element_list_is_not_mistaken_for_a_pair(entry):
    res = _run(entry, lambda x, *b: [0.5 * float(np.sum(x * x))], np.ones(3), None)
    assert res.nit == 2


# --- minimize_stochastic's target and seed ------------------------------------------------


def _stochastic(batches=None, **options):
    return fastfactor.minimize_stochastic(
        _quad, np.ones(3), [0, 1] if batches is None else batches, jac=True,
        options={"maxiter": 3, **options})


@pytest.mark.parametrize("value, error, match", [
    (np.nan, ValueError, "target must be a real number, not NaN"),
    (float("nan"), ValueError, "target must be a real number, not NaN"),
    (np.float32("nan"), ValueError, "target must be a real number, not NaN"),
    ("0.1", TypeError, "target must be a real number, got '0.1'"),
    (True, TypeError, "target must be a real number, got True"),
    (1 + 0j, TypeError, "target must be a real number"),
])
def test_target_is_checked(value, error, match):
    with pytest.raises(error, match=re.escape(match)):
        _stochastic(eval_fun=lambda x: 1.0, target=value)


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), -np.inf, 2])
def test_a_real_target_is_taken(value):
    res = _stochastic(eval_fun=lambda x: 1.0, target=value)
    assert res.status == (0 if 1.0 <= value else 1)


@pytest.mark.parametrize("sampler", [False, True])
@pytest.mark.parametrize("value, error, match", [
    ("x", TypeError, "seed must be None, a non-negative integer or a numpy.random.Generator, "
                     "got 'x'"),
    (1.5, TypeError, "got 1.5"),
    (True, TypeError, "got True"),
    (-1, ValueError, "seed must be a non-negative integer, got -1"),
    (np.int64(-3), ValueError, "got -3"),
])
def test_a_bad_seed_is_refused_whatever_the_batches(value, error, match, sampler):
    batches = (lambda rng: 0) if sampler else None
    with pytest.raises(error, match=re.escape(match)):
        _stochastic(batches, seed=value)


@pytest.mark.parametrize("seed", [None, 0, 7, np.int64(7), np.uint8(7)])
def test_a_good_seed_is_taken_with_a_list(seed):
    assert _stochastic(seed=seed).nit == 3


@pytest.mark.parametrize("kind", ["int", "Generator", "SeedSequence", "BitGenerator"])
def test_a_sampler_draws_what_numpy_draws_from_the_seed(kind):
    seed = {"int": 11, "Generator": np.random.default_rng(11),
            "SeedSequence": np.random.SeedSequence(11), "BitGenerator": np.random.PCG64(11)}[kind]
    drawn = []

    def sampler(rng):
        drawn.append(rng.standard_normal())
        return 0

    _stochastic(sampler, seed=seed)
    expected = np.random.default_rng(11).standard_normal(len(drawn))
    np.testing.assert_array_equal(drawn, expected)


# --- disp at a planned end ---------------------------------------------------------------


def test_disp_at_a_planned_end_is_no_warning(capsys):
    res = fastfactor.minimize_stochastic(_quad, np.ones(3), [0, 1], jac=True,
                                         options={"epochs": 1, "disp": True})
    assert res.status == 3
    lines = capsys.readouterr().out.splitlines()
    assert STOCHASTIC_MESSAGES[3] in lines
    assert not any(line.startswith("Warning") for line in lines)


def test_the_disp_example_of_the_docs_shows_the_real_closing_line():
    with open(os.path.join(ROOT, "docs", "stochastic.rst"), encoding="utf-8") as page:
        text = page.read()
    block = text.split("``disp=True`` prints", 1)[1].split("``progress=True``", 1)[0]
    shown = [line.strip() for line in block.splitlines() if "data is used up" in line]
    assert shown == [STOCHASTIC_MESSAGES[3]]
