#!/usr/bin/env bash
# Prepares the Python that reads imgdb's exports in the tests (numpy and
# pyarrow, pinned in scripts/requirements-exchange.txt) as a venv in the
# project cache, and prints its python's path. Idempotent: a venv whose
# pins match is reused. Wheels from PyPI through pip; nothing else is
# contacted, nothing global is set.
#
#   scripts/fetch-python-exchange.sh      -> .cache/python-exchange/venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/python-exchange/venv
pins=scripts/requirements-exchange.txt
stamp=$venv/installed-requirements.txt
if [ -x "$venv/bin/python" ] && cmp -s "$pins" "$stamp"; then
  echo "$PWD/$venv/bin/python"
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: -r "$pins" >&2
cp "$pins" "$stamp"
echo "$PWD/$venv/bin/python"
