//! The loop the two background workers share: the outbox delivering mails
//! and the webhook caller making calls. Both claim a batch of due rows,
//! handle it, and otherwise sleep until the next row is due or a request
//! queues new work.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::store::StoreError;

/// A worker over a queue table.
pub trait BatchWorker: Send + Sync {
    /// Names the worker in its error log line.
    const NAME: &'static str;
    /// Signalled when a request queues new work.
    fn wake(&self) -> &Notify;
    /// Claims and handles one batch of due rows; returns how many.
    fn run_batch(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// How long until the next row is due (capped, so nothing waits for ever).
    fn next_wait(&self) -> impl Future<Output = Duration> + Send;
}

/// Runs `worker` until `shutdown` turns true. A batch that found work is
/// followed at once by the next; an empty or failed one by a sleep of
/// `next_wait()`, cut short by a wake-up or by `shutdown`.
pub async fn run_batches<W: BatchWorker>(worker: &W, shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match worker.run_batch().await {
            Ok(0) => {}
            Ok(_) => continue,
            Err(e) => tracing::error!(error = %e, "{}: cannot claim due work", W::NAME),
        }
        let wait = worker.next_wait().await;
        tokio::select! {
            _ = worker.wake().notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}
