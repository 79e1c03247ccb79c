"""Hyper-parameters are defined once (``fastfactor._hyper.Hyper``); every list of them
elsewhere (the stepper's signature and docstring, the front ends' docstrings, the
options page, the README, the NumPy reference, the kernels' ``StepScalars``) must name
the same ones with the same defaults, so that a forgotten list fails here."""

import ast
import dataclasses
import inspect
import os
import re

import pytest

import fastfactor
from fastfactor._hyper import HYPER_NAMES, Hyper, StepScalars
from reference import ReferenceAdafactor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = {f.name: f.default for f in dataclasses.fields(Hyper)}


def _value(text):
    """A documented default (``1e-3``, ``None``, ``True``, ``-0.8``) as a value."""
    return ast.literal_eval(text.strip().strip("`"))


def test_adafactor_signature_is_hypers():
    params = inspect.signature(fastfactor.Adafactor).parameters
    hyper = {n: p.default for n, p in params.items() if n not in ("shapes", "device")}
    assert list(hyper) == list(HYPER_NAMES)
    assert hyper == DEFAULTS


def test_reference_defaults_are_hypers():
    params = inspect.signature(ReferenceAdafactor).parameters
    assert {n: params[n].default for n in HYPER_NAMES} == DEFAULTS


def _docstring_params(doc):
    """``{name: paragraph}`` of a numpydoc Parameters section."""
    section = doc.split("Parameters\n    ----------\n", 1)[1].split("\n    Notes", 1)[0]
    out = {}
    for block in re.split(r"\n    (?=\w+ :)", "\n    " + section.strip()):
        name = block.split(" :", 1)[0].strip()
        out[name] = block
    return out


def test_adafactor_docstring_gives_every_default():
    params = _docstring_params(fastfactor.Adafactor.__doc__)
    for name, default in DEFAULTS.items():
        assert name in params, f"Adafactor's docstring does not document {name}"
        text = params[name]
        m = re.search(r"\(default ([^):;]+)[):;]", text) or re.search(r"(\w+) \(default\)", text)
        assert m, f"Adafactor's docstring gives no default for {name}"
        assert _value(m.group(1)) == default, (name, m.group(1), default)


@pytest.mark.parametrize("front_end", [fastfactor.adafactor, fastfactor.least_squares,
                                       fastfactor.minimize_stochastic])
def test_front_end_docstrings_list_every_hyper(front_end):
    lines = [ln.strip() for ln in front_end.__doc__.splitlines()]
    listed = [ln for ln in lines if ln.startswith("lr, eps1")]
    assert listed == [", ".join(HYPER_NAMES)], front_end.__name__


def test_options_page_gives_every_default():
    with open(os.path.join(ROOT, "docs", "options.rst"), encoding="utf-8") as f:
        text = f.read()
    for name, default in DEFAULTS.items():
        m = re.search(rf"^{name} : .*, default (.+)$", text, re.M)
        assert m, f"docs/options.rst does not list {name} with its default"
        assert _value(m.group(1)) == default, (name, m.group(1))


def test_readme_table_gives_every_default():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    for name, default in DEFAULTS.items():
        m = re.search(rf"^\| `{name}` \| `([^`]+)` \|", text, re.M)
        assert m, f"the README's options table does not list {name}"
        assert _value(m.group(1)) == default, (name, m.group(1))


def test_step_scalars_come_from_hyper():
    """Every per-step scalar but the schedules is a hyper-parameter of the same name."""
    h = Hyper(lr=0.3, eps1=1e-20, eps2=2e-3, clip_threshold=2.0, decay_rate=-0.5, beta1=0.5,
              weight_decay=0.25, scale_parameter=False)
    s = h.scalars(4)
    assert isinstance(s, StepScalars)
    assert s.rho == 0.3 and s.beta2 == 1 - 4 ** -0.5
    for name in StepScalars._fields:
        if name not in ("beta2", "rho"):
            assert name in HYPER_NAMES and getattr(s, name) == getattr(h, name), name
    assert Hyper().scalars(1).beta1 == 0.0  # no first moment


def test_unknown_hyper_keyword_is_refused():
    with pytest.raises(TypeError, match="unexpected keyword argument 'beta2'"):
        fastfactor.Adafactor((2, 2), beta2=0.9)
