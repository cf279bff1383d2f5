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
//! - [`db`] is the store interface the domain is written against; SQLite's
//!   `Connection` and PostgreSQL's `PgSession` implement it. [`Store`] (the
//!   server's) and [`Database`] (a CLI command's) choose the backend from
//!   `database.url`.
//! - [`postgres`] is the PostgreSQL side: several nodes on one database.
//! - Erased data leaves the files within a minute. `secure_delete` zeroes
//!   deleted rows in the database file, but the WAL keeps the old page
//!   images (with the address) until it is overwritten, which on a quiet
//!   server is never. So a write that erases ([`SqliteStore::write_erasing`]:
//!   "I did not sign up", the daily purge) makes the writer, right after
//!   that batch commits, run `wal_checkpoint(TRUNCATE)`: every frame goes
//!   into the database file and the WAL is cut to zero bytes. A reader
//!   still using an old snapshot makes it wait; the writer tries again at
//!   most once a second (`SCRUB_GAP`), between batches, so a flood of
//!   declines costs one checkpoint a second and a signup never pays for one.
//!
//! SQLite calls block, so they never run on the async executor's threads:
//! writes run on the writer thread, reads in `spawn_blocking`.

pub mod codes;
pub mod db;
pub mod postgres;
pub mod queries;
pub mod seen;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use self::db::Db;
use crate::config::DatabaseConfig;
use tokio::sync::mpsc;

use self::writer::{Completion, Job, MAX_BATCH, WriterHandle};

/// `schema.sql`, compiled in so the binary is self-contained.
pub const SCHEMA: &str = include_str!("../../schema.sql");
/// The `user_version` that `SCHEMA` produces.
pub const SCHEMA_VERSION: i32 = 5;
/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 8;
/// Page cache of each read connection, in KiB ([`open_reader`]).
const READER_CACHE_KIB: i64 = 256;
/// Page cache of the server's writer, in KiB: the B-tree pages a signup
/// touches (the right edges where rows are appended, the inner pages of the
/// address index). SQLite's default is 2000; 1024 left the signup rate
/// where it was at a million rows and took 1 MB off the server's peak
/// (BENCHMARKS.md, "Memory").
const WRITER_CACHE_KIB: i64 = 1024;
/// How long a connection waits for a lock another one holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The WAL file is cut back to this size whenever it restarts, so a burst
/// (an import, a large purge) does not leave a file of old frames behind.
/// Larger than the WAL of steady signups (autocheckpoint at 1000 pages, 4
/// MB), so normal operation never pays for the truncation.
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;
/// At most one WAL truncation attempt per this interval.
const SCRUB_GAP: Duration = Duration::from_secs(1);
/// How long one truncation attempt on the writer waits for readers to move
/// to the newest snapshot; every write waits meanwhile, so keep it short.
const SCRUB_PATIENCE: Duration = Duration::from_millis(100);
/// When erased data is still in the WAL after this long, say so: the
/// contract promises a minute.
const SCRUB_WARN_AFTER: Duration = Duration::from_secs(30);

/// A storage failure.
#[derive(Debug)]
pub enum StoreError {
    Sqlite(rusqlite::Error),
    /// A statement on PostgreSQL failed, or its connection is gone.
    Postgres(tokio_postgres::Error),
    /// The database cannot be reached or did not commit (PostgreSQL down,
    /// restarting, failing over): the request may be retried later.
    Unavailable(String),
    /// The writer thread has stopped (shutdown or a crash).
    WriterGone,
    /// `migrate-store`'s target already holds data.
    NotEmpty(String),
    /// The database was written by a newer listgate.
    TooNew(i32),
    /// A stored value does not read back as its type (a hand-edited row:
    /// a time not in the stored format, an unknown status): an error,
    /// never a guess. SQLite reports these as `Sqlite(FromSqlConversionFailure)`.
    Corrupt(String),
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
            StoreError::Postgres(e) => write!(f, "PostgreSQL: {}", postgres::Causes::of(e)),
            StoreError::Unavailable(why) => f.write_str(why),
            StoreError::WriterGone => f.write_str("database writer has stopped"),
            StoreError::NotEmpty(what) => write!(f, "the target database is not empty: {what}"),
            StoreError::TooNew(v) => write!(
                f,
                "database schema version {v} is newer than this listgate ({SCHEMA_VERSION}); upgrade listgate"
            ),
            StoreError::Corrupt(what) => write!(f, "database holds an unreadable value: {what}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(e) => Some(e),
            StoreError::Postgres(e) => Some(e),
            _ => None,
        }
    }
}

impl From<postgres::PgError> for StoreError {
    fn from(e: postgres::PgError) -> Self {
        match e {
            postgres::PgError::Postgres(e) => StoreError::Postgres(e),
            postgres::PgError::TooNew { found } => StoreError::TooNew(found),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(e)
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
    let mut conn = Connection::open_with_flags(path, flags)?;
    wait_for_locks(&mut conn)?;
    // Every statement in `queries` stays prepared (rusqlite's default cache
    // holds 16, fewer than a signup alone uses, and re-preparing costs more
    // than running).
    conn.set_prepared_statement_cache_capacity(queries::ALL.len() + 8);
    // One plan per statement, whatever values are bound (the query planner
    // stability guarantee). Without it SQLite marks a statement whose WHERE
    // it compared with a partial index's, or priced with STAT4, to be
    // compiled again when a value is rebound; rusqlite clears the bindings
    // of each statement its cache takes back, so such a statement was
    // compiled again on every use: the lookups by address alone, and the
    // daily cap's count on every signup. An import spent 18-27 % of its
    // time re-preparing one (perf; BENCHMARKS.md, "Import").
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "SQLite refused WAL mode; running with a rollback journal");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Erased and purged data is overwritten with zeros, not left in free
    // pages where a file dump would still find it.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    // Statement journals of savepoints stay in memory instead of a temporary
    // file opened and deleted per statement.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// A read connection of the server's pool: as [`open_connection`], with a
/// page cache of [`READER_CACHE_KIB`]. Reads are point lookups and short
/// counts that the operating system's file cache serves as well; SQLite's
/// default of 2 MB per connection, on the writer and up to
/// [`MAX_IDLE_READERS`] readers, was most of the server's growth in memory
/// under load (`benches/load.sh --e2e`, BENCHMARKS.md "Memory").
fn open_reader(path: &Path) -> Result<Connection> {
    let conn = open_connection(path)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    Ok(conn)
}

/// Makes `conn` wait up to [`BUSY_TIMEOUT`] for a lock another connection
/// holds, trying again every millisecond. SQLite's own busy timeout backs
/// off to sleeps of 100 ms, and a server writer asleep that long loses
/// every race for the lock to a process that takes it again right after
/// each commit: beside `listgate import`, signups waited 670-780 ms at p99
/// (`benches/import.sh --beside-server`, BENCHMARKS.md "Import").
fn wait_for_locks(conn: &mut Connection) -> Result<()> {
    fn every_millisecond(retries: i32) -> bool {
        std::thread::sleep(Duration::from_millis(1));
        u128::try_from(retries).unwrap_or(0) < BUSY_TIMEOUT.as_millis()
    }
    conn.busy_handler(Some(every_millisecond))?;
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`]; refuses a newer database.
pub fn migrate(conn: &Connection) -> Result<()> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew(version));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let applied = conn
            .execute_batch(SCHEMA)
            .and_then(|_| queries::add_missing_columns(conn))
            .and_then(|_| conn.pragma_update(None, "user_version", SCHEMA_VERSION));
        match applied {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
    }
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

/// The SQLite store for the server: one writer, pooled readers.
#[derive(Clone)]
pub struct SqliteStore {
    writer: WriterHandle<Connection>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    /// Set by a [`SqliteStore::write_erasing`] job; the writer truncates the WAL
    /// after the batch that set it.
    erased: Arc<AtomicBool>,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database and starts the writer.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_capped(path, 0)
    }

    /// As `open`, with writes capped at `max_pages` pages (0: no cap), after
    /// which they fail as on a full disk.
    pub fn open_capped(path: &Path, max_pages: u64) -> Result<SqliteStore> {
        let conn = open_connection(path)?;
        migrate(&conn)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        if max_pages > 0 {
            conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |_| Ok(()))?;
        }
        let erased = Arc::new(AtomicBool::new(false));
        let flag = erased.clone();
        let writer = WriterHandle::spawn("listgate-writer", move |queue| run_writer(conn, queue, flag));
        Ok(SqliteStore { writer, readers: Arc::new(Mutex::new(Vec::new())), path: path.to_path_buf(), erased })
    }

    /// As [`SqliteStore::write`], for a job that erases personal data: once it
    /// has committed, the writer truncates the WAL (see the module comment),
    /// so the old page images leave the files too, within a minute even
    /// while readers get in the way.
    pub async fn write_erasing<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        let erased = self.erased.clone();
        self.write(move |conn| {
            let result = job(conn);
            if result.is_ok() {
                erased.store(true, Ordering::Relaxed);
            }
            result
        })
        .await
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

    /// As [`SqliteStore::write`], calling `committed` with the result once
    /// the transaction committed, even if the caller has gone.
    pub async fn write_then<T, F>(&self, job: F, committed: impl FnOnce(&T) + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        let failed = |e: &StoreError| StoreError::Sqlite(clone_error(e));
        self.writer.submit(move |conn| in_savepoint(conn, |c| job(c)), failed, committed).await
    }

    /// Runs `job` on a read connection, off the async executor.
    pub async fn read<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().expect("reader pool").pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&path)?,
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
        self.writer.close();
    }
}

/// The server's handle to its database, SQLite or PostgreSQL
/// (`database.url`): writes through one writer per node with group commit,
/// reads on pooled connections, both as jobs on a [`Db`].
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the database `config` names, creating and migrating it.
    pub fn open(config: &DatabaseConfig) -> Result<Store> {
        Ok(match &config.url {
            Some(url) => Store::Postgres(postgres::PgStore::open(url, config.ca_file.as_deref())?),
            None => Store::Sqlite(SqliteStore::open_capped(&config.path, config.max_pages)?),
        })
    }

    /// `"sqlite"` or `"postgres"`, as `/healthz` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Runs `job` inside the writer's current transaction; see
    /// [`SqliteStore::write`].
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        match self {
            Store::Sqlite(store) => store.write(job).await,
            Store::Postgres(store) => store.write(job).await,
        }
    }

    /// As [`Store::write`]; once the job's transaction committed, and only
    /// if the job succeeded, `committed` gets its result, on the writer
    /// thread. It runs even when the caller has gone meanwhile (an HTTP
    /// client that hung up drops its request): what a commit calls for,
    /// waking the worker it gave work and counting it, must not be lost
    /// with the request. A signup's wake-up lost so left its mail waiting
    /// for the outbox's next look, up to 30 s (`benches/load.sh --e2e`
    /// showed it when wrk closed its connections). Keep it short: the
    /// writer's next batch waits for it.
    pub async fn write_then<T, F>(&self, job: F, committed: impl FnOnce(&T) + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        match self {
            Store::Sqlite(store) => store.write_then(job, committed).await,
            Store::Postgres(store) => store.write_then(job, committed).await,
        }
    }

    /// As [`Store::write`], for a job that erases personal data. SQLite
    /// then truncates its WAL ([`SqliteStore::write_erasing`]); PostgreSQL's
    /// WAL and freed pages are the server's (docs/deployment.md says how an
    /// operator gets those bytes gone).
    pub async fn write_erasing<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        match self {
            Store::Sqlite(store) => store.write_erasing(job).await,
            Store::Postgres(store) => store.write(job).await,
        }
    }

    /// Runs `job` on a read connection, off the async executor.
    pub async fn read<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        match self {
            Store::Sqlite(store) => store.read(job).await,
            Store::Postgres(store) => store.read(job).await,
        }
    }

    /// Runs `job` (the daily purge) unless another node is running it now:
    /// `None` then. On SQLite there is one node, and the writer orders
    /// everything; on PostgreSQL a session-level advisory lock on a
    /// connection of its own is held while `job` runs.
    pub async fn on_one_node<T, Fut>(&self, job: impl FnOnce() -> Fut) -> Result<Option<T>>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.on_one_node_with(postgres::PURGE_LOCK, job).await
    }

    /// As [`Store::on_one_node`], under the advisory lock `lock` (the daily
    /// anchor's is `postgres::ANCHOR_LOCK`).
    pub async fn on_one_node_with<T, Fut>(&self, lock: i64, job: impl FnOnce() -> Fut) -> Result<Option<T>>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        match self {
            Store::Sqlite(_) => Ok(Some(job().await?)),
            Store::Postgres(store) => {
                let Some(lock) = store.try_lock(lock).await? else { return Ok(None) };
                let result = job().await;
                tokio::task::spawn_blocking(move || drop(lock)).await.map_err(|_| StoreError::WriterGone)?;
                result.map(Some)
            }
        }
    }

    /// Stops the writer after the jobs already queued, and waits for it.
    pub fn close(self) {
        match self {
            Store::Sqlite(store) => store.close(),
            Store::Postgres(store) => store.close(),
        }
    }
}

/// One command's connection (the CLI's), SQLite or PostgreSQL. It derefs to
/// the [`Db`] for single statements; [`Database::immediate`] and
/// [`Database::snapshot`] wrap several in one transaction.
pub enum Database {
    Sqlite(Connection),
    /// Boxed: a PostgreSQL client is several times a SQLite connection's size.
    Postgres(Box<postgres::PgSession>),
}

impl Database {
    /// Opens an existing database for a command (never creates a SQLite
    /// file: a typo in `database.path` must not look like an empty list)
    /// and brings its schema up to date.
    pub fn open(config: &DatabaseConfig) -> std::result::Result<Database, String> {
        if let Some(url) = &config.url {
            let session = postgres::open_session(url, config.ca_file.as_deref()).map_err(|e| e.to_string())?;
            session.migrate().map_err(|e| e.to_string())?;
            return Ok(Database::Postgres(Box::new(session)));
        }
        let path = &config.path;
        if !path.exists() {
            return Err(format!(
                "no database at {} (check database.path, or run `listgate serve` once)",
                path.display()
            ));
        }
        let conn = open_connection(path).map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
        migrate(&conn).map_err(|e| e.to_string())?;
        Ok(Database::Sqlite(conn))
    }

    /// As [`Database::open`], but creates the SQLite file when there is
    /// none (`import` into a new instance, before its first `serve`); says
    /// whether it did.
    pub fn open_or_create(config: &DatabaseConfig) -> std::result::Result<(Database, bool), String> {
        let create = config.url.is_none() && !config.path.exists();
        if create {
            let conn = open_connection(&config.path)
                .map_err(|e| format!("cannot create database {}: {e}", config.path.display()))?;
            migrate(&conn).map_err(|e| e.to_string())?;
        }
        Ok((Database::open(config)?, create))
    }

    /// An empty database in a private temporary file that SQLite deletes
    /// when it closes: what a dry run checks against when there is none yet.
    pub fn temporary() -> std::result::Result<Database, String> {
        let conn = Connection::open("").map_err(|e| format!("cannot create a temporary database: {e}"))?;
        migrate(&conn).map_err(|e| e.to_string())?;
        Ok(Database::Sqlite(conn))
    }

    /// Runs `job` in one write transaction, rolling back on error. On
    /// SQLite it is `BEGIN IMMEDIATE`, which takes the write lock up front
    /// (waiting out the busy timeout) instead of failing half-way with
    /// "database is locked" beside a running server.
    pub fn immediate<T>(&self, job: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match self {
            Database::Sqlite(conn) => immediate(conn, |c| job(c)),
            Database::Postgres(session) => in_transaction(session, postgres::PgSession::begin_write, job),
        }
    }

    /// Runs the reads in `job` in one read transaction, so they all see one
    /// snapshot even while the server writes: a report made of several
    /// queries never mixes before and after a change.
    pub fn snapshot<T>(&self, job: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match self {
            Database::Sqlite(conn) => snapshot(conn, |c| job(c)),
            Database::Postgres(session) => {
                in_transaction(session, |s| s.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), job)
            }
        }
    }
}

impl std::ops::Deref for Database {
    type Target = dyn Db;

    fn deref(&self) -> &(dyn Db + 'static) {
        match self {
            Database::Sqlite(conn) => conn,
            Database::Postgres(session) => session.as_ref(),
        }
    }
}

/// `begin`, `job`, then `COMMIT`, or `ROLLBACK` when the job fails.
fn in_transaction<T>(
    session: &postgres::PgSession,
    begin: impl FnOnce(&postgres::PgSession) -> Result<()>,
    job: impl FnOnce(&dyn Db) -> Result<T>,
) -> Result<T> {
    begin(session)?;
    match job(session) {
        Ok(value) => {
            session.commit()?;
            Ok(value)
        }
        Err(e) => {
            let _ = session.rollback();
            Err(e)
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
/// in one transaction, commit, then tell each job's caller. After a batch
/// with an erasure, and while that erasure is still in the WAL, it also
/// truncates the WAL between batches.
fn run_writer(mut conn: Connection, mut queue: mpsc::Receiver<Job<Connection>>, erased: Arc<AtomicBool>) {
    let mut batch: Vec<Job<Connection>> = Vec::with_capacity(MAX_BATCH);
    let mut completions: Vec<Completion> = Vec::with_capacity(MAX_BATCH);
    let mut scrub = WalScrub::default();
    // Only to wait for the next job with a deadline while a scrub is due.
    let timer = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("writer timer");
    loop {
        let next = match scrub.next_attempt() {
            None => queue.blocking_recv(),
            Some(at) => {
                // The timer is made inside `block_on`: it needs the runtime's clock.
                let wait = async { tokio::time::timeout_at(tokio::time::Instant::from_std(at), queue.recv()).await };
                match timer.block_on(wait) {
                    Ok(job) => job,
                    Err(_) => {
                        scrub.attempt(&mut conn, SCRUB_PATIENCE);
                        continue;
                    }
                }
            }
        };
        let Some(first) = next else { break };
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
        if erased.swap(false, Ordering::Relaxed) {
            scrub.request();
        }
        if scrub.is_due() {
            scrub.attempt(&mut conn, SCRUB_PATIENCE);
        }
    }
    if scrub.next_attempt().is_some() {
        // Shutting down: no write to hold up any more, so wait the full
        // busy timeout for readers.
        scrub.attempt(&mut conn, BUSY_TIMEOUT);
    }
}

/// The writer's pending WAL truncation: since when erased data waits in
/// the WAL, and when it was last tried.
#[derive(Debug, Default)]
struct WalScrub {
    pending_since: Option<Instant>,
    last_attempt: Option<Instant>,
    warned: bool,
}

impl WalScrub {
    fn request(&mut self) {
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// When to try next: at once, or a [`SCRUB_GAP`] after the last try;
    /// ten gaps once the warning is out, so a reader that never lets go
    /// (a replication tool's read transaction) costs the writer 1% at most.
    fn next_attempt(&self) -> Option<Instant> {
        self.pending_since?;
        let gap = if self.warned { SCRUB_GAP * 10 } else { SCRUB_GAP };
        Some(self.last_attempt.map_or_else(Instant::now, |last| last + gap))
    }

    fn is_due(&self) -> bool {
        self.next_attempt().is_some_and(|at| at <= Instant::now())
    }

    /// One `wal_checkpoint(TRUNCATE)` on the writer's connection, waiting
    /// at most `patience` for readers.
    fn attempt(&mut self, conn: &mut Connection, patience: Duration) {
        let Some(since) = self.pending_since else { return };
        let started = Instant::now();
        self.last_attempt = Some(started);
        let done = conn.busy_timeout(patience).map_err(StoreError::from).and_then(|()| queries::truncate_wal(conn));
        let _ = wait_for_locks(conn);
        match done {
            Ok(true) => {
                tracing::debug!(
                    waited_ms = since.elapsed().as_millis() as u64,
                    took_ms = started.elapsed().as_millis() as u64,
                    "WAL truncated after an erasure"
                );
                *self = WalScrub { last_attempt: Some(started), ..WalScrub::default() };
            }
            Ok(false) | Err(_) if since.elapsed() >= SCRUB_WARN_AFTER && !self.warned => {
                self.warned = true;
                tracing::warn!(
                    seconds = since.elapsed().as_secs(),
                    "erased data is still in the WAL file: readers keep the checkpoint from finishing; retrying"
                );
            }
            Ok(false) | Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether any file of the database holds `needle`. Read by `cat`: a
    /// descriptor of these files closed in this process would drop the
    /// POSIX locks its SQLite connections hold on them.
    fn files_hold(path: &Path, needle: &str) -> bool {
        ["", "-wal", "-shm"].iter().any(|suffix| {
            let file = format!("{}{suffix}", path.display());
            let bytes = std::process::Command::new("cat").arg(&file).output().expect("cat").stdout;
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
    }

    /// A pending signup of `address`; returns its id.
    fn add_subscription(db: &dyn Db, address: &str) -> Result<i64> {
        let now = crate::clock::Timestamp::from(time::OffsetDateTime::now_utc());
        db.insert_consent_text("c", "Yes.", now)?;
        let email_key = crate::domain::EmailKey::lenient(address);
        db.insert_subscription(&db::NewSubscription {
            list_id: "news",
            email: address,
            email_key: &email_key,
            name: None,
            consent_sha256: "c",
            now,
            ip: "192.0.2.1",
            form_page_sha256: None,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_erasing_write_truncates_the_wal_as_soon_as_an_old_reader_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listgate.db");
        let store = SqliteStore::open(&path).unwrap();
        let marker = "erase-me-4711@example.org";
        let id = store.write(move |db| add_subscription(db, marker)).await.unwrap();
        // A reader inside a snapshot from before the erasure: the WAL
        // cannot be reset under it.
        let reader = open_connection(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT count(*) FROM subscriptions", [], |r| r.get(0)).unwrap();

        store.write_erasing(move |db| db.delete_subscription(id)).await.unwrap();
        // Something must not happen: give the writer a few attempts' time.
        tokio::time::sleep(SCRUB_PATIENCE * 3).await;
        assert!(files_hold(&path, marker), "the old reader holds the old frames in place");

        reader.execute_batch("COMMIT").unwrap();
        let let_go = Instant::now();
        while files_hold(&path, marker) {
            assert!(let_go.elapsed() < SCRUB_GAP * 5, "the writer did not try again after the reader let go");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(std::fs::metadata(format!("{}-wal", path.display())).unwrap().len(), 0, "the WAL is cut to nothing");
        tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ordinary_writes_leave_the_wal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listgate.db");
        let store = SqliteStore::open(&path).unwrap();
        let id = store.write(|db| add_subscription(db, "x@example.org")).await.unwrap();
        store.write(move |db| db.delete_subscription(id)).await.unwrap();
        let wal = std::fs::metadata(format!("{}-wal", path.display())).unwrap().len();
        assert!(wal > 0, "no truncation for writes that are not erasures (a signup never pays for one)");
        tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    }
}
