//! Which store the integration tests run on, and a reader for the tests'
//! own SQL that works on both.
//!
//! `LISTGATE_TEST_STORE=postgres` runs every test that starts a listgate
//! (`helpers::spawn_app*`, `faults.rs`'s child processes) on PostgreSQL:
//! each test gets a fresh database (`CREATE DATABASE`) in one throwaway
//! cluster (`pg::PgCluster`) shared by the whole test process and stopped
//! when it exits (not when it is killed outright: then, as `pg.rs` says,
//! the cluster stays running). The databases sort text by ICU's `en-US` collation, as a
//! database made under `en_US.UTF-8` or by a managed service does, not by
//! bytes as SQLite and the cluster's own `C` locale do: a query whose
//! order depends on it shows up here. Unset, or `sqlite`, each test gets a SQLite file in its
//! temporary folder, as ever. `./test` runs the suite once on each.
//!
//! [`TestDb`] runs the tests' SQL on the test's database, whichever it is:
//! the schemas keep the same columns and values on both (`schema.sql`,
//! `schema.postgres.sql`), so one spelling serves both; `?1` placeholders
//! become PostgreSQL's `$1`. [`sqlite_only`] skips a test that has no
//! meaning on PostgreSQL, saying why.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use listgate::config::DatabaseConfig;
use listgate::store::Database;
use listgate::store::db::Db;
use postgres::types::{FromSql, Type};

use crate::pg::PgCluster;

/// The environment variable that picks the store: `sqlite` (the default) or `postgres`.
pub const STORE_VARIABLE: &str = "LISTGATE_TEST_STORE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store this test process runs on ([`STORE_VARIABLE`]).
pub fn backend() -> Backend {
    static CHOSEN: OnceLock<Backend> = OnceLock::new();
    *CHOSEN.get_or_init(|| match std::env::var(STORE_VARIABLE).as_deref() {
        Err(_) | Ok("" | "sqlite") => Backend::Sqlite,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("{STORE_VARIABLE}={other}: expected sqlite or postgres"),
    })
}

/// True (and says so, with `reason`, on the real stderr, which the test
/// harness does not capture) when the tests run on PostgreSQL: the caller
/// returns at once. For what only SQLite has: its files, their modes,
/// `VACUUM INTO`, a page cap standing in for a full disk.
pub fn sqlite_only(reason: &str) -> bool {
    if backend() == Backend::Sqlite {
        return false;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(std::io::stderr(), "{test}: skipped on PostgreSQL: {reason}");
    true
}

/// The database of one test: a SQLite file in its folder, or a fresh
/// PostgreSQL database in the shared cluster, dropped with this value.
pub struct TestStore {
    path: std::path::PathBuf,
    /// The PostgreSQL database's name and URL.
    postgres: Option<(String, String)>,
}

impl TestStore {
    /// A new, empty store of [`backend`]'s kind; a SQLite file would be
    /// `dir/listgate.db` (created by whoever opens it first).
    pub fn new(dir: &Path) -> TestStore {
        let path = dir.join("listgate.db");
        let postgres = match backend() {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let shared = shared_cluster();
                let name = format!("test_{}", shared.next.fetch_add(1, Ordering::Relaxed));
                let create =
                    format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'");
                shared.admin(&create).unwrap_or_else(|e| panic!("{e}"));
                Some((name.clone(), format!("postgres://postgres@127.0.0.1:{}/{name}", shared.cluster.port())))
            }
        };
        TestStore { path, postgres }
    }

    /// Points `database` at this store (`path` is set on PostgreSQL too,
    /// so nothing is ever written into the working folder).
    pub fn configure(&self, database: &mut DatabaseConfig) {
        database.path = self.path.clone();
        database.url = self.postgres.as_ref().map(|(_, url)| url.clone());
    }

    /// The store's settings as a `listgate` process reads them.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut database = DatabaseConfig::default();
        self.configure(&mut database);
        database_env(&database)
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some((name, _)) = &self.postgres {
            // FORCE: a server the test left running holds connections. A
            // failure leaves the database to the cluster's removal at exit.
            let _ = shared_cluster().admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// `LISTGATE_DATABASE__PATH`, and `LISTGATE_DATABASE__URL` when `database`
/// is on PostgreSQL, for a `listgate` child process.
pub fn database_env(database: &DatabaseConfig) -> Vec<(String, String)> {
    let mut env = vec![("LISTGATE_DATABASE__PATH".to_string(), database.path.display().to_string())];
    if let Some(url) = &database.url {
        env.push(("LISTGATE_DATABASE__URL".to_string(), url.clone()));
    }
    env
}

/// The cluster every PostgreSQL test database of this process lives in.
struct SharedCluster {
    cluster: PgCluster,
    /// Makes and drops the tests' databases, one statement at a time.
    admin: Mutex<postgres::Client>,
    next: AtomicUsize,
}

static SHARED: OnceLock<SharedCluster> = OnceLock::new();

fn shared_cluster() -> &'static SharedCluster {
    SHARED.get_or_init(|| {
        let cluster = PgCluster::start();
        let url = cluster.url();
        let admin =
            off_runtime(move || postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| panic!("{e}")));
        // Statics are never dropped: stop the cluster when the test process exits.
        // SAFETY: registers a plain function with no preconditions.
        unsafe { libc::atexit(stop_shared_cluster) };
        SharedCluster { cluster, admin: Mutex::new(admin), next: AtomicUsize::new(1) }
    })
}

extern "C" fn stop_shared_cluster() {
    if let Some(shared) = SHARED.get() {
        shared.cluster.stop();
    }
}

impl SharedCluster {
    fn admin(&self, sql: &str) -> Result<(), String> {
        let mut guard = self.admin.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let admin = &mut *guard;
        off_runtime(|| admin.batch_execute(sql).map_err(|e| format!("{sql}: {}", full(&e))))
    }
}

/// Runs `job` on a plain thread: the sync `postgres` client runs a runtime
/// of its own and refuses to on a tokio worker thread (either flavor). A
/// panic in `job` goes on in the caller.
pub fn off_runtime<T: Send>(job: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(job).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A value read from either store: SQLite's storage classes, which
/// PostgreSQL's BIGINT, TEXT, BYTEA (and a `sum()`'s NUMERIC) map onto.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// One column's value as a Rust type; a mismatch fails the test.
pub trait FromValue: Sized {
    fn from_value(value: Value) -> Self;
}
impl FromValue for Value {
    fn from_value(value: Value) -> Value {
        value
    }
}
impl FromValue for i64 {
    fn from_value(value: Value) -> i64 {
        match value {
            Value::Int(v) => v,
            other => panic!("expected an integer, read {other:?}"),
        }
    }
}
impl FromValue for String {
    fn from_value(value: Value) -> String {
        match value {
            Value::Text(v) => v,
            other => panic!("expected text, read {other:?}"),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: Value) -> Vec<u8> {
        match value {
            Value::Blob(v) => v,
            other => panic!("expected a blob, read {other:?}"),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value) -> Option<T> {
        match value {
            Value::Null => None,
            other => Some(T::from_value(other)),
        }
    }
}

/// One row as a Rust type: a single value, a tuple, or every column.
pub trait FromRow: Sized {
    fn from_row(row: Vec<Value>) -> Self;
}
impl<T: FromValue> FromRow for T {
    fn from_row(row: Vec<Value>) -> T {
        assert_eq!(row.len(), 1, "expected one column");
        T::from_value(row.into_iter().next().unwrap())
    }
}
impl FromRow for Vec<Value> {
    fn from_row(row: Vec<Value>) -> Vec<Value> {
        row
    }
}
macro_rules! tuple_from_row {
    ($($name:ident)+) => {
        impl<$($name: FromValue),+> FromRow for ($($name,)+) {
            fn from_row(row: Vec<Value>) -> Self {
                let mut values = row.into_iter();
                let tuple = ($($name::from_value(values.next().expect("too few columns")),)+);
                assert!(values.next().is_none(), "too many columns");
                tuple
            }
        }
    };
}
tuple_from_row!(A B);
tuple_from_row!(A B C);
tuple_from_row!(A B C D);
tuple_from_row!(A B C D E);
tuple_from_row!(A B C D E F);
tuple_from_row!(A B C D E F G);
tuple_from_row!(A B C D E F G H);
tuple_from_row!(A B C D E F G H I);

/// A connection to a test's database, SQLite or PostgreSQL, for the SQL a
/// test reads and sets up with.
pub struct TestDb {
    database: DatabaseConfig,
    conn: Conn,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    /// Taken out when dropped: a client must not close on a tokio thread either.
    Postgres(Mutex<Option<postgres::Client>>),
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Conn::Postgres(client) = &mut self.conn
            && let Some(client) = client.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
        {
            off_runtime(move || drop(client));
        }
    }
}

impl TestDb {
    /// Connects to the database `database` names (`url`, else `path`).
    pub fn open(database: &DatabaseConfig) -> TestDb {
        let conn = match &database.url {
            None => Conn::Sqlite(listgate::store::open_connection(&database.path).expect("open the SQLite file")),
            Some(url) => Conn::Postgres(Mutex::new(Some(off_runtime(|| {
                // The test clusters serve clear text on loopback only.
                postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| panic!("{e}"))
            })))),
        };
        TestDb { database: database.clone(), conn }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Postgres(_))
    }

    /// The one row `sql` returns (fails the test on none or more).
    pub fn value<T: FromRow>(&self, sql: &str, params: &[Value]) -> T {
        let mut rows = self.query(sql, params).into_iter();
        let row = rows.next().unwrap_or_else(|| panic!("`{sql}` returned no row"));
        assert!(rows.next().is_none(), "`{sql}` returned more than one row");
        T::from_row(row)
    }

    /// Every row `sql` returns.
    pub fn rows<T: FromRow>(&self, sql: &str, params: &[Value]) -> Vec<T> {
        self.query(sql, params).into_iter().map(T::from_row).collect()
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> u64 {
        self.try_execute(sql, params).unwrap_or_else(|e| panic!("`{sql}`: {e}"))
    }

    /// As [`TestDb::execute`], returning the database's error.
    pub fn try_execute(&self, sql: &str, params: &[Value]) -> Result<u64, String> {
        match &self.conn {
            Conn::Sqlite(conn) => conn
                .execute(sql, rusqlite::params_from_iter(params.iter().map(to_sqlite)))
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
            Conn::Postgres(client) => {
                let mut guard = client.lock().unwrap();
                let client = guard.as_mut().expect("open until dropped");
                off_runtime(|| {
                    let statement = client.prepare(&dollar_placeholders(sql)).map_err(|e| full(&e))?;
                    let bound = to_postgres(params, statement.params());
                    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = bound.iter().map(|b| &**b as _).collect();
                    client.execute(&statement, &refs).map_err(|e| full(&e))
                })
            }
        }
    }

    /// Runs statements without parameters, separated by `;`.
    pub fn batch(&self, sql: &str) {
        match &self.conn {
            Conn::Sqlite(conn) => conn.execute_batch(sql).unwrap_or_else(|e| panic!("`{sql}`: {e}")),
            Conn::Postgres(client) => {
                let mut guard = client.lock().unwrap();
                let client = guard.as_mut().expect("open until dropped");
                off_runtime(|| client.batch_execute(sql).unwrap_or_else(|e| panic!("`{sql}`: {}", full(&e))));
            }
        }
    }

    /// Runs `job` on the store's own interface on this database, as the
    /// CLI opens it: for library calls such as `proof::verify_chain`.
    pub fn store<T: Send>(&self, job: impl FnOnce(&dyn Db) -> T + Send) -> T {
        self.database(|database| job(&**database))
    }

    /// As [`TestDb::store`], for calls that take a whole `Database`
    /// (`retention::purge_all`).
    pub fn database<T: Send>(&self, job: impl FnOnce(&Database) -> T + Send) -> T {
        let database = &self.database;
        off_runtime(move || job(&Database::open(database).unwrap_or_else(|e| panic!("open the store: {e}"))))
    }

    fn query(&self, sql: &str, params: &[Value]) -> Vec<Vec<Value>> {
        match &self.conn {
            Conn::Sqlite(conn) => {
                let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                let columns = statement.column_count();
                let mut rows = statement
                    .query(rusqlite::params_from_iter(params.iter().map(to_sqlite)))
                    .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                let mut all = Vec::new();
                while let Some(row) = rows.next().unwrap_or_else(|e| panic!("`{sql}`: {e}")) {
                    all.push((0..columns).map(|i| from_sqlite(row.get_ref(i).unwrap())).collect());
                }
                all
            }
            Conn::Postgres(client) => {
                let mut guard = client.lock().unwrap();
                let client = guard.as_mut().expect("open until dropped");
                off_runtime(|| {
                    let statement =
                        client.prepare(&dollar_placeholders(sql)).unwrap_or_else(|e| panic!("`{sql}`: {}", full(&e)));
                    let bound = to_postgres(params, statement.params());
                    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = bound.iter().map(|b| &**b as _).collect();
                    let rows = client.query(&statement, &refs).unwrap_or_else(|e| panic!("`{sql}`: {}", full(&e)));
                    rows.iter().map(|row| (0..row.len()).map(|i| row.get::<_, Value>(i)).collect()).collect()
                })
            }
        }
    }
}

/// A PostgreSQL error with the server's message (the client's `Display`
/// says only "db error").
fn full(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => e.to_string(),
    }
}

/// `?1` (and a bare `?`) as PostgreSQL's `$1`, outside quoted text.
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let (mut quoted, mut highest) = (false, 0);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '?' || quoted {
            out.push(c);
            continue;
        }
        // SQLite numbers a bare `?` one above the highest number so far.
        let mut digits = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            digits.push(d);
        }
        let number = if digits.is_empty() { highest + 1 } else { digits.parse().expect("a parameter number") };
        highest = highest.max(number);
        out.push_str(&format!("${number}"));
    }
    out
}

fn to_sqlite(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(v) => rusqlite::types::Value::Integer(*v),
        Value::Real(v) => rusqlite::types::Value::Real(*v),
        Value::Text(v) => rusqlite::types::Value::Text(v.clone()),
        Value::Blob(v) => rusqlite::types::Value::Blob(v.clone()),
    }
}

fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(String::from_utf8(v.to_vec()).expect("UTF-8 text")),
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    }
}

/// Binds each value as the type PostgreSQL inferred for its placeholder.
fn to_postgres(params: &[Value], types: &[Type]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    assert_eq!(params.len(), types.len(), "the statement takes {} parameters", types.len());
    params
        .iter()
        .zip(types)
        .map(|(value, ty)| -> Box<dyn postgres::types::ToSql + Sync> {
            let ty = ty.clone();
            match value {
                Value::Null if ty == Type::INT8 => Box::new(None::<i64>),
                Value::Null if ty == Type::INT4 => Box::new(None::<i32>),
                Value::Null if ty == Type::BYTEA => Box::new(None::<Vec<u8>>),
                Value::Null => Box::new(None::<String>),
                Value::Int(v) if ty == Type::INT4 => Box::new(i32::try_from(*v).expect("fits an INT4")),
                Value::Int(v) if ty == Type::INT2 => Box::new(i16::try_from(*v).expect("fits an INT2")),
                Value::Int(v) if ty == Type::TEXT || ty == Type::VARCHAR => Box::new(v.to_string()),
                Value::Int(v) => Box::new(*v),
                Value::Real(v) => Box::new(*v),
                Value::Text(v) => Box::new(v.clone()),
                Value::Blob(v) => Box::new(v.clone()),
            }
        })
        .collect()
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        let ty = ty.clone();
        Ok(if ty == Type::INT8 {
            Value::Int(i64::from_sql(&ty, raw)?)
        } else if ty == Type::INT4 {
            Value::Int(i32::from_sql(&ty, raw)?.into())
        } else if ty == Type::INT2 {
            Value::Int(i16::from_sql(&ty, raw)?.into())
        } else if ty == Type::BOOL {
            Value::Int(bool::from_sql(&ty, raw)?.into())
        } else if ty == Type::FLOAT8 {
            Value::Real(f64::from_sql(&ty, raw)?)
        } else if ty == Type::FLOAT4 {
            Value::Real(f32::from_sql(&ty, raw)?.into())
        } else if ty == Type::BYTEA {
            Value::Blob(Vec::<u8>::from_sql(&ty, raw)?)
        } else if ty == Type::NUMERIC {
            numeric(raw)?
        } else {
            Value::Text(String::from_sql(&ty, raw).map_err(|_| format!("a column of type {ty} in a test query"))?)
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary NUMERIC (what `sum()` of a BIGINT gives): an integer
/// when it has no fraction, as SQLite's `sum()` of integers is.
fn numeric(raw: &[u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| i16::from_be_bytes([raw[2 * i], raw[2 * i + 1]]);
    let (digits, weight, sign, scale) = (word(0) as usize, i32::from(word(1)), word(2) as u16, word(3));
    if sign == 0xC000 {
        return Err("NaN".into());
    }
    let mut value = 0f64;
    for i in 0..digits {
        value += f64::from(word(4 + i)) * 10000f64.powi(weight - i as i32);
    }
    if sign == 0x4000 {
        value = -value;
    }
    Ok(if scale == 0 { Value::Int(value as i64) } else { Value::Real(value) })
}

#[test]
fn placeholders_become_dollar_signs_outside_quotes() {
    assert_eq!(
        dollar_placeholders("SELECT ?1, ?, '?' FROM t WHERE a = ?12"),
        "SELECT $1, $2, '?' FROM t WHERE a = $12"
    );
}
