//! `listgate export`: subscribers with their proof and signed unsubscribe
//! links, for the tool that sends the newsletter. Streams row by row, so a
//! million rows need no more memory than one.

use std::io::Write;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::config::Config;
use crate::domain::{Evidence, Status};
use crate::keys::KeyRing;
use crate::store::Database;
use crate::store::db::{ExportFilter, ExportRecord};
use crate::token::{self, Purpose, Subject};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// The `List-Unsubscribe-Post` value (RFC 8058) for every row.
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe=One-Click";

/// The columns, in order; also the JSON keys.
pub const COLUMNS: [&str; 16] = [
    "email",
    "name",
    "list",
    "status",
    "signup_at",
    "signup_ip",
    "consent_sha256",
    "confirmed_at",
    "confirmed_ip",
    "unsubscribed_at",
    "unsubscribe_url",
    "list_unsubscribe",
    "list_unsubscribe_post",
    "evidence",
    "imported_at",
    "form_page",
];

/// One exported row, borrowed from the database row and the caller's
/// buffers for the link columns.
#[derive(Debug, Serialize)]
pub struct ExportRow<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub list: &'a str,
    pub status: Status,
    pub signup_at: &'a str,
    pub signup_ip: &'a str,
    pub consent_sha256: &'a str,
    pub confirmed_at: Option<&'a str>,
    pub confirmed_ip: Option<&'a str>,
    pub unsubscribed_at: Option<&'a str>,
    pub unsubscribe_url: &'a str,
    pub list_unsubscribe: &'a str,
    pub list_unsubscribe_post: &'static str,
    /// `double-opt-in`, `confirmation-only` or `none`: how much proof there is.
    pub evidence: Evidence,
    /// When `listgate import` took the row in: its evidence was collected by
    /// another system. Empty (CSV) or `null` (JSON) for listgate's own.
    pub imported_at: Option<&'a str>,
    /// The page the signup form was on, as the browser named it (origin
    /// and path); empty or `null` when it named none.
    pub form_page: Option<&'a str>,
}

/// Builds the signed link columns of each row into buffers reused from row
/// to row.
struct Links<'k> {
    base: &'k str,
    keys: &'k KeyRing,
    url: String,
    header: String,
}

impl<'k> Links<'k> {
    fn new(base: &'k str, keys: &'k KeyRing) -> Links<'k> {
        Links { base, keys, url: String::with_capacity(256), header: String::with_capacity(256) }
    }

    /// The row for `record`, with its unsubscribe URL and `List-Unsubscribe` value.
    fn row<'a>(&'a mut self, record: &ExportRecord<'a>) -> ExportRow<'a> {
        self.url.clear();
        self.url.push_str(self.base);
        self.url.push_str("/unsubscribe?token=");
        token::sign_into(
            self.keys,
            Purpose::Unsubscribe,
            Subject::Public(record.id),
            record.list_id,
            None,
            &mut self.url,
        );
        self.header.clear();
        self.header.push('<');
        self.header.push_str(&self.url);
        self.header.push('>');
        ExportRow {
            email: record.email,
            name: record.name,
            list: record.list_id,
            status: record.status,
            signup_at: record.signup_at,
            signup_ip: record.signup_ip,
            consent_sha256: record.consent_sha256,
            confirmed_at: record.confirmed_at,
            confirmed_ip: record.confirmed_ip,
            unsubscribed_at: record.unsubscribed_at,
            unsubscribe_url: &self.url,
            list_unsubscribe: &self.header,
            list_unsubscribe_post: LIST_UNSUBSCRIBE_POST,
            evidence: record.evidence,
            imported_at: record.imported_at,
            form_page: record.form_page,
        }
    }
}

impl ExportRow<'_> {
    /// The CSV cells: every value exactly as stored, except the free-text
    /// `name`, which gets the formula guard ([`neutralise_formula`]).
    fn csv_cells(&self) -> [std::borrow::Cow<'_, str>; 16] {
        let mut cells = self.cells().map(std::borrow::Cow::Borrowed);
        cells[1] = neutralise_formula(self.name.unwrap_or(""));
        cells
    }

    fn cells(&self) -> [&str; 16] {
        [
            self.email,
            self.name.unwrap_or(""),
            self.list,
            self.status.as_str(),
            self.signup_at,
            self.signup_ip,
            self.consent_sha256,
            self.confirmed_at.unwrap_or(""),
            self.confirmed_ip.unwrap_or(""),
            self.unsubscribed_at.unwrap_or(""),
            self.unsubscribe_url,
            self.list_unsubscribe,
            self.list_unsubscribe_post,
            self.evidence.as_str(),
            self.imported_at.unwrap_or(""),
            self.form_page.unwrap_or(""),
        ]
    }
}

/// Which rows, in what form.
#[derive(Debug, Clone)]
pub struct Options {
    pub filter: ExportFilter,
    pub format: Format,
    /// Start CSV with a UTF-8 byte order mark, so Excel shows umlauts.
    pub bom: bool,
}

/// `--since`: `2026-11-01` (UTC midnight), an RFC 3339 time, or any time
/// `import` reads ([`Timestamp::parse_written`]).
pub fn parse_since(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_written(text).ok_or_else(|| {
        format!("--since: \"{}\" is not a date (2026-11-01) or time (2026-11-01T12:00:00Z)", text.trim())
    })
}

/// A spreadsheet treats a cell starting with `=`, `+`, `-`, `@` (or a tab or
/// carriage return) as a formula; an apostrophe in front makes it text.
/// Only CSV needs this (JSON lines carry the exact values), and only the
/// free-text column (`name`, typed by whoever filled in the form) gets it:
/// an address like `-anna@example.org` is valid, and a sending tool fed
/// `'-anna@example.org` would mail someone else. Addresses, URLs, times and
/// IPs are exported exactly (see `ExportRow::csv_cells`).
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Writes the export to `out`; returns the number of rows. `progress` hears each row.
pub fn export(
    conn: &Database,
    config: &Config,
    keys: &KeyRing,
    options: &Options,
    out: &mut dyn Write,
    mut progress: impl FnMut(),
) -> Result<u64, String> {
    let mut links = Links::new(config.base(), keys);
    let io = |e: std::io::Error| format!("cannot write the export: {e}");
    // One read transaction: every row comes from one snapshot, whatever the
    // server writes meanwhile. (The progress bar's count is taken before it,
    // so it is an estimate.)
    let snapshot = conn.snapshot(|conn| {
        Ok((|| {
            let mut rows = 0u64;
            match options.format {
                Format::Csv => {
                    if options.bom {
                        out.write_all("\u{feff}".as_bytes()).map_err(io)?;
                    }
                    let mut csv = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(&mut *out);
                    csv.write_record(COLUMNS).map_err(|e| e.to_string())?;
                    conn.for_each_export_row(&options.filter, &mut |record| {
                        let row = links.row(record);
                        csv.write_record(row.csv_cells().iter().map(|c| c.as_ref()))
                            .map_err(|e| format!("cannot write the export: {e}"))?;
                        rows += 1;
                        progress();
                        Ok(())
                    })?;
                    csv.flush().map_err(io)?;
                }
                Format::Jsonl => {
                    conn.for_each_export_row(&options.filter, &mut |record| {
                        let row = links.row(record);
                        serde_json::to_writer(&mut *out, &row).map_err(|e| format!("cannot write the export: {e}"))?;
                        out.write_all(b"\n").map_err(io)?;
                        rows += 1;
                        progress();
                        Ok(())
                    })?;
                }
            }
            out.flush().map_err(io)?;
            Ok(rows)
        })())
    });
    snapshot.map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_plain_text_is_not() {
        for formula in ["=1+1", "+49 30 1234", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(formula), format!("'{formula}"));
        }
        for plain in ["Anna", "anna@example.org", "", "Müller, \"Hans\"\nzwei"] {
            assert_eq!(neutralise_formula(plain), plain);
        }
    }

    #[test]
    fn since_takes_dates_and_times() {
        assert_eq!(parse_since("2026-11-01").unwrap().to_string(), "2026-11-01T00:00:00.000Z");
        assert_eq!(parse_since("2026-11-01T12:30:00+01:00").unwrap().to_string(), "2026-11-01T11:30:00.000Z");
        assert!(parse_since("yesterday").is_err());
    }
}
