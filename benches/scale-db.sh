#!/usr/bin/env bash
# Fills a listgate database (created by `listgate serve`, so it has the
# schema, the consent text and the mail rendering) with ROWS subscriptions
# the way listgate stores them, for benches/scale.sh:
#
#   benches/scale-db.sh DB ROWS BASE_URL
#
# 60% confirmed, 20% pending since 2021 (past `retention.unconfirmed`), 20%
# unsubscribed in early 2022 (past the default 4-year
# `retention.after_unsubscribe`), each with a signup and a mail_sent proof event and a sent outbox row.
# Times grow with the id, as they do when rows arrive over the years. The
# proof chain's hashes are random: the purge and the start-up never read
# them (`listgate verify` would rightly fail on this fixture).
set -euo pipefail
db=$1 rows=$2 base=$3
consent=$(sqlite3 "$db" "SELECT sha256 FROM consent_texts LIMIT 1")
rendering=$(sqlite3 "$db" "SELECT sha256 FROM mail_renderings LIMIT 1")
# Bulk load without a journal and with a large cache (it is a benchmark
# fixture, not data), then back to WAL, which listgate expects.
sqlite3 "$db" > /dev/null <<SQL
PRAGMA journal_mode = DELETE;
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -1000000;
BEGIN;
INSERT INTO subscriptions (id, list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip,
                           confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method)
SELECT value, 'newsletter', 'user' || value || '@example.org', 'user' || value || '@example.org',
       CASE WHEN value % 3 = 0 THEN 'Name ' || value END,
       CASE value % 5 WHEN 0 THEN 'pending' WHEN 1 THEN 'unsubscribed' ELSE 'confirmed' END,
       '$consent', strftime('%Y-%m-%dT%H:%M:%fZ', '2021-01-01', '+' || (value * 3) || ' seconds'),
       '198.51.100.' || (value % 250),
       CASE WHEN value % 5 >= 2 THEN strftime('%Y-%m-%dT%H:%M:%fZ', '2021-01-01 01:00', '+' || (value * 3) || ' seconds') END,
       CASE WHEN value % 5 >= 2 THEN '198.51.100.' || (value % 250) END,
       CASE WHEN value % 5 = 1 THEN strftime('%Y-%m-%dT%H:%M:%fZ', '2022-01-01', '+' || value || ' seconds') END,
       CASE WHEN value % 5 = 1 THEN '203.0.113.7' END,
       CASE WHEN value % 5 = 1 THEN 'one-click' END
FROM generate_series(1, $rows);
INSERT INTO outbox (id, subscription_id, rendering_sha256, to_email, link, message_id, date_header, state,
                    created_at, next_attempt_at, attempts, sent_at, smtp_reply, message_sha256)
SELECT value, value, '$rendering', 'user' || value || '@example.org',
       '$base/confirm?token=' || hex(randomblob(60)), '<' || hex(randomblob(16)) || '@localhost>',
       'Fri, 01 Jan 2021 00:00:00 +0000', 'sent', '2021-01-01T00:00:00.000Z', '2021-01-01T00:00:00.000Z', 1,
       '2021-01-01T00:00:01.000Z', '250 2.0.0 Ok: queued', lower(hex(randomblob(32)))
FROM generate_series(1, $rows);
INSERT INTO proof_events (subscription_id, at, kind, ip, detail, key_id, digest, link)
SELECT value / 2 + 1, '2021-01-01T00:00:00.000Z', CASE value % 2 WHEN 0 THEN 'signup' ELSE 'mail_sent' END,
       CASE value % 2 WHEN 0 THEN '198.51.100.1' END,
       CASE value % 2 WHEN 0 THEN '{"list":"newsletter","email":"user' || (value / 2 + 1) || '@example.org"}'
            ELSE '{"smtp_reply":"250 2.0.0 Ok: queued"}' END,
       1, lower(hex(randomblob(32))), lower(hex(randomblob(32)))
FROM generate_series(0, 2 * $rows - 1);
COMMIT;
PRAGMA journal_mode = WAL;
SQL
