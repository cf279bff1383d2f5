-- listgate's whole schema. Applied at start by `store::open`, which compares
-- `PRAGMA user_version` with `store::SCHEMA_VERSION` and runs this file, in
-- one transaction, on an empty database or one of an older version (the
-- upgrade steps are at the end). Every statement is idempotent.
--
-- Times are TEXT in UTC with milliseconds, `2026-11-22T07:24:59.123Z`, so they
-- sort as strings and read well in `sqlite3`.

-- A consent text as a list showed it, stored once per distinct text.
CREATE TABLE IF NOT EXISTS consent_texts (
    sha256      TEXT PRIMARY KEY,          -- hex SHA-256 of `text`
    text        TEXT NOT NULL,
    first_seen  TEXT NOT NULL
) WITHOUT ROWID;

-- The page a signup form was on, as the browser named it (`Origin` or
-- `Referer`): origin and path, never a query or fragment. Stored once per
-- distinct page, as consent texts are.
CREATE TABLE IF NOT EXISTS form_pages (
    sha256      TEXT PRIMARY KEY,          -- hex SHA-256 of `page`
    page        TEXT NOT NULL,             -- e.g. https://www.example.com/newsletter
    first_seen  TEXT NOT NULL
) WITHOUT ROWID;

-- A distinct rendering of a confirmation mail (subject and both bodies with
-- per-recipient placeholders), stored once. Together with the per-recipient
-- values in `outbox` it rebuilds the exact message.
CREATE TABLE IF NOT EXISTS mail_renderings (
    sha256      TEXT PRIMARY KEY,          -- hex SHA-256 of the canonical JSON of the fields below
    format      INTEGER NOT NULL,          -- version of `mail::compose`
    sender      TEXT NOT NULL,             -- envelope sender (bare address)
    from_header TEXT NOT NULL,
    reply_to    TEXT,
    subject     TEXT NOT NULL,
    text_body   TEXT NOT NULL,
    html_body   TEXT NOT NULL,
    first_seen  TEXT NOT NULL
) WITHOUT ROWID;

-- One subscription of one address to one list. AUTOINCREMENT so an id is never
-- reused: tokens carry the id, and a purged id must never come back to life.
CREATE TABLE IF NOT EXISTS subscriptions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id             TEXT NOT NULL,
    email               TEXT NOT NULL,     -- as entered (trimmed)
    email_key           TEXT NOT NULL,     -- domain::EmailKey: lowercase local part @ punycode domain
    name                TEXT,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
    consent_sha256      TEXT NOT NULL REFERENCES consent_texts (sha256),
    signup_at           TEXT NOT NULL,
    signup_ip           TEXT NOT NULL,
    confirmed_at        TEXT,
    confirmed_ip        TEXT,
    unsubscribed_at     TEXT,
    unsubscribed_ip     TEXT,
    unsubscribe_method  TEXT CHECK (unsubscribe_method IN ('one-click', 'page', 'admin')),
    form_page_sha256    TEXT REFERENCES form_pages (sha256)  -- NULL when the browser named no page (version 5 on)
);
-- Lookups by address (signup, daily mail cap, show, erase). The only index
-- keyed by address: its pages are scattered, so each one costs a signup and
-- a purge a random page write (version 1 had two; see the upgrade below).
CREATE INDEX IF NOT EXISTS subscriptions_address ON subscriptions (email_key, list_id);
-- At most one live (pending or confirmed) subscription per address and list;
-- unsubscribed ones stay beside a new signup as proof. Triggers over the
-- index above rather than a second, unique index.
CREATE TRIGGER IF NOT EXISTS subscriptions_one_live_insert BEFORE INSERT ON subscriptions
WHEN NEW.status IN ('pending', 'confirmed') AND EXISTS (
    SELECT 1 FROM subscriptions WHERE email_key = NEW.email_key AND list_id = NEW.list_id
                                  AND status IN ('pending', 'confirmed'))
BEGIN
    SELECT RAISE(ABORT, 'one live subscription per address and list');
END;
CREATE TRIGGER IF NOT EXISTS subscriptions_one_live_update BEFORE UPDATE OF status, email_key, list_id ON subscriptions
WHEN NEW.status IN ('pending', 'confirmed')
     AND (OLD.status = 'unsubscribed' OR NEW.email_key IS NOT OLD.email_key OR NEW.list_id IS NOT OLD.list_id)
     AND EXISTS (SELECT 1 FROM subscriptions WHERE email_key = NEW.email_key AND list_id = NEW.list_id
                                              AND status IN ('pending', 'confirmed') AND id <> NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'one live subscription per address and list');
END;
-- Retention: pending signups by age, unsubscribed ones by unsubscribe time.
CREATE INDEX IF NOT EXISTS subscriptions_status_signup ON subscriptions (status, signup_at);
CREATE INDEX IF NOT EXISTS subscriptions_status_unsubscribed ON subscriptions (status, unsubscribed_at)
    WHERE status = 'unsubscribed';

-- Where the evidence of a subscription taken in by `listgate import` came
-- from: another system collected it, and listgate says so wherever it shows
-- the subscription (show, the proof document, the export's `evidence`).
-- Nothing personal: the row's original values are in its `imported` proof
-- event, where erasure blanks them.
CREATE TABLE IF NOT EXISTS imports (
    subscription_id  INTEGER PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    imported_at      TEXT NOT NULL,
    format           TEXT NOT NULL CHECK (format IN ('mailchimp', 'listmonk', 'listgate', 'csv')),
    source_sha256    TEXT NOT NULL,      -- hex SHA-256 of the whole imported file
    line             INTEGER NOT NULL,   -- the row's first line in that file (the header is line 1)
    evidence         TEXT NOT NULL CHECK (evidence IN ('double-opt-in', 'confirmation-only', 'none'))
);

-- Legal holds (`listgate hold EMAIL --reason`; GDPR Art. 17(3)(e)): once a
-- dispute starts, its record must stay. While a subscription has a row here,
-- purge skips it and `listgate erase` refuses it. Placing and releasing a hold
-- are proof events (`legal_hold`, `legal_hold_released`); release deletes the
-- row. Added in version 5 (an upgrade creates it with the file's other tables).
CREATE TABLE IF NOT EXISTS legal_holds (
    subscription_id  INTEGER PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    reason           TEXT NOT NULL,      -- why, as the operator gave it (domain::HoldReason)
    held_at          TEXT NOT NULL
);

-- Mails waiting for, or done with, delivery. A signup is answered only after
-- its row here is committed. The per-recipient values (`message_id`,
-- `date_header`, `to_*`, `link`) are fixed when the row is queued, so a retry
-- sends the same bytes and the message can be rebuilt from them.
CREATE TABLE IF NOT EXISTS outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id   INTEGER NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    rendering_sha256  TEXT NOT NULL REFERENCES mail_renderings (sha256),
    to_email          TEXT NOT NULL,
    to_name           TEXT,
    link              TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    date_header       TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed')),
    created_at        TEXT NOT NULL,
    next_attempt_at   TEXT NOT NULL,       -- also the lease: a claimed row is pushed into the future
    leased            INTEGER NOT NULL DEFAULT 0,  -- 1 while a worker holds it; a restart releases it
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    sent_at           TEXT,
    smtp_reply        TEXT,
    message_sha256    TEXT,
    consent_when      TEXT,                -- when and where the signup was made, as the mail states it
    consent_where     TEXT                 -- (mail format 3 on; NULL on rows queued before version 5)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS outbox_subscription ON outbox (subscription_id, created_at);

-- Calls to a list's `webhook_url`, one per confirmation and unsubscribe,
-- waiting for or done with delivery. The JSON body is built when it is sent,
-- from the subscription, so nothing personal is stored here twice; erasing or
-- purging the subscription takes its calls with it.
CREATE TABLE IF NOT EXISTS webhook_calls (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id  INTEGER NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event            TEXT NOT NULL CHECK (event IN ('confirmed', 'unsubscribed')),
    occurred_at      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed')),
    next_attempt_at  TEXT NOT NULL,       -- also the lease: a claimed call is pushed into the future
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    sent_at          TEXT,
    http_status      INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_calls_due ON webhook_calls (next_attempt_at) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS webhook_calls_subscription ON webhook_calls (subscription_id);

-- Append-only, tamper-evident log of everything that proves consent.
-- digest = HMAC(chain key, canonical event); link = HMAC(chain key, previous link || digest).
-- Erasure blanks the personal columns and keeps id, digest and link, so the
-- chain still verifies and nothing about the person is left.
CREATE TABLE IF NOT EXISTS proof_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id  INTEGER,               -- NULL once erased
    at               TEXT,
    kind             TEXT,
    ip               TEXT,
    detail           TEXT,                  -- JSON, kind-specific
    key_id           INTEGER NOT NULL,
    digest           TEXT NOT NULL,
    link             TEXT NOT NULL,
    erased           INTEGER NOT NULL DEFAULT 0
);
-- Only events not yet erased: erasing one removes its entry instead of
-- moving it to an ever-growing run of NULLs.
CREATE INDEX IF NOT EXISTS proof_events_of_subscription ON proof_events (subscription_id)
    WHERE subscription_id IS NOT NULL;

-- Refuse to update or delete proof events except for erasure, which only
-- blanks personal data.
CREATE TRIGGER IF NOT EXISTS proof_events_no_delete BEFORE DELETE ON proof_events
BEGIN
    SELECT RAISE(ABORT, 'proof events are append-only');
END;
CREATE TRIGGER IF NOT EXISTS proof_events_erase_only BEFORE UPDATE ON proof_events
WHEN NOT (NEW.erased = 1 AND NEW.subscription_id IS NULL AND NEW.at IS NULL AND NEW.kind IS NULL
          AND NEW.ip IS NULL AND NEW.detail IS NULL AND NEW.id = OLD.id
          AND NEW.key_id = OLD.key_id AND NEW.digest = OLD.digest AND NEW.link = OLD.link)
BEGIN
    SELECT RAISE(ABORT, 'proof events are append-only');
END;

-- RFC 3161 timestamp tokens over chain heads (`listgate anchor`, and the
-- server once a day when `proof.tsa_url` is set). Each row says: a
-- Time-Stamp Authority outside the operator's control signed, at `gen_time`,
-- the SHA-256 of the head's text `"EVENTS LINK"` (as `verify` prints it), so
-- the chain with that head existed then (src/anchor/mod.rs). `verify` checks
-- each token's imprint against the chain at `events`. Nothing personal.
CREATE TABLE IF NOT EXISTS anchors (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    events        INTEGER NOT NULL,      -- the head's N: events in the chain when anchored
    link          TEXT NOT NULL,         -- the head's last link, hex
    tsa_url       TEXT NOT NULL,         -- whom listgate asked
    requested_at  TEXT NOT NULL,         -- when listgate asked
    gen_time      TEXT NOT NULL,         -- the TSA's genTime, to the millisecond
    serial        TEXT NOT NULL,         -- the TSA's serialNumber, hex
    token         BLOB NOT NULL          -- the DER TimeStampToken (a CMS ContentInfo)
);
-- Anchors are kept as the TSA signed them: no update, no delete.
CREATE TRIGGER IF NOT EXISTS anchors_no_delete BEFORE DELETE ON anchors
BEGIN
    SELECT RAISE(ABORT, 'anchors are append-only');
END;
CREATE TRIGGER IF NOT EXISTS anchors_no_update BEFORE UPDATE ON anchors
BEGIN
    SELECT RAISE(ABORT, 'anchors are append-only');
END;

-- "I did not sign up": no confirmation mail to this address until `until`.
-- Only a keyed hash of the address's key (domain::EmailKey) is kept.
CREATE TABLE IF NOT EXISTS declined_addresses (
    address_hash  TEXT PRIMARY KEY,
    until         TEXT NOT NULL
) WITHOUT ROWID;

-- Confirmation mails queued to other spellings of an inbox (domain::InboxKey:
-- `+tags` and Gmail's dots folded), for the daily cap
-- `limits.mails_per_address_per_day`; mails to the inbox's own spelling are
-- counted from the outbox. Only a keyed hash of the inbox is kept, for at
-- most two days. One B-tree (WITHOUT ROWID, no second index).
CREATE TABLE IF NOT EXISTS inbox_mails (
    inbox_hash  BLOB NOT NULL,             -- 16 bytes of HMAC(address key, inbox)
    queued_at   TEXT NOT NULL,
    mails       INTEGER NOT NULL,
    PRIMARY KEY (inbox_hash, queued_at)
) WITHOUT ROWID;

-- Anonymous daily counts that outlive purges.
CREATE TABLE IF NOT EXISTS daily_stats (
    day            TEXT NOT NULL,           -- YYYY-MM-DD (UTC)
    list_id        TEXT NOT NULL,
    signups        INTEGER NOT NULL DEFAULT 0,
    confirmations  INTEGER NOT NULL DEFAULT 0,
    unsubscribes   INTEGER NOT NULL DEFAULT 0,
    requests       INTEGER NOT NULL DEFAULT 0,  -- every accepted signup request, new or not
    bots           INTEGER NOT NULL DEFAULT 0,  -- submissions dropped as bots (honeypot, form token)
    PRIMARY KEY (day, list_id)
) WITHOUT ROWID;

-- Upgrade from version 1: its two address indexes became `subscriptions_address`
-- and its triggers; its proof event index became a partial one.
DROP INDEX IF EXISTS subscriptions_live;
DROP INDEX IF EXISTS subscriptions_email_key;
DROP INDEX IF EXISTS proof_events_subscription;
-- Upgrade from version 4: the columns version 5 added (form page, when and
-- where in the mail) are added by `store::migrate`, which checks for each
-- first: SQLite's ALTER TABLE has no IF NOT EXISTS.
