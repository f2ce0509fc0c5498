#!/usr/bin/env bash
# The test command of the README and of CI: fetches ONNX Runtime from PyPI
# into the project cache if it is not there yet, then runs every test of the
# workspace (the library and the binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-onnxruntime.sh >/dev/null
cargo test --workspace --all-targets
cargo test --workspace --doc
