#!/usr/bin/env bash
# Import benchmark (BENCHMARKS.md, "Import"): `listgate import` of a
# Mailchimp audience export of N rows into a new database, against
# `listgate export` of the N rows it made, as the issue measures it.
#
#   benches/import.sh [ROWS...]        default: 100000 1000000
#   benches/import.sh --beside-server ROWS
#
# Each row is a double opt-in as Mailchimp writes it (PHP-style quoting,
# CRLF, merge fields, a name that needs quoting). Prints, per size, the wall
# time and peak RSS (GNU time) of the import and of the export, the ratio,
# and checks that every row came in and `verify` passes (its time and peak
# RSS too: the chain walk and the check of every row). Then the floor:
# the sqlite3 shell writes the same N subscriptions and their proof events
# into listgate's schema, set-based in one transaction (INSERT ... SELECT),
# with nothing parsed, checked or signed: no import that stores those rows
# can be faster here.
#
# --beside-server runs `listgate serve` on the same database and keeps
# signups coming (wrk, 4 connections, benches/post.lua) for as long as the
# import runs: it prints wrk's rate and latency, which the issue wants
# under 50 ms at p99 while a million rows come in.
#
# Needs GNU time (/usr/bin/time), python3 and sqlite3; --beside-server also wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
beside_server=""
if [ "${1:-}" = --beside-server ]; then beside_server=1; shift; fi
cargo build --release --quiet --bin listgate
bin=$PWD/target/release/listgate
sizes=("${@:-100000 1000000}")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
server=""
trap '[ -z "$server" ] || kill "$server" 2> /dev/null; rm -rf "$work"' EXIT

for rows in ${sizes[@]}; do
  file=$work/subscribed_members_export_$rows.csv
  python3 - "$file" "$rows" <<'PY'
import sys
path, rows = sys.argv[1], int(sys.argv[2])
with open(path, "w", newline="") as f:
    f.write('"Email Address","First Name","Last Name",Company,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,'
            'LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS\r\n')
    for i in range(rows):
        f.write(f'user{i}@example.org,Jürgen,"Müller, ""Nr. {i}""","Example GmbH",2,"2021-03-04 08:12:55",192.0.2.{i % 250},'
                f'"2021-03-04 08:14:02",198.51.100.{i % 250},52.5200000,13.4050000,1,2,Europe/Berlin,DE,BE,'
                f'"2024-02-11 19:40:03",{152437811 + i},{i:010x},,"""Customers"""\r\n')
PY
  export LISTGATE_DATABASE__PATH=$work/bench-$rows.db LISTGATE_SECRETS__KEY_FILE=$work/bench-$rows.key
  unset LISTGATE_CONFIG
  cat > "$work/list.toml" <<'TOML'
[[lists]]
id = "newsletter"
name = "Newsletter"
consent_text = "Yes, send me the newsletter."
TOML
  if [ -n "$beside_server" ]; then
    port=$(free_port)
    LISTGATE_SERVER__BIND=127.0.0.1:$port LISTGATE_MAIL__URL=file://$work/mail LISTGATE_LIMITS__SIGNUPS_PER_IP=off \
      LISTGATE_LOG=warn "$bin" --config "$work/list.toml" serve &
    server=$!
    until curl -fs "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.1; done
  fi
  /usr/bin/time -f "%e %M" -o "$work/import.time" "$bin" --config "$work/list.toml" import "$file" --list newsletter > "$work/import.out" 2> /dev/null &
  importer=$!
  if [ -n "$beside_server" ]; then
    # Signups for as long as the import runs, in 5 s runs of wrk.
    while kill -0 "$importer" 2> /dev/null; do
      MODE=subscribe RUN=$SECONDS wrk -t1 -c4 -d5s -s benches/post.lua "http://127.0.0.1:$port" | grep RESULT
    done > "$work/wrk.out"
  fi
  wait "$importer"
  tail -n 1 "$work/import.out"
  if [ -n "$beside_server" ]; then
    kill "$server"; wait "$server" || true; server=""
    # Each 5 s run's line, then the worst p99 of the runs that overlapped the import.
    cat "$work/wrk.out"
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^p99_ms=/) { v = substr($i, 8) + 0; if (v > worst) worst = v } }
      END { printf "RESULT beside_import worst_p99_ms=%.2f\n", worst }' "$work/wrk.out"
  fi
  /usr/bin/time -f "%e %M" -o "$work/export.time" "$bin" --config "$work/list.toml" export --output "$work/out.csv" 2> /dev/null
  # (Beside the server its signups are pending: `export`, confirmed only, has the imported rows.)
  exported=$(($(wc -l < "$work/out.csv") - 1))
  [ "$exported" = "$rows" ] || { echo "exported $exported rows, expected $rows" >&2; exit 1; }
  # verify walks the chain and checks every row against its events.
  /usr/bin/time -f "%e %M" -o "$work/verify.time" "$bin" --config "$work/list.toml" verify > /dev/null
  read -r import_s import_kb < "$work/import.time"
  read -r export_s export_kb < "$work/export.time"
  read -r verify_s verify_kb < "$work/verify.time"
  awk -v n="$rows" -v is="$import_s" -v ik="$import_kb" -v es="$export_s" -v ek="$export_kb" -v vs="$verify_s" -v vk="$verify_kb" 'BEGIN {
    printf "RESULT rows=%d import_s=%.2f import_rss_mb=%.0f rows_per_s=%.0f export_s=%.2f export_rss_mb=%.0f ratio=%.2f verify_s=%.2f verify_rss_mb=%.0f\n",
      n, is, ik / 1024, n / is, es, ek / 1024, is / es, vs, vk / 1024 }'
  rm -f "$file" "$work"/bench-$rows.* "$work/out.csv"

  # The floor: the same rows, written by SQLite alone.
  floor=$work/floor-$rows.db
  sqlite3 "$floor" < schema.sql
  cat > "$work/floor.sql" <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = ON;
INSERT INTO consent_texts VALUES ('c0ffee', 'Yes, send me the newsletter.', '2026-01-01T00:00:00.000Z');
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO subscriptions (list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip, confirmed_at, confirmed_ip)
SELECT 'newsletter', 'user' || i || '@example.org', 'user' || i || '@example.org', 'Jürgen Müller, "Nr. ' || i || '"', 'confirmed',
       'c0ffee', '2021-03-04T08:12:55.000Z', '192.0.2.' || (i % 250), '2021-03-04T08:14:02.000Z', '198.51.100.' || (i % 250) FROM n;
INSERT INTO proof_events (subscription_id, at, kind, ip, detail, key_id, digest, link)
SELECT id, '2026-12-01T06:00:00.000Z', 'imported', NULL,
  '{"list":"newsletter","email":"' || email || '","status":"confirmed","signup_at":"2021-03-04T08:12:55.000Z","signup_ip":"'
  || signup_ip || '","confirmed_at":"2021-03-04T08:14:02.000Z","confirmed_ip":"' || confirmed_ip
  || '","format":"mailchimp","line":' || (id + 1) || ',"values":{"Email Address":"' || email || '"}}',
  1, hex(randomblob(32)), hex(randomblob(32)) FROM subscriptions;
COMMIT;
SQL
  /usr/bin/time -f "%e" -o "$work/floor.time" sqlite3 "$floor" < "$work/floor.sql" > /dev/null
  awk -v n="$rows" -v fs="$(cat "$work/floor.time")" -v es="$export_s" 'BEGIN {
    printf "RESULT rows=%d floor_sqlite3_s=%.2f floor_ratio_to_export=%.2f\n", n, fs, fs / es }'
  rm -f "$floor"*
done
