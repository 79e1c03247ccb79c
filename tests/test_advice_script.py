"""``docs/_scripts/deterministic_advice.py`` (the table of settings on deterministic
problems in the "When to use Adafactor" page) runs at a small size: every problem and
setting, the printed table and the ``.inc`` file in the working directory."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "docs", "_scripts", "deterministic_advice.py")


def load():
    spec = importlib.util.spec_from_file_location("deterministic_advice", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_problem_and_setting_runs(tmp_path, monkeypatch):
    advice = load()
    monkeypatch.chdir(tmp_path)
    lines = []
    results = advice.main(maxiter=20, report=lines.append)
    assert list(results) == list(advice.PROBLEMS)
    for name, rows in results.items():
        assert list(rows) == list(advice.SETTINGS), name
        for r in rows.values():
            assert r["status"] == 1 and r["nit"] == 20 and r["err"] > 0  # none converges in 20
    assert "— (" in lines[-1]
    inc = (tmp_path / "deterministic_advice.inc").read_text(encoding="utf-8")
    assert ".. list-table::" in inc and "``maxiter=20``" in inc
    assert inc.count("   * - ") == 1 + len(advice.SETTINGS)


def test_momentum_converges_on_the_quadratic(tmp_path):
    # The first example of the "Getting started" page: beta1=0.9 reaches gtol within
    # the default maxiter, and the smallest decaying step does not.
    advice = load()
    rows = advice.main(maxiter=1000, problems=["quadratic"], out_dir=str(tmp_path),
                       report=lambda line: None)["quadratic"]
    assert rows["``beta1=0.9``"]["status"] == 0 and rows["``beta1=0.9``"]["err"] < 1e-6
    assert rows["``lr=0.02/sqrt(t)``"]["status"] == 1
    assert (tmp_path / "deterministic_advice.inc").exists()
