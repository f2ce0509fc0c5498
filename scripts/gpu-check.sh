#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU (CI has none): installs the
# onnxruntime-gpu 1.31.1 wheel with CUDA 13 and cuDNN 9 from PyPI (and
# TensorRT, for its provider) into .cache, then runs the encoder under
# `cuda` and `tensorrt` and prints the provider actually used and images/s
# at batch 1, 32 and 256. Usage: scripts/gpu-check.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-fixtures/models/tiny-clip}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || {
  echo "no NVIDIA GPU here" >&2; exit 2; }
lib=$(scripts/fetch-onnxruntime.sh --gpu)
venv=.cache/onnxruntime-gpu-1.31.1/venv
"$venv/bin/pip" install --quiet --disable-pip-version-check tensorrt-cu13 >&2 || \
  echo "tensorrt from PyPI did not install; the tensorrt run will say why it cannot start" >&2
site=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
# The CUDA, cuDNN and TensorRT libraries the pip packages bring.
libs=$(find "$site/nvidia" "$site/tensorrt_libs" "$site/tensorrt" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$(dirname "$lib"):$libs:${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH="$lib"
cargo bench --bench encoder --no-run --quiet
for device in cuda tensorrt; do
  echo "== $device"
  cargo bench --bench encoder --quiet -- "$model" --device "$device" --batches 1,32,256 || echo "$device failed"
done
