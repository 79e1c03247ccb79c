"""The example scripts of ``docs/examples`` run at their small size and get the
results they describe.

Each test calls the script's ``main(size="small", plot=False, out_dir=tmp_path)``
and checks its figures: the fit error below a bound, fastfactor's cost against
SciPy's, the optimizer-state sizes. The NIST parser and model formulas are checked
against the certified residual sums of squares of all 27 problems.
"""

import importlib.util
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "examples")


def load(name):
    """Import ``docs/examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_main_and_a_titled_docstring():
    for name in ("low_rank", "kinetics", "nist", "linear_minibatch", "far_starts"):
        module = load(name)
        assert callable(module.main)
        title = module.__doc__.splitlines()[0]
        assert title and not title.endswith(".")


def test_low_rank(tmp_path):
    ex = load("low_rank")
    out = ex.main(size="small", plot=False, out_dir=str(tmp_path))
    for name in ex.METHODS:
        assert out[name]["reached"], name
        assert out[name]["error"] <= ex.TARGET
    cfg = ex.SIZES["small"]
    n, m, r = cfg["n"], cfg["m"], cfg["rank"]
    state = out["state"]
    # Factored second moment: n + m + r numbers; with a first moment, plus (n + m) r.
    assert state["fastfactor"] == 8 * (n + m + r)
    assert state["fastfactor, beta1=0.9"] == 8 * (n + m + r + (n + m) * r)
    assert state["Adam"] == 8 * 2 * (n + m) * r
    assert state["fastfactor"] * r < state["Adam"]


def test_kinetics(tmp_path):
    ex = load("kinetics")
    out = ex.main(size="small", plot=False, out_dir=str(tmp_path))
    ff, sp = out["fastfactor"]["res"], out["SciPy"]["res"]
    assert ff.success and sp.success
    # The same minimum: costs within 1e-7, parameters within a hundredth of their
    # standard errors.
    assert ff.cost <= sp.cost * (1 + 1e-7)
    se = out["standard_errors"]
    assert np.all(np.abs(ff.x - sp.x) < 0.01 * se)
    # And the truth within four standard errors.
    assert np.all(np.abs(ff.x - out["truth"]) < 4 * se)


def test_nist_models_reproduce_the_certified_rss():
    ex = load("nist")
    problems = ex.load_problems()
    assert len(problems) == 27
    levels = {p.spec["difficulty"] for p in problems}
    assert levels == {"Lower", "Average", "Higher"}
    for p in problems:
        spec = p.spec
        assert spec["start1"].shape == spec["start2"].shape == spec["certified"].shape
        assert spec["y"].size == spec["x"].shape[1] > spec["certified"].size
        rss = p.rss(spec["certified"])
        # Lanczos1's certified RSS (1.4e-25) is below the rounding of its data.
        if p.name != "Lanczos1":
            assert ex.lre(rss, spec["rss"]) >= 9, p.name
        J = p.jacobian(spec["certified"])
        assert J.shape == (spec["y"].size, spec["certified"].size)
        assert np.all(np.isfinite(J)), p.name


def test_nist_small(tmp_path):
    ex = load("nist")
    results = ex.main(size="small", plot=False, out_dir=str(tmp_path))
    assert len(results) == len(ex.SMALL) * 2 * len(ex.SOLVERS)
    for r in results:
        assert r["solved"], (r["problem"], r["start"], r["solver"], r["lre"])
    table = (tmp_path / "nist_results.inc").read_text()
    assert "list-table" in table and "Misra1a" in table


def test_far_starts_small(tmp_path):
    ex = load("far_starts")
    lines = []
    fit = ex.Fit(ex.PROBLEMS[0]())
    out = ex.run_problem(ex.PROBLEMS[0], 3, list(ex.METHODS), report=lines.append)
    assert len(lines) == len(ex.METHODS)  # a line per method as it finishes
    best = out["best"]
    r = fit.residuals(fit.problem.truth)
    assert best <= 0.5 * (r @ r) * (1 + 1e-9)  # at or below the truth's cost
    for method, rs in out["fits"].items():
        assert len(rs) == 3 and all(r["cost"] >= best * (1 - 1e-12) for r in rs), method
    ex.main(size="small", plot=False, out_dir=str(tmp_path))
    table = (tmp_path / "far_starts_results.inc").read_text()
    assert "list-table" in table and "fastfactor" in table


def test_linear_minibatch(tmp_path):
    ex = load("linear_minibatch")
    out = ex.main(size="small", plot=False, out_dir=str(tmp_path))
    mb, ls = out["minibatch"], out["lsqr"]
    stat = np.linalg.norm(out["x_ls"] - out["x_true"]) / np.linalg.norm(out["x_true"])
    # Well within the statistical error of the exact solution, as close to the truth.
    assert mb["error_ls"] < 0.1 * stat
    assert mb["error_true"] < 1.1 * stat
    assert ls["error_ls"] < 1e-4
    assert mb["nit"] == ex.SIZES["small"][1] * -(-20_000 // ex.BATCH)
    assert mb["memory"] > 0 and ls["memory"] > 0
