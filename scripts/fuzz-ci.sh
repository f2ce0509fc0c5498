#!/usr/bin/env bash
# CI's short fuzz run (issue 11): builds every target in fuzz/ and runs each
# for FUZZ_SECONDS (default 8) from the seed corpora, failing on any crash,
# leak, timeout or out-of-memory. Installs cargo-fuzz itself when missing;
# cargo-fuzz needs the nightly toolchain these machines carry beside stable.
# The long by-hand runs and their figures are in fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-8}
# Leaks inside system C libraries that imgdb cannot free, each measured (fuzz/lsan.supp),
# matched on full stacks (the fast unwinder stops at the first C frame).
export LSAN_OPTIONS="suppressions=$PWD/lsan.supp:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

./seed-corpora.sh
cargo +nightly fuzz build
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $(cargo +nightly fuzz list); do
  printf '\n== fuzz %s (%ss)\n' "$target" "$seconds"
  # libFuzzer exits non-zero on a crash, a timeout or running out of memory,
  # and leaves the input in artifacts/<target>/.
  if ! cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed: the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
done
