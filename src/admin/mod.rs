//! The operator's commands, as library functions the CLI calls and tests
//! call directly. Each works on its own SQLite connection beside a running
//! server: each report (export, show, stats) reads in one read transaction,
//! so it sees one snapshot (WAL) whatever the server writes meanwhile;
//! writes take short `BEGIN IMMEDIATE` transactions.
//!
//! The work functions write data to the `out` they are given and return
//! errors as one-line messages; `commands` has one function per CLI
//! subcommand, which prints (data on stdout, messages on stderr) and turns
//! those errors into exit codes. `main.rs` only parses and dispatches.

pub mod backup;
pub mod check_config;
pub mod commands;
pub mod correct;
pub mod erase;
pub mod export;
pub mod hold;
pub mod import;
pub mod receipt;
pub mod row_check;
pub mod show;
pub mod stats;
pub mod unsubscribe;
pub mod verify;

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::domain::EmailKey;

/// A progress bar on stderr when it is a terminal, and silence otherwise
/// (logs and pipes stay clean).
pub fn progress_bar(length: u64, what: &str) -> ProgressBar {
    styled_bar(length, &format!("{what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"))
}

/// As [`progress_bar`], counting bytes of a file (`import`, whose rows are
/// not known before they are read).
pub fn progress_bar_bytes(length: u64, what: &str) -> ProgressBar {
    styled_bar(length, &format!("{what} {{bar:40}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"))
}

fn styled_bar(length: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

/// How many subscriptions the address has (on `list` only, if given). The
/// commands that change an address check it first: for an address nothing
/// is stored of, they change nothing and say so with exit code 1.
pub fn stored_subscriptions(
    conn: &dyn crate::store::db::Db,
    email_key: &EmailKey,
    list: Option<&str>,
) -> Result<usize, String> {
    let subscriptions = conn.subscriptions_of_address(email_key).map_err(|e| e.to_string())?;
    Ok(subscriptions.iter().filter(|s| list.is_none_or(|l| l == s.list_id)).count())
}

/// The key of an address given on the command line: `EmailKey::lenient`,
/// which finds every spelling of what was stored, once it is not empty.
pub fn address_key(address: &str) -> Result<EmailKey, String> {
    if address.trim().is_empty() {
        return Err("the address is empty".into());
    }
    Ok(EmailKey::lenient(address))
}
