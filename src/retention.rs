//! The retention rules (DESIGN.md, "Retention"), with the time passed in.
//!
//! | state | kept | then |
//! |---|---|---|
//! | pending | `retention.unconfirmed` after signup | erased |
//! | confirmed | as long as the subscription lasts | - |
//! | unsubscribed | `retention.after_unsubscribe` after leaving | erased |
//!
//! A purge works in small batches, each its own short write transaction, so
//! signups never wait long behind it, and a purge of millions of rows makes
//! steady progress. Expired "I did not sign up" blocks go too. Daily counts
//! in `daily_stats` are anonymous and stay.

use std::collections::BTreeMap;

use rusqlite::Connection;
use time::OffsetDateTime;

use crate::clock;
use crate::config::RetentionConfig;
use crate::store::queries;
use crate::store::{self, Result};
use crate::subscriptions::erase_subscription;

/// Rows erased per write transaction.
pub const BATCH: i64 = 500;

/// The times before which records are past retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutoffs {
    /// Pending signups made before this are erased.
    pub pending_before: String,
    /// Unsubscribed records that left before this are erased.
    pub unsubscribed_before: String,
    /// Decline blocks ending at or before this are removed.
    pub now: String,
}

impl Cutoffs {
    pub fn at(config: &RetentionConfig, now: OffsetDateTime) -> Cutoffs {
        Cutoffs {
            pending_before: clock::format(config.unconfirmed.before(now)),
            unsubscribed_before: clock::format(config.after_unsubscribe.before(now)),
            now: clock::format(now),
        }
    }
}

/// What a purge erased (or, dry, would erase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Count per (list, state).
    pub erased: BTreeMap<(String, String), u64>,
    /// Expired "I did not sign up" blocks removed.
    pub declines_removed: u64,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.erased.values().sum()
    }

    fn add(&mut self, list: String, status: String, n: u64) {
        *self.erased.entry((list, status)).or_default() += n;
    }

    /// Adds another (batch's) report to this one.
    pub fn merge(&mut self, other: PurgeReport) {
        for ((list, status), n) in other.erased {
            self.add(list, status, n);
        }
        self.declines_removed += other.declines_removed;
    }

    /// One line per list and state, for the operator.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> =
            self.erased.iter().map(|((list, status), n)| format!("{list}\t{status}\t{n}")).collect();
        lines.push(format!("total\t\t{}", self.total()));
        lines.push(format!("expired decline blocks\t\t{}", self.declines_removed));
        lines
    }
}

/// What a purge at these cutoffs would erase, without erasing anything.
pub fn plan(conn: &Connection, cutoffs: &Cutoffs) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    for (list, status, n) in queries::purge_plan(conn, &cutoffs.pending_before, &cutoffs.unsubscribed_before)? {
        report.add(list, status, n);
    }
    report.declines_removed = queries::count_expired_declines(conn, &cutoffs.now)?;
    Ok(report)
}

/// Erases up to `limit` records past retention inside the caller's
/// transaction; returns what it erased. Fewer than `limit` means done.
pub fn purge_batch(conn: &Connection, cutoffs: &Cutoffs, limit: i64) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    for (id, list, status) in
        queries::purge_candidates(conn, &cutoffs.pending_before, &cutoffs.unsubscribed_before, limit)?
    {
        erase_subscription(conn, id)?;
        report.add(list, status, 1);
    }
    Ok(report)
}

/// Runs a whole purge on its own connection, one short IMMEDIATE
/// transaction per batch; `progress` hears how many rows each batch erased.
pub fn purge_all(conn: &Connection, cutoffs: &Cutoffs, mut progress: impl FnMut(u64)) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    loop {
        let batch = store::immediate(conn, |c| purge_batch(c, cutoffs, BATCH))?;
        let n = batch.total();
        report.merge(batch);
        progress(n);
        if n < BATCH as u64 {
            break;
        }
    }
    report.declines_removed = store::immediate(conn, |c| queries::delete_expired_declines(c, &cutoffs.now))?;
    Ok(report)
}
