//! `listgate verify`: walks the proof chain and reports the first broken
//! link and the chain's head; with a head kept from before, also whether
//! the chain still extends it.

use crate::store::Database;

use crate::keys::KeyRing;
use crate::proof::{self, ChainReport, Head};

/// Whether the chain still extends `head`, or why not (one line).
pub fn extends(report: &ChainReport, head: &Head) -> Result<(), String> {
    match &report.pinned_link {
        None if report.first_break.is_none() => Err(format!(
            "the chain has {} events, fewer than the {} of the head {head}: events were cut off its end",
            report.events, head.events
        )),
        None => Err(format!("the chain breaks before event {} of the head {head}", head.events)),
        Some(link) if *link == head.link => Ok(()),
        Some(link) => Err(format!(
            "the chain's event {} has the link {link}, not the head's: the chain was rewritten since {head}",
            head.events
        )),
    }
}

/// Walks the chain; keeps the link at `pinned.events` when given.
pub fn verify(conn: &Database, keys: &KeyRing, pinned: Option<&Head>) -> Result<ChainReport, String> {
    let total = conn.count_proof_events().map_err(|e| e.to_string())?;
    let bar = super::progress_bar(total, "verifying");
    // One read transaction: a consistent snapshot while the server appends.
    let pin = pinned.map(|head| head.events);
    let report = conn.snapshot(|conn| proof::verify_chain_with_progress(conn, keys, pin, |n| bar.inc(n)));
    bar.finish_and_clear();
    report.map_err(|e| e.to_string())
}
