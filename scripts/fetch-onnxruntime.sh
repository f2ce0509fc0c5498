#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library imgdb loads at run time, from PyPI
# through pip, into the project-local cache where imgdb finds it by itself.
#
#   scripts/fetch-onnxruntime.sh          CPU build   -> .cache/onnxruntime-1.31.1/
#   scripts/fetch-onnxruntime.sh --gpu    CUDA/TensorRT build with CUDA 13 and
#                                         cuDNN 9 from PyPI -> .cache/onnxruntime-gpu-1.31.1/
#
# The version must match ort's API level (ort 2.0.0-rc.15 with api-31 loads
# 1.31.x and refuses older). Nothing is compiled; no other site is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.31.1
gpu=0
[ "${1:-}" = "--gpu" ] && gpu=1

if [ "$gpu" = 1 ]; then
  dest=.cache/onnxruntime-gpu-$version
  # The [cuda,cudnn] extras bring the NVIDIA libraries from PyPI; TensorRT
  # itself is not among them (pip install tensorrt for the TensorRT provider).
  spec="onnxruntime-gpu[cuda,cudnn]==$version"
else
  dest=.cache/onnxruntime-$version
  spec="onnxruntime==$version"
fi

lib=$(find "$dest" -path '*onnxruntime/capi/libonnxruntime.so.'"$version" 2>/dev/null | head -n 1 || true)
if [ -n "$lib" ]; then
  echo "$lib"
  exit 0
fi

mkdir -p "$dest"
if [ "$gpu" = 1 ]; then
  # A venv: the NVIDIA wheels are found relative to site-packages.
  python3 -m venv "$dest/venv"
  "$dest/venv/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2
else
  # The CPU wheel needs nothing but itself: unpack it, do not install it.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --dest "$dest/wheel" "$spec" >&2
  python3 -m zipfile -e "$dest"/wheel/onnxruntime-*.whl "$dest/unpacked"
fi
lib=$(find "$dest" -path '*onnxruntime/capi/libonnxruntime.so.'"$version" | head -n 1)
if [ -z "$lib" ]; then
  echo "the $spec wheel has no libonnxruntime.so.$version" >&2
  exit 1
fi
echo "$lib"
