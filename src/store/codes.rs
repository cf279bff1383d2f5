//! The text each domain enum is stored as: the one place these spellings
//! exist. The same text is what exports, `show`, webhooks and `/subscribe`'s
//! JSON answer carry, so `as_str` serves them too; nothing outside the store
//! compares it. Reading a value the enum does not know (a hand-edited row)
//! is an error, never a guess.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::{EmailKey, Status, UnsubscribeMethod, WebhookEvent};

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

/// An address key is stored and looked up as its text (`email_key`).
impl ToSql for EmailKey {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
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
}
