#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU (CI has none): runs the encoder
# bench under `cuda` and `tensorrt` (and `cpu`, for scale) and prints the
# provider actually used and images/s at batch 1, 32 and 256. Exits 1 when
# any run fails (a provider that does not start is a failure, not a note),
# after trying them all.
#
#   scripts/gpu-check.sh [MODEL_DIR ...]        (default: the tiny model)
#
# By default it installs onnxruntime-gpu 1.31.1 with CUDA 13 and cuDNN 9 from
# PyPI (scripts/fetch-onnxruntime.sh --gpu, plus tensorrt-cu13 for the
# TensorRT provider) and builds the bench with cargo. On a machine without
# network or Rust, set ORT_DYLIB_PATH to an unpacked onnxruntime-gpu
# libonnxruntime.so.1.31.1 and IMGDB_ENCODER_BENCH to a prebuilt
# `cargo bench --bench encoder --no-run` binary; the NVIDIA libraries are then
# taken from the site-packages of `python3` (the nvidia-* wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(fixtures/models/tiny-clip)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || {
  echo "no NVIDIA GPU here" >&2; exit 2; }

python=python3
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh --gpu)
  python=.cache/onnxruntime-gpu-1.31.1/venv/bin/python
  "$python" -m pip install --quiet --disable-pip-version-check tensorrt-cu13 >&2 ||
    echo "tensorrt-cu13 did not install; the tensorrt run will say why it cannot start (and fail)" >&2
fi
export ORT_DYLIB_PATH
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The CUDA, cuDNN and TensorRT libraries the pip packages bring.
libs=$({ find "$site/nvidia" "$site/tensorrt_libs" "$site/tensorrt" -name 'lib*.so*' -printf '%h\n' 2>/dev/null || true; } | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$(dirname "$ORT_DYLIB_PATH"):$libs:${LD_LIBRARY_PATH:-}"

bench=${IMGDB_ENCODER_BENCH:-$(scripts/bench-binary.sh encoder)}
failed=()
for model in "${models[@]}"; do
  for device in cuda tensorrt cpu; do
    echo "== $model on $device"
    if ! "$bench" "$model" --device "$device" --batches 1,32,256; then
      echo "$model on $device failed" >&2
      failed+=("$model on $device")
    fi
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  printf 'gpu-check FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "gpu-check: every provider ran"
