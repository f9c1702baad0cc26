#!/usr/bin/env bash
# Check camel_jax's GPU path on whatever NVIDIA GPU this machine has: a short training run against the same run on
# the CPU (losses within bf16 tolerance), tokens/s and MFU, and decoding (scripts/gpu_check.py says what exactly).
#
#   bash scripts/gpu_check.sh [gpu_check.py flags, e.g. --steps 20 --tokenizer DIR]
#
# Without a GPU it prints why and exits 0 (skipped). With a GPU that JAX cannot use (no CUDA jaxlib plugin) it says
# how to install one and exits 2. GPU_CHECK_PLATFORM=cpu skips the detection and runs the script's "GPU" side on
# the CPU (a self-test).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python=${PYTHON:-python3}

if [ "${GPU_CHECK_PLATFORM:-cuda}" = cuda ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: SKIPPED: no NVIDIA GPU here (nvidia-smi not found)"; exit 0
  fi
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  if [ "$gpus" -eq 0 ]; then
    echo "gpu_check: SKIPPED: no NVIDIA GPU here (nvidia-smi -L lists none)"; exit 0
  fi
  if ! JAX_PLATFORMS=cuda "$python" -c "import jax; jax.devices('gpu')" >/dev/null 2>&1; then
    jax_version=$("$python" -c "import jax; print(jax.__version__)" 2>/dev/null || echo "?")
    echo "gpu_check: error: nvidia-smi lists $gpus GPU(s) but JAX $jax_version has no CUDA backend;" \
         "install one: pip install 'jax[cuda12]==$jax_version'" >&2
    exit 2
  fi
  echo "gpu_check: $gpus GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs)"
fi
exec "$python" "$here/gpu_check.py" "$@"
