#!/usr/bin/env bash
# Builds one bench target (release) and prints the path of its binary, so
# that a script runs the very build it made: `scripts/bench-binary.sh ann`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
