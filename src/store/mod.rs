//! The only code that touches rusqlite.
//!
//! - [`open_connection`] sets the durability contract on every connection:
//!   WAL, `synchronous=FULL` (proof must survive a power cut), foreign keys,
//!   a busy timeout.
//! - [`migrate`] applies `schema.sql`, versioned with `PRAGMA user_version`.
//! - [`Store`] owns one writer thread and a small pool of read connections.
//!   Every write goes through the writer, which takes all jobs waiting in its
//!   queue into one `BEGIN IMMEDIATE` transaction (group commit: one fsync for
//!   many requests) and runs each job in its own savepoint, so one failing job
//!   does not take the others down. A job's caller hears back only after the
//!   commit, so an answered request is on disk.
//! - [`queries`] holds every SQL statement, named and documented.
//!
//! SQLite calls block, so they never run on the async executor's threads:
//! writes run on the writer thread, reads in `spawn_blocking`.

pub mod codes;
pub mod queries;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{mpsc, oneshot};

/// `schema.sql`, compiled in so the binary is self-contained.
pub const SCHEMA: &str = include_str!("../../schema.sql");
/// The `user_version` that `SCHEMA` produces.
pub const SCHEMA_VERSION: i32 = 4;
/// How many queued jobs the writer takes into one transaction at most.
const MAX_BATCH: usize = 512;
/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 8;

/// A storage failure.
#[derive(Debug)]
pub enum StoreError {
    Sqlite(rusqlite::Error),
    /// The writer thread has stopped (shutdown or a crash).
    WriterGone,
    /// The database was written by a newer listgate.
    TooNew(i32),
}

impl StoreError {
    /// The disk (or the database's size limit) is full: the request can be
    /// retried later, nothing was stored.
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull))
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "database: {e}"),
            StoreError::WriterGone => f.write_str("database writer has stopped"),
            StoreError::TooNew(v) => write!(
                f,
                "database schema version {v} is newer than this listgate ({SCHEMA_VERSION}); upgrade listgate"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens a connection with listgate's durability settings.
pub fn open_connection(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Every statement in `queries` stays prepared (rusqlite's default cache
    // holds 16, fewer than a signup alone uses, and re-preparing costs more
    // than running).
    conn.set_prepared_statement_cache_capacity(queries::ALL.len() + 8);
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "SQLite refused WAL mode; running with a rollback journal");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Erased and purged data is overwritten with zeros, not left in free
    // pages where a file dump would still find it.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Statement journals of savepoints stay in memory instead of a temporary
    // file opened and deleted per statement.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Brings the schema up to [`SCHEMA_VERSION`]; refuses a newer database.
/// Version 4's new column is added first ([`queries::UPGRADE_TO_V4`]); the
/// rest of every upgrade is `schema.sql` itself, which is idempotent. Then
/// every subscription without a public id gets one ([`queries::fill_public_ids`]),
/// also rows an older listgate wrote after a newer command upgraded the file.
pub fn migrate(conn: &Connection) -> Result<()> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew(version));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Checked inside the transaction: another process may have just
        // upgraded the file since `version` was read.
        let applied = (|| -> Result<()> {
            if (1..4).contains(&version) && !queries::has_public_id(conn)? {
                conn.execute_batch(queries::UPGRADE_TO_V4)?;
            }
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            Ok(())
        })();
        match applied {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    queries::fill_public_ids(conn)?;
    Ok(())
}

/// Runs `job` in `BEGIN IMMEDIATE … COMMIT` on the caller's own connection,
/// rolling back on error. For commands that write beside a running server:
/// IMMEDIATE takes the write lock up front (waiting out the busy timeout)
/// instead of failing half-way with "database is locked".
pub fn immediate<T>(conn: &Connection, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match job(conn) {
        Ok(value) => {
            conn.execute_batch("COMMIT")?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Runs the reads in `job` in one read transaction, so they all see one
/// snapshot of the database even while the server writes (WAL): a report
/// made of several queries never mixes before and after a change.
pub fn snapshot<T>(conn: &Connection, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // Deferred: the first read fixes the snapshot for the rest.
    conn.execute_batch("BEGIN")?;
    let result = job(conn);
    let _ = conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    result
}

/// What a write job hands back: called with the commit's outcome, it
/// delivers the job's result to whoever is waiting.
type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// Handle to the database for the server: one writer, pooled readers.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Store {
    /// Opens (creating and migrating if needed) the database and starts the writer.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_capped(path, 0)
    }

    /// As `open`, with writes capped at `max_pages` pages (0: no cap), after
    /// which they fail as on a full disk.
    pub fn open_capped(path: &Path, max_pages: u64) -> Result<Store> {
        let conn = open_connection(path)?;
        migrate(&conn)?;
        if max_pages > 0 {
            conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |_| Ok(()))?;
        }
        let (jobs, queue) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let writer = std::thread::Builder::new()
            .name("listgate-writer".into())
            .spawn(move || run_writer(conn, queue))
            .expect("spawn writer thread");
        Ok(Store {
            jobs,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.to_path_buf(),
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Runs `job` inside the writer's current transaction and returns its
    /// result once that transaction is committed. If the job fails, its own
    /// changes are rolled back and the others in the batch still commit.
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, job);
            Box::new(move |commit_error| {
                let result = match commit_error {
                    Some(e) => Err(StoreError::Sqlite(clone_error(e))),
                    None => result,
                };
                let _ = reply.send(result);
            })
        });
        self.jobs.send(job).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `job` on a read connection, off the async executor.
    pub async fn read<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().expect("reader pool").pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path)?,
            };
            let result = job(&conn);
            let mut pool = readers.lock().expect("reader pool");
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
    }

    /// Stops the writer after the jobs already queued, and waits for it.
    pub fn close(self) {
        let handle = self.writer.lock().expect("writer handle").take();
        drop(self.jobs);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn in_savepoint<T>(conn: &Connection, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match job(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

/// rusqlite errors are not `Clone`; a failed commit is reported to every job
/// in the batch, so rebuild an equivalent error for each.
fn clone_error(e: &StoreError) -> rusqlite::Error {
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, message)) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// The writer thread: take one job, then every job already waiting, run them
/// in one transaction, commit, then tell each job's caller.
fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut completions: Vec<Completion> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(StoreError::from);
        if let Err(e) = &began {
            tracing::error!(error = %e, "cannot begin write transaction");
            // Dropping a job drops its reply channel: its caller gets an error.
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            completions.push(job(&conn));
        }
        let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "write transaction failed to commit");
            let _ = conn.execute_batch("ROLLBACK");
        }
        let error = committed.err();
        for complete in completions.drain(..) {
            complete(error.as_ref());
        }
    }
}
