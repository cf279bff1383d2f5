#!/usr/bin/env bash
# Load benchmark: listgate against a hello-world warp server on the same
# machine, in the same run, so every figure is also a ratio.
#
#   benches/load.sh            full run: 3 runs of 10 s per workload (by hand)
#   benches/load.sh --smoke    1 run of 2 s per workload (CI keeps it working)
#   benches/load.sh --store postgres [--nodes 2]
#                              the same on PostgreSQL: a throwaway cluster
#                              (Debian's postgresql, fsync and
#                              synchronous_commit on) and one or two nodes
#   benches/load.sh --e2e [--rate N] [--seconds S] [--smtp-latency MS]
#                              end to end: signups for S seconds (default
#                              60; --smoke: 5) at an offered rate of N/s
#                              (default: as fast as answers come), then
#                              until the outbox has drained; see "End to
#                              end" below. Combines with --store and --nodes.
#   LISTGATE_BIN=PATH benches/load.sh ...
#                              the same against another build of listgate
#                              (before-and-after runs, interleaved by hand)
#
# Workloads (wrk, 1 thread, 64 connections, benches/post.lua):
#   hello        POST to the hello_warp example: the machine's HTTP limit
#   subscribe    POST /subscribe, a new address every request
#   confirm      POST /confirm with tokens of the signups above
#   unsubscribe  RFC 8058 one-click POST with exported unsubscribe URLs
# plus: listgate's peak RSS, the outbox draining into Postfix's smtp-sink
# against smtp-source's own rate into the same sink. With two nodes, two wrk
# processes of 32 connections each load one node each; req/s is their sum,
# p99 the larger of the two.
#
# listgate runs with the shipped durability (SQLite: WAL, synchronous=FULL,
# one fsync per group commit; PostgreSQL: synchronous_commit on, one commit
# per group); only the rate limits are off. Needs: wrk, postfix (smtp-sink,
# smtp-source), sqlite3, python3; postgresql for --store postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
runs=3
store=sqlite
nodes=1
e2e=0
rate=
e2e_seconds=60
smtp_latency=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) duration=2; runs=1; e2e_seconds=5 ;;
    --store) store=$2; shift ;;
    --nodes) nodes=$2; shift ;;
    --e2e) e2e=1 ;;
    --rate) rate=$2; shift ;;
    --seconds) e2e_seconds=$2; shift ;;
    --smtp-latency) smtp_latency=$2; shift ;;
    *) echo "usage: benches/load.sh [--smoke] [--store sqlite|postgres] [--nodes 1|2] [--e2e [--rate N] [--seconds S] [--smtp-latency MS]]" >&2; exit 2 ;;
  esac
  shift
done
case "$store:$nodes" in
  sqlite:1 | postgres:1 | postgres:2) ;;
  *) echo "--nodes 2 needs --store postgres (SQLite is one node)" >&2; exit 2 ;;
esac
# Confirm and unsubscribe each act on a fresh subscription per request, so
# their runs are shorter: the signups must leave enough tokens.
act_duration=$((duration * 3 / 10)); [ "$act_duration" -ge 1 ] || act_duration=1

cargo build --release --quiet --bin listgate --example hello_warp --example latency_proxy
bin=${LISTGATE_BIN:-$PWD/target/release/listgate}
hello=$PWD/target/release/examples/hello_warp
work=$(mktemp -d)
chmod 755 "$work" # the cluster in it runs as `postgres` (benches/pg_cluster.sh)
pids=()
pg_stop=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ ${#pg_stop[@]} -gt 0 ]; then "${pg_stop[@]}" > /dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

# wrk_run MODE URL [TOKENS] [CONNECTIONS] [TAG]: one run; prints wrk's RESULT line.
wrk_run() {
  local out d=$duration
  if [ -n "${3:-}" ]; then d=$act_duration; fi
  out=$(MODE=$1 RUN=$run${5:-} TOKENS=${3:-} RATE=${offered_rate:-} ALL_CONNECTIONS=64 \
    wrk -t1 -c"${4:-64}" -d"${d}s" -s benches/post.lua "$2")
  echo "$out" | grep '^RESULT'
  if echo "$out" | grep -q 'Non-2xx'; then echo "$1: non-2xx answers" >&2; echo "$out" >&2; exit 1; fi
}

# load MODE [TOKENS]: one run against every node at once; prints one RESULT
# line (req/s and requests summed, p99 the largest).
load() {
  if [ "$nodes" = 1 ]; then wrk_run "$1" "${bases[0]}" "${2:-}"; return; fi
  local part=() wrks=() i
  for i in 0 1; do
    if [ -n "${2:-}" ]; then awk -v i="$i" 'NR % 2 == i' "$2" > "$2.$i"; part[i]="$2.$i"; else part[i]=""; fi
    wrk_run "$1" "${bases[i]}" "${part[i]}" 32 "n$i" > "$work/part.$i" &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  cat "$work/part.0" "$work/part.1" | awk '{
      for (f = 2; f <= NF; f++) {
        split($f, kv, "="); if (kv[1] == "rps") rps += kv[2]; if (kv[1] == "requests") n += kv[2]
        if (kv[1] == "p99_ms" && kv[2] > p99) p99 = kv[2]
      }
    } END { printf "RESULT rps=%.0f p99_ms=%.2f requests=%d\n", rps, p99, n }'
}

# report NAME FILE: median rps and p99 of the runs in FILE.
report() {
  local rps p99
  rps=$(field rps < "$2" | median)
  p99=$(field p99_ms < "$2" | median)
  echo "$1 $rps $p99"
}

sink_port=$(free_port)
sink_user=(); if [ "$(id -u)" = 0 ]; then sink_user=(-u nobody); fi   # smtp-sink refuses to run as root
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1000 > /dev/null 2>&1 &
pids+=($!)
# --smtp-latency: listgate reaches the sink through a proxy that delays
# every chunk (benches/latency_proxy.rs), a mail server across a network.
mail_port=$sink_port
if [ "$smtp_latency" != 0 ]; then
  mail_port=$(free_port)
  "$PWD/target/release/examples/latency_proxy" "127.0.0.1:$mail_port" "127.0.0.1:$sink_port" "$smtp_latency" &
  pids+=($!)
fi

# 1. The reference: hello world.
hello_port=$(free_port)
"$hello" "127.0.0.1:$hello_port" &
pids+=($!)
wait_http "http://127.0.0.1:$hello_port/" || true
for run in $(seq "$runs"); do wrk_run hello "http://127.0.0.1:$hello_port/" >> "$work/hello.txt"; done

# 2. listgate on a fresh database.
if [ "$store" = postgres ]; then
  # benches/pg_cluster.sh: a throwaway cluster with production durability.
  source benches/pg_cluster.sh
  start_pg_cluster "$work/pg"
  export LISTGATE_DATABASE__URL=$pg_url
  sql() { "$pgbin/psql" -X -q -At "$LISTGATE_DATABASE__URL" -c "$1"; }
  token_sql="SELECT substr(link, strpos(link, 'token=') + 6) FROM outbox ORDER BY id"
  pg_version=$("$pgbin/postgres" --version)
else
  sql() { sqlite3 "$work/bench.db" "$1"; }
  token_sql="SELECT substr(link, instr(link, 'token=') + 6) FROM outbox ORDER BY id"
fi
export LISTGATE_DATABASE__PATH=$work/bench.db LISTGATE_SECRETS__KEY_FILE=$work/bench.key \
  LISTGATE_MAIL__URL=smtp://127.0.0.1:$mail_port \
  LISTGATE_LIMITS__SIGNUPS_PER_IP=off LISTGATE_LIMITS__SIGNUPS_PER_ADDRESS=off LISTGATE_LIMITS__MAILS_PER_HOUR=off LISTGATE_LOG=warn
unset LISTGATE_CONFIG
bases=()
metrics=()
lg_pids=()
for i in $(seq "$nodes"); do
  # One node at a time: the first makes the key file the second reads.
  lg_port=$(free_port)
  metrics_port=$(free_port)
  LISTGATE_SERVER__BIND=127.0.0.1:$lg_port LISTGATE_SERVER__BASE_URL=http://127.0.0.1:$lg_port \
    LISTGATE_SERVER__METRICS_BIND=127.0.0.1:$metrics_port \
    "$bin" serve 2> "$work/serve.$i.log" &
  lg_pids+=($!)
  pids+=($!)
  wait_http "http://127.0.0.1:$lg_port/healthz"
  bases+=("http://127.0.0.1:$lg_port")
  metrics+=("http://127.0.0.1:$metrics_port/metrics")
done
lg_pid=${lg_pids[0]}
# The CLI's export builds its links from the first node's URL.
export LISTGATE_SERVER__BASE_URL=${bases[0]}

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "store: $store${pg_version:+ ($pg_version)}, $nodes node(s)"
}

# End to end (--e2e): what a subscriber gets is a mail, so a signup counts
# when smtp-sink has accepted its confirmation mail. Signups run for
# $e2e_seconds at the offered rate; then the script waits for the outbox to
# drain. Every second it samples each node's /metrics (its own listener):
# the outbox backlog (the database's count of queued mails) and mails sent;
# and node 1's RSS (with its anonymous part) and CPU time from /proc.
if [ "$e2e" = 1 ]; then
  scrape() { curl -s "$1" | awk -v m="$2" '$1 == m {v = $2} END {print v + 0}'; }
  queued() { scrape "${metrics[0]}" listgate_mails_queued; }
  sent() { local m n=0; for m in "${metrics[@]}"; do n=$((n + $(scrape "$m" listgate_mails_sent_total))); done; echo "$n"; }
  # CPU time (user + system) of node 1 so far, in clock ticks.
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$lg_pid/stat"; }
  tick=$(getconf CLK_TCK)
  sampler() {
    while :; do
      echo "$(date +%s.%N) $(queued) $(sent) $(awk '/VmRSS/ {print $2}' "/proc/$lg_pid/status") $(cpu_ticks) $(awk '/RssAnon/ {print $2}' "/proc/$lg_pid/status")"
      sleep 1
    done
  }
  run=e2e
  duration=$e2e_seconds
  t0=$(date +%s.%N)
  sampler > "$work/samples" &
  sampler_pid=$!
  pids+=("$sampler_pid")
  offered_rate=$rate load subscribe > "$work/e2e.txt"
  t_load=$(date +%s.%N)
  # Drain: until no mail is queued (or ten minutes have passed).
  while [ "$(queued)" != 0 ] && awk -v t0="$t_load" -v now="$(date +%s.%N)" 'BEGIN {exit !(now - t0 < 600)}'; do
    sleep 0.1
  done
  t_drained=$(date +%s.%N)
  sleep 1.1 # one more sample after the drain
  kill "$sampler_pid" 2>/dev/null || true
  mails=$(sent)
  left=$(queued)
  answered=$(field requests < "$work/e2e.txt")
  answer_rps=$(field rps < "$work/e2e.txt")
  p99=$(field p99_ms < "$work/e2e.txt")
  peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$lg_pid/status")
  read -r _ hello_rps hello_p99 < <(report hello "$work/hello.txt")
  ratio() { awk -v a="$1" -v b="$hello_rps" 'BEGIN {printf "%.2f", a / b}'; }
  e2e_rps=$(awk -v n="$mails" -v t0="$t0" -v t1="$t_drained" 'BEGIN {printf "%.0f", n / (t1 - t0)}')
  machine
  echo "end to end: signups for ${e2e_seconds}s at ${rate:-an unlimited} offered rate (wrk -c64, closed loop${rate:+ with a delay per connection}), smtp-sink$([ "$smtp_latency" = 0 ] || echo " behind $smtp_latency ms per direction")"
  printf '%-26s %10s %8s\n' measure value ratio
  printf '%-26s %10s %8s\n' "hello world req/s" "$hello_rps" 1.00
  printf '%-26s %10s %8s\n' "answered signups/s" "$answer_rps" "$(ratio "$answer_rps")"
  printf '%-26s %10s %8s\n' "end-to-end signups/s" "$e2e_rps" "$(ratio "$e2e_rps")"
  echo "answered: $answer_rps/s, p99 $p99 ms, $answered signups; mails accepted by smtp-sink: $mails, still queued: $left"
  echo "drained $(awk -v a="$t_load" -v b="$t_drained" 'BEGIN {printf "%.1f", b - a}') s after the load stopped; end to end over $(awk -v a="$t0" -v b="$t_drained" 'BEGIN {printf "%.1f", b - a}') s"
  # The file-backed part of RSS is mostly listgate's own code, mapped from
  # the page cache: how much of it is mapped differs from run to run by
  # several MB (fresh from a build, more), so the anonymous part is shown too.
  echo "peak RSS: $((peak_rss_kb / 1024)) MB (node 1); its anonymous memory (heap, stacks, SQLite's caches) peaked at $(awk '$6 > m {m = $6} END {printf "%.1f", m / 1024}' "$work/samples") MB"
  # Cost: node 1's CPU per signup over the whole run (its answer and its
  # mail), and per mail once the signups stopped (the outbox alone).
  awk -v tick="$tick" -v t_load="$t_load" -v nodes="$nodes" '
    NR == 1 { c0 = $5 } { last_c = $5; last_s = $3 }
    $1 >= t_load && !d { d = 1; dc = $5; ds = $3 }
    END {
      if (last_s > 0 && nodes == 1) printf "CPU of listgate: %.0f us per signup end to end (answer and mail)\n", (last_c - c0) / tick * 1e6 / last_s
      if (last_s > ds && nodes == 1) printf "CPU of listgate per mail while draining (no signups): %.0f us\n", (last_c - dc) / tick * 1e6 / (last_s - ds)
    }' "$work/samples"
  echo "backlog over time (s since start, mails queued, mails sent per s, RSS MB, of it anonymous MB):"
  awk -v t0="$t0" -v every="$([ "$e2e_seconds" -ge 20 ] && echo 5 || echo 1)" '
    { t = $1 - t0; rate = (NR > 1 && t > pt) ? ($3 - ps) / (t - pt) : 0; pt = t; ps = $3
      if (NR % every == 1 || every == 1) printf "  %6.1f %8d %8.0f %5.1f %5.1f\n", t, $2, rate, $4 / 1024, $6 / 1024 }' "$work/samples"
  if [ "$answered" -gt "$mails" ] || [ "$left" != 0 ]; then
    echo "not every answered signup's mail was accepted (answered $answered, accepted $mails, queued $left)" >&2
    exit 1
  fi
  exit 0
fi

for run in $(seq "$runs"); do load subscribe >> "$work/subscribe.txt"; done

# 3. The outbox drains the backlog the signups left: its rate into smtp-sink.
sent() { sql "SELECT count(*) FROM outbox WHERE state = 'sent'"; }
queued() { sql "SELECT count(*) FROM outbox WHERE state = 'queued'"; }
s0=$(sent); t0=$(date +%s.%N); sleep 3; s1=$(sent); t1=$(date +%s.%N)
outbox_rate=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.0f", (b - a) / (t1 - t0)}')
backlog=$(queued)
# smtp-source into the same sink: 16 parallel sessions, messages the size of a confirmation mail.
mail_bytes=$(($(sql "SELECT length(text_body) + length(html_body) FROM mail_renderings LIMIT 1") + 800))
source_count=$((runs * 5000))
ts0=$(date +%s.%N)
smtp-source -c -s 16 -l "$mail_bytes" -m "$source_count" "127.0.0.1:$sink_port" > /dev/null
ts1=$(date +%s.%N)
source_rate=$(awk -v n="$source_count" -v t0="$ts0" -v t1="$ts1" 'BEGIN {printf "%.0f", n / (t1 - t0)}')

# 4. Confirm: each run its own slice of the signups' tokens.
sql "$token_sql" > "$work/confirm.all"
per_run=$(($(wc -l < "$work/confirm.all") / runs))
for run in $(seq "$runs"); do
  sed -n "$(((run - 1) * per_run + 1)),$((run * per_run))p" "$work/confirm.all" > "$work/confirm.$run"
  load confirm "$work/confirm.$run" >> "$work/confirm.txt"
done

# 5. One-click unsubscribe with the exported URLs of the confirmed.
"$bin" export --format jsonl | python3 -c '
import json, sys, urllib.parse
for line in sys.stdin:
    u = urllib.parse.urlsplit(json.loads(line)["unsubscribe_url"])
    print(u.path + "?" + u.query)' > "$work/unsub.all"
per_run=$(($(wc -l < "$work/unsub.all") / runs))
for run in $(seq "$runs"); do
  sed -n "$(((run - 1) * per_run + 1)),$((run * per_run))p" "$work/unsub.all" > "$work/unsub.$run"
  load unsubscribe "$work/unsub.$run" >> "$work/unsubscribe.txt"
done

peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$lg_pid/status")
rows=$(sql "SELECT count(*) FROM subscriptions")
"$bin" verify > /dev/null

read -r _ hello_rps hello_p99 < <(report hello "$work/hello.txt")
machine
echo "runs: $runs x ${duration}s (confirm, unsubscribe: ${act_duration}s), wrk -t1 -c64; rows at the end: $rows"
printf '%-12s %10s %10s %8s\n' workload req/s p99_ms ratio
printf '%-12s %10s %10s %8s\n' hello "$hello_rps" "$hello_p99" 1.00
for w in subscribe confirm unsubscribe; do
  read -r _ rps p99 < <(report "$w" "$work/$w.txt")
  printf '%-12s %10s %10s %8s\n' "$w" "$rps" "$p99" "$(awk -v a="$rps" -v b="$hello_rps" 'BEGIN {printf "%.2f", a / b}')"
done
echo "peak RSS: $((peak_rss_kb / 1024)) MB (node 1)"
echo "outbox into smtp-sink: $outbox_rate mails/s (backlog left: $backlog); smtp-source: $source_rate mails/s; ratio $(awk -v a="$outbox_rate" -v b="$source_rate" 'BEGIN {printf "%.2f", a / b}')"
