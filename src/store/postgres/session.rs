//! [`PgSession`]: one PostgreSQL connection with its prepared statements,
//! and the PostgreSQL implementation of the store interface
//! ([`crate::store::db::Db`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use ::postgres::{Client, Statement};

use super::queries;
use crate::store::Result;
use crate::clock::Timestamp;
use crate::domain::{EmailKey, InboxKey, Status, UnsubscribeMethod, WebhookEvent};
use crate::store::db::*;

/// One connection, as the writer thread, each reader and each CLI command
/// hold it. Statements are prepared once per connection and kept (a signup
/// runs a dozen; preparing each again would double its round trips).
///
/// Transactions are plain `BEGIN`/`COMMIT` statements sent through
/// [`PgSession::batch`], so one type serves inside and outside them.
pub struct PgSession {
    client: RefCell<Client>,
    statements: RefCell<HashMap<&'static str, Statement>>,
    /// Whether this transaction holds the chain lock (see `last_proof_link`).
    chain_locked: Cell<bool>,
}

impl PgSession {
    pub fn new(client: Client) -> PgSession {
        PgSession { client: RefCell::new(client), statements: RefCell::new(HashMap::new()), chain_locked: Cell::new(false) }
    }

    /// Runs transaction control or other statements without parameters
    /// (`BEGIN`, `COMMIT`, `SAVEPOINT job`, …). Ending a transaction, or
    /// rolling back to a savepoint, releases the chain lock.
    pub fn batch(&self, sql: &str) -> Result<()> {
        let upper = sql.trim_start().to_ascii_uppercase();
        if upper.starts_with("COMMIT") || upper.starts_with("ROLLBACK") {
            self.chain_locked.set(false);
        }
        self.client.borrow_mut().batch_execute(sql)?;
        Ok(())
    }

    /// Whether the connection is closed (the server went away): the owner
    /// replaces it.
    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// Brings the schema up to date (see [`super::migrate`]).
    pub fn migrate(&self) -> Result<super::Migrated> {
        Ok(super::migrate(&mut self.client.borrow_mut())?)
    }

    /// Takes the session-level advisory lock `key` if it is free.
    pub fn try_advisory_lock(&self, key: i64) -> Result<bool> {
        let statement = self.statement(queries::TRY_LOCK_FOR_SESSION)?;
        Ok(self.client.borrow_mut().query_one(&statement, &[&key])?.get(0))
    }

    /// Lends the client to `job`, for the copy of `migrate-store`, whose
    /// statements are made from the tables' columns.
    pub(super) fn with_client<T>(&self, job: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        job(&mut self.client.borrow_mut())
    }

    /// Whether `table` (one of the schema's own names) holds any row.
    pub(super) fn has_rows(&self, table: &str) -> Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        Ok(self.client.borrow_mut().query_one(&sql, &[])?.get(0))
    }

    /// The prepared statement for `sql`, preparing it on first use.
    fn statement(&self, sql: &'static str) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.borrow_mut().prepare(sql)?;
        self.statements.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Db for PgSession {
    fn insert_consent_text(&self, _sha256: &str, _text: &str, _now: Timestamp) -> Result<()> {
        unimplemented!("PostgreSQL: insert_consent_text")
    }

    fn insert_rendering(&self, _sha256: &str, _r: &RenderingRow, _now: Timestamp) -> Result<()> {
        unimplemented!("PostgreSQL: insert_rendering")
    }

    fn select_rendering(&self, _sha256: &str) -> Result<Option<RenderingRow>> {
        unimplemented!("PostgreSQL: select_rendering")
    }

    fn select_live_subscription(&self, _list_id: &str,
    _email_key: &EmailKey) -> Result<Option<SubscriptionRow>> {
        unimplemented!("PostgreSQL: select_live_subscription")
    }

    fn select_subscription(&self, _id: i64) -> Result<Option<SubscriptionRow>> {
        unimplemented!("PostgreSQL: select_subscription")
    }

    fn insert_subscription(&self, _s: &NewSubscription<'_>) -> Result<i64> {
        unimplemented!("PostgreSQL: insert_subscription")
    }

    fn confirm_subscription(&self, _id: i64, _now: Timestamp, _ip: &str) -> Result<bool> {
        unimplemented!("PostgreSQL: confirm_subscription")
    }

    fn unsubscribe_subscription(&self, _id: i64,
    _now: Timestamp,
    _ip: &str,
    _method: UnsubscribeMethod) -> Result<bool> {
        unimplemented!("PostgreSQL: unsubscribe_subscription")
    }

    fn delete_subscription(&self, _id: i64) -> Result<()> {
        unimplemented!("PostgreSQL: delete_subscription")
    }

    fn insert_outbox(&self, _m: &NewMail<'_>) -> Result<i64> {
        unimplemented!("PostgreSQL: insert_outbox")
    }

    fn mails_to_inbox_itself_since(&self, _inbox: &InboxKey, _since: Timestamp) -> Result<i64> {
        unimplemented!("PostgreSQL: mails_to_inbox_itself_since")
    }

    fn insert_inbox_mail(&self, _inbox_hash: &[u8], _now: Timestamp) -> Result<()> {
        unimplemented!("PostgreSQL: insert_inbox_mail")
    }

    fn inbox_mails_since(&self, _inbox_hash: &[u8], _since: Timestamp) -> Result<i64> {
        unimplemented!("PostgreSQL: inbox_mails_since")
    }

    fn delete_old_inbox_mails(&self, _before: Timestamp) -> Result<u64> {
        unimplemented!("PostgreSQL: delete_old_inbox_mails")
    }

    fn recent_mails(&self, _subscription_id: i64, _since: Timestamp) -> Result<(i64, Option<Timestamp>)> {
        unimplemented!("PostgreSQL: recent_mails")
    }

    fn claim_due_mails(&self, _now: Timestamp,
    _lease_until: Timestamp,
    _limit: i64) -> Result<Vec<OutboxRow>> {
        unimplemented!("PostgreSQL: claim_due_mails")
    }

    fn select_outbox_mail(&self, _id: i64) -> Result<Option<StoredMail>> {
        unimplemented!("PostgreSQL: select_outbox_mail")
    }

    fn sent_mails_since(&self, _since: Timestamp) -> Result<Vec<Timestamp>> {
        unimplemented!("PostgreSQL: sent_mails_since")
    }

    fn next_due_mail(&self) -> Result<Option<Timestamp>> {
        unimplemented!("PostgreSQL: next_due_mail")
    }

    fn mark_mail_sent(&self, _id: i64, _now: Timestamp, _reply: &str, _sha256: &str) -> Result<bool> {
        unimplemented!("PostgreSQL: mark_mail_sent")
    }

    fn mark_mail_retry(&self, _id: i64, _next_attempt_at: Timestamp, _error: &str) -> Result<()> {
        unimplemented!("PostgreSQL: mark_mail_retry")
    }

    fn mark_mail_failed(&self, _id: i64, _error: &str) -> Result<bool> {
        unimplemented!("PostgreSQL: mark_mail_failed")
    }

    fn release_leases(&self, _now: Timestamp) -> Result<u64> {
        unimplemented!("PostgreSQL: release_leases")
    }

    fn forget_queued_mail_names(&self) -> Result<u64> {
        unimplemented!("PostgreSQL: forget_queued_mail_names")
    }

    fn last_proof_link(&self) -> Result<Option<String>> {
        unimplemented!("PostgreSQL: last_proof_link")
    }

    fn previous_proof_link(&self, _id: i64) -> Result<String> {
        unimplemented!("PostgreSQL: previous_proof_link")
    }

    fn insert_proof_event(&self, _e: &NewProofEvent<'_>) -> Result<i64> {
        unimplemented!("PostgreSQL: insert_proof_event")
    }

    fn select_proof_events(&self, _after_id: i64, _limit: i64) -> Result<Vec<ProofEventRow>> {
        unimplemented!("PostgreSQL: select_proof_events")
    }

    fn select_proof_events_of(&self, _subscription_id: i64) -> Result<Vec<ProofEventRow>> {
        unimplemented!("PostgreSQL: select_proof_events_of")
    }

    fn erase_proof_events(&self, _subscription_id: i64) -> Result<()> {
        unimplemented!("PostgreSQL: erase_proof_events")
    }

    fn upsert_declined(&self, _address_hash: &str, _until: Timestamp) -> Result<()> {
        unimplemented!("PostgreSQL: upsert_declined")
    }

    fn is_declined(&self, _address_hash: &str, _now: Timestamp) -> Result<bool> {
        unimplemented!("PostgreSQL: is_declined")
    }

    fn count_daily(&self, _which: DailyCount, _day: &str, _list_id: &str) -> Result<()> {
        unimplemented!("PostgreSQL: count_daily")
    }

    fn count_export(&self, _f: &ExportFilter) -> Result<u64> {
        unimplemented!("PostgreSQL: count_export")
    }

    fn for_each_export_row(&self, _f: &ExportFilter,
    _each: &mut dyn FnMut(&ExportRecord<'_>) -> std::result::Result<(), String>) -> std::result::Result<(), String> {
        unimplemented!("PostgreSQL: for_each_export_row")
    }

    fn subscriptions_of_address(&self, _email_key: &EmailKey) -> Result<Vec<SubscriptionRow>> {
        unimplemented!("PostgreSQL: subscriptions_of_address")
    }

    fn mails_of_subscription(&self, _subscription_id: i64) -> Result<Vec<MailRow>> {
        unimplemented!("PostgreSQL: mails_of_subscription")
    }

    fn select_consent_text(&self, _sha256: &str) -> Result<Option<String>> {
        unimplemented!("PostgreSQL: select_consent_text")
    }

    fn update_name(&self, _id: i64, _name: Option<&str>) -> Result<()> {
        unimplemented!("PostgreSQL: update_name")
    }

    fn purge_candidates(&self, _pending_before: Timestamp,
    _unsubscribed_before: Timestamp,
    _limit: i64) -> Result<Vec<(i64, String, Status)>> {
        unimplemented!("PostgreSQL: purge_candidates")
    }

    fn purge_plan(&self, _pending_before: Timestamp,
    _unsubscribed_before: Timestamp) -> Result<Vec<(String, Status, u64)>> {
        unimplemented!("PostgreSQL: purge_plan")
    }

    fn delete_expired_declines(&self, _now: Timestamp) -> Result<u64> {
        unimplemented!("PostgreSQL: delete_expired_declines")
    }

    fn count_expired_declines(&self, _now: Timestamp) -> Result<u64> {
        unimplemented!("PostgreSQL: count_expired_declines")
    }

    fn count_by_status(&self) -> Result<Vec<(String, Status, u64)>> {
        unimplemented!("PostgreSQL: count_by_status")
    }

    fn daily_stats_since(&self, _first_day: &str) -> Result<Vec<DailyStats>> {
        unimplemented!("PostgreSQL: daily_stats_since")
    }

    fn count_proof_events(&self) -> Result<u64> {
        unimplemented!("PostgreSQL: count_proof_events")
    }

    fn count_queued_mails(&self) -> Result<u64> {
        unimplemented!("PostgreSQL: count_queued_mails")
    }

    fn insert_webhook_call(&self, _subscription_id: i64,
    _event: WebhookEvent,
    _occurred_at: Timestamp) -> Result<()> {
        unimplemented!("PostgreSQL: insert_webhook_call")
    }

    fn claim_due_webhook_calls(&self, _now: Timestamp,
    _lease_until: Timestamp,
    _limit: i64) -> Result<Vec<WebhookCall>> {
        unimplemented!("PostgreSQL: claim_due_webhook_calls")
    }

    fn next_due_webhook_call(&self) -> Result<Option<Timestamp>> {
        unimplemented!("PostgreSQL: next_due_webhook_call")
    }

    fn mark_webhook_sent(&self, _id: i64, _now: Timestamp, _http_status: u16) -> Result<()> {
        unimplemented!("PostgreSQL: mark_webhook_sent")
    }

    fn mark_webhook_retry(&self, _id: i64,
    _next_attempt_at: Timestamp,
    _http_status: Option<u16>,
    _error: &str) -> Result<()> {
        unimplemented!("PostgreSQL: mark_webhook_retry")
    }

    fn mark_webhook_failed(&self, _id: i64, _http_status: Option<u16>, _error: &str) -> Result<()> {
        unimplemented!("PostgreSQL: mark_webhook_failed")
    }

    fn ping(&self) -> Result<()> {
        unimplemented!("PostgreSQL: ping")
    }

}
