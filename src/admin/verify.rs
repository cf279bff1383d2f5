//! `listgate verify`: walks the proof chain and reports the first broken link.

use rusqlite::Connection;

use crate::keys::KeyRing;
use crate::proof::{self, ChainReport};
use crate::store::queries;

pub fn verify(conn: &Connection, keys: &KeyRing) -> Result<ChainReport, String> {
    let total = queries::count_proof_events(conn).map_err(|e| e.to_string())?;
    let bar = super::progress_bar(total, "verifying");
    // One read transaction: a consistent snapshot while the server appends.
    conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
    let report = proof::verify_chain_with_progress(conn, keys, |n| bar.inc(n));
    let _ = conn.execute_batch("COMMIT");
    bar.finish_and_clear();
    report.map_err(|e| e.to_string())
}
