//! The double opt-in itself: signup, confirm, decline, unsubscribe.
//!
//! Each operation is a plain function over one SQLite connection, run inside
//! the store writer's transaction, so the subscription row, its proof event,
//! its outbox row and the daily count commit together or not at all. HTTP
//! knows nothing of this module's internals and this module knows nothing of
//! HTTP: tests call it directly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ring::hmac;
use serde_json::json;
use time::OffsetDateTime;

use crate::clock::Timestamp;
use crate::config::{Config, ListConfig};
pub use crate::domain::UnsubscribeMethod;
use crate::domain::{Email, EmailKey, FormPage, InboxKey, Name, Status, WebhookEvent};
use crate::keys::KeyRing;
use crate::mail;
use crate::proof::{self, EventKind};
use crate::store::Result;
use crate::store::db::{DailyCount, Db, NewMail, NewSubscription};
use crate::token::{self, Purpose, Subject, VerifiedToken};

/// A configured list with what was prepared for it at start.
#[derive(Debug, Clone)]
pub struct PreparedList {
    pub config: ListConfig,
    pub consent_sha256: String,
    pub rendering_sha256: String,
    pub sender: String,
}

/// Everything the operations need besides the connection and the time.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub keys: Arc<KeyRing>,
    pub lists: Arc<HashMap<String, PreparedList>>,
}

impl Context {
    /// Renders each list's mail and stores its consent text and rendering
    /// (once per distinct content), so signups only reference them by hash.
    pub fn prepare(
        conn: &dyn Db,
        config: Arc<Config>,
        keys: Arc<KeyRing>,
        now: OffsetDateTime,
    ) -> Result<Context, String> {
        let now = Timestamp::from(now);
        let mut lists = HashMap::new();
        for list in &config.lists {
            let consent_sha256 = mail::sha256_hex(list.consent_text.as_bytes());
            let (rendering_sha256, rendering) = mail::render(&config, list)?;
            conn.insert_consent_text(&consent_sha256, &list.consent_text, now).map_err(|e| e.to_string())?;
            conn.insert_rendering(&rendering_sha256, &rendering, now).map_err(|e| e.to_string())?;
            let prepared =
                PreparedList { config: list.clone(), consent_sha256, rendering_sha256, sender: rendering.sender };
            lists.insert(list.id.clone(), prepared);
        }
        Ok(Context { config, keys, lists: Arc::new(lists) })
    }

    pub fn list(&self, id: &str) -> Option<&PreparedList> {
        self.lists.get(id)
    }
}

/// A parsed signup.
#[derive(Debug, Clone)]
pub struct Signup {
    pub list_id: String,
    pub email: Email,
    pub name: Option<Name>,
    pub ip: IpAddr,
    /// The page the form was on, when the browser named it.
    pub page: Option<FormPage>,
}

/// What a signup did. The HTTP answer is the same for all of them, so no
/// one can learn from it whether an address is subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupOutcome {
    /// New pending subscription, mail queued.
    Created { subscription_id: i64 },
    /// Already pending; a new mail was queued.
    Resent { subscription_id: i64 },
    /// Already pending, but a mail went out too recently or too often today.
    ResendLimited,
    /// Already confirmed: no mail, nothing stored.
    AlreadyConfirmed,
    /// The address said "I did not sign up" recently: no mail, nothing stored.
    Declined,
}

pub fn signup(conn: &dyn Db, ctx: &Context, s: &Signup, now: OffsetDateTime) -> Result<SignupOutcome> {
    let list = ctx.list(&s.list_id).expect("handlers only pass configured lists");
    let at = Timestamp::from(now);
    // Every path writes, so every answer waits for a commit alike.
    conn.count_daily(DailyCount::Request, &at.day(), &s.list_id)?;
    if is_declined(conn, &ctx.keys, s.email.key(), at)? {
        return Ok(SignupOutcome::Declined);
    }
    let ip = s.ip.to_string();
    let page_sha256 = s.page.as_ref().map(FormPage::sha256);
    if let (Some(page), Some(sha256)) = (&s.page, &page_sha256) {
        conn.insert_form_page(sha256, page.as_str(), at)?;
    }
    let request = Request { at: now, page: s.page.as_ref() };
    match conn.select_live_subscription(&s.list_id, s.email.key())? {
        Some(existing) if existing.status == Status::Confirmed => Ok(SignupOutcome::AlreadyConfirmed),
        Some(existing) => {
            if !may_resend(conn, ctx, existing.id, s.email.key(), at)? {
                return Ok(SignupOutcome::ResendLimited);
            }
            let detail = json!({"form_page": page_sha256});
            proof::append(conn, &ctx.keys, existing.id, at, EventKind::SignupRepeated, Some(&ip), &detail)?;
            // Deliver to the address as first stored, in its ASCII form.
            let to = Email::parse(&existing.email).map_or(existing.email.clone(), |e| e.ascii().to_string());
            queue_confirmation(conn, ctx, list, existing.id, s.email.key(), &to, request)?;
            Ok(SignupOutcome::Resent { subscription_id: existing.id })
        }
        None => {
            let name = s.name.as_ref().map(Name::as_str);
            let id = conn.insert_subscription(&NewSubscription {
                list_id: &s.list_id,
                email: s.email.as_str(),
                email_key: s.email.key(),
                name,
                consent_sha256: &list.consent_sha256,
                now: at,
                ip: &ip,
                form_page_sha256: page_sha256.as_deref(),
            })?;
            let detail = json!({
                "list": s.list_id,
                "email": s.email.as_str(),
                "name": name,
                "consent_sha256": list.consent_sha256,
                "form_page": page_sha256,
            });
            proof::append(conn, &ctx.keys, id, at, EventKind::Signup, Some(&ip), &detail)?;
            conn.count_daily(DailyCount::Signup, &at.day(), &s.list_id)?;
            if under_daily_cap(conn, ctx, s.email.key(), at)? {
                queue_confirmation(conn, ctx, list, id, s.email.key(), s.email.ascii(), request)?;
            }
            Ok(SignupOutcome::Created { subscription_id: id })
        }
    }
}

/// At most `mails_per_address_per_day` confirmation mails to one inbox in
/// 24 hours, over all lists, from any IP and under any spelling (`+tags`,
/// Gmail's dots): the form cannot flood an inbox.
///
/// Mails to the inbox's own spelling are counted from the outbox; only mails
/// to other spellings are written down (`inbox_mails`, see
/// `queue_confirmation`). A table written on every signup cost a third of
/// the signup rate (BENCHMARKS.md); other spellings are rare.
fn under_daily_cap(conn: &dyn Db, ctx: &Context, email_key: &EmailKey, now: Timestamp) -> Result<bool> {
    let day_ago = now - time::Duration::days(1);
    let inbox = email_key.inbox();
    let mut mails = conn.mails_to_inbox_itself_since(&inbox, day_ago)?;
    if mails < i64::from(ctx.config.limits.mails_per_address_per_day) {
        mails += conn.inbox_mails_since(&inbox_hash(ctx, &inbox), day_ago)?;
    }
    Ok(mails < i64::from(ctx.config.limits.mails_per_address_per_day))
}

/// The keyed hash mails to other spellings of an inbox are counted under:
/// never the address itself. The prefix keeps it apart from the decline hash
/// of the same text; 16 bytes are plenty to tell inboxes apart.
fn inbox_hash(ctx: &Context, inbox: &InboxKey) -> [u8; 16] {
    let inbox = format!("inbox:{}", inbox.as_str());
    hmac::sign(&ctx.keys.current().address, inbox.as_bytes()).as_ref()[..16]
        .try_into()
        .expect("HMAC-SHA256 is 32 bytes")
}

/// A new mail for a pending signup: not sooner than `resend_interval` after
/// the last one, and within the daily cap.
fn may_resend(
    conn: &dyn Db,
    ctx: &Context,
    subscription_id: i64,
    email_key: &EmailKey,
    now: Timestamp,
) -> Result<bool> {
    if !under_daily_cap(conn, ctx, email_key, now)? {
        return Ok(false);
    }
    let (_, last) = conn.recent_mails(subscription_id, now - time::Duration::days(1))?;
    let earliest = Timestamp::from(ctx.config.mail.resend_interval.before(now.to_offset_date_time()));
    Ok(last.is_none_or(|last| last <= earliest))
}

/// Records a dropped bot submission; a write like a real signup's, so the
/// bot's answer takes as long as anyone's.
pub fn count_bot(conn: &dyn Db, list_id: &str, now: OffsetDateTime) -> Result<()> {
    conn.count_daily(DailyCount::Bot, &Timestamp::from(now).day(), list_id)
}

/// The signup request a confirmation mail answers: the mail states when and
/// where it was made.
#[derive(Debug, Clone, Copy)]
struct Request<'a> {
    at: OffsetDateTime,
    page: Option<&'a FormPage>,
}

/// Queues the confirmation mail to `email` (the ASCII form of the address
/// whose key is `email_key`) and counts it against its inbox's daily cap.
fn queue_confirmation(
    conn: &dyn Db,
    ctx: &Context,
    list: &PreparedList,
    subscription_id: i64,
    email_key: &EmailKey,
    email: &str,
    request: Request<'_>,
) -> Result<()> {
    let now = request.at;
    let language = list.config.language;
    let expires = ctx.config.tokens.confirm_ttl.after(now);
    let token =
        token::sign(&ctx.keys, Purpose::Confirm, Subject::Public(subscription_id), &list.config.id, Some(expires));
    let link = format!("{}/confirm?token={token}", ctx.config.base());
    conn.insert_outbox(&NewMail {
        subscription_id,
        rendering_sha256: &list.rendering_sha256,
        to_email: email,
        link: &link,
        message_id: &mail::new_message_id(&list.sender),
        date_header: &mail::date_header(now),
        now: Timestamp::from(now),
        consent_when: &mail::consent_when(Timestamp::from(now), &list.config.time_zone, language),
        consent_where: &mail::consent_where(request.page, language),
    })?;
    let inbox = email_key.inbox();
    if inbox.as_str() == email_key.as_str() {
        return Ok(()); // counted from the outbox row just written
    }
    conn.insert_inbox_mail(&inbox_hash(ctx, &inbox), Timestamp::from(now))
}

/// The unsubscribe URL for a subscription: goes into every newsletter.
pub fn unsubscribe_url(config: &Config, keys: &KeyRing, subscription_id: i64, list_id: &str) -> String {
    let token = token::sign(keys, Purpose::Unsubscribe, Subject::Public(subscription_id), list_id, None);
    format!("{}/unsubscribe?token={token}", config.base())
}

/// The subscription a verified token names, on the token's list. Both
/// layouts name the row id: concealed (layout 2) or, in links mailed before
/// layout 2, in clear.
fn subscription_of(conn: &dyn Db, t: &VerifiedToken) -> Result<Option<crate::store::db::SubscriptionRow>> {
    let (Subject::Public(id) | Subject::Sequential(id)) = t.subject;
    Ok(conn.select_subscription(id)?.filter(|s| s.list_id == t.list_id))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed,
    AlreadyConfirmed,
    /// Erased, declined, purged or unsubscribed: the link no longer acts.
    Gone,
}

pub fn confirm(
    conn: &dyn Db,
    ctx: &Context,
    t: &VerifiedToken,
    ip: IpAddr,
    now: OffsetDateTime,
) -> Result<ConfirmOutcome> {
    let Some(sub) = subscription_of(conn, t)? else {
        return Ok(ConfirmOutcome::Gone);
    };
    match sub.status {
        Status::Confirmed => Ok(ConfirmOutcome::AlreadyConfirmed),
        Status::Pending => {
            let (at, ip) = (Timestamp::from(now), ip.to_string());
            conn.confirm_subscription(sub.id, at, &ip)?;
            proof::append(conn, &ctx.keys, sub.id, at, EventKind::Confirm, Some(&ip), &json!({}))?;
            conn.count_daily(DailyCount::Confirmation, &at.day(), &sub.list_id)?;
            if ctx.config.has_webhook(&sub.list_id) {
                conn.insert_webhook_call(sub.id, WebhookEvent::Confirmed, at)?;
            }
            Ok(ConfirmOutcome::Confirmed)
        }
        Status::Unsubscribed => Ok(ConfirmOutcome::Gone),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineOutcome {
    /// The pending signup is erased and the address blocked.
    Erased,
    /// Already confirmed: declining does not unsubscribe; the page says how.
    AlreadyConfirmed,
    /// Already unsubscribed: its record stays as proof, nothing is erased,
    /// and the page says the subscription has ended.
    AlreadyUnsubscribed,
    /// Pending, but under a legal hold (`admin::hold`): the address is
    /// blocked as for `Erased`, and the record stays until the hold is
    /// released (the next purge after that erases it).
    Held,
}

/// "I did not sign up": erase the pending signup at once and block further
/// confirmation mails for `decline_block`, remembering only a keyed hash.
/// A signup under a legal hold is blocked but not erased: the hold stops
/// every erasure of its record.
pub fn decline(conn: &dyn Db, ctx: &Context, t: &VerifiedToken, now: OffsetDateTime) -> Result<DeclineOutcome> {
    let Some(sub) = subscription_of(conn, t)? else {
        return Ok(DeclineOutcome::Erased);
    };
    match sub.status {
        Status::Confirmed => Ok(DeclineOutcome::AlreadyConfirmed),
        Status::Unsubscribed => Ok(DeclineOutcome::AlreadyUnsubscribed),
        Status::Pending => {
            let until = Timestamp::from(ctx.config.limits.decline_block.after(now));
            // The stored address as entered (`Tom@Bücher.de`) has the key a
            // new signup of any spelling gets; its inbox (`+tags` cut, Gmail's
            // dots folded) is what `is_declined` looks up for every spelling.
            let inbox = EmailKey::lenient(&sub.email).inbox();
            conn.upsert_declined(&address_hash(&ctx.keys.current().address, inbox.as_str()), until)?;
            if conn.select_legal_hold(sub.id)?.is_some() {
                return Ok(DeclineOutcome::Held);
            }
            erase_subscription(conn, sub.id)?;
            Ok(DeclineOutcome::Erased)
        }
    }
}

/// Deletes a subscription's personal data everywhere, keeping only the
/// proof chain's links.
pub fn erase_subscription(conn: &dyn Db, subscription_id: i64) -> Result<()> {
    conn.erase_proof_events(subscription_id)?;
    conn.delete_subscription(subscription_id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeOutcome {
    Unsubscribed,
    /// Already unsubscribed, erased or purged: nothing to do, and that is fine.
    NotSubscribed,
}

pub fn unsubscribe(
    conn: &dyn Db,
    ctx: &Context,
    t: &VerifiedToken,
    ip: Option<IpAddr>,
    method: UnsubscribeMethod,
    now: OffsetDateTime,
) -> Result<UnsubscribeOutcome> {
    let Some(sub) = subscription_of(conn, t)? else {
        return Ok(UnsubscribeOutcome::NotSubscribed);
    };
    let webhook = ctx.config.has_webhook(&sub.list_id);
    unsubscribe_subscription(conn, &ctx.keys, sub.id, &sub.list_id, ip, method, webhook, now)
}

/// Ends one subscription and records how, as proof (the token check, or the
/// operator's command, happened before), and queues a call to the list's
/// webhook when it has one. A no-op on one that is not live.
#[allow(clippy::too_many_arguments)]
pub fn unsubscribe_subscription(
    conn: &dyn Db,
    keys: &KeyRing,
    subscription_id: i64,
    list_id: &str,
    ip: Option<IpAddr>,
    method: UnsubscribeMethod,
    webhook: bool,
    now: OffsetDateTime,
) -> Result<UnsubscribeOutcome> {
    let (at, ip) = (Timestamp::from(now), ip.map(|ip| ip.to_string()));
    if !conn.unsubscribe_subscription(subscription_id, at, ip.as_deref().unwrap_or(""), method)? {
        return Ok(UnsubscribeOutcome::NotSubscribed);
    }
    proof::append(
        conn,
        keys,
        subscription_id,
        at,
        EventKind::Unsubscribe,
        ip.as_deref(),
        &json!({"method": method.as_str()}),
    )?;
    conn.count_daily(DailyCount::Unsubscribe, &at.day(), list_id)?;
    if webhook {
        conn.insert_webhook_call(subscription_id, WebhookEvent::Unsubscribed, at)?;
    }
    Ok(UnsubscribeOutcome::Unsubscribed)
}

/// The keyed hash a decline is stored under: of the inbox's text since
/// declines key on the inbox, of the exact address before. For an address
/// without a `+tag` or Gmail dots the two are the same text.
fn address_hash(key: &hmac::Key, text: &str) -> String {
    hex::encode(hmac::sign(key, text.as_bytes()))
}

/// Blocked under any key in the ring, so a key rotation does not lift
/// blocks, and under the inbox, so "I did not sign up" from `anna+1@…`
/// also stops `anna+2@…` and `a.nna@gmail.com` stops `anna@googlemail.com`.
/// Declines stored before they keyed on the inbox were hashed on the exact
/// address; that hash is checked too, so they keep blocking their address
/// until they expire.
pub fn is_declined(conn: &dyn Db, keys: &KeyRing, email_key: &EmailKey, now: Timestamp) -> Result<bool> {
    let inbox = email_key.inbox();
    // The inbox, and the exact address for blocks stored before declines
    // keyed on the inbox (once when the two are the same): no allocation per signup.
    let both = [inbox.as_str(), email_key.as_str()];
    let texts = if both[0] == both[1] { &both[..1] } else { &both[..] };
    for (_, k) in keys.all() {
        for text in texts {
            if conn.is_declined(&address_hash(&k.address, text), now)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
