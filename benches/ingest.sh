#!/usr/bin/env bash
# Ingest and query figures for BENCHMARKS.md: the ingest bench (model only
# vs end to end, in-process query latency at 100k vectors), then the CLI
# process: peak memory during ingest and whole-command query latency.
# Usage: benches/ingest.sh [--images 2000] [--model DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/ingest-bench
images=2000
model=fixtures/models/tiny-clip
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    *) echo "unknown $1" >&2; exit 2 ;;
  esac
done
scripts/fetch-onnxruntime.sh >/dev/null
cargo build --release --quiet
cargo bench --bench ingest --quiet -- corpus --out "$out" --images "$images"
cargo bench --bench ingest --quiet -- run --out "$out" --model "$model"

db=$out/cli-db
rm -rf "$db"
/usr/bin/time -v target/release/imgdb --quiet --db "$db" --model "$model" ingest "$out/corpus" 2> "$out/time.txt"
rss=$(grep "Maximum resident set size" "$out/time.txt" | awk '{print $NF}')
wall=$(grep "Elapsed (wall clock)" "$out/time.txt" | awk '{print $NF}')
echo "{\"phase\": \"cli-ingest\", \"images\": $images, \"peak_rss_kib\": $rss, \"wall\": \"$wall\"}"

# Whole-process query latency (start, model load, database open, query).
times=()
for i in $(seq 1 21); do
  start=$(date +%s%N)
  target/release/imgdb --quiet --db "$db" --model "$model" query "a photo of an astronaut" -k 10 > /dev/null
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
p50=$(echo "$sorted" | sed -n 11p)
p99=$(echo "$sorted" | tail -n 1)
echo "{\"phase\": \"cli-query\", \"images\": $images, \"runs\": 21, \"ms_p50\": $p50, \"ms_max\": $p99}"
