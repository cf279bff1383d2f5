//! Every SQL statement listgate runs, each named and documented with its
//! parameters, next to a small typed function that runs it. Statements are
//! prepared through rusqlite's statement cache; `every_statement_prepares`
//! prepares them all against `schema.sql`, so a typo fails the tests.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::db::*;
use crate::clock::Timestamp;
use crate::domain::{EmailKey, Evidence, ImportFormat, InboxKey, Status, UnsubscribeMethod, WebhookEvent};

/// Defines each statement as a `pub const` and lists every one of them in
/// `ALL`, generated, so no statement can be left out of the test that
/// prepares them (`every_statement_prepares`).
macro_rules! statements {
    ($($(#[$doc:meta])* pub const $name:ident: &str = $sql:expr;)+) => {
        $($(#[$doc])* pub const $name: &str = $sql;)+

        /// Every statement, by name, for the test that prepares them all.
        pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $name)),+];
    };
}

statements! {
    /// Params: sha256, text, now. Stores a consent text once.
    pub const INSERT_CONSENT_TEXT: &str =
        "INSERT OR IGNORE INTO consent_texts (sha256, text, first_seen) VALUES (?1, ?2, ?3)";

    /// Params: sha256, format, sender, from_header, reply_to, subject, text_body, html_body, now.
    /// Stores a mail rendering once.
    pub const INSERT_RENDERING: &str = "INSERT OR IGNORE INTO mail_renderings
        (sha256, format, sender, from_header, reply_to, subject, text_body, html_body, first_seen)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

    /// Params: sha256. One rendering.
    pub const SELECT_RENDERING: &str = "SELECT format, sender, from_header, reply_to, subject, text_body, html_body
        FROM mail_renderings WHERE sha256 = ?1";

    /// Params: list_id, email_key. The live (pending or confirmed) subscription of an address.
    pub const SELECT_LIVE_SUBSCRIPTION: &str =
        "SELECT id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE list_id = ?1 AND email_key = ?2 AND status IN ('pending', 'confirmed')";

    /// Params: id. One subscription by id.
    pub const SELECT_SUBSCRIPTION: &str = "SELECT id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE id = ?1";

    /// Params: list_id, email, email_key, name, consent_sha256, now, ip, form_page_sha256.
    /// A new pending signup.
    pub const INSERT_SUBSCRIPTION: &str = "INSERT INTO subscriptions
        (list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip, form_page_sha256)
        VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8)";

    /// Params: sha256, page, now. Stores a form page (origin and path) once.
    pub const INSERT_FORM_PAGE: &str =
        "INSERT OR IGNORE INTO form_pages (sha256, page, first_seen) VALUES (?1, ?2, ?3)";

    /// Params: sha256. One form page.
    pub const SELECT_FORM_PAGE: &str = "SELECT page FROM form_pages WHERE sha256 = ?1";

    /// Params: list_id, email, email_key, name, status, consent_sha256, signup_at,
    /// signup_ip, confirmed_at, confirmed_ip, unsubscribed_at. A subscription
    /// taken in by `listgate import`, in its state with the file's evidence.
    pub const INSERT_IMPORTED_SUBSCRIPTION: &str = "INSERT INTO subscriptions
        (list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip,
         confirmed_at, confirmed_ip, unsubscribed_at)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

    /// Params: subscription_id, imported_at, format, source_sha256, line, evidence.
    /// Where an imported subscription's evidence came from.
    pub const INSERT_IMPORT: &str = "INSERT INTO imports
        (subscription_id, imported_at, format, source_sha256, line, evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

    /// Params: list_id, email_key. The address's first subscription on the
    /// list, in any state, by id and status: what `import` checks per row.
    pub const FIRST_SUBSCRIPTION_ON_LIST: &str =
        "SELECT id, status FROM subscriptions WHERE email_key = ?2 AND list_id = ?1 ORDER BY id LIMIT 1";

    /// Params: subscription_id. Where its evidence came from, if imported.
    pub const SELECT_IMPORT: &str =
        "SELECT imported_at, format, source_sha256, line, evidence FROM imports WHERE subscription_id = ?1";

    /// Params: id, now, ip. Pending becomes confirmed; no-op otherwise.
    pub const CONFIRM_SUBSCRIPTION: &str =
        "UPDATE subscriptions SET status = 'confirmed', confirmed_at = ?2, confirmed_ip = ?3
        WHERE id = ?1 AND status = 'pending'";

    /// Params: id, now, ip, method. Pending or confirmed becomes unsubscribed; no-op otherwise.
    pub const UNSUBSCRIBE_SUBSCRIPTION: &str = "UPDATE subscriptions
        SET status = 'unsubscribed', unsubscribed_at = ?2, unsubscribed_ip = ?3, unsubscribe_method = ?4
        WHERE id = ?1 AND status IN ('pending', 'confirmed')";

    /// Params: id. Deletes a subscription (its outbox rows go with it).
    pub const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = ?1";

    /// Params: subscription_id, rendering_sha256, to_email, link, message_id, date_header, now,
    /// consent_when, consent_where. Queues a confirmation mail. `to_name` stays NULL: no name
    /// goes into a mail (the column holds the names of mails sent before, to rebuild them).
    pub const INSERT_OUTBOX: &str = "INSERT INTO outbox
        (subscription_id, rendering_sha256, to_email, link, message_id, date_header, state, created_at, next_attempt_at,
         consent_when, consent_where)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?7, ?8, ?9)";

    /// Params: subscription_id, since. Mails queued for a subscription since a time: count and latest.
    pub const RECENT_MAILS: &str =
        "SELECT count(*), max(created_at) FROM outbox WHERE subscription_id = ?1 AND created_at >= ?2";

    /// Params: now, lease_until, limit. Claims due rows: pushes them `lease_until`
    /// into the future (so a crash mid-delivery retries them then) and counts the attempt.
    pub const CLAIM_DUE_MAILS: &str = "UPDATE outbox SET next_attempt_at = ?2, attempts = attempts + 1, leased = 1
        WHERE id IN (SELECT id FROM outbox WHERE state = 'queued' AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at LIMIT ?3)
        RETURNING id, subscription_id, rendering_sha256, to_email, to_name, link, message_id, date_header, created_at, attempts,
                  consent_when, consent_where";

    /// Params: id. The stored values of one mail, for rebuilding it.
    pub const SELECT_OUTBOX_MAIL: &str =
        "SELECT rendering_sha256, to_email, to_name, link, message_id, date_header, message_sha256, consent_when, consent_where
        FROM outbox WHERE id = ?1";

    /// Params: since. When each mail the server took after `since` was taken,
    /// oldest first: seeds `limits.mails_per_hour`'s count at start.
    pub const SENT_MAILS_SINCE: &str =
        "SELECT sent_at FROM outbox WHERE state = 'sent' AND sent_at > ?1 ORDER BY sent_at";

    /// No params. When the next queued mail is due.
    pub const NEXT_DUE_MAIL: &str = "SELECT min(next_attempt_at) FROM outbox WHERE state = 'queued'";

    /// Params: id, now, smtp_reply, message_sha256. The server took the mail.
    pub const MARK_MAIL_SENT: &str = "UPDATE outbox SET state = 'sent', sent_at = ?2, smtp_reply = ?3, message_sha256 = ?4, last_error = NULL, leased = 0
        WHERE id = ?1 AND state = 'queued'";

    /// Params: id, next_attempt_at, error. A temporary failure: try again later.
    pub const MARK_MAIL_RETRY: &str =
        "UPDATE outbox SET next_attempt_at = ?2, last_error = ?3, leased = 0 WHERE id = ?1 AND state = 'queued'";

    /// Params: id, error. A permanent failure (or a day of temporary ones): give up.
    pub const MARK_MAIL_FAILED: &str =
        "UPDATE outbox SET state = 'failed', last_error = ?2, leased = 0 WHERE id = ?1 AND state = 'queued'";

    /// Params: now. At start: mails a previous run had claimed but not finished
    /// (it crashed or was killed) are due again now.
    pub const RELEASE_LEASES: &str =
        "UPDATE outbox SET leased = 0, next_attempt_at = ?1 WHERE state = 'queued' AND leased = 1";

    /// No params. At start: mails queued by a listgate that still greeted by
    /// name go out without it (their rendering's `%%LISTGATE_NAME%%` is
    /// filled with nothing), so no form text reaches a mail after an upgrade.
    /// Sent mails keep theirs: it is part of what they were, for the rebuild.
    pub const FORGET_QUEUED_MAIL_NAMES: &str =
        "UPDATE outbox SET to_name = NULL WHERE state = 'queued' AND to_name IS NOT NULL";

    /// No params. The newest event's link, which the next event chains to.
    pub const LAST_PROOF_LINK: &str = "SELECT link FROM proof_events ORDER BY id DESC LIMIT 1";

    /// Params: subscription_id, at, kind, ip, detail, key_id, digest, link. Appends a proof event.
    pub const INSERT_PROOF_EVENT: &str =
        "INSERT INTO proof_events (subscription_id, at, kind, ip, detail, key_id, digest, link)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

    /// Params: id. The link of the event before an event, which that event chains to.
    pub const PREVIOUS_PROOF_LINK: &str = "SELECT link FROM proof_events WHERE id < ?1 ORDER BY id DESC LIMIT 1";

    /// Params: after_id, limit. Events in chain order, a page at a time.
    pub const SELECT_PROOF_EVENTS: &str = "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link, erased
        FROM proof_events WHERE id > ?1 ORDER BY id LIMIT ?2";

    /// Params: after_id, limit. A page of subscriptions by id, for `verify`
    /// to check each row against its events.
    pub const SELECT_SUBSCRIPTIONS_PAGE: &str = "SELECT id, list_id, email, name, status, consent_sha256, signup_at,
        signup_ip, confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE id > ?1 ORDER BY id LIMIT ?2";

    /// Params: after_subscription_id, up_to_subscription_id. The events not
    /// yet erased of the subscriptions in that id range, by subscription and
    /// then in chain order.
    pub const SELECT_PROOF_EVENTS_OF_RANGE: &str =
        "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link, erased
        FROM proof_events WHERE subscription_id > ?1 AND subscription_id <= ?2 ORDER BY subscription_id, id";

    /// Params: subscription_id. One subscription's events.
    pub const SELECT_PROOF_EVENTS_OF: &str =
        "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link, erased
        FROM proof_events WHERE subscription_id = ?1 ORDER BY id";

    /// Params: subscription_id. Blanks the personal data of a subscription's
    /// events, keeping the chain links.
    pub const ERASE_PROOF_EVENTS: &str = "UPDATE proof_events
        SET subscription_id = NULL, at = NULL, kind = NULL, ip = NULL, detail = NULL, erased = 1
        WHERE subscription_id = ?1";

    /// Params: address_hash, until. Blocks confirmation mails to an address.
    pub const UPSERT_DECLINED: &str = "INSERT INTO declined_addresses (address_hash, until) VALUES (?1, ?2)
        ON CONFLICT (address_hash) DO UPDATE SET until = max(until, excluded.until)";

    /// Params: address_hash, now. Whether the address is blocked now.
    pub const IS_DECLINED: &str = "SELECT 1 FROM declined_addresses WHERE address_hash = ?1 AND until > ?2";

    /// Params: day, list_id. Counts a signup.
    pub const COUNT_SIGNUP: &str = "INSERT INTO daily_stats (day, list_id, signups) VALUES (?1, ?2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET signups = signups + 1";

    /// Params: day, list_id. Counts a confirmation.
    pub const COUNT_CONFIRMATION: &str = "INSERT INTO daily_stats (day, list_id, confirmations) VALUES (?1, ?2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET confirmations = confirmations + 1";

    /// Params: day, list_id. Counts an unsubscribe.
    pub const COUNT_UNSUBSCRIBE: &str = "INSERT INTO daily_stats (day, list_id, unsubscribes) VALUES (?1, ?2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET unsubscribes = unsubscribes + 1";

    /// Params: list_id or NULL, status or NULL, since or NULL. Subscriptions to
    /// export, in id order; `since` matches rows whose latest event (signup,
    /// confirmation or unsubscribe) is at or after it. `evidence` is the
    /// import's, or for listgate's own: double opt-in once confirmed.
    pub const EXPORT_SUBSCRIPTIONS: &str = "SELECT s.id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at,
        coalesce(i.evidence, CASE WHEN confirmed_at IS NULL THEN 'none' ELSE 'double-opt-in' END), i.imported_at,
        p.page
        FROM subscriptions s LEFT JOIN imports i ON i.subscription_id = s.id
        LEFT JOIN form_pages p ON p.sha256 = s.form_page_sha256
        WHERE (?1 IS NULL OR list_id = ?1) AND (?2 IS NULL OR status = ?2)
          AND (?3 IS NULL OR max(signup_at, coalesce(confirmed_at, ''), coalesce(unsubscribed_at, '')) >= ?3)
        ORDER BY s.id";

    /// Params as `EXPORT_SUBSCRIPTIONS`. How many rows it will give (for progress bars).
    pub const COUNT_EXPORT_SUBSCRIPTIONS: &str = "SELECT count(*) FROM subscriptions
        WHERE (?1 IS NULL OR list_id = ?1) AND (?2 IS NULL OR status = ?2)
          AND (?3 IS NULL OR max(signup_at, coalesce(confirmed_at, ''), coalesce(unsubscribed_at, '')) >= ?3)";

    /// Params: email_key. Every subscription of an address, on every list.
    pub const SUBSCRIPTIONS_OF_ADDRESS: &str =
        "SELECT id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE email_key = ?1 ORDER BY id";

    /// Params: subscription_id. The mails of a subscription.
    pub const MAILS_OF_SUBSCRIPTION: &str =
        "SELECT id, state, created_at, attempts, last_error, sent_at, smtp_reply, message_id, message_sha256
        FROM outbox WHERE subscription_id = ?1 ORDER BY id";

    /// Params: sha256. A consent text.
    pub const SELECT_CONSENT_TEXT: &str = "SELECT text FROM consent_texts WHERE sha256 = ?1";

    /// Params: id, name. Rectifies the stored name.
    pub const UPDATE_NAME: &str = "UPDATE subscriptions SET name = ?2 WHERE id = ?1";

    /// Params: pending_before, unsubscribed_before, limit. Subscriptions past
    /// their retention: pending ones signed up before the first cutoff;
    /// unsubscribed ones that were confirmed and left before the second (kept
    /// as proof of consent); unsubscribed ones never confirmed, which prove no
    /// consent, like pending ones from their signup. Confirmed ones never, and
    /// none under a legal hold (`legal_holds`).
    pub const PURGE_CANDIDATES: &str =
        "SELECT id, list_id, status FROM subscriptions
            WHERE status = 'pending' AND signup_at < ?1
              AND id NOT IN (SELECT subscription_id FROM legal_holds)
        UNION ALL
        SELECT id, list_id, status FROM subscriptions
            WHERE status = 'unsubscribed' AND confirmed_at IS NOT NULL AND unsubscribed_at < ?2
              AND id NOT IN (SELECT subscription_id FROM legal_holds)
        UNION ALL
        SELECT id, list_id, status FROM subscriptions
            WHERE status = 'unsubscribed' AND confirmed_at IS NULL AND signup_at < ?1
              AND id NOT IN (SELECT subscription_id FROM legal_holds)
        LIMIT ?3";

    /// Params: pending_before, unsubscribed_before. What a purge would erase,
    /// per list and state (the rows of `PURGE_CANDIDATES`).
    pub const PURGE_PLAN: &str = "SELECT list_id, status, count(*) FROM (
            SELECT list_id, status FROM subscriptions
                WHERE status = 'pending' AND signup_at < ?1
                  AND id NOT IN (SELECT subscription_id FROM legal_holds)
            UNION ALL
            SELECT list_id, status FROM subscriptions
                WHERE status = 'unsubscribed' AND confirmed_at IS NOT NULL AND unsubscribed_at < ?2
                  AND id NOT IN (SELECT subscription_id FROM legal_holds)
            UNION ALL
            SELECT list_id, status FROM subscriptions
                WHERE status = 'unsubscribed' AND confirmed_at IS NULL AND signup_at < ?1
                  AND id NOT IN (SELECT subscription_id FROM legal_holds))
        GROUP BY list_id, status ORDER BY list_id, status";

    /// Params: pending_before, unsubscribed_before. How many subscriptions
    /// past their retention (as `PURGE_CANDIDATES` reads it) a legal hold
    /// keeps: what a purge reports it skipped. Driven by `legal_holds`, which
    /// is small.
    pub const COUNT_HELD_PAST_RETENTION: &str = "SELECT count(*) FROM legal_holds h
        JOIN subscriptions s ON s.id = h.subscription_id
        WHERE (s.status = 'pending' AND s.signup_at < ?1)
           OR (s.status = 'unsubscribed' AND s.confirmed_at IS NOT NULL AND s.unsubscribed_at < ?2)
           OR (s.status = 'unsubscribed' AND s.confirmed_at IS NULL AND s.signup_at < ?1)";

    /// Params: subscription_id, reason, now. Places a legal hold; a
    /// subscription already held keeps its first (nothing is inserted).
    pub const INSERT_LEGAL_HOLD: &str = "INSERT INTO legal_holds (subscription_id, reason, held_at)
        VALUES (?1, ?2, ?3) ON CONFLICT (subscription_id) DO NOTHING";

    /// Params: subscription_id. The legal hold on a subscription.
    pub const SELECT_LEGAL_HOLD: &str = "SELECT reason, held_at FROM legal_holds WHERE subscription_id = ?1";

    /// Params: after_subscription_id, up_to_subscription_id. The legal holds
    /// on the subscriptions in that id range, by subscription (`verify`).
    pub const SELECT_LEGAL_HOLDS_OF_RANGE: &str = "SELECT subscription_id, reason, held_at FROM legal_holds
        WHERE subscription_id > ?1 AND subscription_id <= ?2 ORDER BY subscription_id";

    /// Params: subscription_id. Releases a legal hold.
    pub const DELETE_LEGAL_HOLD: &str = "DELETE FROM legal_holds WHERE subscription_id = ?1";

    /// Params: now. Decline blocks whose time is over.
    pub const DELETE_EXPIRED_DECLINES: &str = "DELETE FROM declined_addresses WHERE until <= ?1";

    /// Params: now. How many decline blocks are over.
    pub const COUNT_EXPIRED_DECLINES: &str = "SELECT count(*) FROM declined_addresses WHERE until <= ?1";

    /// No params. Subscriptions per list and state.
    pub const COUNT_BY_STATUS: &str =
        "SELECT list_id, status, count(*) FROM subscriptions GROUP BY list_id, status ORDER BY list_id, status";

    /// Params: first_day. Daily counts since a day.
    pub const DAILY_STATS_SINCE: &str = "SELECT day, list_id, signups, confirmations, unsubscribes FROM daily_stats
        WHERE day >= ?1 ORDER BY day, list_id";

    /// Params: file. An online, consistent copy of the whole database.
    pub const BACKUP_INTO: &str = "VACUUM INTO ?1";

    /// No params. How many proof events there are (for progress bars).
    pub const COUNT_PROOF_EVENTS: &str = "SELECT count(*) FROM proof_events";

    /// All subscriptions, counted on an index (no sort, unlike `COUNT_BY_STATUS`,
    /// whose grouping sorts every row in memory).
    pub const COUNT_SUBSCRIPTIONS: &str = "SELECT count(*) FROM subscriptions";

    /// Params: day, list_id. Counts a signup request (every path writes, so every
    /// answer waits for the same commit: no timing difference between a new and
    /// a known address).
    pub const COUNT_REQUEST: &str = "INSERT INTO daily_stats (day, list_id, requests) VALUES (?1, ?2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET requests = requests + 1";

    /// Params: day, list_id. Counts a submission dropped as a bot's.
    pub const COUNT_BOT: &str = "INSERT INTO daily_stats (day, list_id, bots) VALUES (?1, ?2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET bots = bots + 1";

    /// Params: inbox, since. Mails queued since a time, on any list, to the
    /// address whose key is the inbox itself (`anna@example.org` for the
    /// inbox of `anna+news@example.org`): the common case, counted from the
    /// outbox with no write of its own.
    pub const MAILS_TO_INBOX_ITSELF_SINCE: &str =
        "SELECT count(*) FROM outbox o JOIN subscriptions s ON s.id = o.subscription_id
        WHERE s.email_key = ?1 AND o.created_at >= ?2";

    /// Params: inbox_hash, now. A confirmation mail queued to another
    /// spelling of an inbox (a `+tag`, Gmail's dots), for the daily cap.
    pub const INSERT_INBOX_MAIL: &str = "INSERT INTO inbox_mails (inbox_hash, queued_at, mails) VALUES (?1, ?2, 1)
        ON CONFLICT (inbox_hash, queued_at) DO UPDATE SET mails = mails + 1";

    /// Params: inbox_hash, since. Confirmation mails queued to other
    /// spellings of an inbox since a time.
    pub const COUNT_INBOX_MAILS_SINCE: &str =
        "SELECT coalesce(sum(mails), 0) FROM inbox_mails WHERE inbox_hash = ?1 AND queued_at >= ?2";

    /// Params: before. Forgets the inbox counts the daily cap no longer looks
    /// at (a scan of one day's rows, once a day).
    pub const DELETE_OLD_INBOX_MAILS: &str = "DELETE FROM inbox_mails WHERE queued_at < ?1";

    /// No params. Mails waiting for delivery (due now or retrying later), for
    /// `/metrics`. The partial index `outbox_due` (`WHERE state = 'queued'`)
    /// covers it, so the count reads only the queue, never the sent mails.
    pub const COUNT_QUEUED_MAILS: &str = "SELECT count(*) FROM outbox WHERE state = 'queued'";

    /// Params: subscription_id, event, occurred_at. Queues a webhook call, due now.
    pub const INSERT_WEBHOOK_CALL: &str =
        "INSERT INTO webhook_calls (subscription_id, event, occurred_at, state, next_attempt_at)
        VALUES (?1, ?2, ?3, 'queued', ?3)";

    /// Params: now, lease_until, limit. Claims due calls: pushes them `lease_until`
    /// into the future (a crash mid-call retries them then) and counts the attempt.
    pub const CLAIM_DUE_WEBHOOK_CALLS: &str = "UPDATE webhook_calls SET next_attempt_at = ?2, attempts = attempts + 1
        WHERE id IN (SELECT id FROM webhook_calls WHERE state = 'queued' AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at LIMIT ?3)
        RETURNING id, subscription_id, event, occurred_at, attempts";

    /// No params. When the next queued webhook call is due.
    pub const NEXT_DUE_WEBHOOK_CALL: &str = "SELECT min(next_attempt_at) FROM webhook_calls WHERE state = 'queued'";

    /// Params: id, now, http_status. The receiver answered 2xx.
    pub const MARK_WEBHOOK_SENT: &str = "UPDATE webhook_calls
        SET state = 'sent', sent_at = ?2, http_status = ?3, last_error = NULL WHERE id = ?1 AND state = 'queued'";

    /// Params: id, next_attempt_at, http_status or NULL, error. Try again later.
    pub const MARK_WEBHOOK_RETRY: &str = "UPDATE webhook_calls
        SET next_attempt_at = ?2, http_status = ?3, last_error = ?4 WHERE id = ?1 AND state = 'queued'";

    /// Params: id, http_status or NULL, error. Given up.
    pub const MARK_WEBHOOK_FAILED: &str = "UPDATE webhook_calls
        SET state = 'failed', http_status = ?2, last_error = ?3 WHERE id = ?1 AND state = 'queued'";

    /// No params. Liveness: the database answers.
    pub const PING: &str = "SELECT 1";

    /// No params. Copies every WAL frame into the database file and cuts
    /// the WAL to zero bytes, so erased rows' old page images leave it.
    /// Returns (busy, log frames, checkpointed frames); busy is 1 when a
    /// reader or writer kept it from finishing.
    pub const TRUNCATE_WAL: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

    /// Params: events, link, tsa_url, requested_at, gen_time, serial, token.
    /// Stores an anchor of a chain head.
    pub const INSERT_ANCHOR: &str = "INSERT INTO anchors
        (events, link, tsa_url, requested_at, gen_time, serial, token) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

    /// No params. Every anchor, oldest first.
    pub const SELECT_ANCHORS: &str =
        "SELECT id, events, link, tsa_url, requested_at, gen_time, serial, token FROM anchors ORDER BY id";

    /// No params. The newest anchor.
    pub const LATEST_ANCHOR: &str =
        "SELECT id, events, link, tsa_url, requested_at, gen_time, serial, token FROM anchors ORDER BY id DESC LIMIT 1";

    /// Params: events. The oldest anchor of a head with at least that many events.
    pub const FIRST_ANCHOR_COVERING: &str = "SELECT id, events, link, tsa_url, requested_at, gen_time, serial, token
        FROM anchors WHERE events >= ?1 ORDER BY id LIMIT 1";

    /// Params: id. How many events have an id up to this one: its position in the chain.
    pub const PROOF_EVENT_POSITION: &str = "SELECT count(*) FROM proof_events WHERE id <= ?1";

    /// No params. SQLite's own check of the whole file: one row `ok`, or
    /// rows naming each problem. `backup` runs it on its copy.
    pub const INTEGRITY_CHECK: &str = "PRAGMA integrity_check";
}

/// `TRUNCATE_WAL`; true when it finished (the WAL is empty), false when
/// readers or a writer kept it from finishing within the busy timeout.
pub fn truncate_wal(conn: &Connection) -> Result<bool> {
    let busy: i64 = conn.query_row(TRUNCATE_WAL, [], |r| r.get(0))?;
    Ok(busy == 0)
}

/// `INTEGRITY_CHECK`: `ok`, or the problems found, one per line.
pub fn integrity_check(conn: &Connection) -> Result<String> {
    let problems: Vec<String> = all(conn, INTEGRITY_CHECK, [], |r| r.get(0))?;
    Ok(problems.join("\n"))
}

/// Runs a prepared query and collects every row through `map`.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn subscription_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SubscriptionRow> {
    Ok(SubscriptionRow {
        id: r.get(0)?,
        list_id: r.get(1)?,
        email: r.get(2)?,
        name: r.get(3)?,
        status: r.get(4)?,
        consent_sha256: r.get(5)?,
        signup_at: r.get(6)?,
        signup_ip: r.get(7)?,
        confirmed_at: r.get(8)?,
        confirmed_ip: r.get(9)?,
        unsubscribed_at: r.get(10)?,
        unsubscribed_ip: r.get(11)?,
        unsubscribe_method: r.get(12)?,
        form_page_sha256: r.get(13)?,
    })
}

fn anchor_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AnchorRow> {
    Ok(AnchorRow {
        id: r.get(0)?,
        events: r.get::<_, i64>(1)?.unsigned_abs(),
        link: r.get(2)?,
        tsa_url: r.get(3)?,
        requested_at: r.get(4)?,
        gen_time: r.get(5)?,
        serial: r.get(6)?,
        token: r.get(7)?,
    })
}

fn proof_event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProofEventRow> {
    Ok(ProofEventRow {
        id: r.get(0)?,
        subscription_id: r.get(1)?,
        at: r.get(2)?,
        kind: r.get(3)?,
        ip: r.get(4)?,
        detail: r.get(5)?,
        key_id: r.get(6)?,
        digest: r.get(7)?,
        link: r.get(8)?,
        erased: r.get(9)?,
    })
}

impl<'a> ExportRecord<'a> {
    fn from_row(r: &'a rusqlite::Row<'_>) -> rusqlite::Result<ExportRecord<'a>> {
        let text = |i: usize| -> rusqlite::Result<&'a str> { r.get_ref(i)?.as_str().map_err(Into::into) };
        let optional =
            |i: usize| -> rusqlite::Result<Option<&'a str>> { r.get_ref(i)?.as_str_or_null().map_err(Into::into) };
        Ok(ExportRecord {
            id: r.get(0)?,
            list_id: text(1)?,
            email: text(2)?,
            name: optional(3)?,
            status: r.get(4)?,
            consent_sha256: text(5)?,
            signup_at: text(6)?,
            signup_ip: text(7)?,
            confirmed_at: optional(8)?,
            confirmed_ip: optional(9)?,
            unsubscribed_at: optional(10)?,
            evidence: r.get(11)?,
            imported_at: optional(12)?,
            form_page: optional(13)?,
        })
    }
}

/// Columns added to tables that existed before (version 5: the form page,
/// when and where in the mail): table, column, and its declaration. On a
/// new database `schema.sql` created them; on an older one `migrate` adds
/// what is missing, since SQLite's ALTER TABLE has no IF NOT EXISTS.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("subscriptions", "form_page_sha256", "TEXT REFERENCES form_pages (sha256)"),
    ("outbox", "consent_when", "TEXT"),
    ("outbox", "consent_where", "TEXT"),
];

/// Params: table, column. Whether the table has the column. Only
/// `migrate` runs it, on SQLite alone (PostgreSQL's schema file says
/// `ADD COLUMN IF NOT EXISTS`), so it is not among the named statements
/// that both stores share.
const HAS_COLUMN: &str = "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2";

/// Adds each of [`ADDED_COLUMNS`] its table lacks, inside `migrate`'s
/// transaction. The names are constants, never input.
pub fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, declaration) in ADDED_COLUMNS {
        let present: bool = conn.query_row(HAS_COLUMN, params![table, column], |r| r.get(0))?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {declaration}"))?;
        }
    }
    Ok(())
}

pub fn backup_into(conn: &Connection, file: &str) -> Result<()> {
    conn.execute(BACKUP_INTO, [file])?;
    Ok(())
}

impl Db for Connection {
    fn insert_consent_text(&self, sha256: &str, text: &str, now: Timestamp) -> Result<()> {
        self.prepare_cached(INSERT_CONSENT_TEXT)?.execute(params![sha256, text, now])?;
        Ok(())
    }

    fn insert_form_page(&self, sha256: &str, page: &str, now: Timestamp) -> Result<()> {
        self.prepare_cached(INSERT_FORM_PAGE)?.execute(params![sha256, page, now])?;
        Ok(())
    }

    fn select_form_page(&self, sha256: &str) -> Result<Option<String>> {
        Ok(self.prepare_cached(SELECT_FORM_PAGE)?.query_row([sha256], |r| r.get(0)).optional()?)
    }

    fn insert_rendering(&self, sha256: &str, r: &RenderingRow, now: Timestamp) -> Result<()> {
        self.prepare_cached(INSERT_RENDERING)?.execute(params![
            sha256,
            r.format,
            r.sender,
            r.from_header,
            r.reply_to,
            r.subject,
            r.text_body,
            r.html_body,
            now
        ])?;
        Ok(())
    }

    fn select_rendering(&self, sha256: &str) -> Result<Option<RenderingRow>> {
        Ok(self
            .prepare_cached(SELECT_RENDERING)?
            .query_row([sha256], |r| {
                Ok(RenderingRow {
                    format: r.get(0)?,
                    sender: r.get(1)?,
                    from_header: r.get(2)?,
                    reply_to: r.get(3)?,
                    subject: r.get(4)?,
                    text_body: r.get(5)?,
                    html_body: r.get(6)?,
                })
            })
            .optional()?)
    }

    fn select_live_subscription(&self, list_id: &str, email_key: &EmailKey) -> Result<Option<SubscriptionRow>> {
        Ok(self
            .prepare_cached(SELECT_LIVE_SUBSCRIPTION)?
            .query_row(params![list_id, email_key], subscription_from_row)
            .optional()?)
    }

    fn select_subscription(&self, id: i64) -> Result<Option<SubscriptionRow>> {
        Ok(self.prepare_cached(SELECT_SUBSCRIPTION)?.query_row([id], subscription_from_row).optional()?)
    }

    fn insert_imported_subscription(&self, s: &ImportedSubscription<'_>) -> Result<i64> {
        self.prepare_cached(INSERT_IMPORTED_SUBSCRIPTION)?.execute(params![
            s.list_id,
            s.email,
            s.email_key,
            s.name,
            s.status,
            s.consent_sha256,
            s.signup_at,
            s.signup_ip,
            s.confirmed_at,
            s.confirmed_ip,
            s.unsubscribed_at
        ])?;
        Ok(self.last_insert_rowid())
    }

    fn insert_import(&self, subscription_id: i64, i: &ImportRow) -> Result<()> {
        self.prepare_cached(INSERT_IMPORT)?.execute(params![
            subscription_id,
            i.imported_at,
            i.format,
            i.source_sha256,
            i.line,
            i.evidence
        ])?;
        Ok(())
    }

    fn first_subscription_on_list(&self, list_id: &str, email_key: &EmailKey) -> Result<Option<(i64, Status)>> {
        let mut stmt = self.prepare_cached(FIRST_SUBSCRIPTION_ON_LIST)?;
        Ok(stmt.query_row(params![list_id, email_key], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    fn select_import(&self, subscription_id: i64) -> Result<Option<ImportRow>> {
        let row = self.prepare_cached(SELECT_IMPORT)?.query_row([subscription_id], |r| {
            Ok(ImportRow {
                imported_at: r.get(0)?,
                format: r.get::<_, ImportFormat>(1)?,
                source_sha256: r.get(2)?,
                line: r.get(3)?,
                evidence: r.get::<_, Evidence>(4)?,
            })
        });
        Ok(row.optional()?)
    }

    fn insert_subscription(&self, s: &NewSubscription<'_>) -> Result<i64> {
        self.prepare_cached(INSERT_SUBSCRIPTION)?.execute(params![
            s.list_id,
            s.email,
            s.email_key,
            s.name,
            s.consent_sha256,
            s.now,
            s.ip,
            s.form_page_sha256
        ])?;
        Ok(self.last_insert_rowid())
    }

    /// Returns whether a pending subscription was confirmed.
    fn confirm_subscription(&self, id: i64, now: Timestamp, ip: &str) -> Result<bool> {
        Ok(self.prepare_cached(CONFIRM_SUBSCRIPTION)?.execute(params![id, now, ip])? == 1)
    }

    /// Returns whether a live subscription was ended.
    fn unsubscribe_subscription(&self, id: i64, now: Timestamp, ip: &str, method: UnsubscribeMethod) -> Result<bool> {
        Ok(self.prepare_cached(UNSUBSCRIBE_SUBSCRIPTION)?.execute(params![id, now, ip, method])? == 1)
    }

    fn delete_subscription(&self, id: i64) -> Result<()> {
        self.prepare_cached(DELETE_SUBSCRIPTION)?.execute([id])?;
        Ok(())
    }

    fn insert_outbox(&self, m: &NewMail<'_>) -> Result<()> {
        self.prepare_cached(INSERT_OUTBOX)?.execute(params![
            m.subscription_id,
            m.rendering_sha256,
            m.to_email,
            m.link,
            m.message_id,
            m.date_header,
            m.now,
            m.consent_when,
            m.consent_where
        ])?;
        Ok(())
    }

    /// How many mails were queued since `since` to the address whose key is
    /// the inbox itself.
    fn mails_to_inbox_itself_since(&self, inbox: &InboxKey, since: Timestamp) -> Result<i64> {
        Ok(self.prepare_cached(MAILS_TO_INBOX_ITSELF_SINCE)?.query_row(params![inbox, since], |r| r.get(0))?)
    }

    /// Counts a confirmation mail queued to another spelling of the inbox with
    /// this keyed hash.
    fn insert_inbox_mail(&self, inbox_hash: &[u8], now: Timestamp) -> Result<()> {
        self.prepare_cached(INSERT_INBOX_MAIL)?.execute(params![inbox_hash, now])?;
        Ok(())
    }

    /// How many confirmation mails were queued to other spellings of an inbox
    /// since `since`.
    fn inbox_mails_since(&self, inbox_hash: &[u8], since: Timestamp) -> Result<i64> {
        Ok(self.prepare_cached(COUNT_INBOX_MAILS_SINCE)?.query_row(params![inbox_hash, since], |r| r.get(0))?)
    }

    /// Forgets inbox counts from before `before`; returns how many.
    fn delete_old_inbox_mails(&self, before: Timestamp) -> Result<u64> {
        Ok(self.prepare_cached(DELETE_OLD_INBOX_MAILS)?.execute([before])? as u64)
    }

    /// How many mails were queued for a subscription since `since`, and when the latest was.
    fn recent_mails(&self, subscription_id: i64, since: Timestamp) -> Result<(i64, Option<Timestamp>)> {
        Ok(self
            .prepare_cached(RECENT_MAILS)?
            .query_row(params![subscription_id, since], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    fn claim_due_mails(&self, now: Timestamp, lease_until: Timestamp, limit: i64) -> Result<Vec<OutboxRow>> {
        all(self, CLAIM_DUE_MAILS, params![now, lease_until, limit], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                subscription_id: r.get(1)?,
                rendering_sha256: r.get(2)?,
                to_email: r.get(3)?,
                to_name: r.get(4)?,
                link: r.get(5)?,
                message_id: r.get(6)?,
                date_header: r.get(7)?,
                created_at: r.get(8)?,
                attempts: r.get(9)?,
                consent_when: r.get(10)?,
                consent_where: r.get(11)?,
            })
        })
    }

    fn select_outbox_mail(&self, id: i64) -> Result<Option<StoredMail>> {
        Ok(self
            .prepare_cached(SELECT_OUTBOX_MAIL)?
            .query_row([id], |r| {
                Ok(StoredMail {
                    rendering_sha256: r.get(0)?,
                    to_email: r.get(1)?,
                    to_name: r.get(2)?,
                    link: r.get(3)?,
                    message_id: r.get(4)?,
                    date_header: r.get(5)?,
                    message_sha256: r.get(6)?,
                    consent_when: r.get(7)?,
                    consent_where: r.get(8)?,
                })
            })
            .optional()?)
    }

    /// When the mails sent after `since` were sent, oldest first.
    fn sent_mails_since(&self, since: Timestamp) -> Result<Vec<Timestamp>> {
        all(self, SENT_MAILS_SINCE, [since], |r| r.get(0))
    }

    fn next_due_mail(&self) -> Result<Option<Timestamp>> {
        Ok(self.prepare_cached(NEXT_DUE_MAIL)?.query_row([], |r| r.get(0))?)
    }

    /// Returns whether the row was still queued (and is now sent).
    fn mark_mail_sent(&self, id: i64, now: Timestamp, reply: &str, sha256: &str) -> Result<bool> {
        Ok(self.prepare_cached(MARK_MAIL_SENT)?.execute(params![id, now, reply, sha256])? == 1)
    }

    fn mark_mail_retry(&self, id: i64, next_attempt_at: Timestamp, error: &str) -> Result<()> {
        self.prepare_cached(MARK_MAIL_RETRY)?.execute(params![id, next_attempt_at, error])?;
        Ok(())
    }

    /// Returns whether the row was still queued (and is now failed).
    fn mark_mail_failed(&self, id: i64, error: &str) -> Result<bool> {
        Ok(self.prepare_cached(MARK_MAIL_FAILED)?.execute(params![id, error])? == 1)
    }

    /// Returns how many leases were released.
    fn release_leases(&self, now: Timestamp) -> Result<u64> {
        Ok(self.prepare_cached(RELEASE_LEASES)?.execute([now])? as u64)
    }

    /// Returns how many queued mails lost the name an older listgate put on them.
    fn forget_queued_mail_names(&self) -> Result<u64> {
        Ok(self.prepare_cached(FORGET_QUEUED_MAIL_NAMES)?.execute([])? as u64)
    }

    fn last_proof_link(&self) -> Result<Option<String>> {
        Ok(self.prepare_cached(LAST_PROOF_LINK)?.query_row([], |r| r.get(0)).optional()?)
    }

    /// The link before event `id` (empty for the first event).
    fn previous_proof_link(&self, id: i64) -> Result<String> {
        Ok(self.prepare_cached(PREVIOUS_PROOF_LINK)?.query_row([id], |r| r.get(0)).optional()?.unwrap_or_default())
    }

    fn insert_proof_event(&self, e: &NewProofEvent<'_>) -> Result<()> {
        self.prepare_cached(INSERT_PROOF_EVENT)?.execute(params![
            e.subscription_id,
            e.at,
            e.kind,
            e.ip,
            e.detail,
            e.key_id,
            e.digest,
            e.link
        ])?;
        Ok(())
    }

    /// Up to `limit` events with an id above `after_id`, in chain order.
    fn select_proof_events(&self, after_id: i64, limit: i64) -> Result<Vec<ProofEventRow>> {
        all(self, SELECT_PROOF_EVENTS, params![after_id, limit], proof_event_from_row)
    }

    fn select_proof_events_of(&self, subscription_id: i64) -> Result<Vec<ProofEventRow>> {
        all(self, SELECT_PROOF_EVENTS_OF, [subscription_id], proof_event_from_row)
    }

    fn select_subscriptions_page(&self, after_id: i64, limit: i64) -> Result<Vec<SubscriptionRow>> {
        all(self, SELECT_SUBSCRIPTIONS_PAGE, params![after_id, limit], subscription_from_row)
    }

    fn select_proof_events_of_range(&self, after_id: i64, up_to_id: i64) -> Result<Vec<ProofEventRow>> {
        all(self, SELECT_PROOF_EVENTS_OF_RANGE, params![after_id, up_to_id], proof_event_from_row)
    }

    fn erase_proof_events(&self, subscription_id: i64) -> Result<()> {
        self.prepare_cached(ERASE_PROOF_EVENTS)?.execute([subscription_id])?;
        Ok(())
    }

    fn upsert_declined(&self, address_hash: &str, until: Timestamp) -> Result<()> {
        self.prepare_cached(UPSERT_DECLINED)?.execute(params![address_hash, until])?;
        Ok(())
    }

    fn is_declined(&self, address_hash: &str, now: Timestamp) -> Result<bool> {
        Ok(self.prepare_cached(IS_DECLINED)?.query_row(params![address_hash, now], |_| Ok(())).optional()?.is_some())
    }

    fn count_daily(&self, which: DailyCount, day: &str, list_id: &str) -> Result<()> {
        let sql = match which {
            DailyCount::Signup => COUNT_SIGNUP,
            DailyCount::Confirmation => COUNT_CONFIRMATION,
            DailyCount::Unsubscribe => COUNT_UNSUBSCRIBE,
            DailyCount::Request => COUNT_REQUEST,
            DailyCount::Bot => COUNT_BOT,
        };
        self.prepare_cached(sql)?.execute(params![day, list_id])?;
        Ok(())
    }

    fn count_export(&self, f: &ExportFilter) -> Result<u64> {
        let n: i64 = self
            .prepare_cached(COUNT_EXPORT_SUBSCRIPTIONS)?
            .query_row(params![f.list_id, f.status, f.since], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Streams the export rows to `each`, one at a time (constant memory).
    fn for_each_export_row(
        &self,
        f: &ExportFilter,
        each: &mut dyn FnMut(&ExportRecord<'_>) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let mut stmt = self.prepare_cached(EXPORT_SUBSCRIPTIONS).map_err(|e| e.to_string())?;
        let mut rows = stmt.query(params![f.list_id, f.status, f.since]).map_err(|e| e.to_string())?;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            each(&ExportRecord::from_row(row).map_err(|e| e.to_string())?)?;
        }
        Ok(())
    }

    fn subscriptions_of_address(&self, email_key: &EmailKey) -> Result<Vec<SubscriptionRow>> {
        all(self, SUBSCRIPTIONS_OF_ADDRESS, [email_key], subscription_from_row)
    }

    fn mails_of_subscription(&self, subscription_id: i64) -> Result<Vec<MailRow>> {
        all(self, MAILS_OF_SUBSCRIPTION, [subscription_id], |r| {
            Ok(MailRow {
                id: r.get(0)?,
                state: r.get(1)?,
                created_at: r.get(2)?,
                attempts: r.get(3)?,
                last_error: r.get(4)?,
                sent_at: r.get(5)?,
                smtp_reply: r.get(6)?,
                message_id: r.get(7)?,
                message_sha256: r.get(8)?,
            })
        })
    }

    fn select_consent_text(&self, sha256: &str) -> Result<Option<String>> {
        Ok(self.prepare_cached(SELECT_CONSENT_TEXT)?.query_row([sha256], |r| r.get(0)).optional()?)
    }

    fn update_name(&self, id: i64, name: Option<&str>) -> Result<()> {
        self.prepare_cached(UPDATE_NAME)?.execute(params![id, name])?;
        Ok(())
    }

    /// Up to `limit` subscriptions past retention: (id, list_id, status).
    fn purge_candidates(
        &self,
        pending_before: Timestamp,
        unsubscribed_before: Timestamp,
        limit: i64,
    ) -> Result<Vec<(i64, String, Status)>> {
        all(self, PURGE_CANDIDATES, params![pending_before, unsubscribed_before, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
    }

    /// (list_id, status, count) of what a purge would erase.
    fn purge_plan(
        &self,
        pending_before: Timestamp,
        unsubscribed_before: Timestamp,
    ) -> Result<Vec<(String, Status, u64)>> {
        all(self, PURGE_PLAN, params![pending_before, unsubscribed_before], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })
    }

    fn count_held_past_retention(&self, pending_before: Timestamp, unsubscribed_before: Timestamp) -> Result<u64> {
        let n: i64 = self
            .prepare_cached(COUNT_HELD_PAST_RETENTION)?
            .query_row(params![pending_before, unsubscribed_before], |r| r.get(0))?;
        Ok(n.unsigned_abs())
    }

    fn insert_legal_hold(&self, subscription_id: i64, reason: &str, now: Timestamp) -> Result<bool> {
        Ok(self.prepare_cached(INSERT_LEGAL_HOLD)?.execute(params![subscription_id, reason, now])? == 1)
    }

    fn select_legal_holds_of_range(&self, after_id: i64, up_to_id: i64) -> Result<Vec<(i64, LegalHoldRow)>> {
        all(self, SELECT_LEGAL_HOLDS_OF_RANGE, params![after_id, up_to_id], |r| {
            Ok((r.get(0)?, LegalHoldRow { reason: r.get(1)?, held_at: r.get(2)? }))
        })
    }

    fn select_legal_hold(&self, subscription_id: i64) -> Result<Option<LegalHoldRow>> {
        Ok(self
            .prepare_cached(SELECT_LEGAL_HOLD)?
            .query_row([subscription_id], |r| Ok(LegalHoldRow { reason: r.get(0)?, held_at: r.get(1)? }))
            .optional()?)
    }

    fn delete_legal_hold(&self, subscription_id: i64) -> Result<bool> {
        Ok(self.prepare_cached(DELETE_LEGAL_HOLD)?.execute([subscription_id])? == 1)
    }

    fn delete_expired_declines(&self, now: Timestamp) -> Result<u64> {
        Ok(self.prepare_cached(DELETE_EXPIRED_DECLINES)?.execute([now])? as u64)
    }

    fn count_expired_declines(&self, now: Timestamp) -> Result<u64> {
        let n: i64 = self.prepare_cached(COUNT_EXPIRED_DECLINES)?.query_row([now], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// (list_id, status, count) over all subscriptions.
    fn count_by_status(&self) -> Result<Vec<(String, Status, u64)>> {
        all(self, COUNT_BY_STATUS, [], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))
    }

    fn daily_stats_since(&self, first_day: &str) -> Result<Vec<DailyStats>> {
        all(self, DAILY_STATS_SINCE, [first_day], |r| {
            Ok(DailyStats {
                day: r.get(0)?,
                list: r.get(1)?,
                signups: r.get::<_, i64>(2)? as u64,
                confirmations: r.get::<_, i64>(3)? as u64,
                unsubscribes: r.get::<_, i64>(4)? as u64,
            })
        })
    }

    fn count_proof_events(&self) -> Result<u64> {
        let n: i64 = self.prepare_cached(COUNT_PROOF_EVENTS)?.query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn count_subscriptions(&self) -> Result<u64> {
        let n: i64 = self.prepare_cached(COUNT_SUBSCRIPTIONS)?.query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn count_queued_mails(&self) -> Result<u64> {
        let n: i64 = self.prepare_cached(COUNT_QUEUED_MAILS)?.query_row([], |r| r.get(0))?;
        Ok(n.unsigned_abs())
    }

    fn insert_webhook_call(&self, subscription_id: i64, event: WebhookEvent, occurred_at: Timestamp) -> Result<()> {
        self.prepare_cached(INSERT_WEBHOOK_CALL)?.execute(params![subscription_id, event, occurred_at])?;
        Ok(())
    }

    fn claim_due_webhook_calls(&self, now: Timestamp, lease_until: Timestamp, limit: i64) -> Result<Vec<WebhookCall>> {
        all(self, CLAIM_DUE_WEBHOOK_CALLS, params![now, lease_until, limit], |r| {
            Ok(WebhookCall {
                id: r.get(0)?,
                subscription_id: r.get(1)?,
                event: r.get(2)?,
                occurred_at: r.get(3)?,
                attempts: r.get(4)?,
            })
        })
    }

    fn next_due_webhook_call(&self) -> Result<Option<Timestamp>> {
        Ok(self.prepare_cached(NEXT_DUE_WEBHOOK_CALL)?.query_row([], |r| r.get(0))?)
    }

    fn mark_webhook_sent(&self, id: i64, now: Timestamp, http_status: u16) -> Result<()> {
        self.prepare_cached(MARK_WEBHOOK_SENT)?.execute(params![id, now, http_status])?;
        Ok(())
    }

    fn mark_webhook_retry(
        &self,
        id: i64,
        next_attempt_at: Timestamp,
        http_status: Option<u16>,
        error: &str,
    ) -> Result<()> {
        self.prepare_cached(MARK_WEBHOOK_RETRY)?.execute(params![id, next_attempt_at, http_status, error])?;
        Ok(())
    }

    fn mark_webhook_failed(&self, id: i64, http_status: Option<u16>, error: &str) -> Result<()> {
        self.prepare_cached(MARK_WEBHOOK_FAILED)?.execute(params![id, http_status, error])?;
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        self.prepare_cached(PING)?.query_row([], |_| Ok(()))?;
        Ok(())
    }

    fn insert_anchor(&self, a: &NewAnchor<'_>) -> Result<()> {
        self.prepare_cached(INSERT_ANCHOR)?.execute(params![
            i64::try_from(a.events).unwrap_or(i64::MAX),
            a.link,
            a.tsa_url,
            a.requested_at,
            a.gen_time,
            a.serial,
            a.token
        ])?;
        Ok(())
    }

    fn select_anchors(&self) -> Result<Vec<AnchorRow>> {
        all(self, SELECT_ANCHORS, [], anchor_from_row)
    }

    fn latest_anchor(&self) -> Result<Option<AnchorRow>> {
        Ok(self.prepare_cached(LATEST_ANCHOR)?.query_row([], anchor_from_row).optional()?)
    }

    fn first_anchor_covering(&self, events: u64) -> Result<Option<AnchorRow>> {
        let events = i64::try_from(events).unwrap_or(i64::MAX);
        Ok(self.prepare_cached(FIRST_ANCHOR_COVERING)?.query_row([events], anchor_from_row).optional()?)
    }

    fn proof_event_position(&self, id: i64) -> Result<u64> {
        let n: i64 = self.prepare_cached(PROOF_EVENT_POSITION)?.query_row([id], |r| r.get(0))?;
        Ok(n.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored time for rows whose time does not matter.
    fn t() -> Timestamp {
        Timestamp::from(time::macros::datetime!(2026-01-01 00:00 UTC))
    }

    #[test]
    fn every_statement_prepares() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        crate::store::migrate(&conn).unwrap();
        for (name, sql) in ALL {
            conn.prepare(sql).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_queued_mail_count_reads_the_partial_index_only() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        crate::store::migrate(&conn).unwrap();
        assert_eq!(conn.count_queued_mails().unwrap(), 0);
        let plan: String = conn
            .query_row(&format!("EXPLAIN QUERY PLAN {COUNT_QUEUED_MAILS}"), [], |r| r.get(3))
            .expect("a query plan");
        assert!(plan.contains("outbox_due"), "{plan}");
    }

    #[test]
    fn proof_events_cannot_be_deleted_or_edited_only_erased() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        crate::store::migrate(&conn).unwrap();
        let e = NewProofEvent {
            subscription_id: 1,
            at: "t",
            kind: "signup",
            ip: Some("1.2.3.4"),
            detail: "{}",
            key_id: 1,
            digest: "d",
            link: "l",
        };
        conn.insert_proof_event(&e).unwrap();
        let id: i64 = conn.query_row("SELECT max(id) FROM proof_events", [], |r| r.get(0)).unwrap();
        assert!(conn.execute("DELETE FROM proof_events WHERE id = ?1", [id]).is_err());
        assert!(conn.execute("UPDATE proof_events SET ip = '9.9.9.9' WHERE id = ?1", [id]).is_err());
        conn.erase_proof_events(1).unwrap();
        let rows = conn.select_proof_events(0, 10).unwrap();
        assert!(rows[0].erased && rows[0].ip.is_none() && rows[0].link == "l");
    }

    fn new_pending<'a>(list_id: &'a str, email_key: &'a EmailKey) -> NewSubscription<'a> {
        NewSubscription {
            list_id,
            email: email_key.as_str(),
            email_key,
            name: None,
            consent_sha256: "c",
            now: t(),
            ip: "192.0.2.1",
            form_page_sha256: None,
        }
    }

    #[test]
    fn one_live_subscription_per_address_and_list_is_enforced_by_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        crate::store::migrate(&conn).unwrap();
        conn.insert_consent_text("c", "text", t()).unwrap();
        let (a, b) = (EmailKey::lenient("a@example.org"), EmailKey::lenient("b@example.org"));
        let first = conn.insert_subscription(&new_pending("news", &a)).unwrap();
        let twice = conn.insert_subscription(&new_pending("news", &a)).unwrap_err();
        assert!(twice.to_string().contains("one live subscription"), "{twice}");
        // Another list, or another address, is fine.
        conn.insert_subscription(&new_pending("other", &a)).unwrap();
        conn.insert_subscription(&new_pending("news", &b)).unwrap();
        // Unsubscribed ones stay beside a new live one, which cannot be revived next to it.
        assert!(conn.unsubscribe_subscription(first, t(), "192.0.2.1", UnsubscribeMethod::Page).unwrap());
        let second = conn.insert_subscription(&new_pending("news", &a)).unwrap();
        assert!(conn.confirm_subscription(second, t(), "192.0.2.1").unwrap());
        let revive = conn.execute("UPDATE subscriptions SET status = 'pending' WHERE id = ?1", [first]).unwrap_err();
        assert!(revive.to_string().contains("one live subscription"), "{revive}");
    }

    #[test]
    fn a_version_1_database_is_upgraded_to_the_current_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        // A database as version 1 made it, with a live subscription in it.
        conn.execute_batch(include_str!("../../tests/fixtures/schema-v1.sql")).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO consent_texts (sha256, text, first_seen) VALUES ('c', 'Yes.', 't');
             INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
                 VALUES ('newsletter', 'A@example.org', 'a@example.org', 'confirmed', 'c', 't', '192.0.2.1');",
        )
        .unwrap();
        crate::store::migrate(&conn).unwrap();
        let indexes: Vec<String> = all(
            &conn,
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
            [],
            |r| r.get(0),
        )
        .unwrap();
        assert_eq!(
            indexes,
            [
                "outbox_due",
                "outbox_subscription",
                "proof_events_of_subscription",
                "subscriptions_address",
                "subscriptions_status_signup",
                "subscriptions_status_unsubscribed",
                "webhook_calls_due",
                "webhook_calls_subscription"
            ]
        );
        let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, crate::store::SCHEMA_VERSION);
        // Columns added since have the declarations a new database gets.
        let fresh = Connection::open_in_memory().unwrap();
        crate::store::migrate(&fresh).unwrap();
        let columns = |c: &Connection, table: &str| -> Vec<(String, String)> {
            all(c, "SELECT name, type FROM pragma_table_info(?1) ORDER BY cid", [table], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
        };
        for table in ["subscriptions", "outbox", "form_pages"] {
            assert_eq!(columns(&conn, table), columns(&fresh, table), "{table}");
        }
        let page_key: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_foreign_key_list('subscriptions') WHERE \"table\" = 'form_pages'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(page_key, 1);
        crate::store::migrate(&conn).unwrap();
        // The triggers and the webhook table arrived, and the rows stayed.
        let second_live = conn.execute(
            "INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
             VALUES ('newsletter', 'a@example.org', 'a@example.org', 'pending', 'c', 't', '192.0.2.2')",
            [],
        );
        assert!(second_live.unwrap_err().to_string().contains("one live subscription"));
        conn.execute("INSERT INTO webhook_calls (subscription_id, event, occurred_at, state, next_attempt_at) VALUES (1, 'confirmed', 't', 'queued', 't')", [])
            .unwrap();
        // Version 5's legal holds arrived with the file's other tables.
        assert!(conn.insert_legal_hold(1, "Abmahnung", t()).unwrap());
        assert_eq!(conn.select_legal_hold(1).unwrap().map(|h| h.reason), Some("Abmahnung".to_string()));
        let problems: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(problems, "ok");
    }
}
#[cfg(test)]
mod plan_stability {
    /// Statements by address that SQLite, without one plan per statement
    /// (QPSG, `store::open_connection`), compiled again on every use from
    /// rusqlite's cache: 19 of 20 uses each, measured before the fix. The
    /// daily cap's count runs on every signup.
    #[test]
    fn statements_by_address_are_compiled_once_however_often_they_are_rebound() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        crate::store::migrate(&conn).unwrap();
        for sql in
            [super::SUBSCRIPTIONS_OF_ADDRESS, super::MAILS_TO_INBOX_ITSELF_SINCE, super::FIRST_SUBSCRIPTION_ON_LIST]
        {
            for i in 0..20 {
                let mut stmt = conn.prepare_cached(sql).unwrap();
                let values: Vec<String> =
                    (0..stmt.parameter_count()).map(|j| format!("v{i}-{j}@example.org")).collect();
                stmt.query(rusqlite::params_from_iter(values.iter())).unwrap().next().unwrap();
            }
            let stmt = conn.prepare_cached(sql).unwrap();
            assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
        }
    }
}
