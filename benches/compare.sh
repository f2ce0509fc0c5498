#!/usr/bin/env bash
# imgdb's index beside hnswlib, faiss and usearch on the same seeded data, in
# one run. Usage: benches/compare.sh [--n 100000] [--data hard|clip] [--out target/ann]
# imgdb also searches on 2 threads (peers on 1); summary.py gives the ratio.
# Installs the peers into .cache/venv-bench (PyPI only) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/ann
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    *) args+=("$1" "$2"); shift 2 ;;
  esac
done
python=$(benches/peers-venv.sh)
# Build once and run the binary itself, so that every phase measures the
# same build even if the sources change meanwhile.
bench=$(scripts/bench-binary.sh ann)
"$bench" prepare --out "$out" "${args[@]}"
"$bench" search --out "$out" --search-threads 1,2 "${args[@]}"
"$bench" rebuild --out "$out" "${args[@]}"
rm -f "$out/peers.jsonl"
"$python" benches/peers.py --out "$out"
"$python" benches/summary.py "$out"
