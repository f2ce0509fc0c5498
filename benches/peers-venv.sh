#!/usr/bin/env bash
# Installs the peer ANN libraries (benches/requirements.txt, PyPI only) into
# .cache/venv-bench on first use and prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/venv-bench
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import hnswlib, faiss, usearch" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet -r benches/requirements.txt >&2
fi
echo "$PWD/$venv/bin/python"
