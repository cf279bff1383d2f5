#!/usr/bin/env bash
# Scale benchmark: listgate on a large database.
#
#   benches/scale.sh [ROWS]     default 10000000 (by hand; takes a while)
#   benches/scale.sh --smoke    20000 rows, 2 s runs (CI keeps it working)
#   SCALE_KEEP=1 benches/scale.sh ...   keep the work folder (the databases)
#
# Builds a database of ROWS subscriptions the way listgate stores them: 60%
# confirmed, 20% pending past `retention.unconfirmed`, 20% unsubscribed past
# `retention.after_unsubscribe` (so 40% are due for the purge), each with a
# signup and a mail_sent proof event and a sent outbox row. Times grow with
# the id, as they do when rows arrive over the years. Then measures:
#   1. start-up: from exec to the first 200 from /healthz (median of 5);
#   2. growth: POST /subscribe (wrk -t1 -c64, unique addresses) on the large
#      database against the same on an empty one, median of 3 runs each;
#   3. purge: the server's own daily purge of the 40% (a minute after
#      start) while wrk keeps signing up: rows/s, and the signups' p99
#      meanwhile. (The smoke run waits that minute too.)
# Needs: wrk, postfix (smtp-sink), sqlite3, curl, python3. The shipped durability
# (WAL, synchronous=FULL) is on; only the rate limits are off.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=10000000 duration=10 runs=3 starts=5
if [ "${1:-}" = "--smoke" ]; then rows=20000 duration=2 runs=1 starts=2; elif [ -n "${1:-}" ]; then rows=$1; fi

cargo build --release --quiet --bin listgate
bin=$PWD/target/release/listgate
work=$(mktemp -d "${SCALE_DIR:-/tmp}/listgate-scale.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${SCALE_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
now_ms() { date +%s%3N; }

sink_port=$(free_port)
sink_user=(); if [ "$(id -u)" = 0 ]; then sink_user=(-u nobody); fi   # smtp-sink refuses to run as root
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1000 > /dev/null 2>&1 &
pids+=($!)

port=$(free_port)
export LISTGATE_SERVER__BIND=127.0.0.1:$port LISTGATE_SERVER__BASE_URL=http://127.0.0.1:$port \
  LISTGATE_SECRETS__KEY_FILE=$work/bench.key LISTGATE_MAIL__URL=smtp://127.0.0.1:$sink_port \
  LISTGATE_LIMITS__SIGNUPS_PER_IP=off LISTGATE_LIMITS__SIGNUPS_PER_ADDRESS=off LISTGATE_LIMITS__MAILS_PER_HOUR=off LISTGATE_LOG=warn
unset LISTGATE_CONFIG
base=http://127.0.0.1:$port

# serve DB: starts listgate on DB in the background; prints ms to ready.
serve() {
  local t0 t1
  t0=$(now_ms)
  LISTGATE_DATABASE__PATH=$1 "$bin" serve 2>> "$work/serve.log" &
  server_pid=$!
  pids+=("$server_pid")
  until curl -sf -o /dev/null "$base/healthz"; do sleep 0.002; done
  t1=$(now_ms)
  echo $((t1 - t0))
}
stop() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

# subscribe_runs TAG: wrk runs against the server; RESULT lines into $work/TAG.txt.
subscribe_runs() {
  for run in $(seq "$runs"); do
    MODE=subscribe RUN="$1$run" wrk -t1 -c64 -d"${duration}s" -s benches/post.lua "$base" | grep '^RESULT' >> "$work/$1.txt"
  done
}

# 0. Schema, consent text and mail rendering as listgate writes them, then
#    the rows in bulk. As in load.sh, the outbox delivers into Postfix's
#    smtp-sink while the signups run.
db=$work/big.db
serve "$db" > /dev/null; stop
t0=$(now_ms)
benches/scale-db.sh "$db" "$rows" "$base"
t1=$(now_ms)
size_mb=$(($(stat -c %s "$db") / 1048576))
# Everything pending or unsubscribed now is past retention (signed up in
# 2021, unsubscribed in 2022); the growth runs' new signups are not.
due=$(sqlite3 "$db" "SELECT count(*) FROM subscriptions WHERE status IN ('pending', 'unsubscribed')")
echo "built $rows subscriptions ($((2 * rows)) proof events, $rows outbox rows) in $(((t1 - t0) / 1000)) s: ${size_mb} MB"

# 1. Start-up on the large database.
for _ in $(seq "$starts"); do serve "$db" >> "$work/start.txt"; stop; done
start_ms=$(median < "$work/start.txt")

# 2. Growth: signups on an empty database, then on the large one.
serve "$work/empty.db" > /dev/null; subscribe_runs empty; stop
serve "$db" > /dev/null; subscribe_runs big

# 3. The server's own daily purge (it starts a minute after start-up) while
#    wrk keeps signing up; wrk starts just before it and stops when the log
#    says the purge is done.
stop
LISTGATE_LOG=warn,listgate::app=info serve "$db" > /dev/null
sleep 58
MODE=subscribe RUN=purge wrk -t1 -c64 -d900s -s benches/post.lua "$base" > "$work/purge-wrk.txt" &
wrk_pid=$!
pids+=("$wrk_pid")
until grep -q 'daily purge done' "$work/serve.log"; do sleep 0.2; done
kill -INT "$wrk_pid"; wait "$wrk_pid" 2>/dev/null || true
done_line=$(grep 'daily purge done' "$work/serve.log" | tail -1)
purged=$(echo "$done_line" | field erased)
purge_s=$(echo "$done_line" | field seconds)
[ "$purged" -ge "$due" ] || { echo "purge erased $purged of $due rows" >&2; exit 1; }
purge_p99=$(field p99_ms < "$work/purge-wrk.txt")
purge_rps=$(field rps < "$work/purge-wrk.txt")
stop
LISTGATE_DATABASE__PATH=$db "$bin" stats > /dev/null

empty_rps=$(field rps < "$work/empty.txt" | median)
big_rps=$(field rps < "$work/big.txt" | median)
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "start-up to /healthz on $rows rows: ${start_ms} ms (median of $starts)"
echo "signups on an empty database: $empty_rps req/s, p99 $(field p99_ms < "$work/empty.txt" | median) ms"
echo "signups on $rows rows: $big_rps req/s, p99 $(field p99_ms < "$work/big.txt" | median) ms; ratio $(awk -v a="$big_rps" -v b="$empty_rps" 'BEGIN {printf "%.2f", a / b}')"
echo "daily purge: $purged rows in $purge_s s = $(awk -v n="$purged" -v s="$purge_s" 'BEGIN {printf "%.0f", n / s}') rows/s; signups meanwhile $purge_rps req/s, p99 $purge_p99 ms"
