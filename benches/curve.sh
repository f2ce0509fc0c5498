#!/usr/bin/env bash
# Recall@10 against the number of vectors, imgdb beside hnswlib on the same
# seeded data (benches/data, the hard set unless --data clip), one size after
# another, then the table of benches/curve.py. Each size is a full prepare
# (data, exact neighbours, build through Db::insert), a reopen and search
# sweep, and hnswlib on the same files.
# Usage: benches/curve.sh [--sizes 100000,250000,500000,1000000] [--efs 16,32,64,96]
#                         [--data hard|clip] [--out target/curve]
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=100000,250000,500000,1000000
efs=16,32,48,64,96
data=hard
out=target/curve
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$2 ;;
    --efs) efs=$2 ;;
    --data) data=$2 ;;
    --out) out=$2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done
python=$(benches/peers-venv.sh)
bench=$(scripts/bench-binary.sh ann)
for n in ${sizes//,/ }; do
  dir="$out/$n"
  "$bench" prepare --n "$n" --data "$data" --out "$dir"
  "$bench" search --efs "$efs" --out "$dir"
  rm -f "$dir/peers.jsonl"
  "$python" benches/peers.py --out "$dir" --peers hnswlib --efs "$efs"
done
"$python" benches/curve.py "$out"
