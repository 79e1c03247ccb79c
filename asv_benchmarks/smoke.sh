#!/usr/bin/env bash
# CI smoke test of the asv suite: `asv check`, then one quick run of every benchmark at
# tiny sizes (FASTFACTOR_BENCH_SIZE=smoke). Exits non-zero when the suite does not
# import, or when any benchmark raises (skips through NotImplementedError are fine).
#
#   bash asv_benchmarks/smoke.sh        (in an environment with fastfactor and asv)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
export FASTFACTOR_BENCH_SIZE=smoke

[ -f "${HOME}/.asv-machine.json" ] || "$PY" -m asv machine --yes >/dev/null
"$PY" -m asv check -E existing

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$PY" -m asv run -E existing --quick --dry-run --show-stderr --durations 5 2>&1 | tee "$log" \
    || status=$?
# asv run exits 2 when a benchmark failed; the grep also catches a failure that an
# older asv would report with exit status 0.
passed=$(grep -cE '^\[ *[0-9.]+%\] [^ ]+ .* ok *$' "$log" || true)
failed=$(grep -cE '^\[ *[0-9.]+%\] [^ ]+ .* failed *$' "$log" || true)
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || grep -q "asv: benchmark failed" "$log"; then
    echo "asv smoke run FAILED (asv exit status $status)" >&2
    echo "asv: $passed passed, $((failed > 0 ? failed : 1)) failed"
    exit 1
fi
echo "asv: $passed passed, 0 failed"
