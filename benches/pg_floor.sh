#!/usr/bin/env bash
# The floor under any signup design on PostgreSQL (BENCHMARKS.md, "The
# floor on this machine"): the rows a signup must write, and nothing else,
# written by pgbench in the cheapest form PostgreSQL offers, with no
# listgate and no HTTP in the way. Each pgbench transaction is one writer
# batch of BATCH signups, written as three set-based INSERTs (subscription,
# outbox row, proof event), committed with synchronous_commit on. No reads,
# no counters, no chain arithmetic: a design can only add to this.
#
#   benches/pg_floor.sh [--batch N] [--per-row] [--clients N] [--duration S]
#
# --per-row writes the same rows one statement per row (BATCH x 3 INSERTs
# in the transaction), as listgate's writer does today: the difference to
# the set-based form is what PostgreSQL spends per statement.
#
# Prints pgbench's rate, signups per second (transactions x BATCH), how busy
# the machine was (/proc/stat) and so the CPU time per signup. Needs postgresql
# (its pgbench), as root or as a user that may run initdb.
set -euo pipefail
cd "$(dirname "$0")/.."

batch=32
per_row=""
clients=4
duration=10
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) batch=$2; shift ;;
    --per-row) per_row=1 ;;
    --clients) clients=$2; shift ;;
    --duration) duration=$2; shift ;;
    *) echo "usage: benches/pg_floor.sh [--batch N] [--per-row] [--clients N] [--duration S]" >&2; exit 2 ;;
  esac
  shift
done

work=$(mktemp -d)
chmod 755 "$work"
pg_stop=()
cleanup() {
  if [ ${#pg_stop[@]} -gt 0 ]; then "${pg_stop[@]}" > /dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

source benches/pg_cluster.sh
start_pg_cluster "$work/pg"
sql() { "$pgbin/psql" -X -q -At "$pg_url" "$@"; }
sql -f schema.postgres.sql > /dev/null
sql -c "CREATE SEQUENCE bench_address;
  INSERT INTO consent_texts VALUES ('consent', 'Yes, send me the newsletter.', '2026-12-01T00:00:00.000Z');
  INSERT INTO mail_renderings VALUES ('rendering', 1, 'n@example.com', 'N <n@example.com>', NULL, 'Confirm', 'text', 'html', '2026-12-01T00:00:00.000Z')"

# One writer batch: BATCH new signups, each a subscription, its confirmation
# mail and its signup event, with values as long as listgate's.
cat > "$work/batch.sql" <<SQL
BEGIN;
WITH s AS (
  INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
  SELECT 'newsletter', a, a, 'pending', 'consent', '2026-12-01T12:00:00.000Z', '127.0.0.1'
  FROM (SELECT 'load-' || nextval('bench_address') || '@example.com' AS a FROM generate_series(1, $batch)) n
  RETURNING id, email
), o AS (
  INSERT INTO outbox (subscription_id, rendering_sha256, to_email, link, message_id, date_header, state, created_at, next_attempt_at)
  SELECT id, 'rendering', email, 'http://127.0.0.1:8080/confirm?token=' || repeat('x', 120),
         '<' || md5(email) || '@listgate>', 'Tue, 01 Dec 2026 12:00:00 +0000', 'queued',
         '2026-12-01T12:00:00.000Z', '2026-12-01T12:00:00.000Z'
  FROM s
)
INSERT INTO proof_events (subscription_id, at, kind, ip, detail, key_id, digest, link)
SELECT id, '2026-12-01T12:00:00.000Z', 'signup', '127.0.0.1', '{"consent":"' || repeat('c', 64) || '"}', 1, md5(email) || md5(email), md5(email) || md5(email)
FROM s;
COMMIT;
SQL
if [ -n "$per_row" ]; then
  # The same rows, one INSERT each, the id carried in a pgbench variable
  # (random addresses: a clash in 10^15 is not expected in a run).
  {
    echo "BEGIN;"
    for _ in $(seq "$batch"); do
      cat <<'SQL'
\set n random(1, 1000000000000000)
INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
  VALUES ('newsletter', 'load-' || :n || '@example.com', 'load-' || :n || '@example.com', 'pending', 'consent', '2026-12-01T12:00:00.000Z', '127.0.0.1')
  RETURNING id AS sid \gset
INSERT INTO outbox (subscription_id, rendering_sha256, to_email, link, message_id, date_header, state, created_at, next_attempt_at)
  VALUES (:sid, 'rendering', 'load-' || :n || '@example.com', 'http://127.0.0.1:8080/confirm?token=' || repeat('x', 120), '<' || md5(:n::text) || '@listgate>',
          'Tue, 01 Dec 2026 12:00:00 +0000', 'queued', '2026-12-01T12:00:00.000Z', '2026-12-01T12:00:00.000Z');
INSERT INTO proof_events (subscription_id, at, kind, ip, detail, key_id, digest, link)
  VALUES (:sid, '2026-12-01T12:00:00.000Z', 'signup', '127.0.0.1', '{"consent":"' || repeat('c', 64) || '"}', 1, md5(:n::text) || md5(:n::text), md5(:n::text) || md5(:n::text));
SQL
    done
    echo "COMMIT;"
  } > "$work/batch.sql"
fi

busy_ticks() { # all CPUs: busy and total clock ticks so far, from /proc/stat
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat
}
read -r busy0 total0 < <(busy_ticks)
bench_out=$("$pgbin/pgbench" -n -M prepared -c "$clients" -j 2 -T "$duration" -f "$work/batch.sql" "$pg_url" 2>&1)
read -r busy1 total1 < <(busy_ticks)
tps=$(grep -oP 'tps = \K[0-9.]+' <<< "$bench_out" | head -n 1)
echo "$bench_out" | grep -E 'latency average|tps ='
# Machine-wide CPU over the run: PostgreSQL and pgbench (whose share is small:
# it only sends the script's text) on both cores.
awk -v tps="$tps" -v b="$batch" -v busy=$((busy1 - busy0)) -v total=$((total1 - total0)) -v d="$duration" -v cores="$(nproc)" -v per_row="$per_row" 'BEGIN {
  form = per_row ? "per-row" : "set-based"
  used = busy / total * cores * d
  printf "RESULT form=%s batch=%d signups_per_s=%.0f machine_busy=%.0f%% cpu_us_per_signup=%.1f\n", form, b, tps * b, busy / total * 100, used / (tps * b * d) * 1e6 }'
