#!/usr/bin/env bash
# Whole-process latency of a one-shot `imgdb query TEXT`: process start,
# model load (the text tower only), database open, query, exit. The first
# run fills the model-digest cache; the figures are over the warm runs.
# Usage: benches/cli_query.sh [--model DIR] [--runs 21]
# (the ViT-B/32-shaped model: python scripts/random_vit_b32.py .cache/vit-b32-random)
set -euo pipefail
cd "$(dirname "$0")/.."
model=fixtures/models/tiny-clip
runs=21
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "unknown $1" >&2; exit 2 ;;
  esac
done
scripts/fetch-onnxruntime.sh >/dev/null
cargo build --release --quiet -p imgdb-cli
out=target/cli-query-bench
rm -rf "$out"
mkdir -p "$out"
export IMGDB_CACHE=$out/cache
imgdb() { target/release/imgdb --quiet --db "$out/db" --model "$model" "$@"; }
imgdb ingest fixtures/photos fixtures/eval/shapes/large_red_circle_on_white > /dev/null

ms() {
  local start end
  start=$(date +%s%N)
  "$@" > /dev/null
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}
first=$(ms imgdb query "a photo of an astronaut" -k 10)
times=()
for _ in $(seq 1 "$runs"); do
  times+=("$(ms imgdb query "a photo of an astronaut" -k 10)")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
p50=$(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p")
max=$(echo "$sorted" | tail -n 1)
image=$(ms imgdb query --image fixtures/photos/astronaut.jpg -k 10)
echo "{\"bench\": \"cli-query\", \"model\": \"$model\", \"runs\": $runs, \"first_ms\": $first, \"ms_p50\": $p50, \"ms_max\": $max, \"image_query_ms\": $image}"
