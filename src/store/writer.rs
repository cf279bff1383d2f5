//! The queue between the async request handlers and a store's writer
//! thread, the same for SQLite and PostgreSQL: a handler sends a job and
//! waits; the writer thread runs many jobs in one transaction, commits, and
//! only then calls each job's completion, which hands the job's result (or
//! the commit's failure) back. Each store's thread loop (`run_writer`)
//! stays its own: SQLite truncates its WAL between batches, PostgreSQL
//! connects again after an outage.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::{Result, StoreError};

/// How many queued jobs a writer takes into one transaction at most.
pub const MAX_BATCH: usize = 512;

/// Called with the commit's outcome; delivers the job's result to whoever waits.
pub type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A job as the writer thread runs it on its connection `C`.
pub type Job<C> = Box<dyn FnOnce(&C) -> Completion + Send>;

/// The sending side of a writer thread, cheap to clone.
pub struct WriterHandle<C> {
    jobs: mpsc::Sender<Job<C>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<C> Clone for WriterHandle<C> {
    fn clone(&self) -> Self {
        WriterHandle { jobs: self.jobs.clone(), thread: self.thread.clone() }
    }
}

impl<C: 'static> WriterHandle<C> {
    /// Starts the thread `name`, which runs `run` on the queue's receiving end.
    pub fn spawn(name: &str, run: impl FnOnce(mpsc::Receiver<Job<C>>) + Send + 'static) -> WriterHandle<C> {
        let (jobs, queue) = mpsc::channel::<Job<C>>(4 * MAX_BATCH);
        let thread =
            std::thread::Builder::new().name(name.into()).spawn(move || run(queue)).expect("spawn writer thread");
        WriterHandle { jobs, thread: Arc::new(Mutex::new(Some(thread))) }
    }

    /// Queues `job` (which the store has wrapped in its savepoint) and
    /// returns its result once its transaction committed; a failed commit
    /// becomes `commit_failed(error)` for every job of the batch. Once the
    /// job succeeded and its transaction committed, `committed` gets its
    /// result (see [`super::Store::write_then`]).
    pub async fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(&C) -> Result<T> + Send + 'static,
        commit_failed: fn(&StoreError) -> StoreError,
        committed: impl FnOnce(&T) + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Job<C> = Box::new(move |conn| {
            let result = job(conn);
            Box::new(move |commit_error| {
                // On the writer thread, before the reply: it runs even when
                // whoever waited for the reply has gone meanwhile.
                if let (None, Ok(value)) = (commit_error, &result) {
                    committed(value);
                }
                let _ = reply.send(match commit_error {
                    Some(e) => Err(commit_failed(e)),
                    None => result,
                });
            })
        });
        self.jobs.send(job).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Stops the writer after the jobs already queued, and waits for it.
    pub fn close(self) {
        let thread = self.thread.lock().expect("writer handle").take();
        drop(self.jobs);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
