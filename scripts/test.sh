#!/usr/bin/env bash
# The test command of the README and of CI: fetches ONNX Runtime and the
# exchange tests' Python (numpy, pyarrow) from PyPI into the project cache if
# they are not there yet, then runs every test of the workspace (the library
# and the binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-onnxruntime.sh >/dev/null
# numpy and pyarrow read an export back in tests/exchange_laion.rs (which
# fails under CI without this, and skips outside it).
IMGDB_TEST_PYTHON=$(scripts/fetch-python-exchange.sh)
export IMGDB_TEST_PYTHON
cargo test --workspace --all-targets
cargo test --workspace --doc
