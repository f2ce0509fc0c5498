#!/usr/bin/env bash
# The daemon's benchmarks (BENCHMARKS.md, "Daemon"), with the tiny model and
# the release binary:
#
#   benches/daemon.sh latency    file landing in a watched folder -> searchable:
#                                100 shapes copied in one at a time, 100 ms apart,
#                                at settle_ms 1000 (the default) and 300
#   benches/daemon.sh load       a database of N_VECTORS (100 000) imported vectors
#                                of the tiny model's space, then oha on loopback:
#                                CLIENTS (32) clients for DURATION (60s) of text
#                                queries, image-id queries and /similar; RSS idle
#                                and under load
#   benches/daemon.sh indexing   the same load while the daemon indexes
#                                INDEX_FILES (5 000) distinct shape images
#   benches/daemon.sh db         only build the database of imported vectors
#   benches/daemon.sh serve      load, then indexing, on one daemon
#   benches/daemon.sh            all three (load and indexing share the database)
#
#   IMGDB_BIN=...   default target/release/imgdb (cargo build --release -p imgdb-cli)
#   OUT=DIR         default target/bench-daemon (databases, oha's JSON, daemon logs)
#
# oha is installed from crates.io into target/oha when missing. Every figure
# is printed as one JSON line; oha's own reports stay in $OUT.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${IMGDB_BIN:-$repo/target/release/imgdb}"
model="$repo/fixtures/models/tiny-clip"
shapes="$repo/fixtures/eval/shapes"
out="${OUT:-$repo/target/bench-daemon}"
n_vectors="${N_VECTORS:-100000}"
duration="${DURATION:-60s}"
clients="${CLIENTS:-32}"
index_files="${INDEX_FILES:-5000}"
helper="$repo/benches/daemon_helper.py"
oha="$repo/target/oha/bin/oha"
mode="${1:-all}"

[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release -p imgdb-cli)" >&2; exit 2; }
mkdir -p "$out"

pid=""
stop_daemon() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  pid=""
}
trap stop_daemon EXIT

# start_daemon DB WATCH LOG [CONFIG]: sets $pid and $url.
start_daemon() {
  local db=$1 watch=$2 log=$3 config=${4:-}
  rm -f "$db/daemon.json"
  local args=(daemon --db "$db" --model "$model" --watch "$watch" --listen 127.0.0.1:0)
  [ -z "$config" ] || args+=(--config "$config")
  "$bin" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  url=""
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || { tail "$log" >&2; exit 1; }
    if [ -s "$db/daemon.json" ]; then
      url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("url",""))' "$db/daemon.json" 2>/dev/null || true)"
      [ -n "$url" ] && break
    fi
    sleep 0.1
  done
  [ -n "$url" ] || { echo "the daemon did not listen" >&2; exit 1; }
  url="${url%/}"
}

# Waits until nothing is queued or being indexed, twice in a row.
wait_idle() {
  local last="" now
  while :; do
    now="$(curl -s "$url/v1/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["queued"], s["indexing"], s["images"])')"
    case "$now" in "0 False "*) [ "$now" = "$last" ] && return ;; esac
    last="$now"
    sleep 0.5
  done
}

latency() {
  for settle in 1000 300; do
    local dir="$out/latency-$settle"
    rm -rf "$dir"
    mkdir -p "$dir/watch"
    printf '[indexing]\nsettle_ms = %s\n' "$settle" >"$dir/config.toml"
    start_daemon "$dir/db" "$dir/watch" "$dir/daemon.log" "$dir/config.toml"
    wait_idle
    printf '{"bench":"latency","settle_ms":%s,"result":' "$settle"
    python3 "$helper" latency "$url" "$shapes" "$dir/watch" 100 100 | tr -d '\n'
    echo "}"
    stop_daemon
  done
}

ensure_oha() {
  [ -x "$oha" ] || cargo install oha --locked --root "$repo/target/oha"
}

build_db() {
  db100k="$out/db-$n_vectors"
  [ -f "$out/db-$n_vectors.done" ] && return
  rm -rf "$out/shapes-db" "$out/shapes-export" "$out/vectors" "$db100k"
  "$bin" --quiet --db "$out/shapes-db" --model "$model" ingest "$shapes"
  "$bin" --quiet --db "$out/shapes-db" --model "$model" export "$out/shapes-export"
  python3 "$helper" vectors "$out/shapes-export" "$out/vectors" "$n_vectors" 42
  local start=$SECONDS
  "$bin" --db "$db100k" --model "$model" import "$out/vectors"
  echo "{\"bench\":\"import\",\"vectors\":$n_vectors,\"seconds\":$((SECONDS - start))}"
  touch "$out/db-$n_vectors.done"
}

# run_load NAME: three oha processes side by side, $clients in all.
run_load() {
  local name=$1 text=$((clients / 2)) rest=$((clients / 4))
  local common=(--no-tui --output-format json -z "$duration")
  "$oha" "${common[@]}" -c "$text" -m POST -H 'Content-Type: application/json' \
    -d '{"text": "a large red circle on a white background", "k": 10}' \
    "$url/v1/query" >"$out/$name-text.json" &
  local a=$!
  "$oha" "${common[@]}" -c "$rest" -m POST -H 'Content-Type: application/json' \
    -d '{"image_id": 1234, "k": 10}' "$url/v1/query" >"$out/$name-image-id.json" &
  local b=$!
  "$oha" "${common[@]}" -c "$rest" --rand-regex-url \
    "$url/v1/images/[1-9][0-9]{0,3}/similar" >"$out/$name-similar.json" &
  local c=$!
  python3 "$helper" sample "$url" "$out/$name-status.jsonl" "${duration%s}" &
  local d=$!
  sleep "$(( ${duration%s} / 2 ))"
  printf '{"bench":"%s","rss_mid_run_mib":' "$name"
  python3 "$helper" rss "$pid" | tr -d '\n'
  echo "}"
  wait "$a" "$b" "$c" "$d"
  python3 "$helper" summary "$out/$name-text.json" "$out/$name-image-id.json" "$out/$name-similar.json"
  printf '{"bench":"%s","status":' "$name"
  python3 "$helper" busy "$out/$name-status.jsonl" | tr -d '\n'
  echo "}"
  printf '{"bench":"%s","rss_after_mib":' "$name"
  python3 "$helper" rss "$pid"  | tr -d '\n'
  echo "}"
}

load() {
  ensure_oha
  build_db
  rm -rf "$out/watch-load"
  mkdir -p "$out/watch-load"
  start_daemon "$db100k" "$out/watch-load" "$out/daemon-load.log"
  wait_idle
  # One of each, so that the idle figure counts what the first queries load.
  curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"text": "a cat"}' "$url/v1/query"
  curl -s -o /dev/null "$url/v1/images/1/similar"
  printf '{"bench":"idle","images":%s,"rss_mib":' "$(curl -s "$url/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])')"
  python3 "$helper" rss "$pid" | tr -d '\n'
  echo "}"
  run_load load
}

indexing() {
  [ -n "$pid" ] || { ensure_oha; build_db; rm -rf "$out/watch-load"; mkdir -p "$out/watch-load";
    start_daemon "$db100k" "$out/watch-load" "$out/daemon-load.log"; wait_idle; }
  rm -rf "$out/staged"
  python3 "$helper" distinct "$shapes" "$out/staged" "$index_files"
  local before
  before="$(curl -s "$url/v1/status")"
  # One rename: the whole folder lands at once.
  mv "$out/staged" "$out/watch-load/batch-$(date +%s)"
  sleep 2
  curl -s "$url/v1/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(json.dumps({"bench":"indexing-start","queued":s["queued"],"indexing":s["indexing"],"indexed":s["indexed"]}))'
  run_load while-indexing
  curl -s "$url/v1/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(json.dumps({"bench":"indexing-end","queued":s["queued"],"indexing":s["indexing"],"indexed":s["indexed"]}))'
  local start=$SECONDS
  wait_idle
  echo "{\"bench\":\"indexing-drained\",\"more_seconds\":$((SECONDS - start))}"
  echo "before: $before" >"$out/indexing-status-before.json"
}

case "$mode" in
  latency) latency ;;
  db) build_db ;;
  serve) load; indexing ;;
  load) load ;;
  indexing) indexing ;;
  all) latency; load; indexing ;;
  *) echo "usage: benches/daemon.sh [latency|load|indexing|all]" >&2; exit 2 ;;
esac
