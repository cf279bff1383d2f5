//! The text each domain enum is stored as: the one place these spellings
//! exist. The same text is what exports, `show`, webhooks and `/subscribe`'s
//! JSON answer carry, so `as_str` serves them too; nothing outside the store
//! compares it. Reading a value the enum does not know (a hand-edited row)
//! is an error, never a guess.
//!
//! Stored times ([`Timestamp`]) have their one spelling here too.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use time::PrimitiveDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::clock::Timestamp;
use crate::domain::{EmailKey, Evidence, ImportFormat, InboxKey, Status, UnsubscribeMethod, WebhookEvent};

/// One stored spelling per variant, both ways.
macro_rules! stored_as_text {
    ($type:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            pub const ALL: &'static [$type] = &[$(<$type>::$variant),+];

            /// The text it is stored, exported and shown as.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(<$type>::$variant => $text),+
                }
            }

            /// The variant stored as `text`.
            pub fn from_stored(text: &str) -> Option<$type> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl FromSql for $type {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                <$type>::from_stored(text).ok_or_else(|| FromSqlError::Other(format!("unknown {} {text:?}", stringify!($type)).into()))
            }
        }
    };
}

stored_as_text!(Status {
    Pending => "pending",
    Confirmed => "confirmed",
    Unsubscribed => "unsubscribed",
});

stored_as_text!(UnsubscribeMethod {
    OneClick => "one-click",
    Page => "page",
    Admin => "admin",
});

stored_as_text!(WebhookEvent {
    Confirmed => "confirmed",
    Unsubscribed => "unsubscribed",
});

stored_as_text!(Evidence {
    DoubleOptIn => "double-opt-in",
    ConfirmationOnly => "confirmation-only",
    None => "none",
});

stored_as_text!(ImportFormat {
    Mailchimp => "mailchimp",
    Listmonk => "listmonk",
    Listgate => "listgate",
    Csv => "csv",
});

/// An inbox is looked up as the address key it is the spelling of.
impl ToSql for InboxKey {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// An address key is stored and looked up as its text (`email_key`).
impl ToSql for EmailKey {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// The stored time format: UTC, milliseconds, `Z`, fixed width
/// (`2026-11-22T07:24:59.123Z`), so times sort as text in SQL.
const STORED_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

impl Timestamp {
    /// A time as stored; `None` for any other text (exactly the stored
    /// format, nothing looser, so what reads back is what was written).
    pub fn from_stored(text: &str) -> Option<Timestamp> {
        PrimitiveDateTime::parse(text, STORED_TIME).ok().map(|t| Timestamp::from(t.assume_utc()))
    }
}

/// The stored text, which exports, `show`, webhooks and proof events carry too.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_offset_date_time().format(STORED_TIME).map_err(|_| fmt::Error)?)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.to_string().into())
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Timestamp::from_stored(text).ok_or_else(|| FromSqlError::Other(format!("not a stored time: {text:?}").into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_reads_back_as_itself_and_unknown_text_is_refused() {
        for s in Status::ALL {
            assert_eq!(Status::from_stored(s.as_str()), Some(*s));
        }
        for m in UnsubscribeMethod::ALL {
            assert_eq!(UnsubscribeMethod::from_stored(m.as_str()), Some(*m));
        }
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::from_stored(e.as_str()), Some(*e));
        }
        assert_eq!(Status::from_stored("Confirmed"), None);
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read: rusqlite::Result<Status> = conn.query_row("SELECT 'subscribed'", [], |r| r.get(0));
        assert!(read.is_err());
        let read: Status = conn.query_row("SELECT ?1", [Status::Unsubscribed], |r| r.get(0)).unwrap();
        assert_eq!(read, Status::Unsubscribed);
    }

    #[test]
    fn stored_times_have_milliseconds_and_read_back_exactly() {
        let t = Timestamp::from(time::macros::datetime!(2026-11-22 07:24:59.123456 UTC));
        assert_eq!(t.to_string(), "2026-11-22T07:24:59.123Z");
        assert_eq!(Timestamp::from_stored("2026-11-22T07:24:59.123Z"), Some(t));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-22T07:24:59.123Z\"");
        for other in ["2026-11-22T07:24:59Z", "2026-11-22T08:24:59.123+01:00", "2026-11-22", "t"] {
            assert_eq!(Timestamp::from_stored(other), None, "{other}");
        }
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read: Timestamp = conn.query_row("SELECT ?1", [t], |r| r.get(0)).unwrap();
        assert_eq!(read, t);
        let read: rusqlite::Result<Timestamp> = conn.query_row("SELECT 'yesterday'", [], |r| r.get(0));
        assert!(read.is_err());
    }
}
