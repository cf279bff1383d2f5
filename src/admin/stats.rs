//! `listgate stats`: per list, subscriptions by state now, and the anonymous
//! daily counts (which outlive purges).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::Timestamp;
use crate::domain::Status;
use crate::store::Database;
use crate::store::db::DailyStats;

#[derive(Debug, Serialize)]
pub struct Stats {
    /// list → state → count.
    pub by_status: BTreeMap<String, BTreeMap<Status, u64>>,
    pub daily: Vec<DailyStats>,
}

pub fn collect(conn: &Database, days: u32, now: OffsetDateTime) -> Result<Stats, String> {
    let first_day = Timestamp::from(now - time::Duration::days(i64::from(days.saturating_sub(1)))).day();
    conn.snapshot(|conn| {
        let mut by_status: BTreeMap<String, BTreeMap<Status, u64>> = BTreeMap::new();
        for (list, status, n) in conn.count_by_status()? {
            by_status.entry(list).or_default().insert(status, n);
        }
        let daily = conn.daily_stats_since(&first_day)?;
        Ok(Stats { by_status, daily })
    })
    .map_err(|e| e.to_string())
}

pub fn to_text(stats: &Stats) -> String {
    let mut t = String::from("list");
    for status in Status::ALL {
        let _ = write!(t, "\t{status}");
    }
    t.push('\n');
    for (list, counts) in &stats.by_status {
        t.push_str(list);
        for status in Status::ALL {
            let _ = write!(t, "\t{}", counts.get(status).copied().unwrap_or(0));
        }
        t.push('\n');
    }
    t.push_str("\nday\tlist\tsignups\tconfirmations\tunsubscribes\n");
    for d in &stats.daily {
        let _ = writeln!(t, "{}\t{}\t{}\t{}\t{}", d.day, d.list, d.signups, d.confirmations, d.unsubscribes);
    }
    t
}
