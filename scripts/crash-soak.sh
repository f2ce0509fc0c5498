#!/usr/bin/env bash
# The crash test for as long as you like: ROUNDS kills of a writer with
# SIGKILL (default 500), each followed by a reopen and a full check.
# Usage: scripts/crash-soak.sh [ROUNDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
IMGDB_CRASH_ROUNDS=${1:-500} IMGDB_TEST_SEED=${2:-$RANDOM} \
  cargo test --release --test crash killed_writers_lose_nothing_acknowledged -- --nocapture
