#!/usr/bin/env bash
# The test command of the README and of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
cargo test --doc
