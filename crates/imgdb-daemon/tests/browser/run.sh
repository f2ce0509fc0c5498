#!/usr/bin/env bash
# The daemon's web page in a real browser, against a real daemon:
# copies shapes and photos from fixtures/ into a temp folder, starts
# `imgdb daemon` on it with the tiny test model, waits until the folder is
# indexed, runs run.mjs (headless Debian Chromium), stops the daemon and
# exits with run.mjs's status.
#
#   IMGDB_BIN=target/debug/imgdb  the binary (default target/debug/imgdb)
#   SCREENSHOTS=DIR               default $TARGET/browser-test/screenshots
#   KEEP=1                        keep the temp folder (database, log)
#
# Writes only under a temp folder and $CARGO_TARGET_DIR (default target/):
# npm's packages go to target/browser-test, not next to this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
bin="${IMGDB_BIN:-$repo/target/debug/imgdb}"
case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
chromium="${CHROMIUM:-/usr/bin/chromium}"
timeout_s=60

die() { echo "run.sh: $*" >&2; exit 2; }

[ -x "$bin" ] || die "no daemon binary at $bin (cargo build -p imgdb-cli, or set IMGDB_BIN)"
[ -x "$chromium" ] || die "no browser at $chromium (Debian: apt-get install -y chromium)"
command -v node >/dev/null || die "needs node (18 or newer) and npm"

# ---- npm packages, under target/ (reinstalled when the lock file changes)
suite="$target/browser-test"
mkdir -p "$suite"
cp "$here/package.json" "$here/package-lock.json" "$here/run.mjs" "$suite/"
if ! cmp -s "$suite/package-lock.json" "$suite/node_modules/.package-lock.json.installed" 2>/dev/null \
  || [ ! -d "$suite/node_modules/playwright-core" ]; then
  echo "run.sh: npm ci in $suite"
  (cd "$suite" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$suite/package-lock.json" "$suite/node_modules/.package-lock.json.installed"
fi

# ---- a folder to watch: shapes named after their class, and the photos
work="$(mktemp -d "${TMPDIR:-/tmp}/imgdb-browser.XXXXXX")"
harness=run.sh
token=""
# shellcheck source=../../../../scripts/daemon-harness.sh
. "$repo/scripts/daemon-harness.sh"
trap daemon_stop EXIT

photos="$work/photos"
mkdir -p "$photos/shapes"
copied=0
# Both images of every red, green and blue class: the colours and shapes
# the tiny model knows best, 108 files, enough for more than one page.
for class_dir in "$repo"/fixtures/eval/shapes/*_{red,green,blue}_*/; do
  class="$(basename "$class_dir")"
  for file in "$class_dir"*; do
    cp "$file" "$photos/shapes/${class}_$(basename "$file")"
    copied=$((copied + 1))
  done
done
for file in "$repo"/fixtures/photos/*.jpg; do
  cp "$file" "$photos/"
  copied=$((copied + 1))
done
echo "run.sh: $copied files in $photos"

# ---- the daemon
db="$work/db"
daemon_start "$bin" daemon --db "$db" --model "$repo/fixtures/models/tiny-clip" --watch "$photos" \
  --listen 127.0.0.1:0
daemon_wait_address "$db"
daemon_wait_indexed

# ---- the browser
status=0
SCREENSHOTS="${SCREENSHOTS:-$suite/screenshots}" node "$suite/run.mjs" "$url" || status=$?
[ "$status" = 0 ] || { echo "---- daemon log, last lines:" >&2; tail -n 20 "$work/daemon.log" >&2 || true; }
exit "$status"
