#!/usr/bin/env bash
# Import benchmark (BENCHMARKS.md, "Import"): `listgate import` of a
# Mailchimp audience export of N rows into a new database, against
# `listgate export` of the N rows it made, as the issue measures it.
#
#   benches/import.sh [ROWS...]        default: 100000 1000000
#
# Each row is a double opt-in as Mailchimp writes it (PHP-style quoting,
# CRLF, merge fields, a name that needs quoting). Prints, per size, the wall
# time and peak RSS (GNU time) of the import and of the export, the ratio,
# and checks that every row came in and `verify` passes. Needs GNU time
# (/usr/bin/time) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin listgate
bin=$PWD/target/release/listgate
sizes=("${@:-100000 1000000}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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
  /usr/bin/time -f "%e %M" -o "$work/import.time" "$bin" --config "$work/list.toml" import "$file" --list newsletter > "$work/import.out" 2> /dev/null
  tail -n 1 "$work/import.out"
  /usr/bin/time -f "%e %M" -o "$work/export.time" "$bin" --config "$work/list.toml" export --output "$work/out.csv" 2> /dev/null
  exported=$(($(wc -l < "$work/out.csv") - 1))
  [ "$exported" = "$rows" ] || { echo "exported $exported rows, expected $rows" >&2; exit 1; }
  "$bin" --config "$work/list.toml" verify > /dev/null
  read -r import_s import_kb < "$work/import.time"
  read -r export_s export_kb < "$work/export.time"
  awk -v n="$rows" -v is="$import_s" -v ik="$import_kb" -v es="$export_s" -v ek="$export_kb" 'BEGIN {
    printf "RESULT rows=%d import_s=%.2f import_rss_mb=%.0f rows_per_s=%.0f export_s=%.2f export_rss_mb=%.0f ratio=%.2f\n",
      n, is, ik / 1024, n / is, es, ek / 1024, is / es }'
  rm -f "$file" "$work"/bench-$rows.* "$work/out.csv"
done
