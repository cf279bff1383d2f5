//! `listgate import FILE --list L`: takes an existing list in, with the
//! evidence its file carries, so an operator who adopts listgate keeps every
//! subscriber and their proof of consent.
//!
//! What a row becomes. A subscription in its state (confirmed or
//! unsubscribed), with the signup and confirmation time and IP and the
//! unsubscribe time exactly as the file gives them, no more; a row of
//! `imports` saying where it came from and how strong its evidence is
//! ([`Evidence`]); and one proof event `imported` in the chain, holding the
//! format, the file's SHA-256, the line and the original text of the
//! columns listgate read. listgate did not collect that evidence and cannot
//! vouch for it: `show`, the proof document and the export say so.
//!
//! Which rows are taken. Never a row without a confirmation time (pending,
//! cleaned): it is reported and skipped, and no imported address is ever
//! mailed. A row with an invalid address, time or IP is rejected with its
//! line and reason; the other rows are still taken, and the command exits 1.
//! An address already on the list, or twice in the file, is one
//! subscription: the first row wins. So a second run of the same file, or a
//! run cut off half way and started again, adds nothing twice.
//!
//! How. The file is read twice: once for its SHA-256 (every event names
//! it, so it must be known before the first one), then row by row, in
//! constant memory. Rows are committed in batches of [`BATCH_ROWS`], each in
//! a short write transaction with a pause after it, so a running server's
//! writer gets the lock between two batches. `--dry-run` runs every
//! check and reports the same, and writes nothing: it remembers the
//! addresses it has seen in a private temporary SQLite file, not in memory.

pub mod formats;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::path::Path;

use ring::digest;
use serde::Serialize;
use time::OffsetDateTime;

use self::formats::{Field, Layout, MailchimpFile, Row};
use crate::clock::Timestamp;
use crate::config::{Config, Language};
use crate::domain::{Email, EmailKey, Evidence, ImportFormat, Name, Status};
use crate::keys::KeyRing;
use crate::mail::sha256_hex;
use crate::proof::{self, EventKind};
use crate::store::db::{Db, ImportRow, ImportedSubscription};
use crate::store::seen::SeenAddresses;
use crate::store::{Database, StoreError};

/// Rows per write transaction: short enough (about 15 ms) that a running
/// server's writer, waiting for the lock, answers its signups within tens of
/// milliseconds (BENCHMARKS.md, "Import").
pub const BATCH_ROWS: usize = 500;

/// The pause after each committed batch, in which a server's writer waiting
/// for the lock (it tries every millisecond) takes it before the next batch.
const BETWEEN_BATCHES: std::time::Duration = std::time::Duration::from_millis(2);

/// The consent text of an imported subscription whose file carried none
/// (every format but `csv` with a `consent_text` column, or a `listgate`
/// export from an instance with another text). Stored once, like any text.
pub const CONSENT_NOT_IMPORTED: &str = "(Not part of the import: this consent was collected by another \
     system, and the imported file did not carry the text the person agreed to.)";

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The file to import.
    pub file: std::path::PathBuf,
    /// The list the rows go to (configured).
    pub list: String,
    /// `None`: detected from the header.
    pub format: Option<ImportFormat>,
    /// `--column FIELD=HEADER` mappings: with `format` `csv` or `None`
    /// only (the CLI refuses them beside another format as bad usage).
    pub columns: Vec<(Field, String)>,
    pub dry_run: bool,
}

/// `--column FIELD=HEADER`, checked.
pub fn parse_column(text: &str) -> Result<(Field, String), String> {
    let (field, header) =
        text.split_once('=').ok_or_else(|| format!("--column {text}: write FIELD=HEADER, like email=E-Mail"))?;
    let field = Field::from_csv_name(field.trim()).ok_or_else(|| {
        format!("--column {text}: \"{}\" is not a field; the fields are {}", field.trim(), Field::csv_names())
    })?;
    if header.trim().is_empty() {
        return Err(format!("--column {text}: the header is empty"));
    }
    Ok((field, header.trim().to_string()))
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub confirmed: u64,
    pub unsubscribed: u64,
    pub skipped: u64,
    pub rejected: u64,
    /// Unsubscribed rows older than `retention.after_unsubscribe`: the
    /// next purge erases them.
    pub past_retention: u64,
}

impl Summary {
    pub fn imported(&self) -> u64 {
        self.confirmed + self.unsubscribed
    }
}

/// Why a row was not taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Valid, but not a subscriber to take in (pending, cleaned, already there).
    Skipped(String),
    /// Invalid: the operator should fix it.
    Rejected(String),
}

/// Where the consent text of a row comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Consent {
    Text(String),
    /// A listgate export's `consent_sha256`: kept when this database has the text.
    Sha256(String),
    Unknown,
}

/// A row that passed every check: what will be stored.
#[derive(Debug)]
struct Candidate {
    line: u64,
    email: Email,
    name: Option<Name>,
    status: Status,
    /// As the file gave it; the stored signup time is the confirmation
    /// time when it gave none.
    signup_at: Option<Timestamp>,
    signup_ip: Option<String>,
    confirmed_at: Timestamp,
    confirmed_ip: Option<String>,
    unsubscribed_at: Option<Timestamp>,
    evidence: Evidence,
    consent: Consent,
    original: Vec<(String, String)>,
}

/// The `imported` event's detail: the subscription as stored, where it
/// came from, and the row's original text.
#[derive(Serialize)]
struct ImportedDetail<'a> {
    list: &'a str,
    email: &'a str,
    name: Option<&'a str>,
    consent_sha256: &'a str,
    status: Status,
    signup_at: Option<Timestamp>,
    signup_ip: Option<&'a str>,
    confirmed_at: Timestamp,
    confirmed_ip: Option<&'a str>,
    unsubscribed_at: Option<Timestamp>,
    evidence: Evidence,
    format: ImportFormat,
    source_sha256: &'a str,
    line: u64,
    values: serde_json::Map<String, serde_json::Value>,
}

/// What stays the same for every row of one run.
struct Run<'a> {
    config: &'a Config,
    keys: &'a KeyRing,
    options: &'a Options,
    layout: Layout,
    /// The file is `listgate export --format jsonl`: values are exact,
    /// with no CSV formula guard to undo.
    json: bool,
    source_sha256: String,
    now: Timestamp,
    /// Consent texts this run has stored or looked up, by SHA-256.
    consent_known: HashMap<String, bool>,
    /// Dry run only: the addresses seen so far, in a temporary file.
    seen: Option<SeenAddresses>,
}

/// The file opened for an import: its SHA-256, its format and layout, and
/// its rows still to read. Opening reads the header and checks the format,
/// so a file that cannot be imported fails before anything is created.
pub struct Source {
    options: Options,
    sha256: String,
    layout: Layout,
    /// How the format was chosen, for the report.
    how: &'static str,
    rows: Rows,
}

enum Rows {
    Csv(csv::Reader<BufReader<File>>),
    /// `listgate export --format jsonl`: values are exact, with no CSV
    /// formula guard to undo.
    JsonLines(BufReader<File>),
}

/// Opens `options.file` for [`run`]: hashes it, reads its header and
/// settles the format; fails with one line when it cannot be imported.
pub fn open(options: &Options) -> Result<Source, String> {
    let path = options.file.as_path();
    let io = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let sha256 = file_sha256(path).map_err(io)?;
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path).map_err(io)?);
    skip_bom(&mut reader).map_err(io)?;
    let Some(first) = reader.fill_buf().map_err(io)?.iter().find(|b| !b.is_ascii_whitespace()).copied() else {
        return Err(format!("{} is empty: nothing to import", path.display()));
    };
    let (layout, how, rows) = if first == b'{' {
        match options.format {
            None | Some(ImportFormat::Listgate) => (Layout::listgate_json(), "JSON lines", Rows::JsonLines(reader)),
            Some(other) => return Err(format!("{} holds JSON lines, not a {other} CSV", path.display())),
        }
    } else {
        // Rows end at `\n` only: with the default (CR, LF or CRLF), the csv
        // crate places each row of a CRLF file (Mailchimp's) at the end of
        // the line before, and the report would name the wrong line. The
        // `\r` left at the end of the last cell is trimmed with all
        // surrounding space.
        let mut csv =
            csv::ReaderBuilder::new().flexible(true).terminator(csv::Terminator::Any(b'\n')).from_reader(reader);
        // Headers appear in the report: no control character (a
        // terminal's escape sequence) gets there from a file.
        let headers: Vec<String> = csv
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(|h| h.trim().chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect())
            .collect();
        let (layout, how) = csv_layout(&headers, options)?;
        (layout, how, Rows::Csv(csv))
    };
    Ok(Source { options: options.clone(), sha256, layout, how, rows })
}

/// Imports the rows of `source` into `conn`; writes the report (the format
/// and a line per row not taken) to `report` and tells `progress` how many
/// bytes of the file are read. Fails (nothing more written) on a file that
/// turns out unreadable, or a database error; rows already committed stay,
/// and a second run takes up the rest.
pub fn run(
    conn: &Database,
    config: &Config,
    keys: &KeyRing,
    source: Source,
    now: OffsetDateTime,
    report: &mut dyn Write,
    mut progress: impl FnMut(u64),
) -> Result<Summary, String> {
    let Source { options, sha256: source_sha256, layout, how, rows } = source;
    let options = &options;
    let path = options.file.as_path();
    let io = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let out = |e: std::io::Error| format!("cannot write the report: {e}");
    let json = matches!(rows, Rows::JsonLines(_));
    writeln!(report, "format: {} ({how})", layout.format).map_err(out)?;
    if layout.mailchimp == Some(MailchimpFile::Cleaned) {
        writeln!(report, "this is Mailchimp's cleaned file: its addresses bounced, and none is imported")
            .map_err(out)?;
    }

    let seen = if options.dry_run { Some(SeenAddresses::new().map_err(|e| format!("dry run: {e}"))?) } else { None };
    let mut run = Run {
        config,
        keys,
        options,
        layout,
        json,
        source_sha256,
        now: Timestamp::from(now),
        consent_known: HashMap::new(),
        seen,
    };
    let mut summary = Summary::default();
    // The batch's rows in file order, each a candidate or why it is not one,
    // so the report lists them in file order.
    let mut batch: Vec<(u64, Result<Candidate, Verdict>)> = Vec::with_capacity(BATCH_ROWS);
    let mut each_row = |(line, byte): (u64, u64),
                        row: Result<Row, String>,
                        run: &mut Run,
                        summary: &mut Summary|
     -> Result<(), String> {
        summary.rows += 1;
        progress(byte);
        batch.push((line, row.map_err(Verdict::Rejected).and_then(|row| candidate(run, &row, line))));
        if batch.len() >= BATCH_ROWS {
            store_batch(conn, run, &mut batch, summary, report)?;
        }
        Ok(())
    };
    match rows {
        Rows::Csv(mut csv) => {
            let width = run.layout.width();
            let mut record = csv::StringRecord::new();
            loop {
                match csv.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let at = record.position().map_or((0, 0), |p| (p.line(), p.byte()));
                        let row = if record.len() == width {
                            Ok(run.layout.read(record.iter()))
                        } else {
                            Err(format!("has {} fields, the header {width}", record.len()))
                        };
                        each_row(at, row, &mut run, &mut summary)?;
                    }
                    // Bytes that are not UTF-8 are one bad row; anything else
                    // (an unreadable file) ends the run.
                    Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                        let at = e.position().map_or((0, 0), |p| (p.line(), p.byte()));
                        each_row(at, Err("is not UTF-8 text".into()), &mut run, &mut summary)?;
                    }
                    Err(e) => return Err(csv_error(path, e)),
                }
            }
        }
        Rows::JsonLines(mut reader) => {
            let mut bytes = Vec::new();
            let (mut line, mut byte) = (0, 0);
            loop {
                bytes.clear();
                let read = reader.read_until(b'\n', &mut bytes).map_err(io)?;
                if read == 0 {
                    break;
                }
                line += 1;
                byte += read as u64;
                let row = match std::str::from_utf8(&bytes) {
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => json_row(&run.layout, text),
                    Err(_) => Err("is not UTF-8 text".into()),
                };
                each_row((line, byte), row, &mut run, &mut summary)?;
            }
        }
    }
    store_batch(conn, &mut run, &mut batch, &mut summary, report)?;
    Ok(summary)
}

/// The layout of a CSV file with `headers`, in the format `--format`
/// names, `--column` implies or the header shows; and which of the three.
fn csv_layout(headers: &[String], options: &Options) -> Result<(Layout, &'static str), String> {
    let (format, how) = match options.format {
        Some(format) => (format, "as --format says"),
        None if !options.columns.is_empty() => (ImportFormat::Csv, "as --column implies"),
        None => (
            formats::detect(headers).ok_or_else(|| {
                format!(
                    "cannot tell the format of {} from its header ({}); name it with --format",
                    options.file.display(),
                    headers.join(", ")
                )
            })?,
            "detected from the header",
        ),
    };
    Ok((formats::layout(format, headers, &options.columns)?, how))
}

/// Reports one row not taken.
fn note(report: &mut dyn Write, summary: &mut Summary, line: u64, verdict: &Verdict) -> std::io::Result<()> {
    match verdict {
        Verdict::Skipped(why) => {
            summary.skipped += 1;
            writeln!(report, "line {line}: skipped: {why}")
        }
        Verdict::Rejected(why) => {
            summary.rejected += 1;
            writeln!(report, "line {line}: rejected: {why}")
        }
    }
}

fn csv_error(path: &Path, e: csv::Error) -> String {
    format!("cannot read {} as CSV: {e}", path.display())
}

/// The hex SHA-256 of the whole file, read in blocks.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut block = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(hex::encode(context.finish().as_ref()));
        }
        context.update(&block[..n]);
    }
}

/// Skips a UTF-8 byte order mark (Excel writes one).
fn skip_bom(reader: &mut impl BufRead) -> std::io::Result<()> {
    if reader.fill_buf()?.starts_with("\u{feff}".as_bytes()) {
        reader.consume(3);
    }
    Ok(())
}

/// One line of `listgate export --format jsonl` as a row.
fn json_row(layout: &Layout, text: &str) -> Result<Row, String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("is not a JSON object: {e}"))?;
    let cells: Vec<String> = formats::LISTGATE_COLUMNS
        .iter()
        .map(|(key, _)| match object.get(*key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(other) => Err(format!("\"{key}\" is {other}, not text")),
        })
        .collect::<Result<_, _>>()?;
    Ok(layout.read(cells.iter().map(String::as_str)))
}

/// An IP address as the formats write it, in the form listgate stores:
/// IPv4-mapped IPv6 becomes IPv4. listmonk may hold a whole
/// `X-Forwarded-For` chain; its first address is the client's.
fn parse_ip(text: &str) -> Option<String> {
    let first = text.split(',').next()?.trim();
    let ip: IpAddr = first.parse().ok()?;
    Some(crate::http::client_ip::canonical(ip).to_string())
}

/// The checks every row passes, whatever its format. Values quoted in a
/// reason are written as Rust writes strings (`{:?}`), so a control
/// character in the file reaches the operator's terminal escaped.
fn candidate(run: &Run, row: &Row, line: u64) -> Result<Candidate, Verdict> {
    let layout = &run.layout;
    let reject = |why: String| Verdict::Rejected(why);
    let email = Email::parse(row.get(Field::Email).unwrap_or(""))
        .map_err(|e| reject(format!("{}: {}", row.header_of(layout, Field::Email), e.message(Language::En))))?;
    if let Some(list) = row.get(Field::List)
        && list != run.options.list
    {
        return Err(Verdict::Skipped(format!("on list {list:?} in the file; import it with --list {list:?}")));
    }
    let time = |field| parsed(row, layout, field, "a time", Timestamp::parse_written);
    let ip = |field| parsed(row, layout, field, "an IP address", parse_ip);
    let first_and_last = || {
        let parts: Vec<&str> = [row.get(Field::FirstName), row.get(Field::LastName)].into_iter().flatten().collect();
        Some(parts.join(" ")).filter(|n| !n.is_empty())
    };
    let exported_csv = layout.format == ImportFormat::Listgate && !run.json;
    let name = row.get(Field::Name).map(|n| unguard(n, exported_csv)).or_else(first_and_last);
    let name = Name::parse(name.as_deref()).map_err(|e| reject(format!("name: {}", e.message(Language::En))))?;

    let signup_at = time(Field::SignupAt)?;
    let signup_ip = ip(Field::SignupIp)?;
    let mut confirmed_at = time(Field::ConfirmedAt)?;
    let confirmed_ip = ip(Field::ConfirmedIp)?;
    let mut unsubscribed_at = time(Field::UnsubscribedAt)?;

    let stated = row.get(Field::Status).map(str::to_ascii_lowercase);
    let status = match (layout.format, layout.mailchimp) {
        (_, Some(MailchimpFile::Cleaned)) => {
            return Err(Verdict::Skipped("cleaned in Mailchimp (the address bounced): not imported".into()));
        }
        (_, Some(MailchimpFile::Unsubscribed)) => Status::Unsubscribed,
        (_, Some(MailchimpFile::Subscribed)) => Status::Confirmed,
        (ImportFormat::Listmonk, _) => {
            if row.get(Field::SubscriberStatus) == Some("blocklisted") {
                return Err(Verdict::Skipped("blocklisted in listmonk: not imported".into()));
            }
            match stated.as_deref() {
                Some("confirmed") => Status::Confirmed,
                // listmonk keeps one time per subscription, its last change:
                // for an unsubscribed one that is the unsubscribe, and when it
                // was confirmed is lost.
                Some("unsubscribed") => {
                    unsubscribed_at = confirmed_at.take();
                    Status::Unsubscribed
                }
                Some("unconfirmed") => Status::Pending,
                other => {
                    return Err(reject(format!(
                        "subscription_status {:?} is not a listmonk status",
                        other.unwrap_or("")
                    )));
                }
            }
        }
        _ => match stated.as_deref() {
            Some(text) => Status::from_stored(text).ok_or_else(|| {
                reject(format!(
                    "{} {text:?} is not confirmed, unsubscribed or pending",
                    row.header_of(layout, Field::Status)
                ))
            })?,
            None if unsubscribed_at.is_some() => Status::Unsubscribed,
            None if confirmed_at.is_some() => Status::Confirmed,
            None => Status::Pending,
        },
    };
    if status == Status::Pending {
        return Err(Verdict::Skipped("pending (never confirmed): not imported".into()));
    }
    let Some(confirmed_at) = confirmed_at else {
        return Err(Verdict::Skipped("no confirmation time: not imported as a subscriber".into()));
    };
    match (status, unsubscribed_at) {
        (Status::Unsubscribed, None) => {
            return Err(reject("unsubscribed, but no unsubscribe time (retention counts from it)".into()));
        }
        (Status::Confirmed, Some(_)) => {
            return Err(reject("confirmed, but with an unsubscribe time".into()));
        }
        _ => {}
    }
    let latest = unsubscribed_at.unwrap_or(confirmed_at);
    if latest > run.now {
        return Err(reject(format!("{latest} is in the future")));
    }
    if signup_at.is_some_and(|s| s > confirmed_at) {
        return Err(reject("the signup time is after the confirmation time".into()));
    }
    if unsubscribed_at.is_some_and(|u| u < confirmed_at) {
        return Err(reject("the unsubscribe time is before the confirmation time".into()));
    }

    let complete = signup_at.is_some() && signup_ip.is_some() && confirmed_ip.is_some();
    let mut evidence = if complete { Evidence::DoubleOptIn } else { Evidence::ConfirmationOnly };
    if let Some(text) = row.get(Field::Evidence) {
        let stated = Evidence::from_stored(text)
            .ok_or_else(|| reject(format!("evidence {text:?} is not one listgate knows")))?;
        // Never stronger than the source says (an import of an import).
        if stated != Evidence::DoubleOptIn {
            evidence = stated;
        }
    }
    let consent = match (row.get(Field::ConsentText), row.get(Field::ConsentSha256)) {
        (Some(text), _) => Consent::Text(text.to_string()),
        (None, Some(sha)) => Consent::Sha256(sha.to_string()),
        (None, None) => Consent::Unknown,
    };
    Ok(Candidate {
        line,
        email,
        name,
        status,
        signup_at,
        signup_ip,
        confirmed_at,
        confirmed_ip,
        unsubscribed_at,
        evidence,
        consent,
        original: row.original.clone(),
    })
}

/// The field's value read by `parse`; `None` when the cell is empty, and
/// a rejection naming the column when `parse` refuses the text (`what` it
/// is not).
fn parsed<T>(
    row: &Row,
    layout: &Layout,
    field: Field,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, Verdict> {
    row.get(field)
        .map(|text| {
            parse(text)
                .ok_or_else(|| Verdict::Rejected(format!("{} {text:?} is not {what}", row.header_of(layout, field))))
        })
        .transpose()
}

/// Undoes the formula guard of `listgate export`'s CSV (`'-Anna-` was
/// `-Anna-`; see `export::neutralise_formula`) when `csv` says the value
/// came through it.
fn unguard(name: &str, csv: bool) -> String {
    match name.strip_prefix('\'') {
        Some(rest) if csv && rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_string(),
        _ => name.to_string(),
    }
}

/// Decides and (unless a dry run) stores the batch, in one write
/// transaction; empties it.
fn store_batch(
    conn: &Database,
    run: &mut Run,
    batch: &mut Vec<(u64, Result<Candidate, Verdict>)>,
    summary: &mut Summary,
    report: &mut dyn Write,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let candidates = || batch.iter().filter_map(|(_, row)| row.as_ref().ok());
    let outcomes = if !candidates().any(|_| true) {
        Ok(Vec::new())
    } else if run.options.dry_run {
        conn.snapshot(|c| candidates().map(|candidate| decide(c, run, candidate)).collect::<Result<Vec<_>, _>>())
    } else {
        let stored = conn.immediate(|c| {
            candidates()
                .map(|candidate| match decide(c, run, candidate)? {
                    None => store(c, run, candidate).map(|()| None),
                    skipped => Ok(skipped),
                })
                .collect::<Result<Vec<_>, _>>()
        });
        std::thread::sleep(BETWEEN_BATCHES);
        stored
    }
    .map_err(|e| format!("nothing more was imported: {e}"))?;
    let cutoff =
        crate::retention::Cutoffs::at(&run.config.retention, run.now.to_offset_date_time()).unsubscribed_before;
    let mut outcomes = outcomes.into_iter();
    for (line, row) in batch.iter() {
        let candidate = match row {
            Ok(candidate) => candidate,
            Err(verdict) => {
                note(report, summary, *line, verdict).map_err(|e| format!("cannot write the report: {e}"))?;
                continue;
            }
        };
        match outcomes.next().expect("one outcome per candidate") {
            Some(why) => note(report, summary, candidate.line, &Verdict::Skipped(why))
                .map_err(|e| format!("cannot write the report: {e}"))?,
            None if candidate.status == Status::Unsubscribed => {
                summary.unsubscribed += 1;
                summary.past_retention += u64::from(candidate.unsubscribed_at.is_some_and(|u| u < cutoff));
            }
            None => summary.confirmed += 1,
        }
    }
    batch.clear();
    Ok(())
}

/// Why `candidate` is skipped although valid (the address is on the list
/// already, from this file or not), or `None` to take it.
fn decide(c: &dyn Db, run: &mut Run, candidate: &Candidate) -> Result<Option<String>, StoreError> {
    let key: &EmailKey = candidate.email.key();
    let list = run.options.list.as_str();
    if let Some((id, status)) = c.first_subscription_on_list(list, key)? {
        let from_this_file = c.select_import(id)?.filter(|i| i.source_sha256 == run.source_sha256);
        return Ok(Some(match from_this_file {
            Some(import) if import.line as u64 == candidate.line => "imported from this file before".to_string(),
            Some(import) => format!("the address is on line {} already, which was imported", import.line),
            None => format!("already on the list ({status})"),
        }));
    }
    if let Some(line) =
        run.seen.as_ref().map(|seen| seen.first_line_or_remember(key, candidate.line)).transpose()?.flatten()
    {
        return Ok(Some(format!("the address is on line {line} already, which would be imported")));
    }
    Ok(None)
}

/// Stores one candidate: subscription, `imports` row, `imported` event.
fn store(c: &dyn Db, run: &mut Run, candidate: &Candidate) -> Result<(), StoreError> {
    let consent_sha256 = consent_sha256(c, run, &candidate.consent)?;
    let list = run.options.list.as_str();
    let id = c.insert_imported_subscription(&ImportedSubscription {
        list_id: list,
        email: candidate.email.as_str(),
        email_key: candidate.email.key(),
        name: candidate.name.as_ref().map(Name::as_str),
        status: candidate.status,
        consent_sha256: &consent_sha256,
        signup_at: candidate.signup_at.unwrap_or(candidate.confirmed_at),
        signup_ip: candidate.signup_ip.as_deref().unwrap_or(""),
        confirmed_at: candidate.confirmed_at,
        confirmed_ip: candidate.confirmed_ip.as_deref(),
        unsubscribed_at: candidate.unsubscribed_at,
    })?;
    let format = run.layout.format;
    c.insert_import(
        id,
        &ImportRow {
            imported_at: run.now,
            format,
            source_sha256: run.source_sha256.clone(),
            line: candidate.line as i64,
            evidence: candidate.evidence,
        },
    )?;
    let detail = ImportedDetail {
        list,
        email: candidate.email.as_str(),
        name: candidate.name.as_ref().map(Name::as_str),
        consent_sha256: &consent_sha256,
        status: candidate.status,
        signup_at: candidate.signup_at,
        signup_ip: candidate.signup_ip.as_deref(),
        confirmed_at: candidate.confirmed_at,
        confirmed_ip: candidate.confirmed_ip.as_deref(),
        unsubscribed_at: candidate.unsubscribed_at,
        evidence: candidate.evidence,
        format,
        source_sha256: &run.source_sha256,
        line: candidate.line,
        values: candidate.original.iter().map(|(h, v)| (h.clone(), serde_json::Value::from(v.as_str()))).collect(),
    };
    proof::append(c, run.keys, id, run.now, EventKind::Imported, None, &detail)
}

/// The consent text a candidate's subscription refers to, stored once:
/// the file's own, or the one a listgate export's hash names when this
/// database or this list's configuration has that text.
fn consent_sha256(c: &dyn Db, run: &mut Run, consent: &Consent) -> Result<String, StoreError> {
    // Few distinct texts per file; a file of a million would only cost lookups.
    if run.consent_known.len() > 1_000 {
        run.consent_known.clear();
    }
    let text = match consent {
        Consent::Sha256(sha) => {
            let known = match run.consent_known.get(sha) {
                Some(known) => *known,
                None => {
                    let known = c.select_consent_text(sha)?.is_some();
                    run.consent_known.insert(sha.clone(), known);
                    known
                }
            };
            if known {
                return Ok(sha.clone());
            }
            // A new instance configured with the text the old one showed
            // (the usual move) has not stored it yet: the hash proves it.
            match run.config.list(&run.options.list) {
                Some(list) if sha256_hex(list.consent_text.as_bytes()) == *sha => list.consent_text.as_str(),
                _ => CONSENT_NOT_IMPORTED,
            }
        }
        Consent::Text(text) => text.as_str(),
        Consent::Unknown => CONSENT_NOT_IMPORTED,
    };
    let sha = sha256_hex(text.as_bytes());
    if !run.consent_known.contains_key(&sha) {
        c.insert_consent_text(&sha, text, run.now)?;
        run.consent_known.insert(sha.clone(), true);
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_stored_as_listgate_stores_them() {
        assert_eq!(parse_ip("::ffff:192.0.2.1").as_deref(), Some("192.0.2.1"));
        assert_eq!(parse_ip("2001:DB8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(parse_ip("203.0.113.7, 10.0.0.2").as_deref(), Some("203.0.113.7"));
        assert_eq!(parse_ip("2001"), None);
    }

    #[test]
    fn the_export_s_formula_guard_is_undone_only_where_it_was_added() {
        assert_eq!(unguard("'-Anna-", true), "-Anna-");
        assert_eq!(unguard("'-Anna-", false), "'-Anna-");
        assert_eq!(unguard("'Anna'", true), "'Anna'");
    }

    #[test]
    fn columns_name_a_field_and_a_header() {
        assert_eq!(parse_column("email=E-Mail").unwrap(), (Field::Email, "E-Mail".into()));
        assert_eq!(parse_column("confirmed_at = Bestätigt am").unwrap(), (Field::ConfirmedAt, "Bestätigt am".into()));
        assert!(parse_column("mail=E-Mail").unwrap_err().contains("not a field"));
        assert!(parse_column("email").unwrap_err().contains("FIELD=HEADER"));
        assert!(parse_column("email=").unwrap_err().contains("empty"));
    }
}
