//! `listgate verify`: walks the proof chain and reports the first broken
//! link and the chain's head; with a head kept from before, also whether
//! the chain still extends it; and whether every stored RFC 3161 anchor
//! still stamps the chain (all in one walk); then every subscription row
//! against its events (`row_check`), in the same read transaction.

use crate::store::Database;

use crate::anchor;
use crate::keys::KeyRing;
use crate::proof::{self, ChainReport, Head};
use crate::store::db::AnchorRow;

use super::row_check::{self, RowReport};

/// What a walk found: the chain, and each stored anchor with its check
/// (`anchor::check`), oldest first.
pub struct Verified {
    pub chain: ChainReport,
    pub anchors: Vec<(AnchorRow, Result<(), String>)>,
    pub rows: RowReport,
}

impl Verified {
    /// The anchors that failed their check, as one line each.
    pub fn anchor_failures(&self) -> impl Iterator<Item = &str> {
        self.anchors.iter().filter_map(|(_, check)| check.as_ref().err().map(String::as_str))
    }
}

/// Whether the chain still extends `head`, or why not (one line).
pub fn extends(report: &ChainReport, head: &Head) -> Result<(), String> {
    match report.link_at(head.events) {
        None if report.first_break.is_none() => Err(format!(
            "the chain has {} events, fewer than the {} of the head {head}: events were cut off its end",
            report.events, head.events
        )),
        None => Err(format!("the chain breaks before event {} of the head {head}", head.events)),
        Some(link) if link == head.link => Ok(()),
        Some(link) => Err(format!(
            "the chain's event {} has the link {link}, not the head's: the chain was rewritten since {head}",
            head.events
        )),
    }
}

/// Walks the chain once, keeping the links at `pinned.events` when given
/// and at every anchor's head, and checks each anchor against them.
pub fn verify(conn: &Database, keys: &KeyRing, pinned: Option<&Head>) -> Result<Verified, String> {
    let total = conn.count_proof_events().map_err(|e| e.to_string())?;
    // One read transaction: a consistent snapshot while the server appends.
    let walked = conn.snapshot(|conn| {
        let anchors = conn.select_anchors()?;
        let pins: Vec<u64> = anchors.iter().map(|a| a.events).chain(pinned.map(|head| head.events)).collect();
        let bar = super::progress_bar(total, "verifying the chain");
        let chain = proof::verify_chain_with_progress(conn, keys, &pins, |n| bar.inc(n));
        bar.finish_and_clear();
        let bar = super::progress_bar(conn.count_subscriptions()?, "checking subscription rows");
        let rows = row_check::check_rows(conn, ROWS_PER_PAGE, |n| bar.inc(n));
        bar.finish_and_clear();
        Ok((chain?, anchors, rows?))
    });
    let (chain, anchors, rows) = walked.map_err(|e| e.to_string())?;
    let anchors = anchors
        .into_iter()
        .map(|a| {
            let check = anchor::check(&a, chain.link_at(a.events), chain.events);
            (a, check)
        })
        .collect();
    Ok(Verified { chain, anchors, rows })
}

/// Subscriptions per page of the row check (and their events in one query).
const ROWS_PER_PAGE: i64 = 1000;
