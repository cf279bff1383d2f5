//! The PostgreSQL store (issue 15: several listgate nodes on one database). Only code in `store` talks to
//! PostgreSQL, as only it talks to SQLite.
//!
//! - [`connect`] opens one blocking [`Pipeline`] with TLS through
//!   rustls (ring, the webpki roots plus an optional CA file; no OpenSSL),
//!   honouring the URL's `sslmode`.
//! - [`migrate`] applies `schema.postgres.sql`, versioned in its one-row
//!   `schema_version` table, inside one transaction under an advisory lock.
//! - [`queries`] holds every statement, named and documented.
//!
//! The blocking connection, like rusqlite, runs on the store's own threads
//! (a writer thread, readers in `spawn_blocking`), never on the async
//! executor: each drives its connection on a small runtime of its own, and
//! calling it from inside a tokio runtime panics.
//!
//! - [`pipeline`]: [`Pipeline`], that connection, which can send a
//!   statement without waiting for its answer (why: its opening comment).
//!
//! - [`session`]: [`PgSession`], one connection with its prepared
//!   statements, and `impl Db for PgSession` (the store interface).
//! - [`store`]: [`PgStore`], the server's writer with group commit and its
//!   readers, which connect again after the database went away.
//! - [`copy`]: `listgate migrate-store`, SQLite's rows into an empty database.
//!
//! What several nodes coordinate through the database: the proof chain
//! ([`CHAIN_LOCK`], once per writer batch), the daily purge ([`PURGE_LOCK`]),
//! and the outbox and webhook queues (`FOR UPDATE SKIP LOCKED` claims with
//! leases, see `queries::CLAIM_DUE_MAILS`).

pub mod copy;
pub mod pipeline;
pub mod queries;
pub mod session;
pub mod store;

pub use pipeline::Pipeline;
pub use session::PgSession;
pub use store::PgStore;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::Config;
use tokio_postgres::NoTls;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `schema.postgres.sql`, compiled in so the binary is self-contained.
pub const SCHEMA: &str = include_str!("../../../schema.postgres.sql");
/// The version `SCHEMA` produces; the same number as SQLite's
/// `store::SCHEMA_VERSION`, as both describe the same tables.
pub const SCHEMA_VERSION: i32 = super::SCHEMA_VERSION;
/// The advisory lock [`migrate`] holds: "listgate" in ASCII, so it reads
/// back in `pg_locks` (`objid` and `classid` halves) and cannot collide
/// with another application's small integers by chance.
pub const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"listgate");
/// The advisory lock every write transaction holds from its start until it
/// commits (see `PgSession::begin_write`): one node appends to the proof
/// chain at a time.
pub const CHAIN_LOCK: i64 = i64::from_be_bytes(*b"lg-chain");
/// The advisory lock the node running the daily purge holds meanwhile.
pub const PURGE_LOCK: i64 = i64::from_be_bytes(*b"lg-purge");
/// The advisory lock the node anchoring the chain's head holds meanwhile,
/// so several nodes do not each ask the TSA for the same head.
pub const ANCHOR_LOCK: i64 = i64::from_be_bytes(*b"lg-ancho");
/// How long connecting may take when the URL sets no `connect_timeout`: a
/// database that does not answer fails the start with a clear error instead
/// of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why connecting or migrating failed. The URL's password never appears in it.
#[derive(Debug)]
pub enum PgError {
    /// The URL cannot be parsed, or asks for something listgate does not do.
    Url(String),
    /// The CA file cannot be read, or holds no usable certificate.
    CaFile { path: PathBuf, reason: String },
    /// Connecting to the server failed (refused, TLS, authentication).
    Connect { target: String, sslmode: &'static str, source: tokio_postgres::Error },
    /// A statement failed.
    Postgres(tokio_postgres::Error),
    /// The database was migrated by a newer listgate.
    TooNew { found: i32 },
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Url(reason) => write!(f, "database URL: {reason}"),
            PgError::CaFile { path, reason } => write!(f, "database CA file {}: {reason}", path.display()),
            PgError::Connect { target, sslmode, source } => {
                write!(f, "cannot connect to PostgreSQL at {target} (sslmode={sslmode}): {}", Causes(source))?;
                if *sslmode == "require" && is_tls_error(source) {
                    f.write_str("; sslmode=require never falls back to an unencrypted connection")?;
                }
                Ok(())
            }
            PgError::Postgres(e) => write!(f, "PostgreSQL: {}", Causes(e)),
            PgError::TooNew { found } => write!(
                f,
                "database schema version {found} is newer than this listgate ({SCHEMA_VERSION}); upgrade listgate"
            ),
        }
    }
}

/// An error with its causes, `outer: inner: …`: tokio-postgres's own text
/// says only which step failed ("error performing TLS handshake") and keeps
/// why in its source.
pub struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl<'a> Causes<'a> {
    pub fn of(e: &'a (dyn std::error::Error + 'static)) -> Causes<'a> {
        Causes(e)
    }
}

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !said.contains(&text) {
                write!(f, ": {text}")?;
            }
            said = text;
            next = cause.source();
        }
        Ok(())
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Connect { source, .. } | PgError::Postgres(source) => Some(source),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Postgres(e)
    }
}

pub type Result<T, E = PgError> = std::result::Result<T, E>;

/// Connects to the database at `url` (`postgres://user:pass@host:5432/db`).
///
/// The URL's `sslmode` decides the transport, as in libpq:
/// - `disable`: clear text.
/// - `prefer` (the default when the URL names none): TLS when the server
///   offers it, with the certificate verified as for `require`; a server
///   that offers no TLS gets clear text. That fallback is the client's to
///   take, so anyone between listgate and the database can force it: use
///   `prefer` only on loopback or a network you trust.
/// - `require`: TLS or no connection. The server's certificate must chain to
///   the webpki roots or to `ca_file` (PEM, one or more certificates) and
///   name the URL's host: rustls always checks both, so this is libpq's
///   `verify-full` (libpq's own `require` checks neither unless it finds a
///   root certificate file).
///
/// A URL without `connect_timeout` gets 10 s, without `application_name`
/// gets `listgate` (what `pg_stat_activity` shows).
pub fn connect(url: &str, ca_file: Option<&Path>) -> Result<Pipeline> {
    // tokio-postgres's parse errors name the option, never echo the URL,
    // which may hold a password.
    let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| PgError::Url(Causes(&e).to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("listgate");
    }
    let sslmode = sslmode_name(config.get_ssl_mode());
    let connected = match sslmode {
        "disable" => Pipeline::connect(&config, NoTls),
        _ => Pipeline::connect(&config, tls(ca_file)?),
    };
    connected.map_err(|source| PgError::Connect { target: target(&config), sslmode, source })
}

/// What a `database.url` points to, for `check-config`, warnings and logs:
/// never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSummary {
    /// Hosts and ports (or socket paths), then `/dbname` when the URL names one.
    pub target: String,
    /// `disable`, `prefer` or `require` (see [`connect`]).
    pub sslmode: &'static str,
    /// Every host is a loopback address or a Unix socket: clear text never
    /// leaves the machine.
    pub loopback_only: bool,
}

/// Parses `url` as [`connect`] will, without connecting.
pub fn summarize_url(url: &str) -> Result<UrlSummary> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(PgError::Url("must start with postgres:// or postgresql://".into()));
    }
    if let Some(advice) = libpq_only_sslmode(url) {
        return Err(PgError::Url(advice));
    }
    let config: Config = url.parse().map_err(|e: tokio_postgres::Error| PgError::Url(Causes(&e).to_string()))?;
    let loopback_only = config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    });
    let mut target = target(&config);
    if let Some(db) = config.get_dbname() {
        target = format!("{target}/{db}");
    }
    Ok(UrlSummary { target, sslmode: sslmode_name(config.get_ssl_mode()), loopback_only })
}

/// The client knows `disable`, `prefer` and `require` and calls any other
/// mode invalid; libpq's other three are common in URLs operators already
/// have, so say which of ours does what they ask.
fn libpq_only_sslmode(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let mode = query.split('&').find_map(|pair| pair.strip_prefix("sslmode="))?;
    let instead = match mode {
        "verify-full" | "verify-ca" => {
            "sslmode=require, which verifies the certificate and the host name (set database.ca_file for a private CA)"
        }
        "allow" => "sslmode=prefer (TLS when the server offers it) or sslmode=disable",
        _ => return None,
    };
    Some(format!("sslmode={mode} is libpq's; listgate's {instead}"))
}

fn sslmode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        // A mode added later: treated as strictly as `require`.
        _ => "require",
    }
}

/// Where `config` points, for error messages: hosts and ports, no user or password.
fn target(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    if hosts.is_empty() { "localhost:5432".to_owned() } else { hosts.join(",") }
}

/// Whether a connection failed in the TLS step (the server offers none, or
/// its certificate did not verify).
fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    Causes(e).to_string().contains("TLS")
}

/// rustls with ring, trusting the webpki roots and the certificates in
/// `ca_file` (a private CA, as many PostgreSQL servers use).
fn tls(ca_file: Option<&Path>) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let unusable = |reason: String| PgError::CaFile { path: path.to_path_buf(), reason };
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| unusable(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| unusable(format!("not PEM: {e}")))?;
        if certificates.is_empty() {
            return Err(unusable("holds no PEM certificate".to_owned()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| unusable(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Connects (see [`connect`]) with listgate's durability setting: every
/// commit waits for the server's WAL flush (`synchronous_commit = on`,
/// whatever the server's default), so an answered request survives a
/// crash of the database server. Replication to standbys follows the
/// server's own `synchronous_standby_names`, which is the operator's HA
/// policy to set.
pub fn open_session(url: &str, ca_file: Option<&Path>) -> Result<PgSession> {
    let db = connect(url, ca_file)?;
    db.batch_execute(queries::DURABLE_COMMITS)?;
    Ok(PgSession::new(db))
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The schema was applied over `from` (0: an empty database).
    Applied { from: i32 },
    /// The database already had [`SCHEMA_VERSION`]; nothing was run.
    UpToDate,
}

/// Brings the schema up to [`SCHEMA_VERSION`]; refuses a newer database.
///
/// Everything happens in one transaction that first takes the advisory lock
/// [`MIGRATION_LOCK`]: a second node starting at the same moment waits on
/// the lock, then finds the version recorded and does nothing. Without the
/// lock both would run `CREATE … IF NOT EXISTS` at once, and PostgreSQL
/// fails one of them on its catalog's unique index. A failure rolls
/// everything back: a database is never left half migrated.
pub fn migrate(db: &Pipeline) -> Result<Migrated> {
    db.batch_execute("BEGIN")?;
    let migrated = migrate_in_transaction(db);
    match migrated {
        Ok(Migrated::Applied { .. }) => db.batch_execute("COMMIT")?,
        _ => {
            let _ = db.batch_execute("ROLLBACK");
        }
    }
    migrated
}

fn migrate_in_transaction(db: &Pipeline) -> Result<Migrated> {
    db.execute_sql(queries::LOCK_FOR_TRANSACTION, &[&MIGRATION_LOCK])?;
    let has_version: bool = db.query_one_sql(queries::HAS_SCHEMA_VERSION, &[])?.get(0);
    let found: i32 = if has_version {
        db.query_opt_sql(queries::SELECT_SCHEMA_VERSION, &[])?.map_or(0, |row| row.get(0))
    } else {
        0
    };
    if found > SCHEMA_VERSION {
        return Err(PgError::TooNew { found });
    }
    if found == SCHEMA_VERSION {
        return Ok(Migrated::UpToDate);
    }
    db.batch_execute(SCHEMA)?;
    db.execute_sql(queries::SET_SCHEMA_VERSION, &[&SCHEMA_VERSION])?;
    Ok(Migrated::Applied { from: found })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL nothing answers: port 1 on loopback refuses at once.
    const NOBODY: &str = "postgres://listgate:s3cret-pw@127.0.0.1:1/listgate";

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, says) in [(&empty, "holds no PEM certificate"), (&missing, "No such file")] {
            let refused = connect(&format!("{NOBODY}?sslmode=require"), Some(path)).err().expect("refused");
            let message = refused.to_string();
            assert!(matches!(refused, PgError::CaFile { .. }), "{message}");
            assert!(message.contains(&path.display().to_string()) && message.contains(says), "{message}");
        }
    }

    #[test]
    fn connection_errors_name_the_server_but_never_the_password() {
        let refused = connect(&format!("{NOBODY}?sslmode=disable"), None).err().expect("nothing listens on port 1");
        let message = refused.to_string();
        assert!(message.contains("127.0.0.1:1") && message.contains("sslmode=disable"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let unparsable = connect("postgres://listgate:s3cret-pw@127.0.0.1:1/listgate?sslmode=sometimes", None)
            .err()
            .expect("an unknown sslmode");
        assert!(!unparsable.to_string().contains("s3cret"), "{unparsable}");
    }

    #[test]
    fn libpq_only_sslmodes_are_refused_with_the_mode_that_does_the_same() {
        for (mode, says) in
            [("verify-full", "sslmode=require"), ("verify-ca", "sslmode=require"), ("allow", "sslmode=prefer")]
        {
            let url =
                format!("postgres://listgate:s3cret-pw@db.example:5432/listgate?connect_timeout=5&sslmode={mode}");
            let refused = summarize_url(&url).unwrap_err().to_string();
            assert!(refused.contains(&format!("sslmode={mode}")) && refused.contains(says), "{refused}");
            assert!(!refused.contains("s3cret"), "{refused}");
        }
        assert_eq!(summarize_url("postgres://db.example/x?sslmode=require").unwrap().sslmode, "require");
    }
}
