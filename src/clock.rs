//! Time, injected: expiry, retention and resend limits ask a [`Clock`], so
//! tests can stand at "four years and a day later" without waiting.
//!
//! Also [`Timestamp`], the one type of every stored time.

use std::ops::{Add, Sub};
use std::sync::{Arc, Mutex};

use time::macros::format_description;
use time::{Duration, OffsetDateTime, UtcOffset};

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

/// A stored instant: UTC, millisecond precision. Truncated to milliseconds
/// when made, so the value a comparison sees is the value the database holds.
/// Its text (`2026-11-22T07:24:59.123Z`, fixed width, sorting as text) is
/// written and read in one place, `store::codes`, as its `Display`,
/// `ToSql` and `FromSql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The clock's now, as it would be stored.
    pub fn now(clock: &dyn Clock) -> Timestamp {
        Timestamp::from(clock.now())
    }

    /// The instant, in UTC, for what needs calendar arithmetic or another
    /// format (a mail's `Date` header).
    pub fn to_offset_date_time(self) -> OffsetDateTime {
        self.0
    }

    /// The UTC day, `YYYY-MM-DD`, as `daily_stats` counts by: a day, not a
    /// timestamp, so it is text of its own.
    pub fn day(self) -> String {
        self.0.format(format_description!("[year]-[month]-[day]")).expect("UTC days always format")
    }

    /// A time as people and other tools write it, in UTC unless it says
    /// otherwise (`listgate import`, `export --since`):
    /// listgate's own (`2026-11-22T07:24:59.123Z`), RFC 3339, Mailchimp's
    /// `2016-04-18 13:51:14` (UTC: see docs/import.md), PostgreSQL's
    /// `2024-03-01 09:15:42.12+00`, Go's `2024-03-01 09:15:42.12 +0000 UTC`
    /// (the zone's name after the offset is ignored), or a date alone (midnight).
    pub fn parse_written(text: &str) -> Option<Timestamp> {
        let text = text.trim();
        if let Some(t) = Timestamp::from_stored(text) {
            return Some(t);
        }
        let mut tokens = text.split_whitespace();
        let first = tokens.next()?;
        let (date, time) = match first.split_once(['T', 't']) {
            Some((date, time)) => (date, Some(time)),
            None => (first, tokens.next()),
        };
        let mut time = time.unwrap_or("00:00:00").to_string();
        let mut zone = tokens.next().map(str::to_string);
        if let Some(i) = time.find(['+', '-', 'Z', 'z']) {
            if zone.is_none() {
                zone = Some(time[i..].to_string());
            }
            time.truncate(i);
        }
        let offset = match zone.as_deref() {
            None | Some("Z" | "z" | "UTC" | "GMT") => "Z".to_string(),
            Some(zone) => {
                let (sign, digits) = zone.split_at(zone.find(['+', '-']).filter(|&i| i == 0).map(|_| 1)?);
                let digits = digits.replace(':', "");
                match digits.len() {
                    2 if digits.bytes().all(|b| b.is_ascii_digit()) => format!("{sign}{digits}:00"),
                    4 if digits.bytes().all(|b| b.is_ascii_digit()) => {
                        format!("{sign}{}:{}", &digits[..2], &digits[2..])
                    }
                    _ => return None,
                }
            }
        };
        OffsetDateTime::parse(&format!("{date}T{time}{offset}"), &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Timestamp::from)
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Timestamp {
        let t = t.to_offset(UtcOffset::UTC);
        let millis = t.nanosecond() / 1_000_000 * 1_000_000;
        Timestamp(t.replace_nanosecond(millis).expect("truncating keeps it in range"))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, by: Duration) -> Timestamp {
        Timestamp::from(self.0 + by)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, by: Duration) -> Timestamp {
        Timestamp::from(self.0 - by)
    }
}

impl Sub for Timestamp {
    type Output = Duration;

    fn sub(self, other: Timestamp) -> Duration {
        self.0 - other.0
    }
}

/// A list's `time_zone`: an IANA zone name (`Europe/Berlin`) or `UTC`, in
/// which the confirmation mail states when the signup was made. Parsed once,
/// when the configuration loads, so an unknown name is a config error and
/// never a failed mail.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    name: String,
    rules: jiff::tz::TimeZone,
}

/// A moment as a clock on the wall in some [`Zone`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallTime {
    pub year: i16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// The zone's offset from UTC at that moment, in seconds.
    pub offset_seconds: i32,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone { name: "UTC".into(), rules: jiff::tz::TimeZone::UTC }
    }

    pub fn parse(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("UTC") {
            return Ok(Zone::utc());
        }
        jiff::tz::TimeZone::get(name)
            .map(|rules| Zone { name: name.to_string(), rules })
            .map_err(|_| format!("\"{name}\" is not a time zone name like Europe/Berlin or UTC"))
    }

    /// The name as configured (`UTC` for UTC).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_utc(&self) -> bool {
        self.name == "UTC"
    }

    /// The wall-clock time of `t` in this zone.
    pub fn wall_time(&self, t: Timestamp) -> WallTime {
        let utc = t.to_offset_date_time();
        let instant = jiff::Timestamp::from_second(utc.unix_timestamp()).expect("stored times are in jiff's range");
        let local = self.rules.to_datetime(instant);
        WallTime {
            year: local.year(),
            month: local.month() as u8,
            day: local.day() as u8,
            hour: local.hour() as u8,
            minute: local.minute() as u8,
            second: local.second() as u8,
            offset_seconds: self.rules.to_offset(instant).seconds(),
        }
    }
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::utc()
    }
}

impl<'de> serde::Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
        let name = String::deserialize(d)?;
        Zone::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// How long a worker sleeps before its next due item: zero when it is due
/// already, at most `cap`, and `cap` when nothing is due.
pub fn wait_until(due: Option<Timestamp>, now: Timestamp, cap: std::time::Duration) -> std::time::Duration {
    due.and_then(|due| std::time::Duration::try_from((due - now).max(Duration::ZERO)).ok())
        .map_or(cap, |wait| wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_zone_shows_the_wall_clock_of_its_season_and_unknown_names_are_refused() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let winter = berlin.wall_time(Timestamp::from(datetime!(2026-12-01 10:40:07.999 UTC)));
        assert_eq!(
            (winter.day, winter.hour, winter.minute, winter.second, winter.offset_seconds),
            (1, 11, 40, 7, 3600)
        );
        let summer = berlin.wall_time(Timestamp::from(datetime!(2026-07-31 22:30:00 UTC)));
        assert_eq!((summer.month, summer.day, summer.hour, summer.offset_seconds), (8, 1, 0, 7200));
        let utc = Zone::parse("utc").unwrap();
        assert!(utc.is_utc());
        assert_eq!(utc.wall_time(Timestamp::from(datetime!(2026-12-01 10:40:07 UTC))).hour, 10);
        for bad in ["", "Europe/Atlantis", "CET+1", "../etc/passwd"] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_read_in_every_format_s_spelling() {
        let utc = |t: &str| Timestamp::parse_written(t).map(|t| t.to_string());
        let at = Some("2024-03-01T09:15:42.123Z".to_string());
        assert_eq!(utc("2024-03-01T09:15:42.123Z"), at);
        assert_eq!(utc("2024-03-01 09:15:42.123456 +0000 UTC"), at);
        assert_eq!(utc("2024-03-01 10:15:42.123456 +0100 CET"), at);
        assert_eq!(utc("2024-03-01 09:15:42.123456+00"), at);
        assert_eq!(utc("2024-03-01T11:15:42.123+02:00"), at);
        assert_eq!(utc("2024-03-01 09:15:42"), Some("2024-03-01T09:15:42.000Z".into()));
        assert_eq!(utc("2024-03-01"), Some("2024-03-01T00:00:00.000Z".into()));
        for bad in ["", "yesterday", "2024-13-01 00:00:00", "2024-03-01 09:15", "2024-03-01 09:15:42 +1", "01.03.2024"]
        {
            assert_eq!(utc(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_timestamp_keeps_milliseconds_only_and_knows_its_day() {
        let t = Timestamp::from(datetime!(2026-11-22 08:24:59.123456 +01:00));
        assert_eq!(t.to_offset_date_time(), datetime!(2026-11-22 07:24:59.123 UTC));
        assert_eq!(t + Duration::nanoseconds(999_999), t);
        assert_eq!(t.day(), "2026-11-22");
    }

    #[test]
    fn a_worker_waits_until_the_next_due_time_at_most_its_cap() {
        let now = Timestamp::from(datetime!(2026-11-22 12:00 UTC));
        let cap = std::time::Duration::from_secs(30);
        let in_secs = |s| Some(now + Duration::seconds(s));
        assert_eq!(wait_until(in_secs(5), now, cap), std::time::Duration::from_secs(5));
        assert_eq!(wait_until(in_secs(-5), now, cap), std::time::Duration::ZERO);
        assert_eq!(wait_until(in_secs(3600), now, cap), cap);
        assert_eq!(wait_until(None, now, cap), cap);
    }
}
