# Sourced by the scripts that run the real daemon beside a test or a
# benchmark (crates/imgdb-daemon/tests/browser/run.sh,
# scripts/api-conformance.sh): start it on a folder, wait for its address and
# for the folder to be indexed, report its log when it fails, stop it.
#
# The caller sets `harness` (its name, for messages), `work` (a temp folder
# for the log), `timeout_s` and `token` (empty: none), and installs
# `trap daemon_stop EXIT`.

pid=""
url=""

# Starts `IMGDB daemon ARGS...` in the background, its output in
# $work/daemon.log.
daemon_start() { # IMGDB ARGS...
  "$@" >"$work/daemon.log" 2>&1 &
  pid=$!
}

daemon_failed() { # MESSAGE
  echo "$harness: $*" >&2
  echo "---- daemon log ($work/daemon.log), last lines:" >&2
  tail -n 40 "$work/daemon.log" >&2 || true
  exit 1
}

# SIGTERM, then SIGKILL after 5 s.
daemon_stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "$harness: kept $work"; else rm -rf "$work"; fi
}

# Prints the Python expression EXPR of the JSON at URL (`s`), with the
# token when there is one; fails when there is no answer.
daemon_json() { # URL EXPR
  python3 - "$1" "$2" "$token" <<'PY'
import json, sys, urllib.request
url, expr, token = sys.argv[1:4]
request = urllib.request.Request(url)
if token:
    request.add_header("Authorization", f"Bearer {token}")
with urllib.request.urlopen(request, timeout=10) as r:
    s = json.load(r)
print(eval(expr))
PY
}

# Sets `url` from DB/daemon.json once the daemon is listening.
daemon_wait_address() { # DB
  local db=$1 deadline=$((SECONDS + timeout_s))
  while [ -z "$url" ]; do
    kill -0 "$pid" 2>/dev/null || daemon_failed "the daemon exited before writing $db/daemon.json"
    [ "$SECONDS" -lt "$deadline" ] || daemon_failed "no $db/daemon.json after ${timeout_s} s"
    if [ -s "$db/daemon.json" ]; then
      url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("url", ""))' "$db/daemon.json" 2>/dev/null || true)"
    fi
    [ -n "$url" ] || sleep 0.2
  done
  url="${url%/}"
  echo "$harness: daemon at $url (pid $pid)${token:+, with a token}"
}

# Waits until the watched folder is indexed: nothing queued, nothing being
# applied, some images, and the same figures twice in a row (the first scan
# may still be queueing). Sets `images` and `failures`.
daemon_wait_indexed() {
  local last="" now queued indexing deadline=$((SECONDS + timeout_s))
  while :; do
    kill -0 "$pid" 2>/dev/null || daemon_failed "the daemon exited while indexing"
    now="$(daemon_json "$url/v1/status" \
      '"%s %s %s %s" % (s["images"], s["queued"], str(s["indexing"]).lower(), s["failures"])' \
      2>/dev/null || true)"
    if [ -n "$now" ] && [ "$now" = "$last" ]; then
      read -r images queued indexing failures <<<"$now"
      if [ "$queued" = 0 ] && [ "$indexing" = false ] && [ "$images" -gt 0 ]; then break; fi
    fi
    [ "$SECONDS" -lt "$deadline" ] \
      || daemon_failed "not indexed after ${timeout_s} s (images queued indexing failures: ${now:-no answer})"
    last="$now"
    sleep 0.5
  done
  echo "$harness: indexed: $images images, $failures failures"
}
