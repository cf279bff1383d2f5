//! Every SQL statement the PostgreSQL store runs, each named and documented
//! with its parameters: the counterpart of `store::queries` for SQLite.
//! `tests/api/postgres_store.rs` prepares them all against a real cluster after
//! `migrate`, so a typo fails the tests.
//!
//! Every statement of SQLite's `store::queries::ALL` has its counterpart
//! here under the same name, with the same parameters in the same order
//! (`$1…` for `?1…`) and the same columns out, except those in
//! [`SQLITE_ONLY`]; `every_sqlite_statement_has_a_postgres_counterpart_of_the_same_name`
//! keeps the two lists from drifting. What the translation changes:
//! - `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`; SQLite's `max(a, b)`
//!   of values becomes `greatest`; upserts name their table's column
//!   (`daily_stats.signups + 1`) so the reading cannot be ambiguous.
//! - Inserts whose id the caller needs say `RETURNING id`: there is no
//!   `last_insert_rowid`.
//! - Parameters PostgreSQL cannot type from their use (`$1 IS NULL OR …`)
//!   carry a cast, so a statement prepares the same on every server.
//! - `sum(bigint)` is `numeric` in PostgreSQL: sums are cast back to `bigint`,
//!   so callers read an `i64` as from SQLite.
//! - Rows ordered by a text column that is not a time (`list_id`) say
//!   `COLLATE "C"`: SQLite orders text by its bytes, a PostgreSQL database
//!   by its collation, which under `en_US.UTF-8` or ICU puts `news_a`
//!   before `news-a` and `news1`.
//! - The statements that finish one delivery (`MARK_MAIL_*`,
//!   `MARK_WEBHOOK_*`) check that the row is still queued as
//!   `state NOT IN ('sent', 'failed')`, the same rows under the tables'
//!   CHECK: `state = 'queued'` also matched the partial indexes of queued
//!   rows, and on a table whose statistics lagged PostgreSQL scanned the
//!   whole backlog for the one id
//!   (`statements_that_finish_one_delivery_find_the_row_by_its_primary_key_at_any_backlog`).
//! - The outbox and webhook claims lock the rows they take with
//!   `FOR UPDATE SKIP LOCKED`, so several nodes share one queue (see
//!   [`CLAIM_DUE_MAILS`]).
//!
//! Times are the same TEXT as in SQLite (`store::codes`), flags the same 0/1
//! BIGINT, codes the same TEXT: the store interface (`store::db::Db`) binds
//! the same values to both backends. Transaction control (`BEGIN`,
//! savepoints, `COMMIT`) is sent by `PgSession::batch`, not kept here.

/// Defines each statement as a `pub const` and lists every one of them in
/// `ALL`, so no statement can be left out of the test that prepares them.
/// (The same small macro as SQLite's `queries`: the two lists stay apart.)
macro_rules! statements {
    ($($(#[$doc:meta])* pub const $name:ident: &str = $sql:expr;)+) => {
        $($(#[$doc])* pub const $name: &str = $sql;)+

        /// Every statement, by name, for the test that prepares them all.
        pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $name)),+];
    };
}

/// Statements of SQLite's `store::queries::ALL` that have no PostgreSQL
/// counterpart, each with why: they exist only for how SQLite keeps its one
/// file. The test `every_sqlite_statement_has_a_postgres_counterpart_of_the_same_name`
/// checks that every other SQLite statement has one here, and that each name
/// below really is one of SQLite's (so a rename cannot hide a gap).
pub const SQLITE_ONLY: &[(&str, &str)] = &[
    // `VACUUM INTO 'file'` copies SQLite's one file; a PostgreSQL database
    // is copied with `pg_dump` or the server's own backups, outside listgate.
    ("BACKUP_INTO", "VACUUM INTO copies SQLite's file; PostgreSQL is backed up with pg_dump or the server's backups"),
    // `PRAGMA wal_checkpoint(TRUNCATE)` empties SQLite's write-ahead log so
    // erased rows' old pages leave it; PostgreSQL's WAL and VACUUM are the
    // server's, not a client's statement.
    ("TRUNCATE_WAL", "PRAGMA wal_checkpoint: SQLite's WAL file; PostgreSQL's WAL and vacuum are the server's"),
    // `backup` checks the copy it wrote; PostgreSQL has no copy of listgate's to check.
    ("INTEGRITY_CHECK", "PRAGMA integrity_check: checks backup's SQLite copy; on PostgreSQL backup writes none"),
];

statements! {
    /// Params: key (i64). Waits for, then holds until the transaction ends,
    /// the advisory lock `key`: two nodes migrating at once take turns.
    pub const LOCK_FOR_TRANSACTION: &str = "SELECT pg_advisory_xact_lock($1)";

    /// Params: key (i64). Takes the advisory lock `key` for the session if
    /// no one holds it, without waiting; true when taken. Held until
    /// unlocked or the connection closes (also when its node dies).
    pub const TRY_LOCK_FOR_SESSION: &str = "SELECT pg_try_advisory_lock($1)";

    /// No params. Each commit waits until the server's WAL is on disk.
    pub const DURABLE_COMMITS: &str = "SET synchronous_commit TO on";

    /// No params. Whether `schema_version` exists (in the search path): a
    /// fresh database has no version table, and reading a missing table
    /// would abort the migration's transaction.
    pub const HAS_SCHEMA_VERSION: &str = "SELECT to_regclass('schema_version') IS NOT NULL";

    /// No params. The recorded schema version (no row: none).
    pub const SELECT_SCHEMA_VERSION: &str = "SELECT version FROM schema_version";

    /// Params: version (i32). Records the schema version in its one row.
    pub const SET_SCHEMA_VERSION: &str = "INSERT INTO schema_version (one, version) VALUES (TRUE, $1)
         ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version";

    // ---- The domain's statements: SQLite's `store::queries`, translated. ----

    /// Params: sha256, text, now. Stores a consent text once: a second
    /// insert of the same text (from any node) changes nothing.
    pub const INSERT_CONSENT_TEXT: &str =
        "INSERT INTO consent_texts (sha256, text, first_seen) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING";

    /// Params: sha256, format (i64), sender, from_header, reply_to, subject, text_body, html_body, now.
    /// Stores a mail rendering once.
    pub const INSERT_RENDERING: &str = "INSERT INTO mail_renderings
        (sha256, format, sender, from_header, reply_to, subject, text_body, html_body, first_seen)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (sha256) DO NOTHING";

    /// Params: sha256. One rendering.
    pub const SELECT_RENDERING: &str = "SELECT format, sender, from_header, reply_to, subject, text_body, html_body
        FROM mail_renderings WHERE sha256 = $1";

    /// Params: list_id, email_key. The live (pending or confirmed) subscription of an address.
    pub const SELECT_LIVE_SUBSCRIPTION: &str =
        "SELECT id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE list_id = $1 AND email_key = $2 AND status IN ('pending', 'confirmed')";

    /// Params: id (i64). One subscription by id.
    pub const SELECT_SUBSCRIPTION: &str = "SELECT id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE id = $1";

    /// Params: list_id, email, email_key, name, consent_sha256, now, ip, form_page_sha256.
    /// A new pending signup; returns its id (SQLite's `last_insert_rowid`). A second
    /// live subscription of the address on the list fails with a unique
    /// violation of `subscriptions_one_live`, even when two nodes insert at
    /// once (SQLite's triggers say "one live subscription" instead).
    pub const INSERT_SUBSCRIPTION: &str = "INSERT INTO subscriptions
        (list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip, form_page_sha256)
        VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8) RETURNING id";

    /// Params: sha256, page, now. Stores a form page (origin and path) once.
    pub const INSERT_FORM_PAGE: &str =
        "INSERT INTO form_pages (sha256, page, first_seen) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING";

    /// Params: sha256. One form page.
    pub const SELECT_FORM_PAGE: &str = "SELECT page FROM form_pages WHERE sha256 = $1";

    /// Params: list_id, email, email_key, name, status, consent_sha256, signup_at,
    /// signup_ip, confirmed_at, confirmed_ip, unsubscribed_at. A subscription
    /// taken in by `listgate import`, in its state with the file's evidence.
    pub const INSERT_IMPORTED_SUBSCRIPTION: &str = "INSERT INTO subscriptions
        (list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip,
         confirmed_at, confirmed_ip, unsubscribed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";

    /// Params: subscription_id (i64), imported_at, format, source_sha256, line (i64), evidence.
    /// Where an imported subscription's evidence came from.
    pub const INSERT_IMPORT: &str = "INSERT INTO imports
        (subscription_id, imported_at, format, source_sha256, line, evidence) VALUES ($1, $2, $3, $4, $5, $6)";

    /// Params: list_id, email_key. The address's first subscription on the
    /// list, in any state, by id and status: what `import` checks per row.
    pub const FIRST_SUBSCRIPTION_ON_LIST: &str =
        "SELECT id, status FROM subscriptions WHERE email_key = $2 AND list_id = $1 ORDER BY id LIMIT 1";

    /// Params: subscription_id (i64). Where its evidence came from, if imported.
    pub const SELECT_IMPORT: &str =
        "SELECT imported_at, format, source_sha256, line, evidence FROM imports WHERE subscription_id = $1";

    /// Params: id (i64), now, ip. Pending becomes confirmed; no-op otherwise.
    pub const CONFIRM_SUBSCRIPTION: &str =
        "UPDATE subscriptions SET status = 'confirmed', confirmed_at = $2, confirmed_ip = $3
        WHERE id = $1 AND status = 'pending'";

    /// Params: id (i64), now, ip, method. Pending or confirmed becomes unsubscribed; no-op otherwise.
    pub const UNSUBSCRIBE_SUBSCRIPTION: &str = "UPDATE subscriptions
        SET status = 'unsubscribed', unsubscribed_at = $2, unsubscribed_ip = $3, unsubscribe_method = $4
        WHERE id = $1 AND status IN ('pending', 'confirmed')";

    /// Params: id (i64). Deletes a subscription (its outbox and webhook rows go with it).
    pub const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = $1";

    /// Params: subscription_id (i64), rendering_sha256, to_email, link, message_id, date_header, now,
    /// consent_when, consent_where. Queues a confirmation mail, due now. `to_name` stays
    /// NULL: no name goes into a mail (the column holds the names of mails
    /// sent before, to rebuild them).
    pub const INSERT_OUTBOX: &str = "INSERT INTO outbox
        (subscription_id, rendering_sha256, to_email, link, message_id, date_header, state, created_at, next_attempt_at,
         consent_when, consent_where)
        VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $8, $9)";

    /// Params: subscription_id (i64), since. Mails queued for a subscription since a time: count and latest.
    pub const RECENT_MAILS: &str =
        "SELECT count(*), max(created_at) FROM outbox WHERE subscription_id = $1 AND created_at >= $2";

    /// Params: now, lease_until, limit (i64). Claims due rows: pushes them
    /// `lease_until` into the future (so a crash mid-delivery retries them
    /// then), marks them leased and counts the attempt.
    ///
    /// How several nodes share the outbox: each node's claim locks the due
    /// rows it picks with `FOR UPDATE SKIP LOCKED`, so a claim running at the
    /// same time on another node passes over them instead of waiting or
    /// taking them too; the two claims get disjoint rows. Once the claim
    /// commits, its rows are no longer due (`next_attempt_at` is the lease),
    /// so no later claim takes them while the lease runs; a node that dies
    /// mid-delivery leaves them to be claimed again, by any node, when the
    /// lease is over. A row re-read under the lock is checked again against
    /// the WHERE clause (READ COMMITTED), so a row another node just claimed
    /// and committed is skipped, not claimed twice.
    pub const CLAIM_DUE_MAILS: &str = "WITH due AS (
            SELECT id FROM outbox WHERE state = 'queued' AND next_attempt_at <= $1
            ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
        UPDATE outbox SET next_attempt_at = $2, attempts = outbox.attempts + 1, leased = 1
        FROM due WHERE outbox.id = due.id
        RETURNING outbox.id, outbox.subscription_id, outbox.rendering_sha256, outbox.to_email, outbox.to_name,
            outbox.link, outbox.message_id, outbox.date_header, outbox.created_at, outbox.attempts,
            outbox.consent_when, outbox.consent_where";

    /// Params: id (i64). The stored values of one mail, for rebuilding it.
    pub const SELECT_OUTBOX_MAIL: &str =
        "SELECT rendering_sha256, to_email, to_name, link, message_id, date_header, message_sha256,
        consent_when, consent_where
        FROM outbox WHERE id = $1";

    /// Params: since. When each mail the server took after `since` was taken,
    /// oldest first: seeds `limits.mails_per_hour`'s count at start.
    pub const SENT_MAILS_SINCE: &str =
        "SELECT sent_at FROM outbox WHERE state = 'sent' AND sent_at > $1 ORDER BY sent_at";

    /// No params. When the next queued mail is due.
    pub const NEXT_DUE_MAIL: &str = "SELECT min(next_attempt_at) FROM outbox WHERE state = 'queued'";

    /// Params: id (i64), now, smtp_reply, message_sha256. The server took the mail.
    pub const MARK_MAIL_SENT: &str = "UPDATE outbox SET state = 'sent', sent_at = $2, smtp_reply = $3, message_sha256 = $4, last_error = NULL, leased = 0
        WHERE id = $1 AND state NOT IN ('sent', 'failed')";

    /// Params: id (i64), next_attempt_at, error. A temporary failure: try again later.
    pub const MARK_MAIL_RETRY: &str =
        "UPDATE outbox SET next_attempt_at = $2, last_error = $3, leased = 0 WHERE id = $1 AND state NOT IN ('sent', 'failed')";

    /// Params: id (i64), error. A permanent failure (or a day of temporary ones): give up.
    pub const MARK_MAIL_FAILED: &str =
        "UPDATE outbox SET state = 'failed', last_error = $2, leased = 0 WHERE id = $1 AND state NOT IN ('sent', 'failed')";

    /// Params: now. Mails a previous run had claimed but not finished (it
    /// crashed or was killed) are due again now. On SQLite a start runs it;
    /// with several nodes on one database it would also free the rows other,
    /// living nodes are delivering right now (the table does not say which
    /// node holds a lease), and they would go out twice: there a dead node's
    /// leases just run out (`CLAIM_DUE_MAILS`), and this is only for a
    /// database no other node uses (one node, `migrate-store`).
    pub const RELEASE_LEASES: &str =
        "UPDATE outbox SET leased = 0, next_attempt_at = $1 WHERE state = 'queued' AND leased = 1";

    /// No params. At start: mails queued by a listgate that still greeted by
    /// name go out without it (their rendering's `%%LISTGATE_NAME%%` is
    /// filled with nothing), so no form text reaches a mail after an upgrade.
    /// Sent mails keep theirs: it is part of what they were, for the rebuild.
    pub const FORGET_QUEUED_MAIL_NAMES: &str =
        "UPDATE outbox SET to_name = NULL WHERE state = 'queued' AND to_name IS NOT NULL";

    /// No params. The newest event's link, which the next event chains to.
    /// With several nodes, reading it and appending the next event happen
    /// under one lock (`CHAIN_LOCK`, which `PgSession::begin_write` takes
    /// first), or two nodes would chain to the same link.
    pub const LAST_PROOF_LINK: &str = "SELECT link FROM proof_events ORDER BY id DESC LIMIT 1";

    /// Params: subscription_id (i64), at, kind, ip, detail, key_id (i64), digest, link.
    /// Appends a proof event.
    pub const INSERT_PROOF_EVENT: &str =
        "INSERT INTO proof_events (subscription_id, at, kind, ip, detail, key_id, digest, link)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

    /// Params: id (i64). The link of the event before an event, which that event chains to.
    pub const PREVIOUS_PROOF_LINK: &str = "SELECT link FROM proof_events WHERE id < $1 ORDER BY id DESC LIMIT 1";

    /// Params: after_id (i64), limit (i64). Events in chain order, a page at
    /// a time. `erased` is the stored 0/1, as in SQLite.
    pub const SELECT_PROOF_EVENTS: &str = "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link, erased
        FROM proof_events WHERE id > $1 ORDER BY id LIMIT $2";

    /// Params: after_id, limit (i64). A page of subscriptions by id, for
    /// `verify` to check each row against its events.
    pub const SELECT_SUBSCRIPTIONS_PAGE: &str = "SELECT id, list_id, email, name, status, consent_sha256, signup_at,
        signup_ip, confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE id > $1 ORDER BY id LIMIT $2";

    /// Params: after_subscription_id, up_to_subscription_id (i64). The events
    /// not yet erased of the subscriptions in that id range, by subscription
    /// and then in chain order.
    pub const SELECT_PROOF_EVENTS_OF_RANGE: &str =
        "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link, erased
        FROM proof_events WHERE subscription_id > $1 AND subscription_id <= $2 ORDER BY subscription_id, id";

    /// Params: subscription_id (i64). One subscription's events.
    pub const SELECT_PROOF_EVENTS_OF: &str =
        "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link, erased
        FROM proof_events WHERE subscription_id = $1 ORDER BY id";

    /// Params: subscription_id (i64). Blanks the personal data of a
    /// subscription's events, keeping the chain links (the only update the
    /// trigger `proof_events_erase_only` lets through).
    pub const ERASE_PROOF_EVENTS: &str = "UPDATE proof_events
        SET subscription_id = NULL, at = NULL, kind = NULL, ip = NULL, detail = NULL, erased = 1
        WHERE subscription_id = $1";

    /// Params: address_hash, until. Blocks confirmation mails to an address;
    /// a block already running longer is kept (SQLite's scalar `max`).
    pub const UPSERT_DECLINED: &str = "INSERT INTO declined_addresses (address_hash, until) VALUES ($1, $2)
        ON CONFLICT (address_hash) DO UPDATE SET until = greatest(declined_addresses.until, EXCLUDED.until)";

    /// Params: address_hash, now. Whether the address is blocked now.
    pub const IS_DECLINED: &str = "SELECT 1 FROM declined_addresses WHERE address_hash = $1 AND until > $2";

    /// Params: day, list_id. Counts a signup.
    pub const COUNT_SIGNUP: &str = "INSERT INTO daily_stats (day, list_id, signups) VALUES ($1, $2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET signups = daily_stats.signups + 1";

    /// Params: day, list_id. Counts a confirmation.
    pub const COUNT_CONFIRMATION: &str = "INSERT INTO daily_stats (day, list_id, confirmations) VALUES ($1, $2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET confirmations = daily_stats.confirmations + 1";

    /// Params: day, list_id. Counts an unsubscribe.
    pub const COUNT_UNSUBSCRIBE: &str = "INSERT INTO daily_stats (day, list_id, unsubscribes) VALUES ($1, $2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET unsubscribes = daily_stats.unsubscribes + 1";

    /// Params: list_id or NULL, status or NULL, since or NULL. Subscriptions to
    /// export, in id order; `since` matches rows whose latest event (signup,
    /// confirmation or unsubscribe) is at or after it. The casts type the
    /// parameters that `$1 IS NULL` alone leaves open. `evidence` is the
    /// import's, or for listgate's own: double opt-in once confirmed.
    pub const EXPORT_SUBSCRIPTIONS: &str = "SELECT s.id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at,
        coalesce(i.evidence, CASE WHEN confirmed_at IS NULL THEN 'none' ELSE 'double-opt-in' END), i.imported_at,
        p.page
        FROM subscriptions s LEFT JOIN imports i ON i.subscription_id = s.id
        LEFT JOIN form_pages p ON p.sha256 = s.form_page_sha256
        WHERE ($1::text IS NULL OR list_id = $1::text) AND ($2::text IS NULL OR status = $2::text)
          AND ($3::text IS NULL OR greatest(signup_at, coalesce(confirmed_at, ''), coalesce(unsubscribed_at, '')) >= $3::text)
        ORDER BY s.id";

    /// Params as `EXPORT_SUBSCRIPTIONS`. How many rows it will give (for progress bars).
    pub const COUNT_EXPORT_SUBSCRIPTIONS: &str = "SELECT count(*) FROM subscriptions
        WHERE ($1::text IS NULL OR list_id = $1::text) AND ($2::text IS NULL OR status = $2::text)
          AND ($3::text IS NULL OR greatest(signup_at, coalesce(confirmed_at, ''), coalesce(unsubscribed_at, '')) >= $3::text)";

    /// Params: email_key. Every subscription of an address, on every list.
    pub const SUBSCRIPTIONS_OF_ADDRESS: &str =
        "SELECT id, list_id, email, name, status, consent_sha256, signup_at, signup_ip,
        confirmed_at, confirmed_ip, unsubscribed_at, unsubscribed_ip, unsubscribe_method, form_page_sha256
        FROM subscriptions WHERE email_key = $1 ORDER BY id";

    /// Params: subscription_id (i64). The mails of a subscription.
    pub const MAILS_OF_SUBSCRIPTION: &str =
        "SELECT id, state, created_at, attempts, last_error, sent_at, smtp_reply, message_id, message_sha256
        FROM outbox WHERE subscription_id = $1 ORDER BY id";

    /// Params: sha256. A consent text.
    pub const SELECT_CONSENT_TEXT: &str = "SELECT text FROM consent_texts WHERE sha256 = $1";

    /// Params: id (i64), name. Rectifies the stored name.
    pub const UPDATE_NAME: &str = "UPDATE subscriptions SET name = $2 WHERE id = $1";

    /// Params: pending_before, unsubscribed_before, limit (i64). Subscriptions
    /// past their retention: pending ones signed up before the first cutoff;
    /// unsubscribed ones that were confirmed and left before the second (kept
    /// as proof of consent); unsubscribed ones never confirmed, which prove no
    /// consent, like pending ones from their signup. Confirmed ones never, and
    /// none under a legal hold (`legal_holds`; its key is never NULL, so
    /// NOT IN means what it says). The LIMIT applies to the whole union, as in SQLite.
    pub const PURGE_CANDIDATES: &str =
        "SELECT id, list_id, status FROM subscriptions
            WHERE status = 'pending' AND signup_at < $1
              AND id NOT IN (SELECT subscription_id FROM legal_holds)
        UNION ALL
        SELECT id, list_id, status FROM subscriptions
            WHERE status = 'unsubscribed' AND confirmed_at IS NOT NULL AND unsubscribed_at < $2
              AND id NOT IN (SELECT subscription_id FROM legal_holds)
        UNION ALL
        SELECT id, list_id, status FROM subscriptions
            WHERE status = 'unsubscribed' AND confirmed_at IS NULL AND signup_at < $1
              AND id NOT IN (SELECT subscription_id FROM legal_holds)
        LIMIT $3";

    /// Params: pending_before, unsubscribed_before. What a purge would erase,
    /// per list and state (the rows of `PURGE_CANDIDATES`). PostgreSQL before
    /// 16 wants the subquery named.
    pub const PURGE_PLAN: &str = "SELECT list_id, status, count(*) FROM (
            SELECT list_id, status FROM subscriptions
                WHERE status = 'pending' AND signup_at < $1
                  AND id NOT IN (SELECT subscription_id FROM legal_holds)
            UNION ALL
            SELECT list_id, status FROM subscriptions
                WHERE status = 'unsubscribed' AND confirmed_at IS NOT NULL AND unsubscribed_at < $2
                  AND id NOT IN (SELECT subscription_id FROM legal_holds)
            UNION ALL
            SELECT list_id, status FROM subscriptions
                WHERE status = 'unsubscribed' AND confirmed_at IS NULL AND signup_at < $1
                  AND id NOT IN (SELECT subscription_id FROM legal_holds)) AS past_retention
        GROUP BY list_id, status ORDER BY list_id COLLATE \"C\", status";

    /// Params: pending_before, unsubscribed_before. How many subscriptions
    /// past their retention a legal hold keeps (see SQLite's).
    pub const COUNT_HELD_PAST_RETENTION: &str = "SELECT count(*) FROM legal_holds h
        JOIN subscriptions s ON s.id = h.subscription_id
        WHERE (s.status = 'pending' AND s.signup_at < $1)
           OR (s.status = 'unsubscribed' AND s.confirmed_at IS NOT NULL AND s.unsubscribed_at < $2)
           OR (s.status = 'unsubscribed' AND s.confirmed_at IS NULL AND s.signup_at < $1)";

    /// Params: subscription_id (i64), reason, now. Places a legal hold; a
    /// subscription already held keeps its first (nothing is inserted).
    pub const INSERT_LEGAL_HOLD: &str = "INSERT INTO legal_holds (subscription_id, reason, held_at)
        VALUES ($1, $2, $3) ON CONFLICT (subscription_id) DO NOTHING";

    /// Params: subscription_id (i64). The legal hold on a subscription.
    pub const SELECT_LEGAL_HOLD: &str = "SELECT reason, held_at FROM legal_holds WHERE subscription_id = $1";

    /// Params: after_subscription_id, up_to_subscription_id (i64). The legal
    /// holds on the subscriptions in that id range, by subscription (`verify`).
    pub const SELECT_LEGAL_HOLDS_OF_RANGE: &str = "SELECT subscription_id, reason, held_at FROM legal_holds
        WHERE subscription_id > $1 AND subscription_id <= $2 ORDER BY subscription_id";

    /// Params: subscription_id (i64). Releases a legal hold.
    pub const DELETE_LEGAL_HOLD: &str = "DELETE FROM legal_holds WHERE subscription_id = $1";

    /// Params: now. Decline blocks whose time is over.
    pub const DELETE_EXPIRED_DECLINES: &str = "DELETE FROM declined_addresses WHERE until <= $1";

    /// Params: now. How many decline blocks are over.
    pub const COUNT_EXPIRED_DECLINES: &str = "SELECT count(*) FROM declined_addresses WHERE until <= $1";

    /// No params. Subscriptions per list and state.
    pub const COUNT_BY_STATUS: &str =
        "SELECT list_id, status, count(*) FROM subscriptions GROUP BY list_id, status ORDER BY list_id COLLATE \"C\", status";

    /// Params: first_day. Daily counts since a day.
    pub const DAILY_STATS_SINCE: &str = "SELECT day, list_id, signups, confirmations, unsubscribes FROM daily_stats
        WHERE day >= $1 ORDER BY day, list_id COLLATE \"C\"";

    /// No params. How many proof events there are (for progress bars).
    pub const COUNT_PROOF_EVENTS: &str = "SELECT count(*) FROM proof_events";

    /// All subscriptions.
    pub const COUNT_SUBSCRIPTIONS: &str = "SELECT count(*) FROM subscriptions";

    /// Params: day, list_id. Counts a signup request (every path writes, so every
    /// answer waits for the same commit: no timing difference between a new and
    /// a known address).
    pub const COUNT_REQUEST: &str = "INSERT INTO daily_stats (day, list_id, requests) VALUES ($1, $2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET requests = daily_stats.requests + 1";

    /// Params: day, list_id. Counts a submission dropped as a bot's.
    pub const COUNT_BOT: &str = "INSERT INTO daily_stats (day, list_id, bots) VALUES ($1, $2, 1)
        ON CONFLICT (day, list_id) DO UPDATE SET bots = daily_stats.bots + 1";

    /// Params: inbox, since. Mails queued since a time, on any list, to the
    /// address whose key is the inbox itself (`anna@example.org` for the
    /// inbox of `anna+news@example.org`): the common case, counted from the
    /// outbox with no write of its own.
    pub const MAILS_TO_INBOX_ITSELF_SINCE: &str =
        "SELECT count(*) FROM outbox o JOIN subscriptions s ON s.id = o.subscription_id
        WHERE s.email_key = $1 AND o.created_at >= $2";

    /// Params: inbox_hash (bytes), now. A confirmation mail queued to another
    /// spelling of an inbox (a `+tag`, Gmail's dots), for the daily cap.
    pub const INSERT_INBOX_MAIL: &str = "INSERT INTO inbox_mails (inbox_hash, queued_at, mails) VALUES ($1, $2, 1)
        ON CONFLICT (inbox_hash, queued_at) DO UPDATE SET mails = inbox_mails.mails + 1";

    /// Params: inbox_hash (bytes), since. Confirmation mails queued to other
    /// spellings of an inbox since a time. `sum` of a BIGINT is NUMERIC in
    /// PostgreSQL: cast back, so the caller reads an i64 as from SQLite.
    pub const COUNT_INBOX_MAILS_SINCE: &str =
        "SELECT coalesce(sum(mails), 0)::bigint FROM inbox_mails WHERE inbox_hash = $1 AND queued_at >= $2";

    /// Params: before. Forgets the inbox counts the daily cap no longer looks at.
    pub const DELETE_OLD_INBOX_MAILS: &str = "DELETE FROM inbox_mails WHERE queued_at < $1";

    /// No params. Mails waiting for delivery (due now or retrying later), for
    /// `/metrics`; the partial index `outbox_due` covers it, as in SQLite.
    pub const COUNT_QUEUED_MAILS: &str = "SELECT count(*) FROM outbox WHERE state = 'queued'";

    /// Params: subscription_id (i64), event, occurred_at. Queues a webhook call, due now.
    pub const INSERT_WEBHOOK_CALL: &str =
        "INSERT INTO webhook_calls (subscription_id, event, occurred_at, state, next_attempt_at)
        VALUES ($1, $2, $3, 'queued', $3)";

    /// Params: now, lease_until, limit (i64). Claims due calls: pushes them
    /// `lease_until` into the future (a crash mid-call retries them then) and
    /// counts the attempt. Nodes share the calls as they share the outbox
    /// (`CLAIM_DUE_MAILS`): `FOR UPDATE SKIP LOCKED` gives concurrent claims
    /// disjoint rows.
    pub const CLAIM_DUE_WEBHOOK_CALLS: &str = "WITH due AS (
            SELECT id FROM webhook_calls WHERE state = 'queued' AND next_attempt_at <= $1
            ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
        UPDATE webhook_calls SET next_attempt_at = $2, attempts = webhook_calls.attempts + 1
        FROM due WHERE webhook_calls.id = due.id
        RETURNING webhook_calls.id, webhook_calls.subscription_id, webhook_calls.event,
            webhook_calls.occurred_at, webhook_calls.attempts";

    /// No params. When the next queued webhook call is due.
    pub const NEXT_DUE_WEBHOOK_CALL: &str = "SELECT min(next_attempt_at) FROM webhook_calls WHERE state = 'queued'";

    /// Params: id (i64), now, http_status (i64). The receiver answered 2xx.
    pub const MARK_WEBHOOK_SENT: &str = "UPDATE webhook_calls
        SET state = 'sent', sent_at = $2, http_status = $3, last_error = NULL WHERE id = $1 AND state NOT IN ('sent', 'failed')";

    /// Params: id (i64), next_attempt_at, http_status (i64) or NULL, error. Try again later.
    pub const MARK_WEBHOOK_RETRY: &str = "UPDATE webhook_calls
        SET next_attempt_at = $2, http_status = $3, last_error = $4 WHERE id = $1 AND state NOT IN ('sent', 'failed')";

    /// Params: id (i64), http_status (i64) or NULL, error. Given up.
    pub const MARK_WEBHOOK_FAILED: &str = "UPDATE webhook_calls
        SET state = 'failed', http_status = $2, last_error = $3 WHERE id = $1 AND state NOT IN ('sent', 'failed')";

    /// No params. Liveness: the database answers.
    pub const PING: &str = "SELECT 1";

    /// Params: events, link, tsa_url, requested_at, gen_time, serial, token.
    /// Stores an anchor of a chain head.
    pub const INSERT_ANCHOR: &str = "INSERT INTO anchors
        (events, link, tsa_url, requested_at, gen_time, serial, token) VALUES ($1, $2, $3, $4, $5, $6, $7)";

    /// No params. Every anchor, oldest first.
    pub const SELECT_ANCHORS: &str =
        "SELECT id, events, link, tsa_url, requested_at, gen_time, serial, token FROM anchors ORDER BY id";

    /// No params. The newest anchor.
    pub const LATEST_ANCHOR: &str =
        "SELECT id, events, link, tsa_url, requested_at, gen_time, serial, token FROM anchors ORDER BY id DESC LIMIT 1";

    /// Params: events. The oldest anchor of a head with at least that many events.
    pub const FIRST_ANCHOR_COVERING: &str = "SELECT id, events, link, tsa_url, requested_at, gen_time, serial, token
        FROM anchors WHERE events >= $1 ORDER BY id LIMIT 1";

    /// Params: id. How many events have an id up to this one: its position in the chain.
    pub const PROOF_EVENT_POSITION: &str = "SELECT count(*) FROM proof_events WHERE id <= $1";
}
