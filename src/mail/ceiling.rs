//! `limits.mails_per_hour`: a ceiling on all confirmation mail, whatever
//! the per-IP and per-inbox limits let through.
//!
//! Those limits bound what one client or one inbox can cause; a flood
//! spread over many networks and many inboxes passes all of them, and every
//! mail it causes goes out under the operator's domain. Mail providers
//! answer a sudden flood from one domain by deferring or blocking it, which
//! would also stop the mails real subscribers wait for. Above the ceiling
//! mails wait in the outbox, in the order they were queued, and go out as
//! the hour moves on: nothing is dropped, and the answer to a signup does
//! not change (it is given before any mail is sent).
//!
//! The count is of mails the server took in the last hour (a sliding
//! hour), kept in memory: the outbox worker is the only sender, and it
//! seeds the count from the outbox's own `sent_at` at start, so a restart
//! does not reset it. Counting in memory keeps a query over the whole
//! outbox (with no index on `sent_at`) off every batch.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::clock::Timestamp;
use crate::config::MailCeiling;

/// The window the ceiling counts over.
pub const HOUR: time::Duration = time::Duration::hours(1);

/// Mails sent in the last hour, against the configured ceiling.
pub struct Ceiling {
    per_hour: Option<usize>,
    /// Send times within the last hour, oldest first; at most `per_hour`
    /// of them matter, so memory stays bounded by the setting.
    sent: Mutex<VecDeque<Timestamp>>,
}

impl Ceiling {
    pub fn new(setting: MailCeiling) -> Ceiling {
        let per_hour = match setting {
            MailCeiling::Off => None,
            MailCeiling::PerHour(n) => Some(usize::try_from(n.get()).unwrap_or(usize::MAX)),
        };
        Ceiling { per_hour, sent: Mutex::new(VecDeque::new()) }
    }

    /// Whether there is a ceiling at all (`"off"` has none).
    pub fn is_on(&self) -> bool {
        self.per_hour.is_some()
    }

    /// The setting, for log lines.
    pub fn per_hour(&self) -> Option<usize> {
        self.per_hour
    }

    /// Counts a mail the server took at `at`.
    pub fn sent(&self, at: Timestamp) {
        let Some(per_hour) = self.per_hour else { return };
        let mut sent = self.sent.lock().expect("ceiling lock");
        let position = sent.partition_point(|t| *t <= at);
        sent.insert(position, at);
        while sent.len() > per_hour {
            sent.pop_front();
        }
    }

    /// How many more mails may go out at `now`; `None` without a ceiling.
    pub fn room(&self, now: Timestamp) -> Option<usize> {
        let per_hour = self.per_hour?;
        let mut sent = self.sent.lock().expect("ceiling lock");
        while sent.front().is_some_and(|t| *t <= now - HOUR) {
            sent.pop_front();
        }
        Some(per_hour.saturating_sub(sent.len()))
    }

    /// When the next mail may go out, if the ceiling is reached at `now`.
    pub fn opens_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.room(now)? > 0 {
            return None;
        }
        self.sent.lock().expect("ceiling lock").front().map(|oldest| *oldest + HOUR)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from(time::macros::datetime!(2026-11-22 12:00 UTC)) + time::Duration::minutes(minutes)
    }

    #[test]
    fn the_ceiling_counts_the_last_hour_and_opens_as_it_moves_on() {
        let ceiling = Ceiling::new(MailCeiling::PerHour(NonZeroU32::new(2).unwrap()));
        assert_eq!(ceiling.room(at(0)), Some(2));
        ceiling.sent(at(0));
        ceiling.sent(at(10));
        assert_eq!(ceiling.room(at(30)), Some(0));
        assert_eq!(ceiling.opens_at(at(30)), Some(at(60)));
        assert_eq!(ceiling.room(at(60)), Some(1), "the first mail is an hour old");
        assert_eq!(ceiling.opens_at(at(60)), None);
        assert_eq!(ceiling.room(at(70)), Some(2));
    }

    #[test]
    fn off_has_no_ceiling() {
        let ceiling = Ceiling::new(MailCeiling::Off);
        for minute in 0..100 {
            ceiling.sent(at(minute));
        }
        assert!(!ceiling.is_on());
        assert_eq!(ceiling.room(at(100)), None);
        assert_eq!(ceiling.opens_at(at(100)), None);
    }
}
