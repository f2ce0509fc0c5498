#!/usr/bin/env bash
# The daemon's HTTP API against its own OpenAPI spec, with schemathesis:
# starts the real daemon (`imgdb daemon`, the tiny test model) on a temp copy
# of fixtures/photos, waits until it is indexed, and runs schemathesis on
# $URL/v1/openapi.json with the checks below, a fixed seed and a bounded
# number of examples per operation (about 80 s on 2 cores). Exits
# non-zero on any failure.
#
#   IMGDB_BIN=target/debug/imgdb  the binary (default target/debug/imgdb)
#   TOKEN=SECRET                  start the daemon with --token and give
#                                 schemathesis the header (adds the
#                                 `ignored_auth` check: every 401 path)
#   MAX_EXAMPLES=N                examples per operation (default 300)
#   PHASES=LIST                   schemathesis phases (default all four)
#   CHECKS=LIST                   replace the checks below (`all` to explore)
#   SEED=N                        schemathesis' seed (default 20261201)
#   KEEP=1                        keep the temp folder (database, daemon log)
#
# `GET /v1/events` is an endless stream: schemathesis skips it and the script
# checks its status and media type itself with a time-limited request.
# schemathesis goes into a venv under $TARGET/api-conformance (pinned
# version); its reports (JUnit, and the failures as pytest files) go to
# $TARGET/api-conformance/report.
set -euo pipefail

schemathesis_version=4.32.5
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
bin="${IMGDB_BIN:-$repo/target/debug/imgdb}"
case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
max_examples="${MAX_EXAMPLES:-300}"
seed="${SEED:-20261201}"
token="${TOKEN:-}"
timeout_s=120

die() { echo "api-conformance: $*" >&2; exit 2; }
[ -x "$bin" ] || die "no daemon binary at $bin (cargo build -p imgdb-cli, or set IMGDB_BIN)"

# ---- schemathesis, pinned, in a venv under target/
home="$target/api-conformance"
venv="$home/venv"
if [ "$("$venv/bin/st" --version 2>/dev/null)" != "st, version $schemathesis_version" ]; then
  echo "api-conformance: installing schemathesis $schemathesis_version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

# ---- the daemon on a temp copy of the photos
work="$(mktemp -d "${TMPDIR:-/tmp}/imgdb-conformance.XXXXXX")"
harness=api-conformance
# shellcheck source=daemon-harness.sh
. "$repo/scripts/daemon-harness.sh"
trap daemon_stop EXIT

photos="$work/photos"
mkdir -p "$photos"
cp "$repo"/fixtures/photos/* "$photos/"
db="$work/db"
args=(daemon --db "$db" --model "$repo/fixtures/models/tiny-clip" --watch "$photos"
  --listen 127.0.0.1:0)
[ -z "$token" ] || args+=(--token "$token")
daemon_start "$bin" "${args[@]}"
daemon_wait_address "$db"
daemon_wait_indexed

# ---- GET /v1/events, by hand: 200 and an event stream (then cut off)
auth=()
[ -z "$token" ] || auth=(-H "Authorization: Bearer $token")
events_head="$(curl -s -o /dev/null -D - --max-time 2 "${auth[@]}" "$url/v1/events" || true)"
grep -qE '^HTTP/1\.1 200' <<<"$events_head" || daemon_failed "GET /v1/events: not 200: $events_head"
grep -qiE '^content-type: text/event-stream' <<<"$events_head" \
  || daemon_failed "GET /v1/events: not text/event-stream: $events_head"
if [ -n "$token" ]; then
  code="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "$url/v1/events" || true)"
  [ "$code" = 401 ] || daemon_failed "GET /v1/events without the token: $code, not 401"
fi
echo "api-conformance: GET /v1/events: 200 text/event-stream${token:+ (401 without the token)}"

# ---- schemathesis
# What the responses must be: never a 5xx, a documented status, and the
# documented body, media type and headers. With a token, also: requests
# without it or with a wrong one are 401, and schema-violating requests are
# refused (without a token the daemon rightly accepts a missing header that
# the spec's `security` calls required). `positive_data_acceptance` is left
# out: it takes 415 for random bytes uploaded as an image, and 400 for an
# integer written `2.0` (JSON Schema's integer, not serde's), both by design.
checks=not_a_server_error,status_code_conformance,response_schema_conformance
checks+=,content_type_conformance,response_headers_conformance
headers=()
if [ -n "$token" ]; then
  checks+=,ignored_auth,missing_required_header,negative_data_rejection
  headers=(-H "Authorization: Bearer $token")
fi
checks="${CHECKS:-$checks}"
report="$home/report${token:+-token}"
rm -rf "$report"
echo "api-conformance: schemathesis $schemathesis_version, $max_examples examples an operation, seed $seed"
status=0
# From $home: schemathesis keeps its state in .schemathesis/ of the working folder.
(cd "$home" && "$venv/bin/st" run "$url/v1/openapi.json" --url "$url" \
  --checks "$checks" \
  --exclude-path /v1/events \
  --max-examples "$max_examples" --seed "$seed" \
  --phases "${PHASES:-examples,coverage,fuzzing,stateful}" \
  --workers 1 --request-timeout 30 \
  --suppress-health-check too_slow,filter_too_much \
  --report junit,pytest --report-dir "$report" \
  --warnings off \
  "${headers[@]}") || status=$?
kill -0 "$pid" 2>/dev/null || daemon_failed "the daemon died during the run"
if [ "$status" != 0 ]; then
  echo "api-conformance: FAILED (reports in $report)" >&2
  echo "---- daemon log, last lines:" >&2
  tail -n 20 "$work/daemon.log" >&2 || true
  exit 1
fi
echo "api-conformance: passed (reports in $report)"
