//! The outbox worker: delivers queued mails and records the outcome as proof.
//!
//! Rows are claimed by pushing their `next_attempt_at` a lease into the
//! future, so a crash mid-delivery only delays a mail: after the lease it is
//! due again, with the same Message-ID and bytes (at most one duplicate).
//! Temporary failures (4xx replies, connection and TLS errors, timeouts) are
//! retried with exponential backoff for up to a day; permanent ones (5xx) are
//! recorded and not retried.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::{Recipient, compose, sha256_hex};
use crate::clock::{self, SharedClock};
use crate::config::{Config, MailTransport};
use crate::domain::mask_address;
use crate::keys::KeyRing;
use crate::proof::{self, EventKind};
use crate::store::queries::{self, OutboxRow, RenderingRow};
use crate::store::{Store, StoreError};

/// Mails claimed (and delivered concurrently) per round.
const BATCH: i64 = 16;
/// How long a claimed mail stays invisible to other claims.
const LEASE: time::Duration = time::Duration::minutes(5);
/// Longest wait between retries.
const MAX_BACKOFF: time::Duration = time::Duration::hours(1);
/// Temporary failures are retried this long after the mail was queued.
const GIVE_UP_AFTER: time::Duration = time::Duration::days(1);
/// SMTP conversation timeout, so a server that never answers cannot stall the worker.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where mail goes.
pub enum Transport {
    File(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Transport {
    pub fn from_config(config: &Config) -> Result<Transport, String> {
        match config.mail_transport().map_err(|e| e.to_string())? {
            MailTransport::File(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create mail folder {}: {e}", dir.display()))?;
                Ok(Transport::File(dir))
            }
            MailTransport::Smtp(url) => {
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url).map_err(|e| format!("mail.url: {e}"))?;
                Ok(Transport::Smtp(builder.timeout(Some(SMTP_TIMEOUT)).build()))
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
    retry_base: time::Duration,
    wake: Arc<Notify>,
    renderings: Mutex<HashMap<String, Arc<RenderingRow>>>,
}

impl Outbox {
    pub fn new(store: Store, keys: Arc<KeyRing>, clock: SharedClock, transport: Transport, retry_base: Duration, wake: Arc<Notify>) -> Outbox {
        Outbox {
            store,
            keys,
            clock,
            transport,
            retry_base: time::Duration::try_from(retry_base).unwrap_or(time::Duration::seconds(30)),
            wake,
            renderings: Mutex::new(HashMap::new()),
        }
    }

    /// Delivers due mails until `shutdown` turns true; mails in flight are
    /// finished and recorded before it returns.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let delivered = match self.deliver_due().await {
                Ok(count) => count,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot claim mails");
                    0
                }
            };
            if delivered > 0 {
                continue;
            }
            let wait = self.time_to_next_due().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Claims and delivers one batch; returns how many were claimed.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let (now_text, lease_text) = (clock::format(now), clock::format(now + LEASE));
        let rows = self.store.write(move |c| queries::claim_due_mails(c, &now_text, &lease_text, BATCH)).await?;
        let count = rows.len();
        futures_util::future::join_all(rows.into_iter().map(|row| self.deliver(row))).await;
        Ok(count)
    }

    async fn time_to_next_due(&self) -> Duration {
        const IDLE: Duration = Duration::from_secs(30);
        match self.store.read(queries::next_due_mail).await {
            Ok(Some(due)) => clock::parse(&due)
                .map(|due| (due - self.clock.now()).clamp(time::Duration::ZERO, time::Duration::try_from(IDLE).expect("fits")))
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(IDLE),
            _ => IDLE,
        }
    }

    async fn rendering(&self, sha256: &str) -> Result<Arc<RenderingRow>, String> {
        if let Some(r) = self.renderings.lock().expect("rendering cache").get(sha256) {
            return Ok(r.clone());
        }
        let key = sha256.to_string();
        let row = self
            .store
            .read(move |c| queries::select_rendering(c, &key))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("rendering {sha256} is missing"))?;
        let row = Arc::new(row);
        self.renderings.lock().expect("rendering cache").insert(sha256.to_string(), row.clone());
        Ok(row)
    }

    async fn deliver(&self, row: OutboxRow) {
        let rendering = match self.rendering(&row.rendering_sha256).await {
            Ok(r) => r,
            Err(e) => return self.record(row, String::new(), Attempt::Permanent(e)).await,
        };
        let message = compose(
            &rendering,
            &Recipient {
                email: &row.to_email,
                name: row.to_name.as_deref(),
                link: &row.link,
                message_id: &row.message_id,
                date_header: &row.date_header,
            },
        );
        let sha256 = sha256_hex(&message);
        let attempt = match &self.transport {
            Transport::File(dir) => write_eml(dir, &row, &message).await,
            Transport::Smtp(smtp) => send_smtp(smtp, &rendering.sender, &row.to_email, &message).await,
        };
        self.record(row, sha256, attempt).await;
    }

    /// Stores the outcome and, for delivered and failed mails, a proof event.
    async fn record(&self, row: OutboxRow, sha256: String, attempt: Attempt) {
        let now = self.clock.now();
        let masked = mask_address(&row.to_email);
        match &attempt {
            Attempt::Delivered { reply } => tracing::info!(outbox_id = row.id, to = %masked, reply = %reply, "mail delivered"),
            Attempt::Temporary(e) => tracing::warn!(outbox_id = row.id, to = %masked, attempt = row.attempts, error = %e, "mail delivery failed, will retry"),
            Attempt::Permanent(e) => tracing::error!(outbox_id = row.id, to = %masked, error = %e, "mail delivery failed permanently"),
        }
        let give_up_at = clock::parse(&row.created_at).map(|t| t + GIVE_UP_AFTER);
        let attempt = match attempt {
            Attempt::Temporary(e) if give_up_at.is_some_and(|t| now >= t) => Attempt::Permanent(format!("gave up after a day: {e}")),
            other => other,
        };
        let next = now + backoff(self.retry_base, row.attempts);
        let keys = self.keys.clone();
        let result = self
            .store
            .write(move |c| {
                let at = clock::format(now);
                match attempt {
                    Attempt::Delivered { reply } => {
                        if queries::mark_mail_sent(c, row.id, &at, &reply, &sha256)? {
                            let detail = json!({"message_id": row.message_id, "message_sha256": sha256, "smtp_reply": reply});
                            proof::append(c, &keys, row.subscription_id, &at, EventKind::MailSent, None, &detail)?;
                        }
                    }
                    Attempt::Temporary(error) => queries::mark_mail_retry(c, row.id, &clock::format(next), &error)?,
                    Attempt::Permanent(error) => {
                        if queries::mark_mail_failed(c, row.id, &error)? {
                            let detail = json!({"message_id": row.message_id, "error": error});
                            proof::append(c, &keys, row.subscription_id, &at, EventKind::MailFailed, None, &detail)?;
                        }
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            // The lease runs out and the mail is tried again: nothing is lost.
            tracing::error!(error = %e, "outbox: cannot record a delivery outcome");
        }
    }
}

/// `base · 2^(attempt-1)`, capped at an hour.
fn backoff(base: time::Duration, attempt: i64) -> time::Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).expect("clamped");
    base.checked_mul(2i32.saturating_pow(exponent)).unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF)
}

async fn send_smtp(smtp: &AsyncSmtpTransport<Tokio1Executor>, sender: &str, to: &str, message: &[u8]) -> Attempt {
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
    match smtp.send_raw(&envelope, data).await {
        Ok(response) => Attempt::Delivered {
            reply: format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")),
        },
        Err(e) if e.is_permanent() => Attempt::Permanent(e.to_string()),
        Err(e) => Attempt::Temporary(e.to_string()),
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
        let mut file = std::fs::File::create(&tmp_for_write)?;
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
    fn backoff_doubles_and_caps_at_an_hour() {
        let base = time::Duration::seconds(30);
        assert_eq!(backoff(base, 1), time::Duration::seconds(30));
        assert_eq!(backoff(base, 2), time::Duration::seconds(60));
        assert_eq!(backoff(base, 4), time::Duration::seconds(240));
        assert_eq!(backoff(base, 50), MAX_BACKOFF);
    }
}
