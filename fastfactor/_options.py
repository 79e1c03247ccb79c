"""The one options parser of the front ends, its validators, and the unknown-option warning.

Each front end describes its solver options as ``{name: (default, validator)}``;
:func:`parse_options` checks them, takes the hyper-parameters (``Hyper``'s fields, whose
defaults live in ``Hyper`` alone) and warns about unknown names at the user's call,
wherever it came from (directly, or through ``scipy.optimize.minimize``).
"""

import difflib
import functools
import inspect
import math
import numbers
import os
import sys
import warnings

from scipy.optimize import OptimizeWarning

from ._blocks import block_size, normalize_shapes
from ._hyper import HYPER_NAMES

# --- validators: (name, value) -> the value to use, or ValueError/TypeError ------------


def nonneg_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def nonneg_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def positive_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if math.isnan(value):  # of the right type, a wrong value
        raise ValueError(f"{name} must be a real number, not NaN")
    return float(value)


def flag(name, value):
    return bool(value)


def optional(check):
    """``check``, letting None through."""
    def check_optional(name, value):
        return None if value is None else check(name, value)
    return check_optional


def cpu_only(entry):
    """A validator of ``device`` for a front end that runs on the CPU only."""
    def check_device(name, value):
        if value != "cpu":
            raise ValueError(f"{entry} runs on the CPU (device='cpu'), got device={value!r}")
        return value
    return check_device


# --- the parser ----------------------------------------------------------------------------

def as_options(options):
    """``options`` as a new dict (None: empty); TypeError unless it is a mapping."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    return dict(options)


#: Names other libraries (SciPy, PyTorch, Keras, Hugging Face) give to our options,
#: looked up before difflib, whose closest spelling can be another option
#: (``learning_rate`` is nearest to ``decay_rate``): ``{name: (pairs, otherwise)}``,
#: ``pairs`` the ``(option, note)`` to suggest where the front end has that option,
#: ``otherwise`` what to say where it has none of them.
_MAXFEV = ((("maxiter", "{name} is SciPy's limit on evaluations; maxiter counts "
                        "iterations"),), "")
_SYNONYMS = {
    **dict.fromkeys(["learning_rate", "learningrate", "step_size", "stepsize", "eta"],
                    ((("lr", ""),), "")),
    **dict.fromkeys(["eps", "epsilon"], (
        (("eps1", "Adafactor's eps is the pair (eps1, eps2)"),
         ("finite_diff_rel_step", "SciPy's eps is an absolute finite-difference step, "
                                  "finite_diff_rel_step a relative one")), "")),
    **dict.fromkeys(["max_iter", "max_iters", "maxiters", "max_iterations", "iterations",
                     "n_iter", "niter", "num_iterations", "max_steps", "num_steps",
                     "steps"], ((("maxiter", ""),), "")),
    **dict.fromkeys(["maxfev", "max_nfev", "maxfun", "max_fev", "max_evals"], _MAXFEV),
    **dict.fromkeys(["momentum", "beta", "beta_1", "b1"], ((("beta1", ""),), "")),
    **dict.fromkeys(["beta2", "beta_2", "b2"], (
        (("decay_rate", "the second-moment decay is beta2_t = 1 - t**decay_rate, not "
                        "a constant"),), "")),
    **dict.fromkeys(["wd", "weight_decay_rate"], ((("weight_decay", ""),), "")),
    **dict.fromkeys(["clip", "clipnorm", "clip_norm", "max_grad_norm", "clipvalue"], (
        (("clip_threshold", "Adafactor clips the update's RMS, not the gradient"),), "")),
    **dict.fromkeys(["verbose", "verbosity", "display", "iprint"], ((("disp", ""),), "")),
    **dict.fromkeys(["tolerance", "grad_tol", "pgtol"], ((("gtol", ""),), "")),
    **dict.fromkeys(["diff_step", "rel_step", "fd_step"], (
        (("finite_diff_rel_step", ""),),
        "not supported yet: finite differences take the default relative step here")),
    **dict.fromkeys(["fd_method", "diff_method"], (
        (("finite_diff_method", ""),), "not supported: choose the scheme with jac")),
    **dict.fromkeys(["max_epochs", "n_epochs", "num_epochs"], ((("epochs", ""),), "")),
    **dict.fromkeys(["random_state", "rng", "random_seed"], ((("seed", ""),), "")),
    "steps_per_epoch": ((("batches_per_epoch", ""),), ""),
}


def _hint(name, known):
    """What to say after the unknown option ``name`` ("" when nothing fits)."""
    text = str(name)
    entry = _SYNONYMS.get(text.lower())
    if entry is None:
        close = difflib.get_close_matches(text, known, n=1)
        return f" (did you mean {close[0]}?)" if close else ""
    pairs, otherwise = entry
    pairs = [(option, note.format(name=text)) for option, note in pairs if option in known]
    if not pairs:
        return f" ({otherwise})" if otherwise else ""
    options = " or ".join(option for option, _ in pairs)
    notes = "; ".join(note for _, note in pairs if note)
    return f" (did you mean {options}?{' ' + notes if notes else ''})"


def parse_options(options, spec):
    """``(solver, hyper)``: the solver options of ``spec`` (``{name: (default,
    validator)}``, validated; defaults are not validated) and the hyper-parameters given.
    Unknown names warn with ``OptimizeWarning``, with a did-you-mean."""
    options = as_options(options)
    known = list(spec) + list(HYPER_NAMES)
    unknown = sorted(set(options) - set(known), key=str)
    if unknown:
        named = [f"{name}{_hint(name, known)}" for name in unknown]
        warn_at_caller(f"Unknown solver options: {', '.join(named)}", OptimizeWarning)
    solver = {}
    for name, (default, check) in spec.items():
        if name in options:
            solver[name] = options[name] if check is None else check(name, options[name])
        else:
            solver[name] = default
    hyper = {k: options[k] for k in HYPER_NAMES if k in options}
    return solver, hyper


def options_keywords(spec):
    """Decorator of a front end with an ``options`` dict: a keyword argument it does not
    take, but that is one of its options (``spec``) or a hyper-parameter, gets a
    ``TypeError`` that shows the ``options=`` call; any other a did-you-mean."""
    option_names = list(spec) + list(HYPER_NAMES)

    def decorate(func):
        params = inspect.signature(func).parameters

        @functools.wraps(func)
        def checked(*args, **kwargs):
            unexpected = [k for k in kwargs if k not in params]
            if unexpected:
                raise TypeError(_unexpected(func.__name__, unexpected, kwargs, list(params),
                                            option_names))
            return func(*args, **kwargs)
        return checked
    return decorate


def _unexpected(entry, names, kwargs, params, option_names):
    options = {k: kwargs[k] for k in names if k in option_names}
    if options:
        shown = ", ".join(f"{k!r}: {v!r}" for k, v in options.items())
        return (f"{entry}() got an unexpected keyword argument {next(iter(options))!r}: "
                f"solver options and hyper-parameters go in options, as in "
                f"{entry}(fun, x0, ..., options={{{shown}}})")
    name = names[0]
    close = difflib.get_close_matches(name, params + option_names, n=1)
    hint = ""
    if close:
        where = "" if close[0] in params else " (an option: pass it in options)"
        hint = f"; did you mean {close[0]!r}{where}?"
    return f"{entry}() got an unexpected keyword argument {name!r}{hint}"


def parse_shapes(shapes, x_shape):
    """The block shapes partitioning an x of ``x_shape`` (default: one block, x's shape)."""
    if shapes is None:
        return [tuple(x_shape)] if x_shape else [(1,)]
    shapes, _ = normalize_shapes(shapes)
    total = sum(block_size(s) for s in shapes)
    size = block_size(x_shape)
    if total != size:
        raise ValueError(f"the shapes {shapes} hold {total} elements, but x0 has {size}; "
                         "the shapes must partition x0 (in C order)")
    return shapes


# --- warnings at the user's line -------------------------------------------------------------

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _internal(filename):
    """Frames of fastfactor and of scipy.optimize (whose ``minimize`` calls our method)."""
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE) or f"{os.sep}scipy{os.sep}optimize{os.sep}" in path


def warn_at_caller(message, category):
    """``warnings.warn`` pointing at the first frame outside fastfactor and SciPy's
    optimize package: the user's call, from every entry point."""
    level = 1
    frame = sys._getframe(0)
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
