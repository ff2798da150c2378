#!/usr/bin/env bash
# The checks that need a real NVIDIA GPU, in one run (a machine with python3, numba-cuda,
# pytest and PyTorch CUDA already installed; nothing is downloaded):
#   1. install numbapool and its plugins (no dependencies, no build isolation);
#   2. tests_cuda without the simulator, and the PTX compile tests;
#   3. numbapool bench --target cuda --backward (against PyTorch CUDA / cuDNN);
#   4. where a small call's host time goes (tools/cuda_overhead.py);
#   5. each case's kernels under Nsight Compute (kernel time and DRAM bytes), and the ResNet
#      stem's in detail (occupancy, registers, stalls), if ncu exists.
# Logs go to $1 (default $OUT, else /tmp/gpu_check).  Usage: tools/gpu_check.sh [DIR]
# Time limits (seconds): GPU_CHECK_TEST_S, _BENCH_S, _OVERHEAD_S, _NCU_S; GPU_CHECK_NCU=0 skips
# Nsight Compute.  A whole run took about 2 minutes on an H200.
set -u
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
NUMBAPOOL_CACHE_DIR=$(mktemp -d)
export NUMBAPOOL_CACHE_DIR
step() { echo; echo "### $* ($(date +%T))"; }

# Wheels in .whl/ (carried to the machine; git-ignored) go first on the path: on 2026-12-04
# the H200 image's numba-cuda 0.30.4 failed to import with its numpy 2.5.2 (np.row_stack is
# gone), and a numpy 2.4 wheel fixed it.
if compgen -G ".whl/*.whl" >/dev/null; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu_check_site .whl/*.whl && export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi

step versions
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    $py -c "import sys, numpy, numba, numba_cuda; print(sys.version.split()[0], 'numpy',
numpy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__)"
    $py -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
} 2>&1 | tee "$out/versions.txt"

step install
$py -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    -e plugins/numbapool-fractional -e plugins/numbapool-learned 2>&1 | tail -5
$py -m numbapool plugins 2>&1 | tail -5

step tests
xdist=()
$py -c "import xdist" 2>/dev/null && xdist=(-n "${GPU_CHECK_WORKERS:-8}")
timeout "${GPU_CHECK_TEST_S:-300}" $py -m pytest -q -p no:cacheprovider "${xdist[@]}" \
    tests_cuda tests/test_cuda_compile.py >"$out/tests.txt" 2>&1
echo "pytest rc $?"
tail -n 60 "$out/tests.txt"

step bench
timeout "${GPU_CHECK_BENCH_S:-240}" $py -m numbapool bench --target cuda --backward \
    2>&1 | tee "$out/bench.txt"

step overhead
timeout "${GPU_CHECK_OVERHEAD_S:-120}" $py tools/cuda_overhead.py 2>&1 | grep -v Warning | tee "$out/overhead.txt"

if command -v ncu >/dev/null && [ "${GPU_CHECK_NCU:-1}" = 1 ]; then
    step kernels
    timeout "${GPU_CHECK_NCU_S:-150}" ncu --profile-from-start off --csv --page raw \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
        $py tools/cuda_kernels.py --backward >"$out/kernels.csv" 2>"$out/kernels.err"
    echo "ncu rc $?"
    tail -n 5 "$out/kernels.err"
    # (ncu matches the function's name: every numbapool kernel is called kernel)
    step "kernel details (ResNet stem, numbapool's kernels)"
    timeout "${GPU_CHECK_NCU_S:-150}" ncu --profile-from-start off --kernel-name kernel \
        --section SpeedOfLight --section Occupancy --section LaunchStats \
        --section WarpStateStats $py tools/cuda_kernels.py --backward --case resnet_stem \
        >"$out/details.txt" 2>&1
    echo "ncu rc $?"
    grep -E "^  [a-z_]+.*\(|Duration|Registers Per|Achieved Occupancy|Theoretical Occ|Memory Throughput|Compute \(SM\) Th|Stall|Warp Cycles Per Issued" "$out/details.txt" | head -n 80
fi
step done
