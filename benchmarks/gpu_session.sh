#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one run (about 6 minutes on one H100).
#
#   NPLEARN_COMMIT=$(git rev-parse --short HEAD) OUT=/tmp/gpu bash benchmarks/gpu_session.sh
#
# Runs from a source checkout without installing (PYTHONPATH=src); needs torch with CUDA,
# numpy, scipy and matplotlib. Stops after the smoke test when the CUDA tests fail.
# Each step has its own time limit; results are copied to $OUT after every step.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/nplearn_gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG="$OUT/gpu_session.log"
B=benchmarks

collect() {  # result files of this run, one archive (the remote side returns few files)
    tar -czf "$OUT/gpu_results.tar.gz" -C "$B/results" \
        $(cd "$B/results" && ls ./*cuda* 2>/dev/null) 2>/dev/null || true
}
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: rc=$rc in $((SECONDS - t0))s" | tee -a "$LOG"
    collect
    return "$rc"
}

{ nvidia-smi -L; python3 -c "import torch, numpy, scipy; print('torch', torch.__version__,
  'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'numpy', numpy.__version__,
  'scipy', scipy.__version__)"; nproc; } 2>&1 | tee -a "$LOG"

step smoke "${T_SMOKE:-90}" python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu.py \
    || { echo "CUDA tests failed: stopping" | tee -a "$LOG"; exit 1; }
step 5d "${T_5D:-90}" python3 $B/multivariate.py --case 5d --toys 5 --device cuda
step speed_1d "${T_1D:-70}" python3 $B/speed_1d.py --toys 10 --check-toys 1 --device cuda
step many_toys "${T_MANY:-130}" python3 $B/many_toys.py --toys 1000 --centers 3000 --device cuda
step 20d "${T_20D:-100}" python3 $B/multivariate.py --case 20d --toys 2 \
    --device cuda --memory-budget 60
step scaling "${T_SCALING:-170}" python3 $B/scaling.py --device cuda --timeout 40 \
    --scan n_ref_1d,n_ref_5d,centers_5d,dim
echo "done" | tee -a "$LOG"
