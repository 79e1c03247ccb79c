"""The example scripts of ``docs/examples`` run at their small size and get the
results they describe.

Each test calls the script's ``main(size="small", ...)`` with a temporary folder as
the working directory (``run_example``) and checks its figures: the fit error below a
bound, fastfactor's cost against SciPy's, the optimizer-state sizes. The same runs
check where the outputs go: into the working directory by default (or ``out_dir``),
the tracked files of ``docs/examples`` untouched. The NIST parser and model formulas
are checked against the certified residual sums of squares of all 27 problems.
"""

import importlib.util
import inspect
import os
import shutil
import subprocess

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "examples")
NAMES = ("low_rank", "kinetics", "nist", "linear_minibatch", "far_starts")
#: The scripts draw their plots only where matplotlib is installed.
PLOTS = importlib.util.find_spec("matplotlib") is not None


def load(name):
    """Import ``docs/examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git_status():
    """``git status --porcelain docs/examples``, or None where git cannot tell."""
    if shutil.which("git") is None:
        return None
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--", "docs/examples"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def files_of(folder):
    """The plain files of ``folder``: name -> (size, modification time)."""
    return {e.name: (e.stat().st_size, e.stat().st_mtime_ns)
            for e in os.scandir(folder) if e.is_file()}


def run_example(name, tmp_path, monkeypatch, **kwargs):
    """``main(size="small", **kwargs)`` of one script, run in ``tmp_path``; checks that
    ``docs/examples`` is as before (its files, and git's status where git is there).
    Returns the module and main's result."""
    ex = load(name)
    monkeypatch.chdir(tmp_path)
    status, files = git_status(), files_of(EXAMPLES)
    out = ex.main(size="small", **kwargs)
    assert files_of(EXAMPLES) == files, f"{name} wrote into docs/examples"
    if status is not None:
        assert git_status() == status, f"{name} changed docs/examples"
    return ex, out


def test_every_example_has_main_and_a_titled_docstring():
    for name in NAMES:
        module = load(name)
        assert callable(module.main)
        title = module.__doc__.splitlines()[0]
        assert title and not title.endswith(".")


def test_every_example_writes_to_the_working_directory_by_default():
    # main's and the command line's out_dir default to ".", and the docstring says how
    # to write into docs/examples instead.
    for name in NAMES:
        module = load(name)
        assert inspect.signature(module.main).parameters["out_dir"].default == ".", name
        with open(os.path.join(EXAMPLES, name + ".py"), encoding="utf-8") as f:
            assert 'add_argument("--out-dir", default=".",' in f.read(), name
        assert "--out-dir docs/examples``" in " ".join(module.__doc__.split()), name


def test_low_rank(tmp_path, monkeypatch):
    ex, out = run_example("low_rank", tmp_path, monkeypatch, plot=True)
    assert sorted(os.listdir(tmp_path)) == (["low_rank.png"] if PLOTS else [])
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


def test_kinetics(tmp_path, monkeypatch):
    ex, out = run_example("kinetics", tmp_path, monkeypatch, plot=True)
    assert sorted(os.listdir(tmp_path)) == (["kinetics.png"] if PLOTS else [])
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


def test_nist_small(tmp_path, monkeypatch):
    # With out_dir given, the files go there, not into the working directory.
    ex, results = run_example("nist", tmp_path, monkeypatch, plot=False, out_dir="out")
    assert os.listdir(tmp_path) == ["out"]
    assert sorted(os.listdir(tmp_path / "out")) == ["nist_results.inc", "nist_summary.inc"]
    assert len(results) == len(ex.SMALL) * 2 * len(ex.SOLVERS)
    for r in results:
        assert r["solved"], (r["problem"], r["start"], r["solver"], r["lre"])
    table = (tmp_path / "out" / "nist_results.inc").read_text()
    assert "list-table" in table and "Misra1a" in table
    assert "NUMBA_NUM_THREADS" in table and "OPENBLAS_NUM_THREADS" in table


def test_far_starts_small(tmp_path, monkeypatch):
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
    run_example("far_starts", tmp_path, monkeypatch, plot=False)
    assert os.listdir(tmp_path) == ["far_starts_results.inc"]
    table = (tmp_path / "far_starts_results.inc").read_text()
    assert "list-table" in table and "fastfactor" in table
    assert "NUMBA_NUM_THREADS" in table and "OPENBLAS_NUM_THREADS" in table


def test_linear_minibatch(tmp_path, monkeypatch):
    ex, out = run_example("linear_minibatch", tmp_path, monkeypatch, plot=True)
    assert sorted(os.listdir(tmp_path)) == (["linear_minibatch.png"] if PLOTS else [])
    mb, ls = out["minibatch"], out["lsqr"]
    stat = np.linalg.norm(out["x_ls"] - out["x_true"]) / np.linalg.norm(out["x_true"])
    # Well within the statistical error of the exact solution, as close to the truth.
    assert mb["error_ls"] < 0.1 * stat
    assert mb["error_true"] < 1.1 * stat
    assert ls["error_ls"] < 1e-4
    assert mb["nit"] == ex.SIZES["small"][1] * -(-20_000 // ex.BATCH)
    assert mb["memory"] > 0 and ls["memory"] > 0
