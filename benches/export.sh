#!/usr/bin/env bash
# Export benchmark: `listgate export` of N confirmed subscribers to CSV,
# against the sqlite3 shell writing the same stored columns as CSV.
#
#   benches/export.sh [ROWS...]        default: 100000 1000000
#
# Prints, per size, the median of 3 runs of wall time and peak RSS for both.
# listgate writes 3 more columns than sqlite3 can (the HMAC-signed
# unsubscribe URL and the List-Unsubscribe values), so it does strictly more
# work per row. Needs: sqlite3 (Debian sqlite3), GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/listgate
sizes=("${@:-100000 1000000}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for rows in ${sizes[@]}; do
  db=$work/bench-$rows.db
  # Schema exactly as listgate applies it, then N confirmed rows with names
  # that need CSV quoting (comma, quote, umlaut).
  sqlite3 "$db" < schema.sql
  sqlite3 "$db" "PRAGMA user_version = 1; PRAGMA journal_mode = WAL;" > /dev/null
  sqlite3 "$db" <<SQL
INSERT INTO consent_texts VALUES ('c0ffee', 'Yes, send me the newsletter.', '2026-01-01T00:00:00.000Z');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO subscriptions (list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip, confirmed_at, confirmed_ip)
SELECT 'newsletter', 'user' || i || '@example.org', 'user' || i || '@example.org', 'Müller, "Nr. ' || i || '"', 'confirmed', 'c0ffee',
       '2026-01-01T10:00:00.000Z', '192.0.2.' || (i % 250), '2026-01-01T10:05:00.000Z', '198.51.100.' || (i % 250) FROM n;
SQL
  (cd "$work" && LISTGATE_SECRETS__KEY_FILE=$work/bench.key "$bin" keygen --write 2>/dev/null)
  unset LISTGATE_CONFIG
  export LISTGATE_DATABASE__PATH=$db LISTGATE_SECRETS__KEY_FILE=$work/bench.key
  : > "$work/lg.times"; : > "$work/sq.times"
  for run in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$work/t" "$bin" export --output "$work/out.csv" 2>/dev/null
    cat "$work/t" >> "$work/lg.times"
    /usr/bin/time -f "%e %M" -o "$work/t" sqlite3 -csv -header "$db" \
      "SELECT email, name, list_id, status, signup_at, signup_ip, consent_sha256, confirmed_at, confirmed_ip, unsubscribed_at
       FROM subscriptions WHERE status = 'confirmed' ORDER BY id" > "$work/sq.csv"
    cat "$work/t" >> "$work/sq.times"
  done
  lines=$(($(wc -l < "$work/out.csv") - 1))
  [ "$lines" = "$rows" ] || { echo "export wrote $lines rows, expected $rows" >&2; exit 1; }
  lg_s=$(cut -d' ' -f1 "$work/lg.times" | median); lg_kb=$(cut -d' ' -f2 "$work/lg.times" | median)
  sq_s=$(cut -d' ' -f1 "$work/sq.times" | median); sq_kb=$(cut -d' ' -f2 "$work/sq.times" | median)
  ratio=$(awk -v a="$lg_s" -v b="$sq_s" 'BEGIN {printf "%.2f", a / b}')
  printf 'rows=%s listgate: %ss, peak RSS %s MB | sqlite3 shell: %ss, peak RSS %s MB | time ratio %s\n' \
    "$rows" "$lg_s" "$((lg_kb / 1024))" "$sq_s" "$((sq_kb / 1024))" "$ratio"
  rm -f "$db" "$db-wal" "$db-shm" "$work/bench.key"
done
