//! Webhooks: a list's `webhook_url` hears of every confirmation and
//! unsubscribe within seconds, so the tool that sends the newsletter adds or
//! drops the address without waiting for the next export.
//!
//! Calls go through the `webhook_calls` table like mail through the outbox:
//! queued in the same transaction as the change they report, claimed with a
//! lease, retried with the mail's backoff (`mail.retry_base` doubling up to
//! `mail.retry_max`) until `mail.give_up_after`, then marked failed. A crash
//! delays a call by the lease at most; a call can arrive twice, so receivers
//! deduplicate on `X-Listgate-Delivery`.
//!
//! The body is JSON built at send time from the subscription; it is signed
//! with the list's `webhook_secret`:
//! `X-Listgate-Signature: t=UNIX_SECONDS,v1=hex(HMAC-SHA256(secret, "t.body"))`.
//! The time inside the signature lets receivers refuse replays of old calls.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::Request;
use hyper::body::Bytes;
use ring::hmac;
use serde_json::json;
use tokio::sync::{Notify, watch};
use url::Url;

use crate::clock::{self, SharedClock, Timestamp};
use crate::config::Config;
use crate::domain::{Status, WebhookEvent};
use crate::keys::KeyRing;
use crate::mail::outbox::RetryPolicy;
use crate::outbound::{self, HttpClient};
use crate::store::db::WebhookCall;
use crate::store::{Store, StoreError};
use crate::subscriptions;
use crate::worker;

/// Calls claimed (and made concurrently) per round.
const BATCH: i64 = 16;
/// How long one call may take, connect to the last byte of the answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed call stays invisible to other claims this long.
const LEASE: time::Duration = time::Duration::seconds(60);

/// The signature header's value for `body` sent at `unix_seconds`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{unix_seconds}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={unix_seconds},v1={}", hex::encode(hmac::sign(&key, &signed)))
}

/// How one call ended.
enum Outcome {
    Answered(u16),
    /// Worth trying again later.
    Failed(String),
    /// Never worth trying again: recorded as failed at once.
    Dropped(String),
}

/// The worker. `run` loops until shutdown.
pub struct Webhooks {
    store: Store,
    config: Arc<Config>,
    keys: Arc<KeyRing>,
    clock: SharedClock,
    retry: RetryPolicy,
    wake: Arc<Notify>,
    http: HttpClient,
}

impl Webhooks {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        keys: Arc<KeyRing>,
        clock: SharedClock,
        wake: Arc<Notify>,
    ) -> Webhooks {
        let retry = RetryPolicy::from_config(&config);
        Webhooks { store, config, keys, clock, retry, wake, http: HttpClient::new() }
    }

    /// Makes due calls until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        worker::run_batches(self.as_ref(), &mut shutdown).await;
    }

    async fn call(&self, call: WebhookCall) {
        let subscription_id = call.subscription_id;
        let subscription = self.store.read(move |c| c.select_subscription(subscription_id)).await;
        let outcome = match subscription {
            // Erased meanwhile: the cascade removed the call too, nothing to record.
            Ok(None) => return,
            Err(e) => Outcome::Failed(format!("cannot read the subscription: {e}")),
            // A confirmation retried after the unsubscribe that followed it
            // would put the address back on the receiver's list.
            Ok(Some(s)) if call.event == WebhookEvent::Confirmed && s.status != Status::Confirmed => {
                Outcome::Dropped("superseded: the subscription is no longer confirmed".into())
            }
            Ok(Some(s)) => match self.config.list(&s.list_id) {
                Some(list) => match (&list.webhook_url, &list.webhook_secret) {
                    (Some(url), Some(secret)) => {
                        let body = self.body(&call, &s);
                        self.post(url, secret, &call, body).await
                    }
                    _ => Outcome::Dropped(format!("list {} has no webhook_url any more", s.list_id)),
                },
                None => Outcome::Dropped(format!("list {} is no longer configured", s.list_id)),
            },
        };
        self.record(call, outcome).await;
    }

    /// The JSON body: what happened, to whom, on which list, when.
    fn body(&self, call: &WebhookCall, s: &crate::store::db::SubscriptionRow) -> Vec<u8> {
        let mut body = json!({
            "delivery": call.id,
            "event": call.event,
            "list": s.list_id,
            "email": s.email,
            "name": s.name,
            "at": call.occurred_at,
        });
        if call.event == WebhookEvent::Confirmed {
            body["unsubscribe_url"] = json!(subscriptions::unsubscribe_url(&self.config, &self.keys, s.id, &s.list_id));
        } else {
            body["method"] = json!(s.unsubscribe_method);
        }
        serde_json::to_vec(&body).expect("JSON values serialise")
    }

    async fn post(&self, url: &Url, secret: &str, call: &WebhookCall, body: Vec<u8>) -> Outcome {
        let signed = signature(secret, self.clock.now().unix_timestamp(), &body);
        // Origin form (`/path?query`), with the host in `Host`, as browsers send it.
        let request = Request::post(outbound::origin_form(url))
            .header(hyper::header::HOST, outbound::host_header(url))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("listgate/", env!("CARGO_PKG_VERSION")))
            .header("X-Listgate-Event", call.event.as_str())
            .header("X-Listgate-Delivery", call.id.to_string())
            .header("X-Listgate-Signature", signed)
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("cannot build the request: {e}")),
        };
        match tokio::time::timeout(TIMEOUT, self.send(url, request)).await {
            Ok(Ok(status)) => Outcome::Answered(status),
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::Failed(format!("no answer within {TIMEOUT:?}")),
        }
    }

    /// One request on a fresh connection (calls are rare: one per
    /// confirmation or unsubscribe). Only the status counts; the body is
    /// never read, so a receiver cannot make listgate hold a large answer.
    async fn send(&self, url: &Url, request: Request<Full<Bytes>>) -> Result<u16, String> {
        self.http.send(url, request, 0).await.map(|answer| answer.status)
    }

    /// Stores the outcome: 2xx is done; a dropped call failed for good;
    /// anything else is tried again later, until `mail.give_up_after` after
    /// the call was queued.
    async fn record(&self, call: WebhookCall, outcome: Outcome) {
        let now = Timestamp::now(self.clock.as_ref());
        let (status, error, retry) = match outcome {
            Outcome::Answered(status) if (200..300).contains(&status) => (Some(status), None, false),
            Outcome::Answered(status) => (Some(status), Some(format!("the receiver answered {status}")), true),
            Outcome::Failed(e) => (None, Some(e), true),
            Outcome::Dropped(e) => (None, Some(e), false),
        };
        let next = self.retry.next_try(call.occurred_at, call.attempts, now).filter(|_| retry);
        let give_up = next.is_none();
        let retry_at = next.unwrap_or(now);
        match &error {
            None => tracing::info!(call = call.id, event = %call.event, "webhook delivered"),
            Some(e) if give_up => tracing::error!(call = call.id, error = %e, "webhook failed; giving up"),
            Some(e) => {
                tracing::warn!(call = call.id, attempt = call.attempts, error = %e, "webhook failed, will retry")
            }
        }
        let result = self
            .store
            .write(move |c| match error {
                None => c.mark_webhook_sent(call.id, now, status.unwrap_or_default()),
                Some(e) if give_up => c.mark_webhook_failed(call.id, status, &e),
                Some(e) => c.mark_webhook_retry(call.id, retry_at, status, &e),
            })
            .await;
        if let Err(e) = result {
            // The lease runs out and the call is made again: nothing is lost.
            tracing::error!(error = %e, "webhooks: cannot record an outcome");
        }
    }
}

impl worker::BatchWorker for Webhooks {
    const NAME: &'static str = "webhooks";

    fn wake(&self) -> &Notify {
        &self.wake
    }

    /// Claims and makes one batch of due calls; returns how many.
    async fn run_batch(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now(self.clock.as_ref());
        let calls = self.store.write(move |c| c.claim_due_webhook_calls(now, now + LEASE, BATCH)).await?;
        let count = calls.len();
        futures_util::future::join_all(calls.into_iter().map(|call| self.call(call))).await;
        Ok(count)
    }

    async fn next_wait(&self) -> Duration {
        let due = self.store.read(|c| c.next_due_webhook_call()).await.ok().flatten();
        clock::wait_until(due, Timestamp::now(self.clock.as_ref()), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let a = signature("0123456789abcdef", 1_700_000_000, b"{\"event\":\"confirmed\"}");
        assert!(a.starts_with("t=1700000000,v1="), "{a}");
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature("0123456789abcdef", 1_700_000_001, b"{\"event\":\"confirmed\"}"));
        assert_ne!(a, signature("0123456789abcdef", 1_700_000_000, b"{\"event\":\"confirmeD\"}"));
        assert_ne!(a, signature("0123456789abcdeF", 1_700_000_000, b"{\"event\":\"confirmed\"}"));
    }
}
