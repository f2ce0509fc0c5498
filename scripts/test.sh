#!/usr/bin/env bash
# The test command of the README and of CI: fetches ONNX Runtime from PyPI
# into the project cache if it is not there yet, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-onnxruntime.sh >/dev/null
cargo test --all-targets
cargo test --doc
