//! `listgate verify`: walks the proof chain and reports the first broken link.

use crate::store::Database;

use crate::keys::KeyRing;
use crate::proof::{self, ChainReport};

pub fn verify(conn: &Database, keys: &KeyRing) -> Result<ChainReport, String> {
    let total = conn.count_proof_events().map_err(|e| e.to_string())?;
    let bar = super::progress_bar(total, "verifying");
    // One read transaction: a consistent snapshot while the server appends.
    let report = conn.snapshot(|conn| proof::verify_chain_with_progress(conn, keys, |n| bar.inc(n)));
    bar.finish_and_clear();
    report.map_err(|e| e.to_string())
}
