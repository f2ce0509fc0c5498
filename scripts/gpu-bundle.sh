#!/usr/bin/env bash
# Prepares target/gpu-bundle/, what scripts/gpu-check.sh needs on a GPU host that has neither
# network nor Rust (a lent machine reached only through a copy of this working tree, 64 MiB of
# build outputs at most): the encoder and ingest bench binaries (release, stripped) and a
# ViT-B/32-shaped model in fp32, fp16 and int8 whose weights are patterned so that the three
# compress to a few megabytes (scripts/gpu/pattern_weights.py: speed depends on the shapes, not
# the values). The tiny model and the JPEGs' source photos are in fixtures/ already.
#
#   scripts/gpu-bundle.sh            then carry target/gpu-bundle to the GPU host
#
# Needs the ViT-B/32 export (.cache/vit-b32-random, made by scripts/random_vit_b32.py with torch
# and transformers) and the fixture scripts' Python (onnx, onnxruntime: make_variants.py).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu-bundle
python=${PYTHON:-python3}
[ -f .cache/vit-b32-random/onnx/vision_model.onnx ] || "$python" scripts/random_vit_b32.py .cache/vit-b32-random
rm -rf "$out"
mkdir -p "$out/bin"
for bench in encoder ingest; do
  binary=$(scripts/bench-binary.sh "$bench")
  [ -n "$binary" ] || { echo "the $bench bench did not build" >&2; exit 1; }
  strip -o "$out/bin/$bench" "$binary"
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" scripts/gpu/pattern_weights.py .cache/vit-b32-random "$work/vit-b32-pattern"
"$python" scripts/fixtures/make_variants.py "$work/vit-b32-pattern" --variants fp16,int8
tar -C "$work" -cf - vit-b32-pattern | xz -9 -T0 > "$out/vit-b32-pattern.tar.xz"
du -sh "$out" "$out"/* "$out"/bin/*
