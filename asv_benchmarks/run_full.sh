#!/usr/bin/env bash
# Full benchmark run of fastfactor: the asv suite at full sizes, the performance
# tables (PERFORMANCE.md, for the README/docs) and asv's HTML history.
#
#   bash asv_benchmarks/run_full.sh [extra asv run arguments, e.g. -b Large]
#
# Runs in the current Python environment (fastfactor installed; torch, transformers,
# jax/optax optional: their benchmarks are skipped when absent). About 10-15 minutes
# on 2 cores with all peers installed. Results and HTML go to asv_benchmarks/.asv/
# (git-ignored); commit PERFORMANCE.md if the numbers should be kept.
set -uo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
export FASTFACTOR_BENCH_SIZE=full
# A private Numba cache, emptied first: the kernels are compiled from the current
# source once (in the first benchmark's setup) and loaded by the later processes, and no
# entry left in fastfactor/__pycache__ by another process (possibly compiled from an
# older source) is used. Set NUMBA_CACHE_DIR to override.
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$(pwd)/.asv/numba-cache}
rm -rf "$(pwd)/.asv/numba-cache"

[ -f "${HOME}/.asv-machine.json" ] || "$PY" -m asv machine --yes >/dev/null
# Results are filed under HEAD's hash, or under BENCH_COMMIT when the benchmarked
# fastfactor is an installed snapshot of another commit.
commit=${BENCH_COMMIT:-$(git rev-parse HEAD)}
status=0
mkdir -p .asv
loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }
info=".asv/run-info-${commit:0:8}.txt"
echo "load average (1, 5, 15 min) before the run: $(loadavg)" > "$info"
start=$(date +%s)
"$PY" -m asv run -E existing --set-commit-hash "$commit" --record-samples --show-stderr \
    --durations 10 "$@" || status=$?
echo "load average after the run: $(loadavg); the run took $(( ($(date +%s) - start) / 60 )) min" \
    >> "$info"
"$PY" perf_table.py --commit "$commit" --out PERFORMANCE.md >/dev/null || status=$?
"$PY" -m asv publish || status=$?
echo
echo "tables: $(pwd)/PERFORMANCE.md   HTML: $(pwd)/.asv/html/index.html"
[ "$status" -eq 0 ] || echo "run_full.sh: something failed (status $status); see above" >&2
exit "$status"
