//! [`PgStore`]: the server's handle to PostgreSQL, the same shape as
//! SQLite's store. One writer thread per node takes every write job waiting
//! in its queue into one transaction (group commit: one WAL flush on the
//! server for many requests) and runs each in its own savepoint, so one
//! failing job does not take the others down; a job's caller hears back
//! only after `COMMIT` returned, with `synchronous_commit = on` forced on
//! the session, so an answered request is on the database server's disk.
//! Reads run on pooled connections in `spawn_blocking`.
//!
//! When the database goes away (a restart, a failover) the writer fails the
//! batch at hand (the callers answer 503 with `Retry-After`), drops its
//! connection and connects again for the next batch; readers drop a closed
//! connection instead of pooling it. No restart of listgate is needed.
//!
//! A commit whose connection breaks before the server's answer arrives is
//! reported as failed, though the server may have committed it: the caller
//! gets 503 and the request may run twice. Every write the domain makes is
//! safe to repeat (a second signup is answered as the first, a second
//! confirmation changes nothing), so this loses nothing and doubles nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{PgSession, open_session};
use crate::store::db::Db;
use crate::store::writer::{Completion, Job, MAX_BATCH, WriterHandle};
use crate::store::{Result, StoreError};

/// Reads running at once, each on its own connection, which are then kept
/// open between reads. A bound, not only a pool size: reads come from
/// public requests (`/healthz`), and a flood of them must not open a
/// connection each and exhaust the database's `max_connections` for every
/// node; beyond it, reads wait their turn.
const MAX_READERS: usize = 8;
/// After a failed connection attempt, the writer waits this long before the
/// next, failing the jobs that arrive meanwhile at once: a database that is
/// down must not make every request wait out a connect timeout.
const RECONNECT_GAP: Duration = Duration::from_millis(500);

/// Where to connect, for the writer's and the readers' new connections.
#[derive(Debug, Clone)]
struct Target {
    url: Arc<str>,
    ca_file: Option<PathBuf>,
}

impl Target {
    fn connect(&self) -> Result<PgSession> {
        open_session(&self.url, self.ca_file.as_deref()).map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

/// Handle to PostgreSQL for the server: one writer, pooled readers.
#[derive(Clone)]
pub struct PgStore {
    writer: WriterHandle<PgSession>,
    readers: Arc<Mutex<Vec<PgSession>>>,
    /// One permit per read running (see [`MAX_READERS`]).
    reading: Arc<tokio::sync::Semaphore>,
    target: Target,
}

impl PgStore {
    /// Connects, migrates (under the migration lock) and starts the writer.
    pub fn open(url: &str, ca_file: Option<&std::path::Path>) -> Result<PgStore> {
        let target = Target { url: url.into(), ca_file: ca_file.map(PathBuf::from) };
        let session = target.connect()?;
        session.migrate()?;
        let writer_target = target.clone();
        let writer =
            WriterHandle::spawn("listgate-pg-writer", move |queue| run_writer(Some(session), writer_target, queue));
        Ok(PgStore {
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
            reading: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            target,
        })
    }

    /// Runs `job` inside the writer's current transaction and returns its
    /// result once that transaction is committed. If the job fails, its own
    /// changes are rolled back and the others in the batch still commit.
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        self.write_then(job, |_| {}).await
    }

    /// As [`PgStore::write`], calling `committed` with the result once
    /// the transaction committed, even if the caller has gone.
    pub async fn write_then<T, F>(&self, job: F, committed: impl FnOnce(&T) + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        let unavailable = |e: &StoreError| StoreError::Unavailable(e.to_string());
        self.writer.submit(move |session| in_savepoint(session, job), unavailable, committed).await
    }

    /// Runs `job` on a pooled connection, off the async executor.
    pub async fn read<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let target = self.target.clone();
        let permit = self.reading.clone().acquire_owned().await.map_err(|_| StoreError::WriterGone)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers.lock().expect("reader pool").pop();
            let session = match pooled {
                Some(session) if !session.is_closed() => session,
                _ => target.connect()?,
            };
            let result = job(&session);
            if !session.is_closed() {
                let mut pool = readers.lock().expect("reader pool");
                if pool.len() < MAX_READERS {
                    pool.push(session);
                }
            }
            result
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
    }

    /// A connection of its own holding the session-level advisory lock
    /// `key`, or `None` when another node holds it now. The lock lasts as
    /// long as the returned session (dropping it closes the connection,
    /// which releases the lock, also when this node dies).
    pub async fn try_lock(&self, key: i64) -> Result<Option<PgSession>> {
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || {
            let session = target.connect()?;
            Ok(if session.try_advisory_lock(key)? { Some(session) } else { None })
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
    }

    /// Stops the writer after the jobs already queued, and waits for it.
    pub fn close(self) {
        self.writer.close();
    }
}

/// Runs `job` in its own savepoint. The release waits for every statement
/// the job sent without waiting, so the job fails if any of them did, and
/// only its own changes are undone.
fn in_savepoint<T>(session: &PgSession, job: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
    session.savepoint();
    match job(session).and_then(|value| session.release_savepoint().map(|()| value)) {
        Ok(value) => Ok(value),
        Err(e) => {
            let _ = session.rollback_to_savepoint();
            Err(e)
        }
    }
}

/// The writer thread: take one job, then every job already waiting, run
/// them in one transaction, commit, then tell each job's caller. Connects
/// again after the database went away.
fn run_writer(mut session: Option<PgSession>, target: Target, mut queue: mpsc::Receiver<Job<PgSession>>) {
    let mut batch: Vec<Job<PgSession>> = Vec::with_capacity(MAX_BATCH);
    let mut completions: Vec<Completion> = Vec::with_capacity(MAX_BATCH);
    let mut last_failed_connect: Option<Instant> = None;
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if session.as_ref().is_none_or(PgSession::is_closed) {
            session = None;
            if last_failed_connect.is_some_and(|at| at.elapsed() < RECONNECT_GAP) {
                // Dropping a job drops its reply channel: its caller gets an error (503).
                batch.clear();
                continue;
            }
            match target.connect() {
                Ok(fresh) => {
                    tracing::info!("connected to PostgreSQL again");
                    session = Some(fresh);
                    last_failed_connect = None;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot reach PostgreSQL; answering 503 until it is back");
                    last_failed_connect = Some(Instant::now());
                    batch.clear();
                    continue;
                }
            }
        }
        let conn = session.as_ref().expect("connected above");
        if let Err(e) = conn.begin_write() {
            tracing::error!(error = %e, "cannot begin write transaction");
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            completions.push(job(conn));
        }
        let committed = conn.commit();
        if let Err(e) = &committed {
            tracing::error!(error = %e, "write transaction failed to commit");
            let _ = conn.rollback();
        }
        let error = committed.err();
        for complete in completions.drain(..) {
            complete(error.as_ref());
        }
    }
}
