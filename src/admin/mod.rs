//! The operator's commands, as library functions the CLI calls and tests
//! call directly. Each works on its own SQLite connection beside a running
//! server: reads see a consistent snapshot (WAL), writes take short
//! `BEGIN IMMEDIATE` transactions.
//!
//! Functions write data to the `out` they are given (stdout in the CLI) and
//! return errors as one-line messages; `main.rs` turns those into exit codes.

pub mod backup;
pub mod check_config;
pub mod correct;
pub mod erase;
pub mod export;
pub mod show;
pub mod stats;
pub mod unsubscribe;
pub mod verify;

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rusqlite::Connection;

use crate::store;

/// Opens an existing database for a command (never creates one: a typo in
/// `database.path` must not look like an empty list).
pub fn open_database(path: &Path) -> Result<Connection, String> {
    if !path.exists() {
        return Err(format!("no database at {} (check database.path, or run `listgate serve` once)", path.display()));
    }
    let conn = store::open_connection(path).map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    store::migrate(&conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// A progress bar on stderr when it is a terminal, and silence otherwise
/// (logs and pipes stay clean).
pub fn progress_bar(length: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The lowercase comparison key of an address given on the command line.
/// Deliberately lenient (no syntax check): an operator must be able to find
/// and erase whatever was stored.
pub fn address_key(address: &str) -> Result<String, String> {
    let key = address.trim().to_lowercase();
    if key.is_empty() {
        return Err("the address is empty".into());
    }
    Ok(key)
}
