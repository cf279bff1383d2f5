//! Time, injected: expiry, retention and resend limits ask a [`Clock`], so
//! tests can stand at "four years and a day later" without waiting.
//!
//! Also the one place that formats and parses the stored time format, UTC
//! with milliseconds (`2026-11-22T07:24:59.123Z`), which sorts as text.

use std::sync::{Arc, Mutex};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().expect("clock lock") = at;
    }

    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock lock")
    }
}

/// Shared handle to whichever clock the application runs on.
pub type SharedClock = Arc<dyn Clock>;

/// Formats a time as stored: UTC, milliseconds, `Z`.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    t.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
        .expect("UTC times always format")
}

/// Parses a stored time (or any RFC 3339 time).
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// How long a worker sleeps before its next due item (`due`, a stored time):
/// zero when it is due already, at most `cap`, and `cap` when nothing is due.
pub fn wait_until(due: Option<&str>, now: OffsetDateTime, cap: std::time::Duration) -> std::time::Duration {
    due.and_then(parse)
        .and_then(|due| std::time::Duration::try_from((due - now).max(time::Duration::ZERO)).ok())
        .map_or(cap, |wait| wait.min(cap))
}

/// The UTC day of `t`, `YYYY-MM-DD`, as used in `daily_stats`.
pub fn day(t: OffsetDateTime) -> String {
    format(t)[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stored_times_have_milliseconds_and_round_trip() {
        let t = datetime!(2026-11-22 07:24:59.123456 UTC);
        assert_eq!(format(t), "2026-11-22T07:24:59.123Z");
        assert_eq!(parse("2026-11-22T07:24:59.123Z"), Some(datetime!(2026-11-22 07:24:59.123 UTC)));
        assert_eq!(day(t), "2026-11-22");
    }

    #[test]
    fn a_worker_waits_until_the_next_due_time_at_most_its_cap() {
        let now = time::macros::datetime!(2026-11-22 12:00 UTC);
        let cap = std::time::Duration::from_secs(30);
        let in_secs = |s| format(now + time::Duration::seconds(s));
        assert_eq!(wait_until(Some(&in_secs(5)), now, cap), std::time::Duration::from_secs(5));
        assert_eq!(wait_until(Some(&in_secs(-5)), now, cap), std::time::Duration::ZERO);
        assert_eq!(wait_until(Some(&in_secs(3600)), now, cap), cap);
        assert_eq!(wait_until(None, now, cap), cap);
        assert_eq!(wait_until(Some("not a time"), now, cap), cap);
    }
}
