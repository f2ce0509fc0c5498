#!/usr/bin/env bash
# The README's first command: sets up (ONNX Runtime from PyPI, a release
# build) and runs the main job on the shipped fixtures: index the shape
# images and photos with the tiny model, then search by text and by image.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-onnxruntime.sh >/dev/null
cargo build --release --quiet
imgdb() { target/release/imgdb --db .cache/quickstart-db --model fixtures/models/tiny-clip "$@"; }
rm -rf .cache/quickstart-db

echo '$ imgdb ingest fixtures/eval/shapes fixtures/photos'
imgdb ingest fixtures/eval/shapes fixtures/photos
echo
echo '$ imgdb query "a red circle" -k 5'
imgdb query "a red circle" -k 5
echo
echo '$ imgdb query --image fixtures/eval/shapes/large_blue_square_on_black/0.png -k 5'
imgdb query --image fixtures/eval/shapes/large_blue_square_on_black/0.png -k 5
echo
echo '$ imgdb query "a shape on black" --minus "a triangle" --format png -k 5'
imgdb query "a shape on black" --minus "a triangle" --format png -k 5
