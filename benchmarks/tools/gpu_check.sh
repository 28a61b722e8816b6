#!/usr/bin/env bash
# Issue 17's target 4 and the GPU numerics, in one call on a lent GPU machine (the device
# tool: `run` with this script as the command and timeout_s 600). Written for a machine
# whose python3 already holds JAX with CUDA, Flax, optax, PyTorch, pytest and
# pytest-benchmark, and no network: deeprnn_jax is imported from this checkout.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine; results under $OUT
#   GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh   # tiny sizes: the script's own check
#
# 1. the library's numerics on the GPU: cuDNN against the scan, the stack against the
#    NumPy and torch references, bf16 against float32 (tests/test_cudnn.py's GPU test
#    runs only there);
# 2. target 4: the LSTM training step at H=512, L=4, B=64, T=256 (F=32, Adam, clipping),
#    ours with the scan, with the cuDNN time loop, and with bf16 compute, beside Flax and
#    PyTorch (cuDNN) in the same pytest-benchmark session;
# 3. the report (ratios, device named): gpu-step.md next to the JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  $PY -c "import jax, torch, flax; print('jax', jax.__version__, jax.devices()); \
print('torch', torch.__version__, torch.cuda.is_available(), 'flax', flax.__version__)"
} 2>&1 | tee "$OUT/gpu-env.txt"

if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  SIZES=(--bench-hidden 16 --bench-depth 2 --bench-time 10 --bench-batch 4 --bench-seconds 0.05)
  TESTS=(tests/test_cudnn.py)
else
  SIZES=(--bench-hidden 512 --bench-depth 4 --bench-time 256 --bench-batch 64)
  TESTS=(tests/test_cudnn.py tests/test_reference.py tests/test_properties.py
         tests/test_torch_parity.py tests/test_flax_parity.py)
fi

# the suite's tolerances at XLA's default optimisations, as a user runs them
DEEPRNN_TESTS_FULL_XLA=1 $PY -m pytest -q -p no:cacheprovider -x "${TESTS[@]}" \
  2>&1 | tail -n 30 | tee "$OUT/gpu-tests.txt"

# the cuDNN time loop refuses to run off a GPU (its error says so): only there
OPTS=(--bench-opts '{}' --bench-opts '{"compute_dtype": "bfloat16"}')
if [ "$($PY -c 'import jax; print(jax.default_backend())')" = gpu ]; then
  OPTS+=(--bench-opts '{"time_loop": "cudnn"}')
fi
$PY -m pytest -q -p no:cacheprovider benchmarks/test_bench_step.py --bench-grid full \
  --bench-impl deeprnn_jax,flax,torch --bench-cells lstm "${SIZES[@]}" "${OPTS[@]}" \
  --benchmark-json="$OUT/gpu-step.json" 2>&1 | tail -n 30 | tee "$OUT/gpu-bench.txt"

# writes gpu-step.md beside the JSON
$PY benchmarks/report.py "$OUT/gpu-step.json" --no-plots
