//! What each import format's columns mean: the header is read once into a
//! [`Layout`] (which column holds which [`Field`]), and each row through it
//! into a [`Row`] of raw text, still as the file wrote it. Turning that
//! text into checked values is `import::candidate`'s job, one set of rules
//! for every format.
//!
//! | format | recognised by | status | times |
//! |---|---|---|---|
//! | `mailchimp` | `Email Address` and `CONFIRM_TIME` | the file: subscribed, `UNSUB_TIME` unsubscribed, `CLEAN_TIME` cleaned | `2016-04-18 13:51:14`, UTC |
//! | `listmonk` | `uuid`, `email`, `attributes` | `subscription_status` (see below) | `2024-03-01 09:15:42.12 +0000 UTC` or PostgreSQL's `…+00` |
//! | `listgate` | `email`, `signup_at`, `unsubscribe_url` | `status` | listgate's own, UTC |
//! | `csv` | an `email` column | `status`, or from the times | RFC 3339; without a zone, UTC |
//!
//! listmonk's own CSV export (`uuid,email,name,attributes,status,created_at,
//! updated_at`) carries no subscription of a list: no status, no
//! confirmation time, no opt-in IP (listmonk keeps those in
//! `subscriber_lists`). docs/import.md gives the query that exports them
//! beside it as `subscription_status`, `subscription_created_at`,
//! `subscription_updated_at` and `optin_ip`; without them there is no
//! evidence to take in, and [`layout`] says so.

use std::collections::HashMap;

use crate::domain::ImportFormat;

/// A value listgate takes from a row. `csv` columns are named like these
/// (`--column FIELD=HEADER` maps others); the other formats map their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Email,
    Name,
    FirstName,
    LastName,
    List,
    Status,
    SignupAt,
    SignupIp,
    ConfirmedAt,
    ConfirmedIp,
    UnsubscribedAt,
    ConsentText,
    ConsentSha256,
    Evidence,
    /// listmonk's subscriber status (`enabled`, `disabled`, `blocklisted`).
    SubscriberStatus,
}

impl Field {
    /// The `csv` format's column names, which `--column` also takes.
    const CSV_NAMES: [(&'static str, Field); 12] = [
        ("email", Field::Email),
        ("name", Field::Name),
        ("first_name", Field::FirstName),
        ("last_name", Field::LastName),
        ("status", Field::Status),
        ("signup_at", Field::SignupAt),
        ("signup_ip", Field::SignupIp),
        ("confirmed_at", Field::ConfirmedAt),
        ("confirmed_ip", Field::ConfirmedIp),
        ("unsubscribed_at", Field::UnsubscribedAt),
        ("consent_text", Field::ConsentText),
        ("evidence", Field::Evidence),
    ];

    /// The field a `--column` names, by its `csv` column name.
    pub fn from_csv_name(name: &str) -> Option<Field> {
        Field::CSV_NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Every name `--column` takes, for its error message.
    pub fn csv_names() -> String {
        Field::CSV_NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }
}

/// Which Mailchimp file a header belongs to: each holds one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailchimpFile {
    Subscribed,
    Unsubscribed,
    /// Addresses Mailchimp removed after they bounced: none is taken in.
    Cleaned,
}

/// Which column holds which field, for one file.
#[derive(Debug, Clone)]
pub struct Layout {
    pub format: ImportFormat,
    /// Set for Mailchimp files.
    pub mailchimp: Option<MailchimpFile>,
    columns: HashMap<Field, usize>,
    /// The header, for the original values kept in the `imported` event.
    headers: Vec<String>,
}

/// The raw text of one row's fields, as the file wrote them (trimmed).
#[derive(Debug, Default)]
pub struct Row {
    values: HashMap<Field, String>,
    /// `(header, text)` of every column listgate reads, in header order:
    /// the row's original values, as the `imported` proof event keeps them.
    /// Columns it does not read (phone numbers, locations, notes, tags)
    /// are not kept: listgate stores nothing the contract does not list.
    pub original: Vec<(String, String)>,
}

impl Row {
    /// The field's text; `None` when the file has no such column or the
    /// cell is empty.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.values.get(&field).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The header the field was read from, for messages.
    pub fn header_of<'a>(&self, layout: &'a Layout, field: Field) -> &'a str {
        layout.columns.get(&field).map_or("?", |&i| layout.headers[i].as_str())
    }
}

impl Layout {
    /// Reads one row's fields (`cells` in header order).
    pub fn read<'c>(&self, cells: impl IntoIterator<Item = &'c str>) -> Row {
        let cells: Vec<&str> = cells.into_iter().collect();
        let mut row = Row::default();
        let mut read: Vec<(usize, Field)> = self.columns.iter().map(|(f, i)| (*i, *f)).collect();
        read.sort_unstable_by_key(|(i, _)| *i);
        for (i, field) in read {
            let text = cells.get(i).copied().unwrap_or("").trim();
            row.values.insert(field, text.to_string());
            if row.original.last().is_none_or(|(h, _)| *h != self.headers[i]) {
                row.original.push((self.headers[i].clone(), text.to_string()));
            }
        }
        row
    }

    /// The number of columns in the header.
    pub fn width(&self) -> usize {
        self.headers.len()
    }

    /// Whether the file has a column for `field`.
    pub fn has(&self, field: Field) -> bool {
        self.columns.contains_key(&field)
    }

    /// The layout of JSON lines from `listgate export --format jsonl`: the
    /// export's keys, looked up by name in each object.
    pub fn listgate_json() -> Layout {
        let headers: Vec<String> = LISTGATE_COLUMNS.iter().map(|(h, _)| h.to_string()).collect();
        let columns = LISTGATE_COLUMNS.iter().enumerate().map(|(i, (_, f))| (*f, i)).collect();
        Layout { format: ImportFormat::Listgate, mailchimp: None, columns, headers }
    }
}

/// The columns of `listgate export` that carry what an import takes.
pub(super) const LISTGATE_COLUMNS: [(&str, Field); 11] = [
    ("email", Field::Email),
    ("name", Field::Name),
    ("list", Field::List),
    ("status", Field::Status),
    ("signup_at", Field::SignupAt),
    ("signup_ip", Field::SignupIp),
    ("consent_sha256", Field::ConsentSha256),
    ("confirmed_at", Field::ConfirmedAt),
    ("confirmed_ip", Field::ConfirmedIp),
    ("unsubscribed_at", Field::UnsubscribedAt),
    ("evidence", Field::Evidence),
];

/// The columns of Mailchimp's audience exports that listgate reads.
const MAILCHIMP_COLUMNS: [(&str, Field); 8] = [
    ("Email Address", Field::Email),
    ("First Name", Field::FirstName),
    ("Last Name", Field::LastName),
    ("OPTIN_TIME", Field::SignupAt),
    ("OPTIN_IP", Field::SignupIp),
    ("CONFIRM_TIME", Field::ConfirmedAt),
    ("CONFIRM_IP", Field::ConfirmedIp),
    ("UNSUB_TIME", Field::UnsubscribedAt),
];

/// The columns of listmonk's export, with those of the query in
/// docs/import.md, that listgate reads.
const LISTMONK_COLUMNS: [(&str, Field); 7] = [
    ("email", Field::Email),
    ("name", Field::Name),
    ("status", Field::SubscriberStatus),
    ("subscription_status", Field::Status),
    ("subscription_created_at", Field::SignupAt),
    ("subscription_updated_at", Field::ConfirmedAt),
    ("optin_ip", Field::ConfirmedIp),
];

/// Which of `columns` the header has, found by `find`, and where.
fn named_columns(columns: &[(&str, Field)], find: impl Fn(&str) -> Option<usize>) -> HashMap<Field, usize> {
    columns.iter().filter_map(|(header, field)| find(header).map(|i| (*field, i))).collect()
}

/// The format a header shows, if any: what `import` uses without `--format`.
pub fn detect(headers: &[String]) -> Option<ImportFormat> {
    let has = |name: &str| headers.iter().any(|h| h == name);
    let has_any_case = |name: &str| headers.iter().any(|h| h.eq_ignore_ascii_case(name));
    if has("Email Address") && (has("CONFIRM_TIME") || has("OPTIN_TIME") || has("MEMBER_RATING")) {
        Some(ImportFormat::Mailchimp)
    } else if has("uuid") && has("email") && has("attributes") {
        Some(ImportFormat::Listmonk)
    } else if has("email") && has("signup_at") && has("unsubscribe_url") {
        Some(ImportFormat::Listgate)
    } else if has_any_case("email") {
        Some(ImportFormat::Csv)
    } else {
        None
    }
}

/// The layout of a CSV header in `format`; `columns` are `--column`
/// mappings (only for `csv`). Fails with one line when a column the format
/// needs is missing.
pub fn layout(format: ImportFormat, headers: &[String], columns: &[(Field, String)]) -> Result<Layout, String> {
    let find = |name: &str| headers.iter().position(|h| h == name);
    let find_any_case = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut map = HashMap::new();
    let mut mailchimp = None;
    match format {
        ImportFormat::Mailchimp => {
            map = named_columns(&MAILCHIMP_COLUMNS, find);
            mailchimp = Some(if find("CLEAN_TIME").is_some() {
                MailchimpFile::Cleaned
            } else if find("UNSUB_TIME").is_some() {
                MailchimpFile::Unsubscribed
            } else {
                MailchimpFile::Subscribed
            });
            require(&map, headers, &[(Field::Email, "Email Address"), (Field::ConfirmedAt, "CONFIRM_TIME")], format)?;
        }
        ImportFormat::Listmonk => {
            map = named_columns(&LISTMONK_COLUMNS, find);
            require(&map, headers, &[(Field::Email, "email")], format)?;
            if !map.contains_key(&Field::Status) || !map.contains_key(&Field::ConfirmedAt) {
                return Err("this listmonk export has no subscription status and no confirmation time \
                            (listmonk's CSV export leaves both out, so it holds no proof of consent): \
                            export with the query in docs/import.md, which adds subscription_status, \
                            subscription_created_at, subscription_updated_at and optin_ip"
                    .into());
            }
        }
        ImportFormat::Listgate => {
            map = named_columns(&LISTGATE_COLUMNS, find);
            require(
                &map,
                headers,
                &[(Field::Email, "email"), (Field::Status, "status"), (Field::SignupAt, "signup_at")],
                format,
            )?;
        }
        ImportFormat::Csv => {
            for (name, field) in Field::CSV_NAMES {
                if let Some(i) = find_any_case(name) {
                    map.insert(field, i);
                }
            }
            for (field, header) in columns {
                let i = find(header).or_else(|| find_any_case(header)).ok_or_else(|| {
                    format!("--column: the file has no column \"{header}\" (its columns: {})", headers.join(", "))
                })?;
                map.insert(*field, i);
            }
            require(&map, headers, &[(Field::Email, "email")], format)?;
        }
    }
    Ok(Layout { format, mailchimp, columns: map, headers: headers.to_vec() })
}

fn require(
    map: &HashMap<Field, usize>,
    headers: &[String],
    needed: &[(Field, &str)],
    format: ImportFormat,
) -> Result<(), String> {
    for (field, header) in needed {
        if !map.contains_key(field) {
            return Err(format!(
                "not a {format} file: it has no column \"{header}\" (its columns: {})",
                headers.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(line: &str) -> Vec<String> {
        line.split(',').map(|h| h.trim_matches('"').to_string()).collect()
    }

    const MAILCHIMP: &str = "\"Email Address\",\"First Name\",\"Last Name\",MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS";

    #[test]
    fn each_format_is_told_by_its_header() {
        assert_eq!(detect(&headers(MAILCHIMP)), Some(ImportFormat::Mailchimp));
        assert_eq!(
            detect(&headers("uuid,email,name,attributes,status,created_at,updated_at")),
            Some(ImportFormat::Listmonk)
        );
        assert_eq!(
            detect(&headers(
                "email,name,list,status,signup_at,signup_ip,consent_sha256,confirmed_at,confirmed_ip,unsubscribed_at,unsubscribe_url,list_unsubscribe,list_unsubscribe_post,evidence,imported_at"
            )),
            Some(ImportFormat::Listgate)
        );
        assert_eq!(detect(&headers("Email,Vorname,Anmeldedatum")), Some(ImportFormat::Csv));
        assert_eq!(detect(&headers("address,when")), None);
    }

    #[test]
    fn a_mailchimp_header_tells_which_file_it_is() {
        let file = |h: &str| layout(ImportFormat::Mailchimp, &headers(h), &[]).unwrap().mailchimp;
        assert_eq!(file(MAILCHIMP), Some(MailchimpFile::Subscribed));
        assert_eq!(
            file(&MAILCHIMP.replace(
                "LAST_CHANGED",
                "UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER"
            )),
            Some(MailchimpFile::Unsubscribed)
        );
        assert_eq!(
            file(&MAILCHIMP.replace("LAST_CHANGED", "CLEAN_TIME,CLEAN_CAMPAIGN_TITLE,CLEAN_CAMPAIGN_ID")),
            Some(MailchimpFile::Cleaned)
        );
    }

    #[test]
    fn a_row_keeps_the_original_text_of_the_columns_read_and_no_others() {
        let layout = layout(ImportFormat::Mailchimp, &headers(MAILCHIMP), &[]).unwrap();
        let cells = "anna@example.com,Anna,Schmidt,4,2021-03-04 08:12:55,203.0.113.7,2021-03-04 08:14:02,203.0.113.7,52.52,13.40,1,2,Europe/Berlin,DE,BE,2024-02-11 19:40:03,1,8f,call her,Berlin";
        let row = layout.read(cells.split(','));
        assert_eq!(row.get(Field::Email), Some("anna@example.com"));
        assert_eq!(row.get(Field::UnsubscribedAt), None);
        let kept: Vec<&str> = row.original.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(
            kept,
            ["Email Address", "First Name", "Last Name", "OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP"]
        );
    }

    #[test]
    fn columns_map_other_headers_and_a_missing_one_is_named() {
        let h = headers("E-Mail,Vorname,Anmeldung,Bestätigt");
        let mapped =
            layout(ImportFormat::Csv, &h, &[(Field::Email, "E-Mail".into()), (Field::ConfirmedAt, "Bestätigt".into())])
                .unwrap();
        assert!(mapped.has(Field::ConfirmedAt));
        let missing = layout(ImportFormat::Csv, &h, &[(Field::Email, "Mail".into())]).unwrap_err();
        assert!(missing.contains("no column \"Mail\""), "{missing}");
        let plain =
            layout(ImportFormat::Listmonk, &headers("uuid,email,name,attributes,status,created_at,updated_at"), &[])
                .unwrap_err();
        assert!(plain.contains("docs/import.md"), "{plain}");
    }
}
