//! Confirmation mails: rendering, composition, delivery.
//!
//! A mail is built in two steps so it can be rebuilt byte for byte years
//! later without keeping a copy per subscriber:
//!
//! 1. [`render`] turns a list's settings into a [`RenderingRow`]: headers and
//!    both bodies (askama templates in `templates/mail/`) with placeholders
//!    where per-recipient values go. It is stored once, keyed by its SHA-256.
//! 2. [`compose`] fills in the per-recipient values kept on the outbox row
//!    (address, link, Message-ID, Date) and encodes the MIME message.
//!    It is deterministic: the same inputs give the same bytes, and
//!    [`FORMAT`] is bumped if its output ever changes.
//!
//! Nothing typed into the form but the address reaches a mail: the name is
//! the subscriber's data, not the operator's text, and a bot could otherwise
//! mail "Hello <advert>" to anyone under the operator's DKIM signature.
//! Mails of format 1 (before 0.x) did greet by name; their renderings and
//! outbox rows keep the name so those mails still rebuild byte for byte,
//! and [`compose`] uses a stored name for those renderings only.
//!
//! [`outbox`] delivers composed mails, no more per hour than [`ceiling`] allows.

pub mod ceiling;
pub mod outbox;
pub mod smtp;

use askama::Template;
use base64::Engine as _;
use ring::digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::clock::{Timestamp, Zone};
use crate::config::{Config, Language, ListConfig, parse_mailbox};
use crate::domain::FormPage;
use crate::store::db::RenderingRow;

/// Version of [`compose`]'s output format. 2: no name anywhere in the mail.
/// 3: when and where the signup was made, the imprint and the privacy notice.
pub const FORMAT: i64 = 3;
/// The last format that put the recipient's name into `To:` and the
/// greeting; kept so mails sent in it can still be rebuilt.
const LAST_FORMAT_WITH_NAME: i64 = 1;

/// Where format-1 renderings greeted the recipient by name. New renderings
/// never contain it; it is still filled in when an old mail is rebuilt.
const NAME: &str = "%%LISTGATE_NAME%%";
const EMAIL: &str = "%%LISTGATE_EMAIL%%";
const LINK: &str = "%%LISTGATE_LINK%%";
/// When the signup was made, in the list's language and zone (format 3 on).
const WHEN: &str = "%%LISTGATE_WHEN%%";
/// Where the signup was made: the form's page, or that none was named.
const WHERE: &str = "%%LISTGATE_WHERE%%";

#[derive(Template)]
#[template(path = "mail/confirm.txt")]
struct ConfirmText<'a> {
    de: bool,
    list_name: &'a str,
    consent_text: &'a str,
    email: &'a str,
    link: &'a str,
    when: &'a str,
    source: &'a str,
    confirm_days: u64,
    purge_days: u64,
    imprint_lines: Vec<&'a str>,
    privacy_url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/confirm.html")]
struct ConfirmHtml<'a> {
    de: bool,
    list_name: &'a str,
    consent_text: &'a str,
    email: &'a str,
    link: &'a str,
    when: &'a str,
    source: &'a str,
    confirm_days: u64,
    purge_days: u64,
    imprint_lines: Vec<&'a str>,
    privacy_url: Option<&'a str>,
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

/// Renders a list's confirmation mail with placeholders; returns it with its hash.
pub fn render(config: &Config, list: &ListConfig) -> Result<(String, RenderingRow), String> {
    let from = parse_mailbox(list.from_mailbox(config))?;
    let reply_to = list.reply_to.as_deref().map(parse_mailbox).transpose()?;
    let de = list.language == Language::De;
    let days = |span: crate::config::Span| span.approx().as_secs().div_ceil(86_400);
    let (confirm_days, purge_days) = (days(config.tokens.confirm_ttl), days(config.retention.unconfirmed));
    let text = ConfirmText {
        de,
        list_name: &list.name,
        consent_text: &list.consent_text,
        email: EMAIL,
        link: LINK,
        when: WHEN,
        source: WHERE,
        confirm_days,
        purge_days,
        imprint_lines: list.imprint_lines(),
        privacy_url: list.privacy_url.as_ref().map(url::Url::as_str),
    };
    let html = ConfirmHtml {
        de,
        list_name: &list.name,
        consent_text: &list.consent_text,
        email: EMAIL,
        link: LINK,
        when: WHEN,
        source: WHERE,
        confirm_days,
        purge_days,
        imprint_lines: list.imprint_lines(),
        privacy_url: list.privacy_url.as_ref().map(url::Url::as_str),
    };
    let subject = if de {
        format!("Bitte bestätigen Sie Ihr Abonnement: {}", list.name)
    } else {
        format!("Please confirm your subscription: {}", list.name)
    };
    let row = RenderingRow {
        format: FORMAT,
        sender: from.email.to_string(),
        from_header: mailbox_header(from.name.as_deref(), from.email.as_ref()),
        reply_to: reply_to.map(|m| mailbox_header(m.name.as_deref(), m.email.as_ref())),
        subject: encode_unstructured(&subject),
        text_body: text.render().map_err(|e| format!("mail template: {e}"))?,
        html_body: html.render().map_err(|e| format!("mail template: {e}"))?,
    };
    let canonical = serde_json::to_vec(&(
        row.format,
        &row.sender,
        &row.from_header,
        &row.reply_to,
        &row.subject,
        &row.text_body,
        &row.html_body,
    ))
    .expect("strings serialize");
    Ok((sha256_hex(&canonical), row))
}

/// When a signup was made, as its confirmation mail states it: the
/// wall-clock time in the list's zone, in the list's language, naming the
/// zone and its offset so nobody has to guess.
pub fn consent_when(at: Timestamp, zone: &Zone, language: Language) -> String {
    const MONTHS_EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const MONTHS_DE: [&str; 12] = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ];
    let t = zone.wall_time(at);
    let clock = format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
    let label = if zone.is_utc() {
        "UTC".to_string()
    } else {
        let (sign, offset) = if t.offset_seconds < 0 { ('-', -t.offset_seconds) } else { ('+', t.offset_seconds) };
        format!("{}, UTC{sign}{:02}:{:02}", zone.name(), offset / 3600, offset % 3600 / 60)
    };
    let month = usize::from(t.month - 1);
    match language {
        Language::De => format!("{}. {} {} um {clock} Uhr ({label})", t.day, MONTHS_DE[month], t.year),
        Language::En => format!("{} {} {} at {clock} ({label})", t.day, MONTHS_EN[month], t.year),
    }
}

/// Where a signup was made, as its confirmation mail states it: on the
/// form's page as the browser named it, or through a form whose page the
/// browser did not name.
pub fn consent_where(page: Option<&FormPage>, language: Language) -> String {
    match (page, language) {
        (Some(page), Language::De) => format!("auf der Seite {}", page.as_str()),
        (Some(page), Language::En) => format!("on the page {}", page.as_str()),
        (None, Language::De) => "über ein Anmeldeformular, dessen Seite der Browser nicht genannt hat".into(),
        (None, Language::En) => "through a signup form whose page the browser did not name".into(),
    }
}

/// The per-recipient values of one mail, as kept on its outbox row.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub email: &'a str,
    /// Only mails of format 1 carried a name; new outbox rows store none,
    /// and [`compose`] ignores one for any later format.
    pub name: Option<&'a str>,
    pub link: &'a str,
    pub message_id: &'a str,
    pub date_header: &'a str,
    /// When and where the signup was made (format 3 on; empty for older mails,
    /// whose renderings have no place for them).
    pub consent_when: &'a str,
    pub consent_where: &'a str,
}

/// Builds the exact message bytes (CRLF line ends) from a rendering and one
/// recipient's values.
pub fn compose(r: &RenderingRow, to: &Recipient<'_>) -> Vec<u8> {
    // Even a name that reaches this far (an old row, a future bug) stays out
    // of every mail whose rendering is not format 1.
    let name = to.name.filter(|_| r.format <= LAST_FORMAT_WITH_NAME);
    let name_part = name.map(|n| format!(" {n}")).unwrap_or_default();
    let values = [
        (NAME, name_part.as_str()),
        (EMAIL, to.email),
        (LINK, to.link),
        (WHEN, to.consent_when),
        (WHERE, to.consent_where),
    ];
    let text = fill_placeholders(&r.text_body, &values, |s| s.to_string());
    let html = fill_placeholders(&r.html_body, &values, html_escape);
    let boundary = format!("=_lg_{}", &sha256_hex(to.message_id.as_bytes())[..24]);

    let mut m = String::with_capacity(text.len() + html.len() + 1024);
    let mut header = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(value);
        m.push_str("\r\n");
    };
    header("Date", to.date_header);
    header("From", &r.from_header);
    if let Some(reply_to) = &r.reply_to {
        header("Reply-To", reply_to);
    }
    header("To", &mailbox_header(name, to.email));
    header("Subject", &r.subject);
    header("Message-ID", to.message_id);
    header("Auto-Submitted", "auto-generated");
    header("MIME-Version", "1.0");
    header("Content-Type", &format!("multipart/alternative; boundary=\"{boundary}\""));
    m.push_str("\r\n");
    for (content_type, body) in [("text/plain", &text), ("text/html", &html)] {
        m.push_str(&format!("--{boundary}\r\nContent-Type: {content_type}; charset=utf-8\r\n"));
        m.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        m.push_str(&quoted_printable(body));
        m.push_str("\r\n");
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

/// Replaces placeholders in one pass, so a value that happens to contain a
/// placeholder (a name like `%%LISTGATE_LINK%%`) is never expanded itself.
fn fill_placeholders(body: &str, values: &[(&str, &str)], escape: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(body.len() + 256);
    let mut rest = body;
    while let Some(start) = rest.find("%%LISTGATE_") {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        match values.iter().find(|(placeholder, _)| rest.starts_with(placeholder)) {
            Some((placeholder, value)) => {
                out.push_str(&escape(value));
                rest = &rest[placeholder.len()..];
            }
            None => {
                out.push('%');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rebuilds the exact bytes of a queued or sent mail from what is stored:
/// its rendering and its per-recipient values. `None` if the mail or its
/// rendering is gone (erased).
pub fn rebuild(conn: &dyn crate::store::db::Db, outbox_id: i64) -> crate::store::Result<Option<Vec<u8>>> {
    let Some(mail) = conn.select_outbox_mail(outbox_id)? else { return Ok(None) };
    let Some(rendering) = conn.select_rendering(&mail.rendering_sha256)? else {
        return Ok(None);
    };
    Ok(Some(compose(
        &rendering,
        &Recipient {
            email: &mail.to_email,
            name: mail.to_name.as_deref(),
            link: &mail.link,
            message_id: &mail.message_id,
            date_header: &mail.date_header,
            consent_when: mail.consent_when.as_deref().unwrap_or_default(),
            consent_where: mail.consent_where.as_deref().unwrap_or_default(),
        },
    )))
}

/// A new Message-ID, `<random@domain-of-sender>`.
pub fn new_message_id(sender: &str) -> String {
    let domain = sender.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut random = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).expect("system random source");
    format!("<{}@{domain}>", hex::encode(random))
}

/// The `Date` header value for `t`.
pub fn date_header(t: OffsetDateTime) -> String {
    t.format(&Rfc2822).expect("UTC times format as RFC 2822")
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `Name <addr>` with the name as plain text when it is safe to, else as
/// RFC 2047 encoded words. Names never reach a header unencoded if they hold
/// anything but letters, digits and spaces, so no input can add a header.
pub fn mailbox_header(name: Option<&str>, address: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => address.to_string(),
        Some(name) => {
            let plain = name.len() <= 60 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ');
            let phrase = if plain { name.to_string() } else { encoded_words(name) };
            format!("{phrase} <{address}>")
        }
    }
}

/// An unstructured header value (Subject), encoded when not plain ASCII.
fn encode_unstructured(text: &str) -> String {
    if text.len() <= 60 && text.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        text.to_string()
    } else {
        encoded_words(text)
    }
}

/// RFC 2047 "B" encoded words of at most 75 characters, folded onto
/// continuation lines; a character is never split across words.
fn encoded_words(text: &str) -> String {
    // Base64 of 39 bytes is 52 characters; with `=?utf-8?b?` and `?=` a word is
    // 64, so even after `Reply-To: ` the line stays within 78.
    const MAX_BYTES: usize = 39;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > MAX_BYTES {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(w)))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Quoted-printable (RFC 2045) with CRLF line ends and lines of at most 76
/// characters. `From ` at a line start is encoded so no mailbox format mangles it.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let mut column = 0;
        for (j, &b) in line.iter().enumerate() {
            let at_end = j + 1 == line.len();
            let from_line = j == 0 && line.starts_with(b"From ");
            let literal = (b.is_ascii_graphic() && b != b'=' && !from_line) || (b == b' ' && !at_end);
            let width = if literal { 1 } else { 3 };
            // Keep room for the soft break's `=` unless this is the line's last piece.
            let limit = if at_end { 76 } else { 75 };
            if column + width > limit {
                out.push_str("=\r\n");
                column = 0;
            }
            if literal {
                out.push(b as char);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend(['=', char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 15)])]);
            }
            column += width;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendering(language: Language) -> RenderingRow {
        let mut config = Config::default();
        config.lists[0].language = language;
        config.lists[0].name = "Grüße & Neuigkeiten".into();
        render(&config, &config.lists[0]).unwrap().1
    }

    fn recipient<'a>(name: Option<&'a str>) -> Recipient<'a> {
        Recipient {
            email: "anna@example.org",
            name,
            link: "http://127.0.0.1:8080/confirm?token=abc.def&x=1",
            message_id: "<0011@localhost>",
            date_header: "Sun, 22 Nov 2026 07:24:59 +0000",
            consent_when: "22 November 2026 at 07:24:59 (UTC)",
            consent_where: "on the page https://www.example.org/news",
        }
    }

    #[test]
    fn composing_twice_gives_identical_bytes() {
        let r = rendering(Language::De);
        let to = recipient(Some("Jürgen"));
        assert_eq!(compose(&r, &to), compose(&r, &to));
    }

    #[test]
    fn the_message_has_the_required_headers_and_short_lines() {
        let r = rendering(Language::En);
        let bytes = compose(&r, &recipient(Some("Anna")));
        let text = String::from_utf8(bytes).unwrap();
        for header in [
            "Date: ",
            "From: Newsletter <newsletter@localhost>",
            "To: anna@example.org\r\n",
            "Message-ID: <0011@localhost>",
            "Auto-Submitted: auto-generated",
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative;",
        ] {
            assert!(text.contains(&format!("\r\n{header}")) || text.starts_with(header), "missing {header}");
        }
        let long: Vec<_> = text.lines().filter(|l| l.len() > 78).collect();
        assert!(long.is_empty(), "lines too long: {long:?}");
        assert!(text.is_ascii());
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        assert!(text.contains("text/plain") && text.contains("text/html"));
    }

    #[test]
    fn a_name_passed_to_a_new_mail_appears_nowhere_in_it() {
        for language in [Language::En, Language::De] {
            let r = rendering(language);
            assert!(!r.text_body.contains(NAME) && !r.html_body.contains(NAME), "no name slot in the templates");
            let hostile = "Cheap pills at spam-shop.example\r\nBcc: victim@example.org";
            let bytes = compose(&r, &recipient(Some(hostile)));
            assert_eq!(bytes, compose(&r, &recipient(None)), "the name changes no byte");
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.contains("\r\nTo: anna@example.org\r\n"), "To is the bare address");
            assert!(!text.contains("spam-shop") && !text.contains("Bcc:") && !text.contains("=?utf-8?b?Q2hlYXA"));
        }
    }

    /// A mail of format 1 greeted its recipient by name; what is stored of
    /// it (taken from a listgate of that format) must still rebuild to the
    /// bytes whose hash was recorded when it was sent.
    #[test]
    fn an_old_mail_that_greeted_by_name_still_rebuilds_byte_for_byte() {
        let stored: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/mail-format1-with-name.json")).unwrap();
        let text = |key: &str| stored[key].as_str().unwrap().to_string();
        let r = RenderingRow {
            format: stored["format"].as_i64().unwrap(),
            sender: text("sender"),
            from_header: text("from_header"),
            reply_to: stored["reply_to"].as_str().map(str::to_string),
            subject: text("subject"),
            text_body: text("text_body"),
            html_body: text("html_body"),
        };
        assert_eq!(r.format, 1);
        let (name, link, message_id, date_header) =
            (text("to_name"), text("link"), text("message_id"), text("date_header"));
        let to = Recipient {
            email: &text("to_email"),
            name: Some(&name),
            link: &link,
            message_id: &message_id,
            date_header: &date_header,
            consent_when: "",
            consent_where: "",
        };
        let bytes = compose(&r, &to);
        assert_eq!(sha256_hex(&bytes), text("message_sha256"));
        assert!(String::from_utf8(bytes).unwrap().contains("Hallo Anna M=C3=BCller <script>,"));
    }

    #[test]
    fn quoted_printable_round_trips_through_a_decoder() {
        let input = "Grüße, \"Anna\" = 100%\nFrom here on a very long line that goes on and on and on and on and on and on and ends  \nend";
        let encoded = quoted_printable(input);
        assert!(encoded.lines().all(|l| l.len() <= 76));
        // Decode: drop soft breaks, then =XX escapes.
        let joined = encoded.replace("=\r\n", "");
        let mut out = Vec::new();
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        assert_eq!(String::from_utf8(out).unwrap().replace("\r\n", "\n"), input);
    }
}
