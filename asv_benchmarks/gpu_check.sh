#!/usr/bin/env bash
# fastfactor on a real NVIDIA GPU, unattended, in under 5 minutes:
#   1. the CUDA tests (tests/cuda) on the GPU at real sizes (FASTFACTOR_TEST_SIZE=large);
#   2. the step on 8192x8192 and 16384x16384 float32, timed with CUDA events, against
#      (a) the floor 5*n*m*itemsize bytes / the device-to-device copy bandwidth
#          (target: within 1.5x), and
#      (b) torch.optim.Adafactor on the same GPU (target: >= 3x faster; skipped
#          without torch);
# then prints one table and exits 0 when every target is met (1 otherwise, 2 without
# a GPU). Needs Python with NumPy, SciPy, Numba (its CUDA target or numba-cuda) and,
# for the tests, pytest; the repository is used from the checkout (PYTHONPATH), and
# `pip install -e .` is tried only when fastfactor's dependencies are missing.
#
#   bash asv_benchmarks/gpu_check.sh            # on a machine with an NVIDIA GPU
#   bash asv_benchmarks/gpu_check.sh --dry-run  # anywhere: tiny sizes in Numba's CUDA
#                                               # simulator (checks the script, not the GPU)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=${PYTHON:-$(command -v python || command -v python3)}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
unset FASTFACTOR_BENCH_SIZE

if ! "$PY" -c "import numpy, scipy, numba" 2>/dev/null; then
    echo "gpu_check: $PY lacks numpy, scipy or numba: pip install -e . (set PYTHON=... to use another)"
    "$PY" -m pip install --quiet -e . || { echo "gpu_check: cannot install fastfactor's dependencies" >&2; exit 2; }
fi

if [ "$DRY" = 1 ]; then
    export NUMBA_ENABLE_CUDASIM=1
    unset FASTFACTOR_TEST_SIZE
    TEST_TIMEOUT=170
else
    unset NUMBA_ENABLE_CUDASIM
    export FASTFACTOR_TEST_SIZE=large
    TEST_TIMEOUT=200  # mostly Numba compiling the kernels' variants, once
    if ! "$PY" -c "from numba import cuda; import sys; sys.exit(0 if cuda.is_available() else 1)" 2>/dev/null; then
        echo "gpu_check: no usable CUDA GPU (numba.cuda.is_available() is False); try --dry-run" >&2
        exit 2
    fi
fi

# 1. the tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if "$PY" -c "import pytest" 2>/dev/null; then
    start=$(date +%s)
    timeout "$TEST_TIMEOUT" "$PY" -m pytest tests/cuda -m cuda -q -p no:cacheprovider >"$log" 2>&1
    status=$?
    took=$(( $(date +%s) - start ))
    summary=$(grep -E "(passed|failed|error)" "$log" | tail -n 1 | sed -e 's/=//g' -e 's/^ *//' -e 's/ *$//')
    [ "$status" = 124 ] && summary="timed out after ${TEST_TIMEOUT}s"
    [ -n "$summary" ] || summary="no result (exit status $status)"
    tests_ok=$([ "$status" = 0 ] && echo 1 || echo 0)
    if [ "$status" != 0 ]; then
        echo "---- tests/cuda output (last 60 lines) ----"
        tail -n 60 "$log"
        echo "-------------------------------------------"
    fi
    tests_args=(--tests "$summary (${took}s)" --tests-ok "$tests_ok")
else
    tests_args=(--tests "skipped: pytest is not installed" --tests-ok 0)
fi

# 2. the timings, and the table
bench_args=()
[ "$DRY" = 1 ] && bench_args=(--dry-run)
timeout 85 "$PY" asv_benchmarks/benchmarks/bench_gpu.py "${bench_args[@]}" "${tests_args[@]}"
status=$?
[ "$status" = 124 ] && echo "gpu_check: the timings timed out after 85 s" >&2
exit "$status"
