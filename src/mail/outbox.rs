//! The outbox worker: delivers queued mails and records the outcome as proof.
//!
//! Rows are claimed by pushing their `next_attempt_at` a lease into the
//! future, so a crash mid-delivery only delays a mail: after the lease it is
//! due again, with the same Message-ID and bytes (at most one duplicate).
//! Temporary failures (4xx replies, connection and TLS errors, timeouts) are
//! retried with exponential backoff for up to a day; permanent ones (5xx) are
//! recorded and not retried. No more mails go out per hour than
//! `limits.mails_per_hour` allows ([`Ceiling`]); the rest wait their turn.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use lettre::Address;
use lettre::address::Envelope;
use serde_json::json;
use tokio::sync::{Notify, mpsc, watch};

use super::ceiling::{self, Ceiling};
use super::smtp::SmtpClient;
use super::{Recipient, compose, sha256_hex};
use crate::clock::{self, SharedClock, Timestamp};
use crate::config::{Config, MailCeiling, MailTransport};
use crate::domain::{mask_address, mask_addresses};
use crate::keys::KeyRing;
use crate::metrics::{MailOutcome, Metrics};
use crate::proof::{self, EventKind};
use crate::store::db::{OutboxRow, RenderingRow};
use crate::store::{Store, StoreError};
use crate::worker;

/// Mails in delivery at once: the SMTP sessions kept busy. A mail waits
/// on the server for most of its delivery (two round trips and the
/// server's write of it), so more sessions than cores fill that time; real
/// relays accept this many from one client (Postfix: 50).
const CONCURRENCY: usize = 32;
/// Mails claimed per round, delivered `CONCURRENCY` at a time: one claim
/// (a writer job) per four mails of each session.
const BATCH: i64 = 4 * CONCURRENCY as i64;
/// How long a claimed mail stays invisible to other claims while its
/// delivery runs, in `mail.timeout`s: one delivery waits at most that long
/// on each of the SMTP server's steps, and a session delivers up to four
/// mails of a batch in turn, so five cover a batch on a slow server (the
/// default 60 s gives 5 minutes). After a crash, SQLite's single node
/// releases its leases at start; with several nodes on PostgreSQL, a dead
/// node's mails go out from another node once their lease runs out, under
/// the same Message-ID.
const LEASE_IN_TIMEOUTS: i32 = 5;
/// While mails wait for the hourly ceiling, how often to look again: an
/// in-memory check, and a clock that jumps (an NTP step, a test's manual
/// clock) is noticed within this time.
const CEILING_RECHECK: Duration = Duration::from_secs(1);

/// When to try again after a temporary failure, and when to stop.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Wait after the first failure; doubles each time.
    pub base: time::Duration,
    /// Longest wait.
    pub max: time::Duration,
    /// Temporary failures are retried this long after the mail was queued.
    pub give_up_after: time::Duration,
    /// How long a claimed mail is left to its delivery (see [`LEASE_IN_TIMEOUTS`]).
    pub lease: time::Duration,
}

impl RetryPolicy {
    pub fn from_config(config: &Config) -> RetryPolicy {
        let d = |span: crate::config::Span| time::Duration::try_from(span.approx()).unwrap_or(time::Duration::DAY);
        RetryPolicy {
            base: d(config.mail.retry_base),
            max: d(config.mail.retry_max),
            give_up_after: d(config.mail.give_up_after),
            lease: d(config.mail.timeout) * LEASE_IN_TIMEOUTS,
        }
    }

    /// When to try again after `attempts` tries of an item queued at
    /// `queued_at` failed for now; `None` once that would fall after
    /// `give_up_after`: give up.
    pub fn next_try(&self, queued_at: Timestamp, attempts: i64, now: Timestamp) -> Option<Timestamp> {
        let next = now + self.backoff(attempts);
        (next <= queued_at + self.give_up_after).then_some(next)
    }

    /// `base · 2^(attempt-1)`, capped at `max`.
    pub fn backoff(&self, attempt: i64) -> time::Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).expect("clamped");
        self.base.checked_mul(2i32.saturating_pow(exponent)).unwrap_or(self.max).min(self.max)
    }
}

/// Where mail goes.
pub enum Transport {
    File(PathBuf),
    /// An SMTP server; `deadline` bounds a whole delivery attempt, from
    /// connect to the final reply (a server that accepts and then never
    /// answers would otherwise hang it).
    Smtp {
        client: SmtpClient,
        deadline: Duration,
    },
}

impl Transport {
    pub fn from_config(config: &Config) -> Result<Transport, String> {
        match config.mail_transport().map_err(|e| e.to_string())? {
            MailTransport::File(dir) => {
                crate::files::create_private_dir(&dir)
                    .map_err(|e| format!("cannot create mail folder {}: {e}", dir.display()))?;
                Ok(Transport::File(dir))
            }
            MailTransport::Smtp(server) => {
                Ok(Transport::Smtp { client: SmtpClient::new(server), deadline: config.mail.timeout.approx() })
            }
        }
    }
}

/// How one delivery attempt ended.
#[derive(Debug)]
enum Attempt {
    Delivered { reply: String },
    Temporary(String),
    Permanent(String),
}

/// The worker. Cheap to share; `run` loops until shutdown.
pub struct Outbox {
    store: Store,
    keys: Arc<KeyRing>,
    clock: SharedClock,
    transport: Transport,
    retry: RetryPolicy,
    wake: Arc<Notify>,
    renderings: Mutex<HashMap<String, Arc<RenderingRow>>>,
    metrics: Arc<Metrics>,
    ceiling: Ceiling,
    /// Whether due mails are waiting for the ceiling: the warning and the
    /// metric mark when that begins, not every look at it.
    held: AtomicBool,
}

impl Outbox {
    pub fn new(
        store: Store,
        keys: Arc<KeyRing>,
        clock: SharedClock,
        transport: Transport,
        retry: RetryPolicy,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Outbox {
        Outbox {
            store,
            keys,
            clock,
            transport,
            retry,
            wake,
            renderings: Mutex::new(HashMap::new()),
            metrics,
            ceiling: Ceiling::new(MailCeiling::Off),
            held: AtomicBool::new(false),
        }
    }

    /// Sends no more mails per hour than `setting` allows (`limits.mails_per_hour`).
    pub fn with_ceiling(mut self, setting: MailCeiling) -> Outbox {
        self.ceiling = Ceiling::new(setting);
        self
    }

    /// Makes mails that a previous run claimed but never finished (it was
    /// killed mid-delivery) due now. Such a mail may have reached the server
    /// already; it goes again with the same Message-ID and bytes, so the
    /// worst case is one duplicate the receiver can recognise. Mails queued
    /// by a listgate that still greeted by name lose the name first
    /// (`FORGET_QUEUED_MAIL_NAMES`).
    pub async fn resume(&self) -> Result<u64, StoreError> {
        let now = Timestamp::now(self.clock.as_ref());
        let released = self
            .store
            .write(move |c| {
                c.forget_queued_mail_names()?;
                c.release_leases(now)
            })
            .await?;
        if released > 0 {
            tracing::warn!(mails = released, "resuming mails whose delivery an earlier run did not finish");
        }
        if self.ceiling.is_on() {
            // What went out in the last hour before a restart still counts.
            let sent = self.store.read(move |c| c.sent_mails_since(now - ceiling::HOUR)).await?;
            sent.into_iter().for_each(|at| self.ceiling.sent(at));
        }
        Ok(released)
    }

    /// How many mails this round may claim: a batch, or what the hourly
    /// ceiling leaves of one. At the ceiling, says so once when due mails
    /// begin to wait.
    async fn claimable(&self, now: Timestamp) -> Result<i64, StoreError> {
        let room = match self.ceiling.room(now) {
            None => return Ok(BATCH),
            Some(room) => i64::try_from(room).unwrap_or(i64::MAX).min(BATCH),
        };
        if room > 0 {
            if self.held.swap(false, Ordering::Relaxed) {
                tracing::info!("limits.mails_per_hour has room again: waiting mails go out");
            }
            return Ok(room);
        }
        if !self.held.load(Ordering::Relaxed) {
            let due = self.store.read(|c| c.next_due_mail()).await?;
            if due.is_some_and(|due| due <= now) && !self.held.swap(true, Ordering::Relaxed) {
                let opens = self.ceiling.opens_at(now).map(|t| t.to_string()).unwrap_or_default();
                tracing::warn!(
                    mails_per_hour = self.ceiling.per_hour().unwrap_or_default(),
                    next_mail_at = %opens,
                    "limits.mails_per_hour reached: confirmation mails wait in the outbox (nothing is dropped)"
                );
                self.metrics.mail_ceiling_reached();
            }
        }
        Ok(0)
    }

    /// Delivers due mails until `shutdown` turns true; mails in flight are
    /// finished and recorded before it returns.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.resume().await {
            tracing::error!(error = %e, "outbox: cannot release old leases; they expire by themselves");
        }
        worker::run_batches(self.as_ref(), &mut shutdown).await;
    }

    async fn rendering(&self, sha256: &str) -> Result<Arc<RenderingRow>, String> {
        if let Some(r) = self.renderings.lock().expect("rendering cache").get(sha256) {
            return Ok(r.clone());
        }
        let key = sha256.to_string();
        let row = self
            .store
            .read(move |c| c.select_rendering(&key))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("rendering {sha256} is missing"))?;
        let row = Arc::new(row);
        self.renderings.lock().expect("rendering cache").insert(sha256.to_string(), row.clone());
        Ok(row)
    }

    /// One delivery attempt of `row`; recording it is [`Outbox::record`]'s.
    async fn deliver(&self, row: OutboxRow) -> Outcome {
        let rendering = match self.rendering(&row.rendering_sha256).await {
            Ok(r) => r,
            Err(e) => return Outcome { row, sha256: String::new(), attempt: Attempt::Permanent(e) },
        };
        let message = compose(
            &rendering,
            &Recipient {
                email: &row.to_email,
                name: row.to_name.as_deref(),
                link: &row.link,
                message_id: &row.message_id,
                date_header: &row.date_header,
                consent_when: row.consent_when.as_deref().unwrap_or_default(),
                consent_where: row.consent_where.as_deref().unwrap_or_default(),
            },
        );
        let sha256 = sha256_hex(&message);
        let attempt = match &self.transport {
            Transport::File(dir) => write_eml(dir, &row, &message).await,
            Transport::Smtp { client, deadline } => {
                let attempt = send_smtp(client, &rendering.sender, &row.to_email, &message);
                tokio::time::timeout(*deadline, attempt).await.unwrap_or_else(|_| {
                    Attempt::Temporary(format!("the mail server did not answer within {deadline:?} (timed out)"))
                })
            }
        };
        Outcome { row, sha256, attempt }
    }

    /// Stores the outcomes of finished deliveries in one writer job (one
    /// savepoint for all, not one per mail) and, for delivered and failed
    /// mails, their proof events.
    async fn record(&self, outcomes: Vec<Outcome>) {
        let now = Timestamp::now(self.clock.as_ref());
        let mut counted = Vec::with_capacity(outcomes.len());
        let outcomes: Vec<(Outcome, Option<Timestamp>)> = outcomes
            .into_iter()
            .map(|outcome| {
                let (outcome, retry_at) = self.settle(outcome, now);
                counted.push(match outcome.attempt {
                    Attempt::Delivered { .. } => MailOutcome::Sent,
                    Attempt::Temporary(_) => MailOutcome::Retried,
                    Attempt::Permanent(_) => MailOutcome::Failed,
                });
                (outcome, retry_at)
            })
            .collect();
        let keys = self.keys.clone();
        let result = self
            .store
            .write(move |c| {
                for (Outcome { row, sha256, attempt }, retry_at) in outcomes {
                    match attempt {
                        Attempt::Delivered { reply } => {
                            if c.mark_mail_sent(row.id, now, &reply, &sha256)? {
                                let detail = json!({"message_id": row.message_id, "message_sha256": sha256, "smtp_reply": reply});
                                proof::append(c, &keys, row.subscription_id, now, EventKind::MailSent, None, &detail)?;
                            }
                        }
                        Attempt::Temporary(error) => c.mark_mail_retry(row.id, retry_at.unwrap_or(now), &error)?,
                        Attempt::Permanent(error) => {
                            if c.mark_mail_failed(row.id, &error)? {
                                let detail = json!({"message_id": row.message_id, "error": error});
                                proof::append(c, &keys, row.subscription_id, now, EventKind::MailFailed, None, &detail)?;
                            }
                        }
                    }
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => counted.into_iter().for_each(|outcome| self.metrics.mail(outcome)),
            // The leases run out and the mails are tried again: nothing is lost.
            Err(e) => tracing::error!(error = %e, mails = counted.len(), "outbox: cannot record delivery outcomes"),
        }
    }

    /// Turns a temporary failure past `give_up_after` into a permanent one,
    /// counts a delivery against the hourly ceiling, and logs the outcome;
    /// returns when to try again after a temporary failure.
    fn settle(&self, outcome: Outcome, now: Timestamp) -> (Outcome, Option<Timestamp>) {
        let Outcome { row, sha256, attempt } = outcome;
        let next = self.retry.next_try(row.created_at, row.attempts, now);
        if let Attempt::Delivered { .. } = attempt {
            self.ceiling.sent(now);
        }
        let attempt = match attempt {
            Attempt::Temporary(e) if next.is_none() => Attempt::Permanent(format!(
                "gave up after {} attempts over {}: {e}",
                row.attempts, self.retry.give_up_after
            )),
            other => other,
        };
        // The database keeps the server's exact reply as proof; the log gets
        // it with any address in it masked.
        let masked = mask_address(&row.to_email);
        match &attempt {
            Attempt::Delivered { reply } => {
                tracing::info!(outbox_id = row.id, to = %masked, reply = %mask_addresses(reply), "mail delivered")
            }
            Attempt::Temporary(e) => {
                tracing::warn!(outbox_id = row.id, to = %masked, attempt = row.attempts, error = %mask_addresses(e), "mail delivery failed, will retry")
            }
            Attempt::Permanent(e) => {
                tracing::error!(outbox_id = row.id, to = %masked, error = %mask_addresses(e), "mail delivery failed permanently")
            }
        }
        (Outcome { row, sha256, attempt }, next)
    }
}

/// A finished delivery attempt, waiting to be recorded.
struct Outcome {
    row: OutboxRow,
    /// Of the message as composed (empty when it could not be).
    sha256: String,
    attempt: Attempt,
}

impl worker::BatchWorker for Outbox {
    const NAME: &'static str = "outbox";

    fn wake(&self) -> &Notify {
        &self.wake
    }

    /// Claims and delivers one batch; returns how many were claimed.
    async fn run_batch(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now(self.clock.as_ref());
        let limit = self.claimable(now).await?;
        if limit == 0 {
            return Ok(0);
        }
        let lease = self.retry.lease;
        let rows = self.store.write(move |c| c.claim_due_mails(now, now + lease, limit)).await?;
        let count = rows.len();
        // Deliveries run `CONCURRENCY` at a time, each slot taking the next
        // mail as soon as its last is done; outcomes are recorded while
        // others are still on the wire, all that finished during one
        // record's commit together in the next.
        let (finished, mut to_record) = mpsc::unbounded_channel();
        let deliveries = async move {
            let mut deliveries = stream::iter(rows).map(|row| self.deliver(row)).buffer_unordered(CONCURRENCY);
            while let Some(outcome) = deliveries.next().await {
                let _ = finished.send(outcome);
            }
        };
        let recorder = async {
            let mut outcomes = Vec::new();
            while to_record.recv_many(&mut outcomes, CONCURRENCY).await > 0 {
                self.record(std::mem::take(&mut outcomes)).await;
            }
        };
        tokio::join!(deliveries, recorder);
        Ok(count)
    }

    async fn next_wait(&self) -> Duration {
        let now = Timestamp::now(self.clock.as_ref());
        if let Some(opens) = self.ceiling.opens_at(now) {
            return clock::wait_until(Some(opens), now, CEILING_RECHECK);
        }
        let due = self.store.read(|c| c.next_due_mail()).await.ok().flatten();
        clock::wait_until(due, Timestamp::now(self.clock.as_ref()), Duration::from_secs(30))
    }
}

async fn send_smtp(smtp: &SmtpClient, sender: &str, to: &str, message: &[u8]) -> Attempt {
    let envelope = match (Address::from_str(sender), Address::from_str(to)) {
        (Ok(from), Ok(to)) => Envelope::new(Some(from), vec![to]),
        _ => return Attempt::Permanent("sender or recipient is not a valid address".into()),
    };
    let envelope = match envelope {
        Ok(e) => e,
        Err(e) => return Attempt::Permanent(format!("envelope: {e}")),
    };
    // lettre ends DATA with `\r\n.\r\n`, whose first CRLF ends our last line:
    // strip ours so the server receives exactly the bytes we hashed.
    let data = message.strip_suffix(b"\r\n").unwrap_or(message);
    match smtp.send(&envelope, data).await {
        Ok(response) => Attempt::Delivered {
            reply: format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")),
        },
        Err(e) if e.permanent => Attempt::Permanent(e.message),
        Err(e) => Attempt::Temporary(e.message),
    }
}

/// The file transport: `DIR/<message-id>.eml`, written to a temporary name,
/// synced and renamed, so a reader never sees half a mail. The confirmation
/// link is logged so a first run needs no mail server.
async fn write_eml(dir: &Path, row: &OutboxRow, message: &[u8]) -> Attempt {
    let stem: String = row.message_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '@' || *c == '.').collect();
    let path = dir.join(format!("{stem}.eml"));
    let tmp = dir.join(format!(".{stem}.tmp"));
    let message = message.to_vec();
    let (path_for_write, tmp_for_write) = (path.clone(), tmp.clone());
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = crate::files::private_options().open(&tmp_for_write)?;
        file.write_all(&message)?;
        file.sync_all()?;
        std::fs::rename(&tmp_for_write, &path_for_write)?;
        if let Some(parent) = path_for_write.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })
    .await;
    match written {
        Ok(Ok(())) => {
            tracing::info!(file = %path.display(), link = %row.link, "confirmation mail written (file transport); open the link to confirm");
            Attempt::Delivered { reply: format!("file {}", path.display()) }
        }
        Ok(Err(e)) => Attempt::Temporary(format!("cannot write {}: {e}", path.display())),
        Err(e) => Attempt::Temporary(format!("file writer failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::from_config(&Config::default());
        assert_eq!(policy.backoff(1), time::Duration::seconds(30));
        assert_eq!(policy.backoff(2), time::Duration::seconds(60));
        assert_eq!(policy.backoff(4), time::Duration::seconds(240));
        assert_eq!(policy.backoff(50), time::Duration::hours(1));
        assert_eq!(policy.give_up_after, time::Duration::days(1));
    }

    #[test]
    fn next_try_backs_off_until_the_deadline_then_gives_up() {
        let policy = RetryPolicy::from_config(&Config::default());
        let queued = Timestamp::from(time::macros::datetime!(2026-11-22 12:00 UTC));
        assert_eq!(policy.next_try(queued, 1, queued), Some(queued + time::Duration::seconds(30)));
        let late = queued + time::Duration::hours(23);
        assert_eq!(policy.next_try(queued, 20, late), Some(late + time::Duration::hours(1)));
        assert_eq!(policy.next_try(queued, 20, late + time::Duration::minutes(1)), None);
    }
}
