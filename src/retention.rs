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
//! in `daily_stats` are anonymous and stay. A subscription under a legal
//! hold (`admin::hold`) is never purged: the report counts it as `held`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::store::Database;
use crate::store::db::Db;
use time::OffsetDateTime;

use crate::clock::Timestamp;
use crate::config::RetentionConfig;
use crate::domain::Status;
use crate::store::Result;
use crate::subscriptions::erase_subscription;

/// Rows erased per write transaction at most.
pub const BATCH: i64 = 500;
/// How long one batch of the server's own purge may hold the writer: the
/// signups committed with it wait that long at most (a batch of 500 on a
/// database of millions took about 30 ms, and signups' p99 rose to 90 ms).
pub const SERVER_BATCH_BUDGET: Duration = Duration::from_millis(5);

/// The times before which records are past retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Pending signups made before this are erased.
    pub pending_before: Timestamp,
    /// Unsubscribed records that left before this are erased.
    pub unsubscribed_before: Timestamp,
    /// Decline blocks ending at or before this are removed.
    pub now: Timestamp,
}

impl Cutoffs {
    pub fn at(config: &RetentionConfig, now: OffsetDateTime) -> Cutoffs {
        Cutoffs {
            pending_before: Timestamp::from(config.unconfirmed.before(now)),
            unsubscribed_before: Timestamp::from(config.after_unsubscribe.before(now)),
            now: Timestamp::from(now),
        }
    }
}

/// What a purge erased (or, dry, would erase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Count per (list, state).
    pub erased: BTreeMap<(String, Status), u64>,
    /// Expired "I did not sign up" blocks removed.
    pub declines_removed: u64,
    /// Subscriptions past retention that a legal hold kept (skipped).
    pub held: u64,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.erased.values().sum()
    }

    fn add(&mut self, list: String, status: Status, n: u64) {
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
        lines.push(format!("skipped, held by a legal hold\t\t{}", self.held));
        lines
    }
}

/// What a purge at these cutoffs would erase, without erasing anything.
pub fn plan(conn: &dyn Db, cutoffs: &Cutoffs) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    for (list, status, n) in conn.purge_plan(cutoffs.pending_before, cutoffs.unsubscribed_before)? {
        report.add(list, status, n);
    }
    report.declines_removed = conn.count_expired_declines(cutoffs.now)?;
    report.held = held(conn, cutoffs)?;
    Ok(report)
}

/// One purge batch's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub report: PurgeReport,
    /// Records past retention may be left: run another batch.
    pub more: bool,
}

/// Erases up to `limit` records past retention inside the caller's
/// transaction, stopping early once `budget` has passed (the server's purge
/// shares the writer with signups, which wait for its batch).
pub fn purge_batch(conn: &dyn Db, cutoffs: &Cutoffs, limit: i64, budget: Duration) -> Result<Batch> {
    let started = Instant::now();
    let candidates = conn.purge_candidates(cutoffs.pending_before, cutoffs.unsubscribed_before, limit)?;
    let count = candidates.len();
    let mut batch = Batch { more: count as i64 == limit, ..Batch::default() };
    for (done, (id, list, status)) in candidates.into_iter().enumerate() {
        erase_subscription(conn, id)?;
        batch.report.add(list, status, 1);
        // At least one row per batch, so a slow start cannot stall the purge.
        if started.elapsed() > budget && done + 1 < count {
            batch.more = true;
            break;
        }
    }
    Ok(batch)
}

/// Runs a whole purge on its own connection, one short IMMEDIATE
/// transaction per batch; `progress` hears how many rows each batch erased.
pub fn purge_all(conn: &Database, cutoffs: &Cutoffs, mut progress: impl FnMut(u64)) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    loop {
        let batch = conn.immediate(|c| purge_batch(c, cutoffs, BATCH, Duration::MAX))?;
        progress(batch.report.total());
        report.merge(batch.report);
        if !batch.more {
            break;
        }
    }
    (report.declines_removed, report.held) =
        conn.immediate(|c| Ok((forget_expired_blocks(c, cutoffs)?, held(c, cutoffs)?)))?;
    Ok(report)
}

/// How many subscriptions past retention a legal hold keeps: what a purge
/// at these cutoffs skips.
pub fn held(conn: &dyn Db, cutoffs: &Cutoffs) -> Result<u64> {
    conn.count_held_past_retention(cutoffs.pending_before, cutoffs.unsubscribed_before)
}

/// Removes "I did not sign up" blocks that are over, and the daily cap's
/// inbox counts older than a day (the cap looks back 24 hours); returns how
/// many blocks went. Both are keyed hashes, kept no longer than they act.
pub fn forget_expired_blocks(conn: &dyn Db, cutoffs: &Cutoffs) -> Result<u64> {
    conn.delete_old_inbox_mails(cutoffs.now - time::Duration::days(1))?;
    conn.delete_expired_declines(cutoffs.now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::NewSubscription;

    #[test]
    fn a_batch_over_its_time_budget_stops_early_but_erases_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        crate::store::migrate(&conn).unwrap();
        conn.insert_consent_text("c", "text", Timestamp::from(time::macros::datetime!(2020-01-01 00:00 UTC))).unwrap();
        let add_old_signups = |from: usize| {
            for i in from..from + 3 {
                let email = format!("old{i}@example.org");
                let key = crate::domain::EmailKey::lenient(&email);
                let new = NewSubscription {
                    list_id: "news",
                    email: &email,
                    email_key: &key,
                    name: None,
                    consent_sha256: "c",
                    now: Timestamp::from(time::macros::datetime!(2020-01-01 00:00 UTC)),
                    ip: "192.0.2.1",
                    form_page_sha256: None,
                };
                conn.insert_subscription(&new).unwrap();
            }
        };
        let cutoffs = Cutoffs::at(&RetentionConfig::default(), time::macros::datetime!(2026-11-22 12:00 UTC));
        add_old_signups(0);
        // No time at all: one row per batch, and each says whether more may be left.
        for left in [true, true, false] {
            let batch = purge_batch(&conn, &cutoffs, BATCH, Duration::ZERO).unwrap();
            assert_eq!((batch.report.total(), batch.more), (1, left));
        }
        assert_eq!(purge_batch(&conn, &cutoffs, BATCH, Duration::ZERO).unwrap(), Batch::default());
        // Time enough: `limit` rows per batch.
        add_old_signups(3);
        let batch = purge_batch(&conn, &cutoffs, 2, Duration::MAX).unwrap();
        assert_eq!((batch.report.total(), batch.more), (2, true));
        let batch = purge_batch(&conn, &cutoffs, 2, Duration::MAX).unwrap();
        assert_eq!((batch.report.total(), batch.more), (1, false));
    }
}
