"""The line printed just before the CPU kernels compile: in the demo and in runs with
``disp`` / ``verbose``; once per dtype and kind of block; never when the kernels load
from the disk cache."""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
from fastfactor._backends.cpu import CpuBackend

NOTICE = "fastfactor: compiling the kernels for"

#: The demo (a few iterations), then a float32 vector step inside the notice with a
#: report that records whether the kernel had been compiled when the line came.
PROCESS = r"""
import numpy as np
from fastfactor.__main__ import main
from fastfactor._backends.cpu import _kernels as K
from fastfactor._backends.cpu._notice import announce_compilation
import fastfactor

main(maxiter=10)
seen = []
with announce_compilation(report=lambda line: seen.append(
        (line, len(K.unfactored_stats_serial.signatures)))):
    fastfactor.Adafactor([(5,)]).step([np.ones(5, np.float32)], [np.ones(5, np.float32)])
print("RECORDED", seen)
"""


def _run(cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), FASTFACTOR_NUMBA_CACHE="1",
               NUMBA_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", PROCESS], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: the demo's fit is not done in 10
    return done.stdout.splitlines()


@pytest.mark.slow
def test_the_line_comes_before_compiling_and_not_from_the_cache(tmp_path):
    cold = _run(tmp_path)
    notices = [line for line in cold if line.startswith(NOTICE)]
    assert notices == [f"{NOTICE} float64 matrices (first use only, cached on disk for later "
                       "runs; see python -m fastfactor --precompile)"], cold
    # right after the demo's banner, before anything of the run
    assert cold.index(notices[0]) == 1 and cold[0].startswith("fastfactor demo")
    assert any("(including the compilation)" in line for line in cold)
    recorded = [line for line in cold if line.startswith("RECORDED")]
    assert "float32 vectors" in recorded[0] and "', 0)]" in recorded[0], recorded
    warm = _run(tmp_path)
    assert not [line for line in warm if line.startswith(NOTICE)], warm
    assert not any("compilation" in line for line in warm), warm
    assert warm[-1] == "RECORDED []", warm


@pytest.fixture
def opened(monkeypatch):
    """The ``enabled`` flag of each notice a front end opens."""
    flags = []

    @contextlib.contextmanager
    def record(enabled):
        flags.append(bool(enabled))
        yield

    monkeypatch.setattr(CpuBackend, "compile_notice", staticmethod(record))
    return flags


def _fg(x):
    return float(np.sum((x - 1.0) ** 2)), 2 * (x - 1.0)


def _residuals(x):
    return x - 1.0


@pytest.mark.parametrize("shown", [False, True])
@pytest.mark.parametrize("front", ["minimize", "scipy", "least_squares", "stochastic"])
def test_each_front_end_opens_the_notice_when_it_reports(opened, front, shown, capsys):
    x0 = np.zeros((3, 2))
    options = {"maxiter": 3, "disp": shown}
    if front == "minimize":
        fastfactor.minimize(_fg, x0, jac=True, options=options)
    elif front == "scipy":
        so.minimize(_fg, x0.ravel(), jac=True, method=fastfactor.adafactor, options=options)
    elif front == "least_squares":
        fastfactor.least_squares(_residuals, x0, verbose=int(shown), options={"maxiter": 3})
    else:
        fastfactor.minimize_stochastic(lambda x, b: _fg(x), x0, [None], jac=True,
                                       options=options)
    assert opened == [shown]


def test_nothing_is_said_when_the_kernels_are_already_in_memory(capsys):
    x0 = np.zeros((3, 2))
    fastfactor.minimize(_fg, x0, jac=True, options={"maxiter": 2})
    capsys.readouterr()
    fastfactor.minimize(_fg, x0, jac=True, options={"maxiter": 2, "disp": True})
    assert NOTICE not in capsys.readouterr().out


def test_with_the_disk_cache_off_the_line_says_every_process_compiles():
    code = ("import numpy as np, fastfactor\n"
            "from fastfactor._backends.cpu._notice import announce_compilation\n"
            "with announce_compilation():\n"
            "    fastfactor.Adafactor([(5,)]).step([np.ones(5, np.float32)],"
            " [np.ones(5, np.float32)])\n")
    env = dict(os.environ, FASTFACTOR_NUMBA_CACHE="0", NUMBA_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{NOTICE} float32 vectors (not cached: the disk cache is off, so every process "
        "compiles again)"]
