#!/usr/bin/env bash
# The library crate compiles no command-line, terminal, async-runtime or HTTP
# stack (issue 8): an app that embeds imgdb pays for none of them. The model
# download (`hub` feature, an HTTP client) is opt-in; the binaries enable it.
# Fails, naming the crate and the path to it, when one creeps in.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(clap|clap_builder|indicatif|console|ctrlc|tracing-subscriber|crossterm|tokio|async-std|smol|axum|hyper|h2|http|tower|actix-web|warp|reqwest|ureq|hf-hub|rustls|native-tls)$'
found=$(cargo tree -p imgdb -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
if [ -n "$found" ]; then
  echo "the imgdb library depends on crates it must not (CLI/async/HTTP):" >&2
  for crate in $found; do
    cargo tree -p imgdb -e normal -i "$crate" >&2
  done
  exit 1
fi
echo "imgdb library: no CLI, terminal, async-runtime or HTTP dependency ($(cargo tree -p imgdb -e normal --prefix none --format '{p}' | sort -u | wc -l) crates)"
