//! [`PgSession`]: one PostgreSQL connection with its prepared statements,
//! and the PostgreSQL implementation of the store interface
//! ([`crate::store::db::Db`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::pipeline::{OwnedParam, Pipeline};
use super::queries;
use crate::clock::Timestamp;
use crate::domain::{EmailKey, Evidence, ImportFormat, InboxKey, Status, UnsubscribeMethod, WebhookEvent};
use crate::store::db::*;
use crate::store::{Result, StoreError};

/// One connection, as the writer thread, each reader and each CLI command
/// hold it. Statements are prepared once per connection and kept (a signup
/// runs a dozen; preparing each again would double its round trips).
///
/// Inside a write transaction ([`PgSession::begin_write`] until
/// [`PgSession::commit`] or [`PgSession::rollback`]) it saves round trips
/// in two ways:
/// - Writes whose answer the job does not need (counters, proof events,
///   queued mails, `SAVEPOINT`) are sent without waiting
///   ([`super::pipeline`]); the job's next waited statement, at the latest
///   [`PgSession::release_savepoint`], reports their failure, so a job still
///   hears of every failure of its own.
/// - The chain's last link is read once per transaction and then kept:
///   the transaction holds the chain lock, so no other node appends
///   meanwhile, and each event appended here moves it on.
pub struct PgSession {
    db: Pipeline,
    statements: RefCell<HashMap<&'static str, Statement>>,
    /// Between `begin_write` and the transaction's end.
    writing: Cell<bool>,
    /// The chain's last link while writing, once read (`Some(None)`: the
    /// chain is empty); `None` when it must be read.
    chain_head: RefCell<Option<Option<String>>>,
}

impl PgSession {
    pub fn new(db: Pipeline) -> PgSession {
        PgSession {
            db,
            statements: RefCell::new(HashMap::new()),
            writing: Cell::new(false),
            chain_head: RefCell::new(None),
        }
    }

    /// Runs transaction control or other statements without parameters
    /// (`BEGIN`, `SET …`), waiting for their answer.
    pub fn batch(&self, sql: &str) -> Result<()> {
        self.db.batch_execute(sql)?;
        Ok(())
    }

    /// Begins a write transaction holding the chain lock from its first
    /// statement: every write of every node takes the same lock first, so
    /// two nodes' transactions never wait on each other in opposite orders.
    ///
    /// Taking it only when a proof event is appended (`last_proof_link`)
    /// deadlocked: every signup also bumps the day's row in `daily_stats`,
    /// so node A held the chain lock and waited for that row while node B
    /// held the row and waited for the chain lock; PostgreSQL broke the
    /// cycle after `deadlock_timeout` (1 s) by failing one batch (503s,
    /// p99 over a second in `benches/load.sh --store postgres --nodes 2`).
    /// Those rows serialise the nodes' write transactions anyway; the lock
    /// makes the order explicit. It is one lock per writer batch, however
    /// many requests the batch carries. A savepoint rolled back inside the
    /// transaction keeps it: only locks taken after the savepoint go.
    ///
    /// It is also what keeps the chain whole: the next node reads the last
    /// link only after this transaction's events are committed (each
    /// statement under READ COMMITTED, what `BEGIN` gives, sees the latest
    /// commit), so two nodes never chain two events to one link.
    ///
    /// Both statements are sent without waiting: the job's first waited
    /// statement runs after them, so it waits for the lock.
    pub fn begin_write(&self) -> Result<()> {
        let lock = self.statement(queries::LOCK_FOR_TRANSACTION)?;
        self.db.send_batch("BEGIN");
        self.db.send(lock, vec![Box::new(super::CHAIN_LOCK)]);
        self.writing.set(true);
        *self.chain_head.borrow_mut() = None;
        Ok(())
    }

    /// Commits the transaction: `Ok` only if every statement in it,
    /// waited for or not, succeeded and the commit did.
    pub fn commit(&self) -> Result<()> {
        self.end_transaction();
        self.batch("COMMIT")
    }

    /// Rolls the transaction back.
    pub fn rollback(&self) -> Result<()> {
        self.end_transaction();
        self.batch("ROLLBACK")
    }

    fn end_transaction(&self) {
        self.writing.set(false);
        *self.chain_head.borrow_mut() = None;
    }

    /// Starts one job's savepoint in the writer's transaction (sent
    /// without waiting).
    pub fn savepoint(&self) {
        self.db.send_batch("SAVEPOINT job");
    }

    /// Ends a job that succeeded: waits for everything it sent, so a
    /// failure of any of its statements is its own failure.
    pub fn release_savepoint(&self) -> Result<()> {
        self.batch("RELEASE SAVEPOINT job")
    }

    /// Undoes a job that failed, keeping the rest of the transaction.
    pub fn rollback_to_savepoint(&self) -> Result<()> {
        // The job may have appended events: read the link again.
        *self.chain_head.borrow_mut() = None;
        self.batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
    }

    /// Whether the connection is closed (the server went away): the owner
    /// replaces it.
    pub fn is_closed(&self) -> bool {
        self.db.is_closed()
    }

    /// Brings the schema up to date (see [`super::migrate`]).
    pub fn migrate(&self) -> Result<super::Migrated> {
        Ok(super::migrate(&self.db)?)
    }

    /// Takes the session-level advisory lock `key` if it is free.
    pub fn try_advisory_lock(&self, key: i64) -> Result<bool> {
        Ok(self.query_one(queries::TRY_LOCK_FOR_SESSION, &[&key])?.get(0))
    }

    /// Lends the connection to `job`, for the copy of `migrate-store`,
    /// whose statements are made from the tables' columns.
    pub(super) fn with_pipeline<T>(&self, job: impl FnOnce(&Pipeline) -> Result<T>) -> Result<T> {
        job(&self.db)
    }

    /// Whether `table` (one of the schema's own names) holds any row.
    pub(super) fn has_rows(&self, table: &str) -> Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        Ok(self.db.query_one_sql(&sql, &[])?.get(0))
    }

    /// The prepared statement for `sql`, preparing it on first use.
    fn statement(&self, sql: &'static str) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.db.prepare(sql)?;
        self.statements.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Parameters as the client takes them.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Owned parameters, for a statement sent without waiting.
macro_rules! owned {
    ($($param:expr),* $(,)?) => { vec![$(Box::new($param) as OwnedParam),*] };
}

/// The ways of running one prepared statement.
impl PgSession {
    fn query(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        Ok(self.db.query(&self.statement(sql)?, params)?)
    }

    fn query_opt(&self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.db.query_opt(&self.statement(sql)?, params)?)
    }

    fn query_one(&self, sql: &'static str, params: Params<'_>) -> Result<Row> {
        Ok(self.db.query_one(&self.statement(sql)?, params)?)
    }

    /// Returns how many rows the statement changed.
    fn execute(&self, sql: &'static str, params: Params<'_>) -> Result<u64> {
        Ok(self.db.execute(&self.statement(sql)?, params)?)
    }

    /// A write whose answer the caller does not need: inside a write
    /// transaction it is sent without waiting (see [`PgSession`]);
    /// elsewhere it runs at once, as [`PgSession::execute`].
    fn send(&self, sql: &'static str, params: Vec<OwnedParam>) -> Result<()> {
        let statement = self.statement(sql)?;
        if self.writing.get() {
            self.db.send(statement, params);
        } else {
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            self.db.execute(&statement, &params)?;
        }
        Ok(())
    }

    /// Every row of `sql`, each read by `read`.
    fn all<T>(&self, sql: &'static str, params: Params<'_>, read: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(read).collect()
    }
}

// ---- Conversions: one helper per stored type, both ways. ----

/// A time as bound: its stored text (`store::codes`), exactly what SQLite
/// binds, so both backends compare and sort the same strings.
fn stored(t: Timestamp) -> String {
    t.to_string()
}

/// Column `i` read back through `parse` (`Timestamp::from_stored`,
/// `Status::from_stored`, …); NULL is `None`. Text `parse` refuses (a
/// hand-edited row) is [`StoreError::Corrupt`], naming the column: never a
/// guess, as SQLite's `FromSql` refuses it too.
fn parsed_opt<T>(row: &Row, i: usize, what: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>> {
    let Some(text) = row.try_get::<_, Option<&str>>(i)? else { return Ok(None) };
    match parse(text) {
        Some(value) => Ok(Some(value)),
        None => Err(StoreError::Corrupt(format!("{} holds {text:?}, not {what}", row.columns()[i].name()))),
    }
}

/// As [`parsed_opt`], for a column that is never NULL.
fn parsed<T>(row: &Row, i: usize, what: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parsed_opt(row, i, what, parse)?
        .ok_or_else(|| StoreError::Corrupt(format!("{} is NULL, not {what}", row.columns()[i].name())))
}

fn time(row: &Row, i: usize) -> Result<Timestamp> {
    parsed(row, i, "a stored time", Timestamp::from_stored)
}

fn optional_time(row: &Row, i: usize) -> Result<Option<Timestamp>> {
    parsed_opt(row, i, "a stored time", Timestamp::from_stored)
}

fn status(row: &Row, i: usize) -> Result<Status> {
    parsed(row, i, "a status", Status::from_stored)
}

/// A count or counter (BIGINT), as the `u64` SQLite's implementation returns.
fn count(row: &Row, i: usize) -> Result<u64> {
    let n: i64 = row.try_get(i)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{} is a negative count: {n}", row.columns()[i].name())))
}

/// A 0/1 BIGINT flag (`erased`), read as SQLite reads an INTEGER as `bool`.
fn flag(row: &Row, i: usize) -> Result<bool> {
    Ok(row.try_get::<_, i64>(i)? != 0)
}

fn subscription_from_row(row: &Row) -> Result<SubscriptionRow> {
    Ok(SubscriptionRow {
        id: row.try_get(0)?,
        list_id: row.try_get(1)?,
        email: row.try_get(2)?,
        name: row.try_get(3)?,
        status: status(row, 4)?,
        consent_sha256: row.try_get(5)?,
        signup_at: time(row, 6)?,
        signup_ip: row.try_get(7)?,
        confirmed_at: optional_time(row, 8)?,
        confirmed_ip: row.try_get(9)?,
        unsubscribed_at: optional_time(row, 10)?,
        unsubscribed_ip: row.try_get(11)?,
        unsubscribe_method: parsed_opt(row, 12, "an unsubscribe method", UnsubscribeMethod::from_stored)?,
        form_page_sha256: row.try_get(13)?,
    })
}

fn proof_event_from_row(row: &Row) -> Result<ProofEventRow> {
    Ok(ProofEventRow {
        id: row.try_get(0)?,
        subscription_id: row.try_get(1)?,
        at: row.try_get(2)?,
        kind: row.try_get(3)?,
        ip: row.try_get(4)?,
        detail: row.try_get(5)?,
        key_id: row.try_get(6)?,
        digest: row.try_get(7)?,
        link: row.try_get(8)?,
        erased: flag(row, 9)?,
    })
}

fn anchor_from_row(row: &Row) -> Result<AnchorRow> {
    Ok(AnchorRow {
        id: row.try_get(0)?,
        events: count(row, 1)?,
        link: row.try_get(2)?,
        tsa_url: row.try_get(3)?,
        requested_at: time(row, 4)?,
        gen_time: time(row, 5)?,
        serial: row.try_get(6)?,
        token: row.try_get(7)?,
    })
}

fn outbox_from_row(row: &Row) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: row.try_get(0)?,
        subscription_id: row.try_get(1)?,
        rendering_sha256: row.try_get(2)?,
        to_email: row.try_get(3)?,
        to_name: row.try_get(4)?,
        link: row.try_get(5)?,
        message_id: row.try_get(6)?,
        date_header: row.try_get(7)?,
        created_at: time(row, 8)?,
        attempts: row.try_get(9)?,
        consent_when: row.try_get(10)?,
        consent_where: row.try_get(11)?,
    })
}

fn mail_from_row(row: &Row) -> Result<MailRow> {
    Ok(MailRow {
        id: row.try_get(0)?,
        state: row.try_get(1)?,
        created_at: time(row, 2)?,
        attempts: row.try_get(3)?,
        last_error: row.try_get(4)?,
        sent_at: optional_time(row, 5)?,
        smtp_reply: row.try_get(6)?,
        message_id: row.try_get(7)?,
        message_sha256: row.try_get(8)?,
    })
}

fn webhook_call_from_row(row: &Row) -> Result<WebhookCall> {
    Ok(WebhookCall {
        id: row.try_get(0)?,
        subscription_id: row.try_get(1)?,
        event: parsed(row, 2, "a webhook event", WebhookEvent::from_stored)?,
        occurred_at: time(row, 3)?,
        attempts: row.try_get(4)?,
    })
}

/// (list_id, status, count) rows of `PURGE_PLAN` and `COUNT_BY_STATUS`.
fn status_count_from_row(row: &Row) -> Result<(String, Status, u64)> {
    Ok((row.try_get(0)?, status(row, 1)?, count(row, 2)?))
}

/// One export row, borrowing its texts from `row` as SQLite's borrows
/// from its current row: nothing is copied per row.
fn export_record(row: &Row) -> Result<ExportRecord<'_>> {
    Ok(ExportRecord {
        id: row.try_get(0)?,
        list_id: row.try_get(1)?,
        email: row.try_get(2)?,
        name: row.try_get(3)?,
        status: status(row, 4)?,
        consent_sha256: row.try_get(5)?,
        signup_at: row.try_get(6)?,
        signup_ip: row.try_get(7)?,
        confirmed_at: row.try_get(8)?,
        confirmed_ip: row.try_get(9)?,
        unsubscribed_at: row.try_get(10)?,
        evidence: parsed(row, 11, "an evidence", Evidence::from_stored)?,
        imported_at: row.try_get(12)?,
        form_page: row.try_get(13)?,
    })
}

/// Each method runs its one statement of `postgres::queries` (prepared once
/// per connection) with the values SQLite's `impl Db for Connection` binds:
/// times as their stored text, codes as `as_str()`, flags 0/1, small
/// integers as BIGINT. Inserts read their id from `RETURNING id`. Two
/// methods differ on purpose, and say why: `release_leases` and
/// `last_proof_link`.
impl Db for PgSession {
    fn insert_consent_text(&self, sha256: &str, text: &str, now: Timestamp) -> Result<()> {
        self.execute(queries::INSERT_CONSENT_TEXT, &[&sha256, &text, &stored(now)])?;
        Ok(())
    }

    fn insert_form_page(&self, sha256: &str, page: &str, now: Timestamp) -> Result<()> {
        self.execute(queries::INSERT_FORM_PAGE, &[&sha256, &page, &stored(now)])?;
        Ok(())
    }

    fn select_form_page(&self, sha256: &str) -> Result<Option<String>> {
        Ok(self.query_opt(queries::SELECT_FORM_PAGE, &[&sha256])?.map(|row| row.try_get(0)).transpose()?)
    }

    fn insert_rendering(&self, sha256: &str, r: &RenderingRow, now: Timestamp) -> Result<()> {
        self.execute(
            queries::INSERT_RENDERING,
            &[
                &sha256,
                &r.format,
                &r.sender,
                &r.from_header,
                &r.reply_to,
                &r.subject,
                &r.text_body,
                &r.html_body,
                &stored(now),
            ],
        )?;
        Ok(())
    }

    fn select_rendering(&self, sha256: &str) -> Result<Option<RenderingRow>> {
        let Some(row) = self.query_opt(queries::SELECT_RENDERING, &[&sha256])? else { return Ok(None) };
        Ok(Some(RenderingRow {
            format: row.try_get(0)?,
            sender: row.try_get(1)?,
            from_header: row.try_get(2)?,
            reply_to: row.try_get(3)?,
            subject: row.try_get(4)?,
            text_body: row.try_get(5)?,
            html_body: row.try_get(6)?,
        }))
    }

    fn select_live_subscription(&self, list_id: &str, email_key: &EmailKey) -> Result<Option<SubscriptionRow>> {
        let row = self.query_opt(queries::SELECT_LIVE_SUBSCRIPTION, &[&list_id, &email_key.as_str()])?;
        row.as_ref().map(subscription_from_row).transpose()
    }

    fn select_subscription(&self, id: i64) -> Result<Option<SubscriptionRow>> {
        self.query_opt(queries::SELECT_SUBSCRIPTION, &[&id])?.as_ref().map(subscription_from_row).transpose()
    }

    fn insert_imported_subscription(&self, s: &ImportedSubscription<'_>) -> Result<i64> {
        let row = self.query_one(
            queries::INSERT_IMPORTED_SUBSCRIPTION,
            &[
                &s.list_id,
                &s.email,
                &s.email_key.as_str(),
                &s.name,
                &s.status.as_str(),
                &s.consent_sha256,
                &stored(s.signup_at),
                &s.signup_ip,
                &stored(s.confirmed_at),
                &s.confirmed_ip,
                &s.unsubscribed_at.map(stored),
            ],
        )?;
        Ok(row.try_get(0)?)
    }

    fn insert_import(&self, subscription_id: i64, i: &ImportRow) -> Result<()> {
        self.execute(
            queries::INSERT_IMPORT,
            &[
                &subscription_id,
                &stored(i.imported_at),
                &i.format.as_str(),
                &i.source_sha256,
                &i.line,
                &i.evidence.as_str(),
            ],
        )?;
        Ok(())
    }

    fn first_subscription_on_list(&self, list_id: &str, email_key: &EmailKey) -> Result<Option<(i64, Status)>> {
        let row = self.query_opt(queries::FIRST_SUBSCRIPTION_ON_LIST, &[&list_id, &email_key.as_str()])?;
        row.map(|row| Ok((row.try_get(0)?, status(&row, 1)?))).transpose()
    }

    fn select_import(&self, subscription_id: i64) -> Result<Option<ImportRow>> {
        let Some(row) = self.query_opt(queries::SELECT_IMPORT, &[&subscription_id])? else { return Ok(None) };
        Ok(Some(ImportRow {
            imported_at: time(&row, 0)?,
            format: parsed(&row, 1, "an import format", ImportFormat::from_stored)?,
            source_sha256: row.try_get(2)?,
            line: row.try_get(3)?,
            evidence: parsed(&row, 4, "an evidence", Evidence::from_stored)?,
        }))
    }

    fn insert_subscription(&self, s: &NewSubscription<'_>) -> Result<i64> {
        let row = self.query_one(
            queries::INSERT_SUBSCRIPTION,
            &[
                &s.list_id,
                &s.email,
                &s.email_key.as_str(),
                &s.name,
                &s.consent_sha256,
                &stored(s.now),
                &s.ip,
                &s.form_page_sha256,
            ],
        )?;
        Ok(row.try_get(0)?)
    }

    fn confirm_subscription(&self, id: i64, now: Timestamp, ip: &str) -> Result<bool> {
        Ok(self.execute(queries::CONFIRM_SUBSCRIPTION, &[&id, &stored(now), &ip])? == 1)
    }

    fn unsubscribe_subscription(&self, id: i64, now: Timestamp, ip: &str, method: UnsubscribeMethod) -> Result<bool> {
        Ok(self.execute(queries::UNSUBSCRIBE_SUBSCRIPTION, &[&id, &stored(now), &ip, &method.as_str()])? == 1)
    }

    fn delete_subscription(&self, id: i64) -> Result<()> {
        self.execute(queries::DELETE_SUBSCRIPTION, &[&id])?;
        Ok(())
    }

    fn insert_outbox(&self, m: &NewMail<'_>) -> Result<()> {
        self.send(
            queries::INSERT_OUTBOX,
            owned![
                m.subscription_id,
                m.rendering_sha256.to_owned(),
                m.to_email.to_owned(),
                m.link.to_owned(),
                m.message_id.to_owned(),
                m.date_header.to_owned(),
                stored(m.now),
                m.consent_when.to_owned(),
                m.consent_where.to_owned(),
            ],
        )
    }

    fn mails_to_inbox_itself_since(&self, inbox: &InboxKey, since: Timestamp) -> Result<i64> {
        let row = self.query_one(queries::MAILS_TO_INBOX_ITSELF_SINCE, &[&inbox.as_str(), &stored(since)])?;
        Ok(row.try_get(0)?)
    }

    fn insert_inbox_mail(&self, inbox_hash: &[u8], now: Timestamp) -> Result<()> {
        self.send(queries::INSERT_INBOX_MAIL, owned![inbox_hash.to_vec(), stored(now)])
    }

    fn inbox_mails_since(&self, inbox_hash: &[u8], since: Timestamp) -> Result<i64> {
        let row = self.query_one(queries::COUNT_INBOX_MAILS_SINCE, &[&inbox_hash, &stored(since)])?;
        Ok(row.try_get(0)?)
    }

    fn delete_old_inbox_mails(&self, before: Timestamp) -> Result<u64> {
        self.execute(queries::DELETE_OLD_INBOX_MAILS, &[&stored(before)])
    }

    fn recent_mails(&self, subscription_id: i64, since: Timestamp) -> Result<(i64, Option<Timestamp>)> {
        let row = self.query_one(queries::RECENT_MAILS, &[&subscription_id, &stored(since)])?;
        Ok((row.try_get(0)?, optional_time(&row, 1)?))
    }

    fn claim_due_mails(&self, now: Timestamp, lease_until: Timestamp, limit: i64) -> Result<Vec<OutboxRow>> {
        self.all(queries::CLAIM_DUE_MAILS, &[&stored(now), &stored(lease_until), &limit], outbox_from_row)
    }

    fn select_outbox_mail(&self, id: i64) -> Result<Option<StoredMail>> {
        let Some(row) = self.query_opt(queries::SELECT_OUTBOX_MAIL, &[&id])? else { return Ok(None) };
        Ok(Some(StoredMail {
            rendering_sha256: row.try_get(0)?,
            to_email: row.try_get(1)?,
            to_name: row.try_get(2)?,
            link: row.try_get(3)?,
            message_id: row.try_get(4)?,
            date_header: row.try_get(5)?,
            message_sha256: row.try_get(6)?,
            consent_when: row.try_get(7)?,
            consent_where: row.try_get(8)?,
        }))
    }

    fn sent_mails_since(&self, since: Timestamp) -> Result<Vec<Timestamp>> {
        self.all(queries::SENT_MAILS_SINCE, &[&stored(since)], |row| time(row, 0))
    }

    fn next_due_mail(&self) -> Result<Option<Timestamp>> {
        optional_time(&self.query_one(queries::NEXT_DUE_MAIL, &[])?, 0)
    }

    fn mark_mail_sent(&self, id: i64, now: Timestamp, reply: &str, sha256: &str) -> Result<bool> {
        Ok(self.execute(queries::MARK_MAIL_SENT, &[&id, &stored(now), &reply, &sha256])? == 1)
    }

    fn mark_mail_retry(&self, id: i64, next_attempt_at: Timestamp, error: &str) -> Result<()> {
        self.send(queries::MARK_MAIL_RETRY, owned![id, stored(next_attempt_at), error.to_owned()])
    }

    fn mark_mail_failed(&self, id: i64, error: &str) -> Result<bool> {
        Ok(self.execute(queries::MARK_MAIL_FAILED, &[&id, &error])? == 1)
    }

    /// Releases nothing and returns 0. SQLite's one node frees, at start,
    /// the leases its own crashed run left. Here other nodes share the
    /// outbox and their leases are live: the table does not say which node
    /// holds a lease, so `RELEASE_LEASES` would make mails other nodes are
    /// delivering right now due again, and they would go out twice. A dead
    /// node's leases run out instead: `CLAIM_DUE_MAILS` takes a row again,
    /// on any node, once its `next_attempt_at` (the lease) has passed.
    /// `RELEASE_LEASES` stays in `postgres::queries` for a database no other
    /// node uses (`migrate-store`); it is not run here.
    fn release_leases(&self, _now: Timestamp) -> Result<u64> {
        Ok(0)
    }

    fn forget_queued_mail_names(&self) -> Result<u64> {
        self.execute(queries::FORGET_QUEUED_MAIL_NAMES, &[])
    }

    /// The caller's transaction must come from [`PgSession::begin_write`]
    /// (the writer's batch, a CLI command's `immediate`): its chain lock is
    /// what makes reading this link and appending the next event one step
    /// across nodes.
    /// Read once per write transaction, then kept (see [`PgSession`]).
    fn last_proof_link(&self) -> Result<Option<String>> {
        if let Some(head) = self.chain_head.borrow().as_ref() {
            return Ok(head.clone());
        }
        let head: Option<String> =
            self.query_opt(queries::LAST_PROOF_LINK, &[])?.map(|row| row.try_get(0)).transpose()?;
        if self.writing.get() {
            *self.chain_head.borrow_mut() = Some(head.clone());
        }
        Ok(head)
    }

    fn previous_proof_link(&self, id: i64) -> Result<String> {
        let row = self.query_opt(queries::PREVIOUS_PROOF_LINK, &[&id])?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.unwrap_or_default())
    }

    fn insert_proof_event(&self, e: &NewProofEvent<'_>) -> Result<()> {
        self.send(
            queries::INSERT_PROOF_EVENT,
            owned![
                e.subscription_id,
                e.at.to_owned(),
                e.kind.to_owned(),
                e.ip.map(str::to_owned),
                e.detail.to_owned(),
                i64::from(e.key_id),
                e.digest.to_owned(),
                e.link.to_owned(),
            ],
        )?;
        if self.writing.get() {
            *self.chain_head.borrow_mut() = Some(Some(e.link.to_owned()));
        }
        Ok(())
    }

    fn select_proof_events(&self, after_id: i64, limit: i64) -> Result<Vec<ProofEventRow>> {
        self.all(queries::SELECT_PROOF_EVENTS, &[&after_id, &limit], proof_event_from_row)
    }

    fn select_proof_events_of(&self, subscription_id: i64) -> Result<Vec<ProofEventRow>> {
        self.all(queries::SELECT_PROOF_EVENTS_OF, &[&subscription_id], proof_event_from_row)
    }

    fn select_subscriptions_page(&self, after_id: i64, limit: i64) -> Result<Vec<SubscriptionRow>> {
        self.all(queries::SELECT_SUBSCRIPTIONS_PAGE, &[&after_id, &limit], subscription_from_row)
    }

    fn select_proof_events_of_range(&self, after_id: i64, up_to_id: i64) -> Result<Vec<ProofEventRow>> {
        self.all(queries::SELECT_PROOF_EVENTS_OF_RANGE, &[&after_id, &up_to_id], proof_event_from_row)
    }

    fn erase_proof_events(&self, subscription_id: i64) -> Result<()> {
        self.execute(queries::ERASE_PROOF_EVENTS, &[&subscription_id])?;
        Ok(())
    }

    fn upsert_declined(&self, address_hash: &str, until: Timestamp) -> Result<()> {
        self.execute(queries::UPSERT_DECLINED, &[&address_hash, &stored(until)])?;
        Ok(())
    }

    fn is_declined(&self, address_hash: &str, now: Timestamp) -> Result<bool> {
        Ok(self.query_opt(queries::IS_DECLINED, &[&address_hash, &stored(now)])?.is_some())
    }

    fn count_daily(&self, which: DailyCount, day: &str, list_id: &str) -> Result<()> {
        let sql = match which {
            DailyCount::Signup => queries::COUNT_SIGNUP,
            DailyCount::Confirmation => queries::COUNT_CONFIRMATION,
            DailyCount::Unsubscribe => queries::COUNT_UNSUBSCRIBE,
            DailyCount::Request => queries::COUNT_REQUEST,
            DailyCount::Bot => queries::COUNT_BOT,
        };
        self.send(sql, owned![day.to_owned(), list_id.to_owned()])
    }

    fn count_export(&self, f: &ExportFilter) -> Result<u64> {
        let since = f.since.map(stored);
        let row = self.query_one(
            queries::COUNT_EXPORT_SUBSCRIPTIONS,
            &[&f.list_id.as_deref(), &f.status.map(Status::as_str), &since],
        )?;
        count(&row, 0)
    }

    /// Streams the rows one at a time, in constant memory (see
    /// [`Pipeline::for_each_row`]). A SQL cursor (`DECLARE … FETCH 1000`)
    /// would also bound memory, but holds 1000 rows at a time, needs three
    /// more statements and works only inside a transaction block.
    fn for_each_export_row(
        &self,
        f: &ExportFilter,
        each: &mut dyn FnMut(&ExportRecord<'_>) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let failed = |e: StoreError| e.to_string();
        let statement = self.statement(queries::EXPORT_SUBSCRIPTIONS).map_err(failed)?;
        let (list_id, status, since) = (f.list_id.as_deref(), f.status.map(Status::as_str), f.since.map(stored));
        let params: [&(dyn ToSql + Sync); 3] = [&list_id, &status, &since];
        self.db.for_each_row(
            &statement,
            &params,
            |e| failed(e.into()),
            |row| each(&export_record(&row).map_err(failed)?),
        )
    }

    fn subscriptions_of_address(&self, email_key: &EmailKey) -> Result<Vec<SubscriptionRow>> {
        self.all(queries::SUBSCRIPTIONS_OF_ADDRESS, &[&email_key.as_str()], subscription_from_row)
    }

    fn mails_of_subscription(&self, subscription_id: i64) -> Result<Vec<MailRow>> {
        self.all(queries::MAILS_OF_SUBSCRIPTION, &[&subscription_id], mail_from_row)
    }

    fn select_consent_text(&self, sha256: &str) -> Result<Option<String>> {
        let row = self.query_opt(queries::SELECT_CONSENT_TEXT, &[&sha256])?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    fn update_name(&self, id: i64, name: Option<&str>) -> Result<()> {
        self.execute(queries::UPDATE_NAME, &[&id, &name])?;
        Ok(())
    }

    fn purge_candidates(
        &self,
        pending_before: Timestamp,
        unsubscribed_before: Timestamp,
        limit: i64,
    ) -> Result<Vec<(i64, String, Status)>> {
        self.all(queries::PURGE_CANDIDATES, &[&stored(pending_before), &stored(unsubscribed_before), &limit], |row| {
            Ok((row.try_get(0)?, row.try_get(1)?, status(row, 2)?))
        })
    }

    fn purge_plan(
        &self,
        pending_before: Timestamp,
        unsubscribed_before: Timestamp,
    ) -> Result<Vec<(String, Status, u64)>> {
        self.all(queries::PURGE_PLAN, &[&stored(pending_before), &stored(unsubscribed_before)], status_count_from_row)
    }

    fn count_held_past_retention(&self, pending_before: Timestamp, unsubscribed_before: Timestamp) -> Result<u64> {
        let row = self
            .query_one(queries::COUNT_HELD_PAST_RETENTION, &[&stored(pending_before), &stored(unsubscribed_before)])?;
        count(&row, 0)
    }

    fn insert_legal_hold(&self, subscription_id: i64, reason: &str, now: Timestamp) -> Result<bool> {
        Ok(self.execute(queries::INSERT_LEGAL_HOLD, &[&subscription_id, &reason, &stored(now)])? == 1)
    }

    fn select_legal_holds_of_range(&self, after_id: i64, up_to_id: i64) -> Result<Vec<(i64, LegalHoldRow)>> {
        self.all(queries::SELECT_LEGAL_HOLDS_OF_RANGE, &[&after_id, &up_to_id], |row| {
            Ok((row.try_get(0)?, LegalHoldRow { reason: row.try_get(1)?, held_at: time(row, 2)? }))
        })
    }

    fn select_legal_hold(&self, subscription_id: i64) -> Result<Option<LegalHoldRow>> {
        let Some(row) = self.query_opt(queries::SELECT_LEGAL_HOLD, &[&subscription_id])? else { return Ok(None) };
        Ok(Some(LegalHoldRow { reason: row.try_get(0)?, held_at: time(&row, 1)? }))
    }

    fn delete_legal_hold(&self, subscription_id: i64) -> Result<bool> {
        Ok(self.execute(queries::DELETE_LEGAL_HOLD, &[&subscription_id])? == 1)
    }

    fn delete_expired_declines(&self, now: Timestamp) -> Result<u64> {
        self.execute(queries::DELETE_EXPIRED_DECLINES, &[&stored(now)])
    }

    fn count_expired_declines(&self, now: Timestamp) -> Result<u64> {
        count(&self.query_one(queries::COUNT_EXPIRED_DECLINES, &[&stored(now)])?, 0)
    }

    fn count_by_status(&self) -> Result<Vec<(String, Status, u64)>> {
        self.all(queries::COUNT_BY_STATUS, &[], status_count_from_row)
    }

    fn daily_stats_since(&self, first_day: &str) -> Result<Vec<DailyStats>> {
        self.all(queries::DAILY_STATS_SINCE, &[&first_day], |row| {
            Ok(DailyStats {
                day: row.try_get(0)?,
                list: row.try_get(1)?,
                signups: count(row, 2)?,
                confirmations: count(row, 3)?,
                unsubscribes: count(row, 4)?,
            })
        })
    }

    fn count_proof_events(&self) -> Result<u64> {
        count(&self.query_one(queries::COUNT_PROOF_EVENTS, &[])?, 0)
    }

    fn count_subscriptions(&self) -> Result<u64> {
        count(&self.query_one(queries::COUNT_SUBSCRIPTIONS, &[])?, 0)
    }

    fn count_queued_mails(&self) -> Result<u64> {
        count(&self.query_one(queries::COUNT_QUEUED_MAILS, &[])?, 0)
    }

    fn insert_webhook_call(&self, subscription_id: i64, event: WebhookEvent, occurred_at: Timestamp) -> Result<()> {
        self.send(queries::INSERT_WEBHOOK_CALL, owned![subscription_id, event.as_str(), stored(occurred_at)])
    }

    fn claim_due_webhook_calls(&self, now: Timestamp, lease_until: Timestamp, limit: i64) -> Result<Vec<WebhookCall>> {
        self.all(queries::CLAIM_DUE_WEBHOOK_CALLS, &[&stored(now), &stored(lease_until), &limit], webhook_call_from_row)
    }

    fn next_due_webhook_call(&self) -> Result<Option<Timestamp>> {
        optional_time(&self.query_one(queries::NEXT_DUE_WEBHOOK_CALL, &[])?, 0)
    }

    fn mark_webhook_sent(&self, id: i64, now: Timestamp, http_status: u16) -> Result<()> {
        self.send(queries::MARK_WEBHOOK_SENT, owned![id, stored(now), i64::from(http_status)])
    }

    fn mark_webhook_retry(
        &self,
        id: i64,
        next_attempt_at: Timestamp,
        http_status: Option<u16>,
        error: &str,
    ) -> Result<()> {
        let http_status = http_status.map(i64::from);
        self.send(queries::MARK_WEBHOOK_RETRY, owned![id, stored(next_attempt_at), http_status, error.to_owned()])
    }

    fn mark_webhook_failed(&self, id: i64, http_status: Option<u16>, error: &str) -> Result<()> {
        self.send(queries::MARK_WEBHOOK_FAILED, owned![id, http_status.map(i64::from), error.to_owned()])
    }

    fn ping(&self) -> Result<()> {
        self.query_one(queries::PING, &[])?;
        Ok(())
    }

    fn insert_anchor(&self, a: &NewAnchor<'_>) -> Result<()> {
        let events = i64::try_from(a.events).unwrap_or(i64::MAX);
        self.execute(
            queries::INSERT_ANCHOR,
            &[&events, &a.link, &a.tsa_url, &stored(a.requested_at), &stored(a.gen_time), &a.serial, &a.token],
        )?;
        Ok(())
    }

    fn select_anchors(&self) -> Result<Vec<AnchorRow>> {
        self.all(queries::SELECT_ANCHORS, &[], anchor_from_row)
    }

    fn latest_anchor(&self) -> Result<Option<AnchorRow>> {
        self.query_opt(queries::LATEST_ANCHOR, &[])?.as_ref().map(anchor_from_row).transpose()
    }

    fn first_anchor_covering(&self, events: u64) -> Result<Option<AnchorRow>> {
        let events = i64::try_from(events).unwrap_or(i64::MAX);
        self.query_opt(queries::FIRST_ANCHOR_COVERING, &[&events])?.as_ref().map(anchor_from_row).transpose()
    }

    fn proof_event_position(&self, id: i64) -> Result<u64> {
        count(&self.query_one(queries::PROOF_EVENT_POSITION, &[&id])?, 0)
    }
}
