//! The store interface: every operation the domain runs on the database,
//! in domain types ([`EmailKey`], [`Status`], [`Timestamp`]), and the rows
//! it reads and writes. The domain (`subscriptions`, `retention`, `proof`,
//! `mail`, `webhooks`, `admin`) is written once against [`Db`]; each backend
//! implements it next to its statements:
//!
//! | backend | implementation | statements |
//! |---|---|---|
//! | SQLite (one node, the default) | `impl Db for rusqlite::Connection` | `store::queries` |
//! | PostgreSQL (several nodes) | `impl Db for postgres::PgSession` | `store::postgres::queries` |
//!
//! A `&dyn Db` is one connection inside the transaction its caller opened
//! (the writer's batch, a CLI command's `immediate` or `snapshot`); the
//! methods never begin or end transactions themselves. Each method is one
//! named statement of its backend's `queries` (two for `insert_subscription`
//! on SQLite, which reads `last_insert_rowid`), so a method's doc is its
//! statement's doc.
//!
//! One operation behaves differently across backends, and says why in its
//! implementation: `release_leases` (SQLite releases a crashed run's leases
//! at start; on PostgreSQL other nodes' leases are live, so it releases
//! nothing and leases run out instead). On PostgreSQL, `last_proof_link`
//! relies on its transaction holding the chain lock, which every write
//! transaction takes when it begins (`PgSession::begin_write`).

use crate::clock::Timestamp;
use crate::domain::{EmailKey, Evidence, ImportFormat, InboxKey, Status, UnsubscribeMethod, WebhookEvent};

use super::Result;

/// A stored subscription, as the domain needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionRow {
    pub id: i64,
    pub list_id: String,
    pub email: String,
    pub name: Option<String>,
    pub status: Status,
    pub consent_sha256: String,
    pub signup_at: Timestamp,
    pub signup_ip: String,
    pub confirmed_at: Option<Timestamp>,
    pub confirmed_ip: Option<String>,
    pub unsubscribed_at: Option<Timestamp>,
    pub unsubscribed_ip: Option<String>,
    pub unsubscribe_method: Option<UnsubscribeMethod>,
    /// The page the form was on (`form_pages`), when the browser named it.
    pub form_page_sha256: Option<String>,
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub subscription_id: i64,
    pub rendering_sha256: String,
    pub to_email: String,
    pub to_name: Option<String>,
    pub link: String,
    pub message_id: String,
    pub date_header: String,
    pub created_at: Timestamp,
    pub attempts: i64,
    /// When and where the signup was made, as the mail states it (format 3
    /// on; `None` on rows queued before).
    pub consent_when: Option<String>,
    pub consent_where: Option<String>,
}

/// A stored mail rendering (see `mail::Rendering`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderingRow {
    pub format: i64,
    pub sender: String,
    pub from_header: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

/// A proof event as stored. `at` stays the exact stored text: the chain's
/// digest covers those bytes, so an edited value must reach `proof::verify`
/// as a broken link, not fail here as an unreadable time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProofEventRow {
    pub id: i64,
    pub subscription_id: Option<i64>,
    pub at: Option<String>,
    pub kind: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
    pub key_id: i64,
    pub digest: String,
    pub link: String,
    pub erased: bool,
}

/// New fields of a pending signup.
pub struct NewSubscription<'a> {
    pub list_id: &'a str,
    pub email: &'a str,
    pub email_key: &'a EmailKey,
    pub name: Option<&'a str>,
    pub consent_sha256: &'a str,
    pub now: Timestamp,
    pub ip: &'a str,
    pub form_page_sha256: Option<&'a str>,
}

/// A subscription taken in by `listgate import`, in the state and with the
/// evidence its file gave: confirmed or unsubscribed, never pending.
pub struct ImportedSubscription<'a> {
    pub list_id: &'a str,
    pub email: &'a str,
    pub email_key: &'a EmailKey,
    pub name: Option<&'a str>,
    pub status: Status,
    pub consent_sha256: &'a str,
    pub signup_at: Timestamp,
    /// Empty when the file named none.
    pub signup_ip: &'a str,
    pub confirmed_at: Timestamp,
    pub confirmed_ip: Option<&'a str>,
    pub unsubscribed_at: Option<Timestamp>,
}

/// Where an imported subscription's evidence came from (`imports`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportRow {
    pub imported_at: Timestamp,
    pub format: ImportFormat,
    pub source_sha256: String,
    pub line: i64,
    pub evidence: Evidence,
}

/// Values of a queued confirmation mail.
pub struct NewMail<'a> {
    pub subscription_id: i64,
    pub rendering_sha256: &'a str,
    pub to_email: &'a str,
    pub link: &'a str,
    pub message_id: &'a str,
    pub date_header: &'a str,
    pub now: Timestamp,
    /// When and where the signup was made, as the mail states it.
    pub consent_when: &'a str,
    pub consent_where: &'a str,
}

/// What is stored of one mail: enough to rebuild its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMail {
    pub rendering_sha256: String,
    pub to_email: String,
    pub to_name: Option<String>,
    pub link: String,
    pub message_id: String,
    pub date_header: String,
    /// Recorded when the mail was handed over; `None` before that.
    pub message_sha256: Option<String>,
    pub consent_when: Option<String>,
    pub consent_where: Option<String>,
}

/// A proof event to append; `digest` and `link` are computed by `proof`,
/// over `at` as this exact text.
pub struct NewProofEvent<'a> {
    pub subscription_id: i64,
    pub at: &'a str,
    pub kind: &'a str,
    pub ip: Option<&'a str>,
    pub detail: &'a str,
    pub key_id: u16,
    pub digest: &'a str,
    pub link: &'a str,
}

/// Which daily counter to bump.
#[derive(Debug, Clone, Copy)]
pub enum DailyCount {
    Signup,
    Confirmation,
    Unsubscribe,
    Request,
    Bot,
}

/// Filters of an export; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub list_id: Option<String>,
    pub status: Option<Status>,
    pub since: Option<Timestamp>,
}

/// One row of `EXPORT_SUBSCRIPTIONS`, borrowed from SQLite's current row:
/// an export of a million rows allocates nothing per row for these values.
/// Its times pass through as the stored text, which is a [`Timestamp`]'s
/// `Display` by construction, so nothing is parsed and formatted again.
#[derive(Debug, Clone, Copy)]
pub struct ExportRecord<'a> {
    pub id: i64,
    pub list_id: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub status: Status,
    pub consent_sha256: &'a str,
    pub signup_at: &'a str,
    pub signup_ip: &'a str,
    pub confirmed_at: Option<&'a str>,
    pub confirmed_ip: Option<&'a str>,
    pub unsubscribed_at: Option<&'a str>,
    pub evidence: Evidence,
    /// When `listgate import` took it in; `None` for listgate's own.
    pub imported_at: Option<&'a str>,
    /// The page the form was on, when the browser named it.
    pub form_page: Option<&'a str>,
}

/// A mail as listed for an operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailRow {
    pub id: i64,
    pub state: String,
    pub created_at: Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
    pub smtp_reply: Option<String>,
    pub message_id: String,
    pub message_sha256: Option<String>,
}

/// One day's anonymous counts for one list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DailyStats {
    pub day: String,
    pub list: String,
    pub signups: u64,
    pub confirmations: u64,
    pub unsubscribes: u64,
}

/// A webhook call as claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCall {
    pub id: i64,
    pub subscription_id: i64,
    pub event: WebhookEvent,
    pub occurred_at: Timestamp,
    pub attempts: i64,
}

/// A stored RFC 3161 anchor of a chain head (`anchor`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AnchorRow {
    pub id: i64,
    /// The head's N: how many events the chain had.
    pub events: u64,
    /// The head's last link, hex.
    pub link: String,
    pub tsa_url: String,
    /// When listgate asked the TSA.
    pub requested_at: Timestamp,
    /// The TSA's `genTime`, to the millisecond.
    pub gen_time: Timestamp,
    /// The TSA's `serialNumber`, hex.
    pub serial: String,
    /// The DER `TimeStampToken` (a CMS `ContentInfo`), base64 in JSON.
    #[serde(serialize_with = "base64_bytes")]
    pub token: Vec<u8>,
}

fn base64_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// An anchor to store: a head and the TSA's checked token over it.
pub struct NewAnchor<'a> {
    pub events: u64,
    pub link: &'a str,
    pub tsa_url: &'a str,
    pub requested_at: Timestamp,
    pub gen_time: Timestamp,
    pub serial: &'a str,
    pub token: &'a [u8],
}

/// A legal hold on a subscription (`legal_holds`): while it stands, purge
/// skips the subscription and `listgate erase` refuses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegalHoldRow {
    pub reason: String,
    pub held_at: Timestamp,
}

/// Every operation the domain runs on a database, on one connection inside
/// its caller's transaction. See the module comment.
pub trait Db {
    fn insert_consent_text(&self, sha256: &str, text: &str, now: Timestamp) -> Result<()>;
    /// Stores a form page (origin and path) once per distinct value.
    fn insert_form_page(&self, sha256: &str, page: &str, now: Timestamp) -> Result<()>;
    fn select_form_page(&self, sha256: &str) -> Result<Option<String>>;
    fn insert_rendering(&self, sha256: &str, r: &RenderingRow, now: Timestamp) -> Result<()>;
    fn select_rendering(&self, sha256: &str) -> Result<Option<RenderingRow>>;
    fn select_live_subscription(&self, list_id: &str, email_key: &EmailKey) -> Result<Option<SubscriptionRow>>;
    fn select_subscription(&self, id: i64) -> Result<Option<SubscriptionRow>>;
    fn insert_subscription(&self, s: &NewSubscription<'_>) -> Result<i64>;
    fn insert_imported_subscription(&self, s: &ImportedSubscription<'_>) -> Result<i64>;
    fn insert_import(&self, subscription_id: i64, i: &ImportRow) -> Result<()>;
    fn select_import(&self, subscription_id: i64) -> Result<Option<ImportRow>>;
    fn first_subscription_on_list(&self, list_id: &str, email_key: &EmailKey) -> Result<Option<(i64, Status)>>;
    /// Returns whether a pending subscription was confirmed.
    fn confirm_subscription(&self, id: i64, now: Timestamp, ip: &str) -> Result<bool>;
    /// Returns whether a live subscription was ended.
    fn unsubscribe_subscription(&self, id: i64, now: Timestamp, ip: &str, method: UnsubscribeMethod) -> Result<bool>;
    fn delete_subscription(&self, id: i64) -> Result<()>;
    /// Returns nothing: no caller needs the id, and PostgreSQL's writer
    /// sends the row without waiting for an answer.
    fn insert_outbox(&self, m: &NewMail<'_>) -> Result<()>;
    /// How many mails were queued since `since` to the address whose key is
    /// the inbox itself.
    fn mails_to_inbox_itself_since(&self, inbox: &InboxKey, since: Timestamp) -> Result<i64>;
    /// Counts a confirmation mail queued to another spelling of the inbox with
    /// this keyed hash.
    fn insert_inbox_mail(&self, inbox_hash: &[u8], now: Timestamp) -> Result<()>;
    /// How many confirmation mails were queued to other spellings of an inbox
    /// since `since`.
    fn inbox_mails_since(&self, inbox_hash: &[u8], since: Timestamp) -> Result<i64>;
    /// Forgets inbox counts from before `before`; returns how many.
    fn delete_old_inbox_mails(&self, before: Timestamp) -> Result<u64>;
    /// How many mails were queued for a subscription since `since`, and when the latest was.
    fn recent_mails(&self, subscription_id: i64, since: Timestamp) -> Result<(i64, Option<Timestamp>)>;
    fn claim_due_mails(&self, now: Timestamp, lease_until: Timestamp, limit: i64) -> Result<Vec<OutboxRow>>;
    fn select_outbox_mail(&self, id: i64) -> Result<Option<StoredMail>>;
    /// When the mails sent after `since` were sent, oldest first.
    fn sent_mails_since(&self, since: Timestamp) -> Result<Vec<Timestamp>>;
    fn next_due_mail(&self) -> Result<Option<Timestamp>>;
    /// Returns whether the row was still queued (and is now sent).
    fn mark_mail_sent(&self, id: i64, now: Timestamp, reply: &str, sha256: &str) -> Result<bool>;
    fn mark_mail_retry(&self, id: i64, next_attempt_at: Timestamp, error: &str) -> Result<()>;
    /// Returns whether the row was still queued (and is now failed).
    fn mark_mail_failed(&self, id: i64, error: &str) -> Result<bool>;
    /// Returns how many leases were released.
    fn release_leases(&self, now: Timestamp) -> Result<u64>;
    /// Returns how many queued mails lost the name an older listgate put on them.
    fn forget_queued_mail_names(&self) -> Result<u64>;
    fn last_proof_link(&self) -> Result<Option<String>>;
    /// The link before event `id` (empty for the first event).
    fn previous_proof_link(&self, id: i64) -> Result<String>;
    /// Returns nothing, as [`Db::insert_outbox`].
    fn insert_proof_event(&self, e: &NewProofEvent<'_>) -> Result<()>;
    /// Up to `limit` events with an id above `after_id`, in chain order.
    fn select_proof_events(&self, after_id: i64, limit: i64) -> Result<Vec<ProofEventRow>>;
    fn select_proof_events_of(&self, subscription_id: i64) -> Result<Vec<ProofEventRow>>;
    /// Up to `limit` subscriptions with ids above `after_id`, by id.
    fn select_subscriptions_page(&self, after_id: i64, limit: i64) -> Result<Vec<SubscriptionRow>>;
    /// The events not yet erased of subscriptions `after_id < id <= up_to_id`,
    /// by subscription, then in chain order.
    fn select_proof_events_of_range(&self, after_id: i64, up_to_id: i64) -> Result<Vec<ProofEventRow>>;
    fn erase_proof_events(&self, subscription_id: i64) -> Result<()>;
    fn upsert_declined(&self, address_hash: &str, until: Timestamp) -> Result<()>;
    fn is_declined(&self, address_hash: &str, now: Timestamp) -> Result<bool>;
    fn count_daily(&self, which: DailyCount, day: &str, list_id: &str) -> Result<()>;
    fn count_export(&self, f: &ExportFilter) -> Result<u64>;
    /// Streams the export rows to `each`, one at a time (constant memory).
    fn for_each_export_row(
        &self,
        f: &ExportFilter,
        each: &mut dyn FnMut(&ExportRecord<'_>) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String>;
    fn subscriptions_of_address(&self, email_key: &EmailKey) -> Result<Vec<SubscriptionRow>>;
    fn mails_of_subscription(&self, subscription_id: i64) -> Result<Vec<MailRow>>;
    fn select_consent_text(&self, sha256: &str) -> Result<Option<String>>;
    fn update_name(&self, id: i64, name: Option<&str>) -> Result<()>;
    /// Up to `limit` subscriptions past retention: (id, list_id, status).
    fn purge_candidates(
        &self,
        pending_before: Timestamp,
        unsubscribed_before: Timestamp,
        limit: i64,
    ) -> Result<Vec<(i64, String, Status)>>;
    /// (list_id, status, count) of what a purge would erase.
    fn purge_plan(
        &self,
        pending_before: Timestamp,
        unsubscribed_before: Timestamp,
    ) -> Result<Vec<(String, Status, u64)>>;
    /// How many subscriptions past retention a legal hold keeps from the purge.
    fn count_held_past_retention(&self, pending_before: Timestamp, unsubscribed_before: Timestamp) -> Result<u64>;
    /// Places a legal hold; returns whether it is new (false: the
    /// subscription was held already, and keeps its first hold).
    fn insert_legal_hold(&self, subscription_id: i64, reason: &str, now: Timestamp) -> Result<bool>;
    fn select_legal_hold(&self, subscription_id: i64) -> Result<Option<LegalHoldRow>>;
    /// The holds on subscriptions `after_id < id <= up_to_id`, by subscription id.
    fn select_legal_holds_of_range(&self, after_id: i64, up_to_id: i64) -> Result<Vec<(i64, LegalHoldRow)>>;
    /// Releases a legal hold; returns whether there was one.
    fn delete_legal_hold(&self, subscription_id: i64) -> Result<bool>;
    fn delete_expired_declines(&self, now: Timestamp) -> Result<u64>;
    fn count_expired_declines(&self, now: Timestamp) -> Result<u64>;
    /// (list_id, status, count) over all subscriptions.
    fn count_by_status(&self) -> Result<Vec<(String, Status, u64)>>;
    fn daily_stats_since(&self, first_day: &str) -> Result<Vec<DailyStats>>;
    fn count_proof_events(&self) -> Result<u64>;
    fn count_subscriptions(&self) -> Result<u64>;
    fn count_queued_mails(&self) -> Result<u64>;
    fn insert_webhook_call(&self, subscription_id: i64, event: WebhookEvent, occurred_at: Timestamp) -> Result<()>;
    fn claim_due_webhook_calls(&self, now: Timestamp, lease_until: Timestamp, limit: i64) -> Result<Vec<WebhookCall>>;
    fn next_due_webhook_call(&self) -> Result<Option<Timestamp>>;
    fn mark_webhook_sent(&self, id: i64, now: Timestamp, http_status: u16) -> Result<()>;
    fn mark_webhook_retry(
        &self,
        id: i64,
        next_attempt_at: Timestamp,
        http_status: Option<u16>,
        error: &str,
    ) -> Result<()>;
    fn mark_webhook_failed(&self, id: i64, http_status: Option<u16>, error: &str) -> Result<()>;
    fn ping(&self) -> Result<()>;
    /// Returns nothing, as [`Db::insert_outbox`].
    fn insert_anchor(&self, a: &NewAnchor<'_>) -> Result<()>;
    /// Every anchor, oldest first.
    fn select_anchors(&self) -> Result<Vec<AnchorRow>>;
    /// The newest anchor, if any.
    fn latest_anchor(&self) -> Result<Option<AnchorRow>>;
    /// The oldest anchor whose head has at least `events` events: the first
    /// that covers the event at that position.
    fn first_anchor_covering(&self, events: u64) -> Result<Option<AnchorRow>>;
    /// Event `id`'s position in the chain, counted from 1 (as a head's N):
    /// how many events have an id up to it.
    fn proof_event_position(&self, id: i64) -> Result<u64>;
}
