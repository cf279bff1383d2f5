//! `listgate erase EMAIL`: the right to erasure (GDPR Art. 17). Deletes the
//! address's subscriptions, mails and proof content on every list, keeping
//! only the proof chain's hash links, then checkpoints the WAL so the old
//! pages leave the files too (deleted content is zeroed: `secure_delete`).

use std::time::{Duration, Instant};

use crate::store::Database;

use crate::domain::EmailKey;
use crate::store::queries;
use crate::subscriptions::erase_subscription;

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    pub subscriptions: usize,
    /// Whether the WAL was fully checkpointed and truncated; if a running
    /// server's readers kept it busy for the whole deadline, the old page
    /// images may stay in the WAL until a later truncation.
    pub checkpointed: bool,
}

/// Erases every subscription of the address, unless one is under a legal
/// hold: then nothing is erased and the error names each hold and its
/// reason (checked inside the write transaction, so a hold placed beside a
/// running erase is never overtaken).
pub fn erase(conn: &Database, email_key: &EmailKey) -> Result<Erased, String> {
    let subscriptions = conn
        .immediate(|c| {
            let holds = super::hold::holds_of(c, email_key)?;
            if !holds.is_empty() {
                return Ok(Err(super::hold::refusal(email_key.as_str(), &holds)));
            }
            let subs = c.subscriptions_of_address(email_key)?;
            for s in &subs {
                erase_subscription(c, s.id)?;
            }
            Ok(Ok(subs.len()))
        })
        .map_err(|e| e.to_string())??;
    Ok(Erased { subscriptions, checkpointed: checkpoint(conn) })
}

/// How long the command line keeps trying to truncate the WAL beside a
/// running server: within the minute the contract promises.
const CHECKPOINT_DEADLINE: Duration = Duration::from_secs(50);

/// Truncates the WAL (`queries::truncate_wal`) so erased rows' old page
/// images leave the files; true when it did. A running server's readers and
/// writes can keep one attempt from finishing (each waits the connection's
/// busy timeout), so it tries again until [`CHECKPOINT_DEADLINE`]: the
/// server does not know about an erasure made beside it.
pub fn checkpoint(conn: &Database) -> bool {
    let Database::Sqlite(conn) = conn else {
        // PostgreSQL's WAL and freed pages are the server's: see docs/deployment.md.
        return true;
    };
    let started = Instant::now();
    loop {
        if queries::truncate_wal(conn).unwrap_or(false) {
            return true;
        }
        if started.elapsed() >= CHECKPOINT_DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
