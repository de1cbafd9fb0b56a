#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one run (about 6 minutes on one H100; the
# step limits below add up to 600 s).
#
#   NPLEARN_COMMIT=$(git rev-parse --short HEAD) OUT=/tmp/gpu bash benchmarks/gpu_session.sh
#
# Runs from a source checkout without installing (PYTHONPATH=src); needs torch with CUDA,
# numpy, scipy and matplotlib. Stops after the smoke test when the CUDA tests fail; exits 1
# when any later step failed or hit its limit. Each step has its own time limit; the result
# files written by this run (and only those) are archived to $OUT after every step.
# NPLEARN_COMMIT names the commit in the result files: set it to a clean commit (a copy of
# the tree on another machine may carry a stale .git, or none).
# HOST_CPU_20D=1 adds the 20D problem at M = 1e4 on the host's CPU (needs ~60 GiB of RAM).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/nplearn_gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG="$OUT/gpu_session.log"
B=benchmarks
START="$OUT/.start"
touch "$START"
FAILED=0

collect() {  # result files written by this run, one archive (few files come back remotely)
    local new
    new=$(cd "$B/results" && find . -maxdepth 1 -name '*cuda*' -newer "$START" -printf '%f\n')
    [ -n "$new" ] && tar -czf "$OUT/gpu_results.tar.gz" -C "$B/results" $new
    return 0
}
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: rc=$rc in $((SECONDS - t0))s" | tee -a "$LOG"
    collect
    [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
    return "$rc"
}

{ nvidia-smi -L; python3 -c "import torch, numpy, scipy; print('torch', torch.__version__,
  'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'numpy', numpy.__version__,
  'scipy', scipy.__version__)"; nproc; } 2>&1 | tee -a "$LOG"

step smoke "${T_SMOKE:-50}" python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu.py \
    || { echo "CUDA tests failed: stopping" | tee -a "$LOG"; exit 1; }
step 5d "${T_5D:-60}" python3 $B/multivariate.py --case 5d --toys 5 --device cuda
# A/B of the inner solver: the automatic rule switches to PCG above rank 512 (tuned on a CPU)
step 5d_direct "${T_5D_DIRECT:-50}" python3 $B/multivariate.py --case 5d --toys 5 --device cuda \
    --inner direct --tag _direct
step speed_1d "${T_1D:-60}" python3 $B/speed_1d.py --toys 10 --check-toys 1 --device cuda
step many_toys "${T_MANY:-100}" python3 $B/many_toys.py --toys 1000 --centers 3000 --device cuda
step 20d "${T_20D:-80}" python3 $B/multivariate.py --case 20d --toys 3 \
    --device cuda --memory-budget 60
step scaling "${T_SCALING:-200}" python3 $B/scaling.py --device cuda --timeout 40 \
    --scan n_ref_1d,n_ref_5d,centers_5d,dim
if [ "${HOST_CPU_20D:-0}" = 1 ]; then
    step 20d_host_cpu "${T_20D_CPU:-600}" python3 $B/multivariate.py --case 20d --toys 1 \
        --modes per-fit --device cpu --memory-budget 60 --tag _host_cuda_machine
fi
echo "done: $FAILED step(s) failed" | tee -a "$LOG"
[ "$FAILED" -eq 0 ]
