#!/usr/bin/env bash
# Where a signup's time goes on PostgreSQL (BENCHMARKS.md, "Where a
# signup's time goes"): one fresh throwaway cluster with
# pg_stat_statements, one or two nodes, one subscribe run of wrk, then
#   - the rate (wrk's RESULT line per node),
#   - CPU seconds per process over the run (listgate, postgres, anything
#     else busy on the machine), from /proc,
#   - every statement's calls and server time (pg_stat_statements): calls
#     divided by signups is statements per signup, and `BEGIN` calls are
#     writer batches.
#
#   benches/pg_profile.sh [--bin PATH] [--nodes 1|2] [--duration S] [--delay-ms MS]
#
# --bin compares builds (a worktree's target/release/listgate, run
# alternately with this one); --delay-ms puts benches/delay_proxy.py between
# listgate and the database, delaying each direction: a database on another
# host. Needs what benches/load.sh needs (wrk, postfix, postgresql), as root.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$PWD/target/release/listgate
nodes=1
duration=10
delay_ms=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift ;;
    --nodes) nodes=$2; shift ;;
    --duration) duration=$2; shift ;;
    --delay-ms) delay_ms=$2; shift ;;
    *) echo "usage: benches/pg_profile.sh [--bin PATH] [--nodes 1|2] [--duration S] [--delay-ms MS]" >&2; exit 2 ;;
  esac
  shift
done
[ "$bin" != "$PWD/target/release/listgate" ] || cargo build --release --quiet --bin listgate

work=$(mktemp -d)
chmod 755 "$work"
pgdir=$work/pg
pids=()
pg_stop=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  if [ ${#pg_stop[@]} -gt 0 ]; then "${pg_stop[@]}" > /dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The cluster benches/load.sh makes (benches/pg_cluster.sh), plus pg_stat_statements.
source benches/pg_cluster.sh
start_pg_cluster "$pgdir" "shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
"
direct=$pg_url
sql() { "$pgbin/psql" -X -q -At "$direct" -c "$1"; }
sql "CREATE EXTENSION pg_stat_statements"
export LISTGATE_DATABASE__URL=$direct
if [ -n "$delay_ms" ]; then
  proxy_port=$(free_port)
  python3 benches/delay_proxy.py "$proxy_port" "$pg_port" "$delay_ms" &
  pids+=($!)
  sleep 0.5
  LISTGATE_DATABASE__URL="postgres://listgate@127.0.0.1:$proxy_port/postgres?sslmode=disable"
fi

sink_port=$(free_port)
sink_user=(); if [ "$(id -u)" = 0 ]; then sink_user=(-u nobody); fi
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1000 > /dev/null 2>&1 &
pids+=($!)
export LISTGATE_SECRETS__KEY_FILE=$work/bench.key LISTGATE_MAIL__URL=smtp://127.0.0.1:$sink_port \
  LISTGATE_LIMITS__SIGNUPS_PER_IP=off LISTGATE_LIMITS__SIGNUPS_PER_ADDRESS=off LISTGATE_LIMITS__MAILS_PER_HOUR=off LISTGATE_LOG=warn
unset LISTGATE_CONFIG
ports=()
for i in $(seq "$nodes"); do
  port=$(free_port)
  LISTGATE_SERVER__BIND=127.0.0.1:$port LISTGATE_SERVER__BASE_URL=http://127.0.0.1:$port "$bin" serve 2> "$work/serve.$i.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  ports+=("$port")
done

sql "SELECT pg_stat_statements_reset()" > /dev/null
cpu() { for p in $(pgrep -f "postgres|listgate serve|wrk|rustc|cargo"); do awk -v p="$p" '{print p, $2, $14+$15}' "/proc/$p/stat" 2> /dev/null || true; done | sort; }
cpu > "$work/cpu0"
wrks=()
for i in "${!ports[@]}"; do
  MODE=subscribe RUN=$i wrk -t1 -c$((64 / nodes)) -d"${duration}s" -s benches/post.lua "http://127.0.0.1:${ports[i]}" | grep -E 'RESULT|Non-2xx' &
  wrks+=($!)
done
wait "${wrks[@]}"
cpu > "$work/cpu1"
echo "CPU seconds over the run, per process (clock ticks / 100):"
join "$work/cpu0" "$work/cpu1" | awk '{d = $5 - $3; if (d > 20) printf "  %s %.2f s\n", $2, d / 100}'
echo "signups: $(sql 'SELECT count(*) FROM subscriptions'), mails sent: $(sql "SELECT count(*) FROM outbox WHERE state = 'sent'")"
echo "calls | server ms | statement"
sql "SELECT calls, round(total_exec_time::numeric), left(regexp_replace(query, '\s+', ' ', 'g'), 100)
     FROM pg_stat_statements ORDER BY calls DESC LIMIT 25"
