//! `listgate erase EMAIL`: the right to erasure (GDPR Art. 17). Deletes the
//! address's subscriptions, mails and proof content on every list, keeping
//! only the proof chain's hash links, then checkpoints the WAL so the old
//! pages leave the files too (deleted content is zeroed: `secure_delete`).

use rusqlite::Connection;

use crate::domain::EmailKey;
use crate::store::{self, queries};
use crate::subscriptions::erase_subscription;

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    pub subscriptions: usize,
    /// Whether the WAL was fully checkpointed and truncated; if a reader
    /// held it open, the old pages leave at the server's next checkpoint.
    pub checkpointed: bool,
}

pub fn erase(conn: &Connection, email_key: &EmailKey) -> Result<Erased, String> {
    let subscriptions = store::immediate(conn, |c| {
        let subs = queries::subscriptions_of_address(c, email_key)?;
        for s in &subs {
            erase_subscription(c, s.id)?;
        }
        Ok(subs.len())
    })
    .map_err(|e| e.to_string())?;
    Ok(Erased { subscriptions, checkpointed: checkpoint(conn) })
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`; true when it completed.
pub fn checkpoint(conn: &Connection) -> bool {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).is_ok_and(|busy| busy == 0)
}
