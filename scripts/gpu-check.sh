#!/usr/bin/env bash
# GPU figures, for a machine with an NVIDIA GPU (CI has none). Runs without network and without
# Rust, from the bundle scripts/gpu-bundle.sh made here (prebuilt bench binaries and a
# ViT-B/32-shaped model in fp32, fp16 and int8), in a copy of this working tree:
#
#   scripts/gpu-check.sh [BUNDLE_DIR]        (default: target/gpu-bundle)
#
# Through the lent-GPU tool: carry `target/gpu-bundle` (21 MB) and run `bash scripts/gpu-check.sh`
# with a timeout of about 8 minutes; the figures come back in $OUT/gpu-check.jsonl.
#
# 1. Engine side, the encoder bench: the tiny model and ViT-B/32 in fp32 and fp16 at batch 1, 32
#    and 256 on `cuda` and `tensorrt` (images/s, texts/s, the provider that ran, each variant's
#    lowest cosine to fp32), and on the host's CPU cores in fp32 and int8 for scale.
# 2. End to end, the ingest bench on a folder of 4 096 seeded 640x480 JPEGs: decode + preprocess
#    alone on all host cores, the model alone, and a whole ingest (all cores decoding), for
#    ViT-B/32 fp32 and fp16 on CUDA at batch 256.
#
# ONNX Runtime for the GPU (onnxruntime-gpu 1.31.1, CUDA 13, cuDNN 9) is not in the bundle (the
# wheel and its CUDA libraries are gigabytes): ORT_DYLIB_PATH names it, else python3's
# `onnxruntime` package (installed from the onnxruntime-gpu wheel) is used, with the CUDA, cuDNN
# and TensorRT libraries of the nvidia-* and tensorrt wheels beside it. A provider that cannot
# start (TensorRT without libnvinfer.so.10, say) is reported as NOT MEASURED with the loader's
# message, never replaced by another figure. Exit 0 when CUDA ran everything, 1 when a CUDA run
# failed, 2 when there is no GPU or no GPU runtime. Every figure is a JSON line on stdout, and in
# $OUT/gpu-check.jsonl when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-target/gpu-bundle}
log_dir=${OUT:-$(mktemp -d)}
mkdir -p "$log_dir"
log=$log_dir/gpu-check.jsonl
: > "$log"
say() { echo "$1" | tee -a "$log"; }
note() { say "{\"note\": $(printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"; }

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null) || {
  note "no NVIDIA GPU here (nvidia-smi failed): nothing measured"; exit 2; }
note "gpu: $gpu; host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for binary in encoder ingest; do
  [ -x "$bundle/bin/$binary" ] || { note "no $bundle/bin/$binary: run scripts/gpu-bundle.sh first"; exit 2; }
done

if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  capi=$(python3 -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null)
  ORT_DYLIB_PATH=$(ls "$capi"/libonnxruntime.so.* 2>/dev/null | head -1)
fi
runtime_dir=$(dirname "${ORT_DYLIB_PATH:-/nonexistent/x}")
if [ ! -f "${ORT_DYLIB_PATH:-}" ] || [ ! -f "$runtime_dir/libonnxruntime_providers_cuda.so" ]; then
  note "no ONNX Runtime GPU build here (ORT_DYLIB_PATH unset and python3 has no onnxruntime-gpu with libonnxruntime_providers_cuda.so): nothing measured"
  exit 2
fi
export ORT_DYLIB_PATH
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
libs=$({ find "$site/nvidia" "$site/tensorrt_libs" "$site/tensorrt" -name 'lib*.so*' -printf '%h\n' 2>/dev/null || true; } | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$runtime_dir:$libs:${LD_LIBRARY_PATH:-}"
note "runtime: $ORT_DYLIB_PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
xz -dc "$bundle/vit-b32-pattern.tar.xz" | tar -C "$work" -xf - || { note "cannot unpack the ViT-B/32 model"; exit 2; }
vit=$work/vit-b32-pattern
tiny=fixtures/models/tiny-clip

failed=0
# run WHAT DEVICE COMMAND...: the command's JSON lines go to the log; a failure on cuda fails
# the check, one on tensorrt is "not measured" (its library may be missing), with the reason.
run() {
  local what=$1 device=$2
  shift 2
  say "{\"run\": \"$what\", \"device\": \"$device\"}"
  if ! "$@" 2> "$work/stderr" | tee -a "$log"; then
    local reason
    reason=$(grep -v '^\s*$' "$work/stderr" | tail -3 | tr '\n' ' ')
    if [ "$device" = tensorrt ]; then
      note "$what on tensorrt: NOT MEASURED: $reason"
    else
      note "$what on $device: FAILED: $reason"
      failed=1
    fi
  fi
}

for model in "$tiny" "$vit"; do
  name=$(basename "$model")
  for device in cuda tensorrt; do
    run "encoder $name" "$device" "$bundle/bin/encoder" "$model" --device "$device" \
      --variants fp32,fp16 --batches 1,32,256
  done
  run "encoder $name" cpu "$bundle/bin/encoder" "$model" --device cpu --variants fp32,int8 --batches 1,32
done

run "ingest corpus" cpu "$bundle/bin/ingest" corpus --out "$work/ingest" --images 4096
for variant in fp32 fp16; do
  run "ingest vit-b32 $variant" cuda "$bundle/bin/ingest" run --out "$work/ingest" --model "$vit" \
    --device cuda --variant "$variant" --batch-size 256 --vectors 0
done

if [ "$failed" -ne 0 ]; then
  note "gpu-check: a CUDA run FAILED (above)"
  exit 1
fi
note "gpu-check: done; figures in $log"
