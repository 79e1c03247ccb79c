#!/usr/bin/env python
"""Write fastfactor's performance tables (Markdown) from an asv results file.

Usage (from anywhere; ``run_full.sh`` calls it after the full asv run)::

    python asv_benchmarks/perf_table.py [--commit HASH] [--results FILE] [--out FILE]

Reads the newest asv result for ``--commit`` (default: the newest result file) under
``asv_benchmarks/.asv/results``, and writes the tables to ``--out`` (default
``asv_benchmarks/PERFORMANCE.md``) and to stdout. Times are the best (minimum) sample
of each benchmark when samples were recorded (``asv run --record-samples``), asv's
median otherwise: the machines these run on are shared, and the minimum is the least
disturbed measurement. Machine and versions are read here, in the environment the
benchmarks ran in (run this right after the run, on the same machine).
"""

import argparse
import datetime
import glob
import itertools
import json
import math
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchmarks._common import floor_bytes  # noqa: E402

# The performance targets the project holds itself to.
FLOOR_TARGET = 1.15
PEER_TARGETS = {"torch": 10.0, "hf": 7.0, "optax": 3.5}
PEER_LABELS = {"torch": "torch.optim", "hf": "HF", "optax": "optax (jit)"}
MEMORY_TARGET = 0.05
MINIMIZE_TARGET_US = 30.0


# --- reading asv results ----------------------------------------------------------------

def find_results(results_dir, commit=None):
    files = [f for f in glob.glob(os.path.join(results_dir, "*", "*.json"))
             if os.path.basename(f) != "machine.json"]
    if commit:
        files = [f for f in files if os.path.basename(f).startswith(commit[:8])]
    if not files:
        raise SystemExit(f"no asv results{' for ' + commit if commit else ''} under {results_dir}")
    return max(files, key=os.path.getmtime)


def _unrepr(v):
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


class Results:
    """``get(name, *params)``: the benchmark's value for those parameters, or None."""

    def __init__(self, path):
        with open(path) as f:
            d = json.load(f)
        self.path = path
        self.commit = d.get("commit_hash", "")
        self.params = d.get("params", {})
        self.date = d.get("date")
        cols = d["result_columns"]
        self.values = {}
        for name, row in d["results"].items():
            # strict=False: asv drops the trailing None columns of a row
            rec = dict(zip(cols, row, strict=False))
            params = [[_unrepr(p) for p in ps] for ps in rec.get("params") or []]
            combos = list(itertools.product(*params)) if params else [()]
            results = rec.get("result")
            if not isinstance(results, list) or (not params and len(results) != 1):
                results = [results]
            samples = rec.get("samples") or [None] * len(combos)
            # strict=False: a benchmark whose results are all missing has result None
            # (wrapped above as [None]); its combinations stay absent, which get() reads as None
            for combo, value, samp in zip(combos, results, samples, strict=False):
                if samp:
                    good = [s for s in samp if s is not None and not math.isnan(s)]
                    if good:
                        value = min(good)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    value = None
                self.values[(name,) + tuple(combo)] = value

    def get(self, name, *params):
        return self.values.get((name,) + tuple(params))


# --- the machine ------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions():
    out = {}
    for mod in ("numpy", "numba", "scipy", "fastfactor", "torch", "transformers", "jax", "optax"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:
            out[mod] = None
    try:
        import numba
        out["numba threads"] = numba.config.NUMBA_NUM_THREADS
    except Exception:
        pass
    return out


def env_note():
    """The environment variables that change how the kernels run, when set."""
    names = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
             "OMP_NUM_THREADS", "NUMBA_CACHE_DIR")
    found = [f"`{k}={os.environ[k]}`" for k in names if os.environ.get(k)]
    return (" Environment: " + ", ".join(found) + ".") if found else ""


def memory_gib():
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return kib / 2 ** 20
    except (OSError, ValueError, IndexError):
        return float("nan")


# --- formatting -------------------------------------------------------------------------

def ms(t):
    """Seconds as milliseconds, three significant digits or so."""
    if t is None:
        return "–"
    v = t * 1e3
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def us(t):
    """Seconds as microseconds."""
    if t is None:
        return "–"
    v = t * 1e6
    return f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def ratio(a, b, digits=1):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.{digits}f}×" if r >= 0.1 else f"{r:.2g}×"


def mark(ok):
    return "" if ok is None else (" ✓" if ok else " ✗")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def params_of(res, name):
    """The parameter combinations present for a benchmark, in stored order."""
    return [k[1:] for k in res.values if k[0] == name]


# --- the tables -------------------------------------------------------------------------

def large_table(res, bw, checks):
    rows = []
    for dtype, case in params_of(res, "bench_step.LargeFastfactor.time_step"):
        ff = res.get("bench_step.LargeFastfactor.time_step", dtype, case)
        floor = floor_bytes(case, dtype) / bw if bw else None
        over = res.get("bench_floor.Floor.track_time_over_floor", dtype, case)
        vector = "x" not in case
        row = [f"`{case}`" + (" (vector)" if vector else ""), dtype, ms(floor), ms(ff),
               (f"{over:.2f}" + mark(over <= FLOOR_TARGET)) if over is not None else "–"]
        if over is not None:
            checks.append(("floor", case, dtype, over <= FLOOR_TARGET, f"{over:.2f}× floor"))
        npt = res.get("bench_step.LargeNumpy.time_step", dtype, case)
        row.append(f"{ms(npt)} ({ratio(npt, ff)})" if npt is not None else "–")
        for peer, cls in (("torch", "LargeTorch"), ("hf", "LargeHF"), ("optax", "LargeOptax")):
            t = res.get(f"bench_peers.{cls}.time_step", dtype, case)
            if t is None or ff is None:
                row.append("–")
                continue
            speedup = t / ff
            ok = None if vector else speedup >= PEER_TARGETS[peer]
            if ok is not None:
                checks.append((peer, case, dtype, ok,
                               f"{speedup:.1f}× faster (target {PEER_TARGETS[peer]}×)"))
            row.append(f"{ms(t)} ({speedup:.1f}×{mark(ok)})")
        rows.append(row)
    header = ["block", "dtype", "floor ms", "fastfactor ms", "÷ floor (same process)",
              "NumPy ms (÷ ff)"] + [f"{PEER_LABELS[p]} ms (÷ ff)" for p in PEER_TARGETS]
    return table(header, rows)


def small_table(res, checks):
    rows = []
    for dtype, case in params_of(res, "bench_step.SmallFastfactor.time_step"):
        ff = res.get("bench_step.SmallFastfactor.time_step", dtype, case)
        npt = res.get("bench_step.SmallNumpy.time_step", dtype, case)
        ok = None if ff is None or npt is None else ff <= npt
        if ok is not None:
            checks.append(("small", case, dtype, ok,
                           f"{ff * 1e6:.1f} µs vs NumPy {npt * 1e6:.1f} µs"))
        row = [f"`{case}`", dtype, us(ff), us(npt), ratio(npt, ff, 2) + mark(ok)]
        for _peer, cls in (("torch", "SmallTorch"), ("hf", "SmallHF"), ("optax", "SmallOptax")):
            row.append(us(res.get(f"bench_peers.{cls}.time_step", dtype, case)))
        rows.append(row)
    header = (["blocks", "dtype", "fastfactor µs", "NumPy µs", "NumPy ÷ fastfactor"]
              + [f"{PEER_LABELS[p]} µs" for p in PEER_TARGETS])
    return table(header, rows)


def memory_table(res, checks):
    rows = []
    ff = "bench_memory.FastfactorExtraMemory.track_extra_peak_"
    nump = "bench_memory.NumpyExtraMemory.track_extra_peak_"

    def pct(v):
        return "–" if v is None else f"{100 * v:.2f}%"

    for dtype, case in params_of(res, ff + "tracemalloc"):
        a = res.get(ff + "tracemalloc", dtype, case)
        if a is not None:
            checks.append(("memory", case, dtype, a <= MEMORY_TARGET,
                           f"{100 * a:.2f}% (tracemalloc)"))
        pk = res.get("bench_step.LargeFastfactor.peakmem_step", dtype, case) or \
            res.get("bench_step.SmallFastfactor.peakmem_step", dtype, case)
        pkn = res.get("bench_step.LargeNumpy.peakmem_step", dtype, case) or \
            res.get("bench_step.SmallNumpy.peakmem_step", dtype, case)
        rows.append([f"`{case}`", dtype, pct(a) + mark(None if a is None else a <= MEMORY_TARGET),
                     pct(res.get(ff + "rss", dtype, case)),
                     pct(res.get(nump + "tracemalloc", dtype, case)),
                     pct(res.get(nump + "rss", dtype, case)),
                     "–" if pk is None else f"{pk / 2**20:.0f}",
                     "–" if pkn is None else f"{pkn / 2**20:.0f}"])
    header = ["blocks", "dtype", "fastfactor (tracemalloc)", "fastfactor (RSS)",
              "NumPy (tracemalloc)", "NumPy (RSS)", "fastfactor process peak MiB",
              "NumPy process peak MiB"]
    return table(header, rows)


def minimize_table(res, checks):
    rows = []
    name = "bench_minimize.MinimizeOverhead.track_overhead_per_iteration"
    for (method,) in params_of(res, name):
        v = res.get(name, method)
        obj = res.get("bench_minimize.MinimizeOverhead.track_objective_time", method)
        ok = None if v is None or method == "L-BFGS-B" else v <= MINIMIZE_TARGET_US
        if ok is not None:
            checks.append(("minimize", method, "", ok, f"{v:.1f} µs per iteration"))
        rows.append([method, "–" if v is None else f"{v:.1f}" + mark(ok),
                     "–" if obj is None else f"{obj:.1f}"])
    return table(["method", "own µs per iteration", "objective µs per call"], rows)


def scaling_table(res):
    name = "bench_scaling.Scaling.time_step"
    combos = params_of(res, name)
    dtypes = sorted({d for d, _ in combos})
    cases = []
    for _, c in combos:
        if c not in cases:
            cases.append(c)
    rows, slopes = [], []
    for case in cases:
        n_el = math.prod(int(d) for d in case.split("x"))
        row = [f"`{case}`", f"{n_el:,}"]
        for dtype in dtypes:
            t = res.get(name, dtype, case)
            row += [ms(t), "–" if t is None else f"{1e9 * t / n_el:.2f}"]
        rows.append(row)
    for dtype in dtypes:
        pts = [(math.log(math.prod(int(d) for d in c.split("x"))),
                math.log(res.get(name, dtype, c)))
               for c in cases if res.get(name, dtype, c)]
        big = [p for p in pts if p[0] >= math.log(2 ** 20)]

        def slope(p):
            if len(p) < 2:
                return float("nan")
            mx = sum(a for a, _ in p) / len(p)
            my = sum(b for _, b in p) / len(p)
            return sum((a - mx) * (b - my) for a, b in p) / sum((a - mx) ** 2 for a, _ in p)
        slopes.append(f"{dtype}: {slope(pts):.2f} over all sizes, "
                      f"{slope(big):.2f} from 2^20 elements up")
    header = ["block", "n·m"] + [h for d in dtypes for h in (f"{d} ms", f"{d} ns/element")]
    return table(header, rows), slopes


def render(res):
    v = versions()
    bw = {k: res.get(f"bench_floor.Bandwidth.track_bandwidth_{k}")
          for k in ("copyto", "inplace", "best", "read")}
    best_bw = bw["best"] * 1e9 if bw["best"] else None
    checks = []
    date = (datetime.datetime.fromtimestamp(res.date / 1000, datetime.UTC).strftime("%Y-%m-%d")
            if res.date else "?")
    peers = ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "jax", "optax")
                      if v.get(k)) or "none installed"
    out = [
        "# fastfactor performance",
        "",
        f"Generated by `asv_benchmarks/perf_table.py` from `{os.path.relpath(res.path, HERE)}` "
        f"(fastfactor commit `{res.commit[:10]}`, {date}).",
        "",
        f"**Machine:** {cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB RAM; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"NumPy {v['numpy']}, Numba {v['numba']} ({v.get('numba threads', '?')} threads), "
        f"SciPy {v['scipy']}. Peers: {peers}." + env_note(),
        "",
        "**Bandwidth** (read+write, single thread, 256 MiB arrays, best of 9, "
        "counting 2 × nbytes): "
        f"`np.copyto` {bw['copyto'] or float('nan'):.1f} GB/s, in-place `x *= 1.0` "
        f"{bw['inplace'] or float('nan'):.1f} GB/s; the floors use the better one, "
        f"{bw['best'] or float('nan'):.1f} GB/s. Read-only (`np.dot` of two arrays, all BLAS "
        f"threads): {bw['read'] or float('nan'):.1f} GB/s, the ceiling of a pass that only reads. "
        "The floor of a factored step moves 5·n·m·itemsize bytes (an exact three-pass step "
        "reads g three times, reads and writes x once; fastfactor's two passes move the same "
        "5 with `scale_parameter`, 2 of them read-only), of a vector step 7·size·itemsize "
        "(fastfactor: 8 with `scale_parameter`, the extra one a read of x for RMS(x)). "
        "The \"÷ floor\" column is measured in one process, step and bandwidth probes timed "
        "alternately (best of 9 each); the \"floor ms\" column uses the bandwidth above.",
        "",
        "Times: the best sample of each asv benchmark (one step per sample, after warm-up). "
        "The ✓/✗ marks compare with the project's performance targets (named above each table).",
        "",
        "## One step, large blocks (ms)",
        "",
        "Targets: fastfactor within 1.15× of the floor; at least 10× faster than "
        "`torch.optim.Adafactor`, 7× than HF's, 3.5× than jitted `optax.adafactor` "
        "(factored blocks). In parentheses: that implementation's time ÷ fastfactor's.",
        "",
        large_table(res, best_bw, checks),
        "",
        "## One step, small blocks",
        "",
        "Target: no slower than the plain NumPy step of the same blocks.",
        "",
        small_table(res, checks),
        "",
        "## Extra peak memory of one step (fraction of the parameters' bytes)",
        "",
        "Target: under 5% at every size. tracemalloc sees NumPy's and Numba's buffers and the "
        "Python objects of the call; RSS is the resident-memory peak above the level before "
        "the step (4 KiB pages; allocations under 64 KiB come from reused heap memory and "
        "do not show). Process peak: asv's `peakmem_` (whole process, arrays included). "
        "NumPy: a few cases, for contrast.",
        "",
        memory_table(res, checks),
        "",
        "## `minimize`: the optimizer's own time per iteration",
        "",
        "10-parameter Rosenbrock, objective and gradient in one call (`jac=True`); "
        "(T(N2) − T(N1) − Δnfev · t_objective) / Δnit. Target: under 30 µs.",
        "",
        minimize_table(res, checks),
        "",
    ]
    sc, slopes = scaling_table(res)
    out += ["## Scaling: one factored step of an n×n block", "",
            "Log-log slope of time against n·m (1.00 = linear): " + "; ".join(slopes) + ".", "",
            sc, ""]
    info = os.path.join(HERE, ".asv", f"run-info-{res.commit[:8]}.txt")
    if os.path.exists(info):
        with open(info) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        if lines:
            out[6:6] = ["**Run:** " + "; ".join(lines) + " (2 cores: a load above ~2 means "
                        "other processes shared the CPUs and the times carry their noise).", ""]
    failed = [c for c in checks if not c[3]]
    out += ["## Targets", "",
            f"{len(checks) - len(failed)} of {len(checks)} checks hold."]
    if failed:
        out += ["", "Not met:", ""]
        out += [f"- {kind}: `{case}` {dtype}: {what}".replace("  ", " ")
                for kind, case, dtype, _, what in failed]
    out.append("")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commit", help="commit hash of the results to read (default: newest file)")
    ap.add_argument("--results", help="an asv results JSON file (overrides --commit)")
    ap.add_argument("--out", default=os.path.join(HERE, "PERFORMANCE.md"),
                    help="Markdown file to write")
    args = ap.parse_args(argv)
    path = args.results or find_results(os.path.join(HERE, ".asv", "results"), args.commit)
    text = render(Results(path))
    if args.out and args.out != "-":
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
