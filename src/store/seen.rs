//! [`SeenAddresses`]: the addresses a run has met so far, and on which line,
//! kept in a private temporary SQLite file (SQLite deletes it when it
//! closes) instead of in memory, so a dry run of `listgate import` over
//! millions of rows stays flat. It holds nothing once the command ends.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use crate::domain::EmailKey;

/// Params: email_key. The line the address was first met on.
const FIRST_LINE: &str = "SELECT line FROM seen WHERE email_key = ?1";
/// Params: email_key, line. Remembers the address.
const REMEMBER: &str = "INSERT INTO seen (email_key, line) VALUES (?1, ?2)";

pub struct SeenAddresses(Connection);

impl SeenAddresses {
    pub fn new() -> Result<SeenAddresses> {
        let conn = Connection::open("")?;
        conn.execute_batch("CREATE TABLE seen (email_key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")?;
        Ok(SeenAddresses(conn))
    }

    /// The line `key` was first met on, or `None` after remembering it on `line`.
    pub fn first_line_or_remember(&self, key: &EmailKey, line: u64) -> Result<Option<u64>> {
        let earlier: Option<i64> =
            self.0.prepare_cached(FIRST_LINE)?.query_row([key.as_str()], |r| r.get(0)).optional()?;
        if earlier.is_none() {
            self.0.prepare_cached(REMEMBER)?.execute(params![key.as_str(), line as i64])?;
        }
        Ok(earlier.map(|line| line as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_remembered_on_its_first_line_in_every_spelling() {
        let seen = SeenAddresses::new().unwrap();
        assert_eq!(seen.first_line_or_remember(&EmailKey::lenient("Anna@Bücher.de"), 2).unwrap(), None);
        assert_eq!(seen.first_line_or_remember(&EmailKey::lenient("anna@xn--bcher-kva.de"), 9).unwrap(), Some(2));
        assert_eq!(seen.first_line_or_remember(&EmailKey::lenient("bob@example.org"), 10).unwrap(), None);
    }
}
