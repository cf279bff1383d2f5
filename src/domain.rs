//! Parsed input types: "parse, don't validate". A value of these types has
//! passed every check, so code past the HTTP edge never sees a raw address.

use std::fmt;
use std::str::FromStr;

use crate::config::Language;

/// The most characters an address may have (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// The most characters a name may have.
pub const MAX_NAME_CHARS: usize = 100;

/// What is wrong with a request's input; shown to the user in the list's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    EmailMissing,
    EmailTooLong,
    EmailInvalid,
    NameTooLong,
    NameInvalid,
    ListMissing,
    BodyInvalid,
}

impl InputError {
    /// The form field the problem is in, for JSON callers.
    pub fn field(self) -> &'static str {
        match self {
            InputError::EmailMissing | InputError::EmailTooLong | InputError::EmailInvalid => "email",
            InputError::NameTooLong | InputError::NameInvalid => "name",
            InputError::ListMissing => "list",
            InputError::BodyInvalid => "body",
        }
    }

    pub fn message(self, language: Language) -> &'static str {
        use InputError::*;
        match (language, self) {
            (Language::En, EmailMissing) => "Please enter your email address.",
            (Language::En, EmailTooLong) => "This email address is too long (at most 254 characters).",
            (Language::En, EmailInvalid) => "This does not look like an email address.",
            (Language::En, NameTooLong) => "The name is too long (at most 100 characters).",
            (Language::En, NameInvalid) => "The name contains characters that are not allowed.",
            (Language::En, ListMissing) => "Please say which list to subscribe to.",
            (Language::En, BodyInvalid) => "The form could not be read.",
            (Language::De, EmailMissing) => "Bitte geben Sie Ihre E-Mail-Adresse ein.",
            (Language::De, EmailTooLong) => "Diese E-Mail-Adresse ist zu lang (höchstens 254 Zeichen).",
            (Language::De, EmailInvalid) => "Das sieht nicht nach einer E-Mail-Adresse aus.",
            (Language::De, NameTooLong) => "Der Name ist zu lang (höchstens 100 Zeichen).",
            (Language::De, NameInvalid) => "Der Name enthält unzulässige Zeichen.",
            (Language::De, ListMissing) => "Bitte geben Sie an, welche Liste Sie abonnieren möchten.",
            (Language::De, BodyInvalid) => "Das Formular konnte nicht gelesen werden.",
        }
    }
}

/// Where a subscription stands. Its text (stored, exported, shown) lives in
/// `store::codes`, the one place these spellings exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Signed up, not yet confirmed.
    Pending,
    /// Confirmed by the button behind the mailed link: a subscriber.
    Confirmed,
    /// Left; kept only as proof.
    Unsubscribed,
}

/// How an unsubscribe arrived; recorded as proof (text in `store::codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnsubscribeMethod {
    /// RFC 8058 one-click POST from a mail client.
    OneClick,
    /// The button on listgate's page.
    Page,
    /// The operator (CLI).
    Admin,
}

/// What a webhook call reports, in its `event` field and `X-Listgate-Event`
/// header (text in `store::codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    Confirmed,
    Unsubscribed,
}

/// How strong the evidence of a subscription's consent is, as the export's
/// `evidence` column says (text in `store::codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// Signup and confirmation, each with time and IP: every confirmation
    /// listgate itself took.
    DoubleOptIn,
    /// A confirmation time, but not the whole double opt-in (an import of
    /// a single opt-in, an API add, a row without IPs).
    ConfirmationOnly,
    /// No confirmation (a pending signup).
    None,
}

/// The file formats `listgate import` reads (text in `store::codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ImportFormat {
    // No `///` here: clap would list them in `--help` (see `StatusFilter`).
    // Mailchimp's audience export (subscribed, unsubscribed or cleaned CSV).
    Mailchimp,
    // listmonk's subscriber export CSV.
    Listmonk,
    // listgate's own `export` (CSV or JSON lines).
    Listgate,
    // A CSV with listgate's column names, or others mapped with `--column`.
    Csv,
}

/// A syntactically valid address that the mail library can deliver to.
/// Keeps the address as entered and a lowercase key for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    original: String,
    ascii: String,
    key: EmailKey,
}

impl Email {
    pub fn parse(input: &str) -> Result<Email, InputError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(InputError::EmailMissing);
        }
        if text.chars().count() > MAX_EMAIL_CHARS {
            return Err(InputError::EmailTooLong);
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InputError::EmailInvalid);
        }
        // IDN domains (bücher.de) are kept as entered for display and
        // delivered to in their ASCII form (xn--bcher-kva.de); both spellings
        // are one person. Local parts must be ASCII: few mail servers accept
        // anything else (SMTPUTF8).
        let (local, domain) = text.rsplit_once('@').ok_or(InputError::EmailInvalid)?;
        if !local.is_ascii() {
            return Err(InputError::EmailInvalid);
        }
        let ascii_domain = idna::domain_to_ascii(domain).map_err(|_| InputError::EmailInvalid)?;
        if !is_hostname(&ascii_domain) {
            return Err(InputError::EmailInvalid);
        }
        let ascii = format!("{local}@{ascii_domain}");
        // Punycode is longer than the Unicode it encodes: the limit holds for
        // what goes over the wire.
        if ascii.len() > MAX_EMAIL_CHARS {
            return Err(InputError::EmailTooLong);
        }
        let options =
            email_address::Options::default().without_display_text().without_domain_literal().with_required_tld();
        email_address::EmailAddress::parse_with_options(&ascii, options).map_err(|_| InputError::EmailInvalid)?;
        // What we cannot hand to the SMTP envelope we must not accept.
        lettre::Address::from_str(&ascii).map_err(|_| InputError::EmailInvalid)?;
        let key = EmailKey::from_parts(local, &ascii_domain);
        Ok(Email { original: text.to_string(), ascii, key })
    }

    /// The form mail is delivered to: the domain in ASCII (punycode).
    pub fn ascii(&self) -> &str {
        &self.ascii
    }

    /// The address as the person entered it.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The address's identity: every spelling of it has this one key.
    pub fn key(&self) -> &EmailKey {
        &self.key
    }

    /// `a***@e***.org`: enough for a log line, not enough to identify anyone.
    pub fn masked(&self) -> String {
        mask_address(&self.original)
    }
}

/// The one identity of an address, for every lookup, comparison, limit and
/// hash: the local part in lowercase, `@`, the domain in lowercase ASCII
/// (punycode). `Anna@Bücher.de`, `ANNA@BÜCHER.DE` and
/// `anna@xn--bcher-kva.de` are one person with one key.
///
/// Two constructors, both through `from_parts`: `Email::key` for parsed
/// input, `EmailKey::lenient` for what an operator types. A second way of
/// deriving a key once let a Unicode domain pass signup but not `erase`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailKey(String);

impl EmailKey {
    /// `ascii_domain` is what `idna::domain_to_ascii` returned: already lowercase.
    fn from_parts(local: &str, ascii_domain: &str) -> EmailKey {
        EmailKey(format!("{}@{ascii_domain}", local.to_lowercase()))
    }

    /// The key of an address typed by an operator, or stored as entered.
    /// Lenient on purpose (no syntax check): the operator must be able to
    /// find, show and erase whatever was stored. Case, a Unicode or punycode
    /// domain and surrounding space make no difference.
    pub fn lenient(input: &str) -> EmailKey {
        let text = input.trim();
        let key = text
            .rsplit_once('@')
            .and_then(|(local, domain)| Some(EmailKey::from_parts(local, &idna::domain_to_ascii(domain).ok()?)));
        // Not an address listgate could have stored: a key nothing matches.
        key.unwrap_or_else(|| EmailKey(text.to_lowercase()))
    }

    /// The full key: never for a log line (`masked` is).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a***@e***.org`, for log lines.
    pub fn masked(&self) -> String {
        mask_address(&self.0)
    }

    /// The inbox this address delivers to, for the daily mail cap: a
    /// `+tag` is cut from the local part, and at Gmail, which ignores dots,
    /// the dots go too (`googlemail.com` is `gmail.com`). So
    /// `anna+1@example.org` and `anna+2@example.org` share one cap, as do
    /// `a.n.n.a@gmail.com` and `anna@googlemail.com`: the form cannot be
    /// used to bomb one inbox under many spellings.
    pub fn inbox(&self) -> InboxKey {
        let Some((local, domain)) = self.0.rsplit_once('@') else {
            return InboxKey(self.0.clone());
        };
        // `+news@…` has no base to fold to: it stays an inbox of its own.
        let local = local.split_once('+').filter(|(base, _)| !base.is_empty()).map_or(local, |(base, _tag)| base);
        let (local, domain) = match domain {
            "gmail.com" | "googlemail.com" => (local.replace('.', ""), "gmail.com"),
            _ => (local.to_string(), domain),
        };
        InboxKey(format!("{local}@{domain}"))
    }
}

/// The inbox an address delivers to (`EmailKey::inbox`): what the daily
/// mail cap counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboxKey(String);

impl InboxKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A DNS host name in ASCII: labels of letters, digits and inner hyphens,
/// 1-63 characters each, at least two labels, a top-level label that is not
/// all digits.
fn is_hostname(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && !labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Masks an address for logs: `anna@buecher.de` is `a***@b***.de`. The
/// domain is masked too (a personal domain names its owner as well as the
/// address does); only its last label is kept, so `co.uk` shows as `.uk`,
/// which says little about anyone. Works on whatever text it gets (Unicode
/// or punycode domains, no dot, no local part) without panicking.
pub fn mask_address(address: &str) -> String {
    let first = |part: &str| part.chars().next().unwrap_or('*');
    match address.rsplit_once('@') {
        // An address literal (`[192.0.2.1]`) keeps nothing: its "last label" is part of an IP.
        Some((local, domain)) if domain.starts_with('[') => format!("{}***@[***]", first(local)),
        Some((local, domain)) => match domain.rsplit_once('.') {
            Some((_, top)) if !top.is_empty() => format!("{}***@{}***.{top}", first(local), first(domain)),
            _ => format!("{}***@{}***", first(local), first(domain)),
        },
        None => "***".into(),
    }
}

/// `text` with every address in it masked as `mask_address` does: mail
/// servers quote recipients (and aliases or forward targets) in their
/// replies, and those replies go into log lines. An address here is a run of
/// characters around an `@`, up to whitespace or `<>()[],;:"'`, with
/// something on both sides.
pub fn mask_addresses(text: &str) -> String {
    let is_edge = |c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let start = rest[..at].rfind(is_edge).map_or(0, |i| i + rest[i..].chars().next().map_or(1, char::len_utf8));
        let end = rest[at + 1..].find(is_edge).map_or(rest.len(), |i| at + 1 + i);
        out.push_str(&rest[..start]);
        if start < at && at + 1 < end {
            out.push_str(&mask_address(&rest[start..end]));
        } else {
            out.push_str(&rest[start..end]); // a lone `@` is no address
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// An optional display name: trimmed, at most 100 characters, no control or
/// line-separator characters (so it can never break a mail header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// `None` for an absent or blank name.
    pub fn parse(input: Option<&str>) -> Result<Option<Name>, InputError> {
        let Some(text) = input.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if text.chars().count() > MAX_NAME_CHARS {
            return Err(InputError::NameTooLong);
        }
        if text.chars().any(forbidden_in_text) {
            return Err(InputError::NameInvalid);
        }
        Ok(Some(Name(text.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters no stored line of text may hold: control characters, line
/// separators and the bidirectional overrides that make a terminal or a
/// page show other text than is stored.
fn forbidden_in_text(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Why a legal hold is placed (`listgate hold EMAIL --reason`): the dispute
/// it keeps the record for, e.g. "Abmahnung Kanzlei X, Az. 12/26". Trimmed,
/// not empty, at most [`HoldReason::MAX_CHARS`] characters on one line, so
/// it prints as one line in `show` and cannot hide text on a terminal. It
/// is stored in the hold and in its proof event, which erasure blanks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldReason(String);

impl HoldReason {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(input: &str) -> Result<HoldReason, String> {
        let text = input.trim();
        if text.is_empty() {
            return Err("the reason is empty: say which dispute the hold is for".into());
        }
        let chars = text.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(format!("the reason is too long ({chars} characters, at most {})", Self::MAX_CHARS));
        }
        if text.chars().any(forbidden_in_text) {
            return Err("the reason contains control or line-break characters: write it on one line".into());
        }
        Ok(HoldReason(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The page a signup form was on, as the browser named it: the origin and
/// path from `Referer`, or the origin alone from `Origin`; never a query, a
/// fragment or credentials, which can carry personal data. What the browser
/// said, recorded as evidence: a script can send any header, as it can send
/// any IP but its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPage(String);

impl FormPage {
    /// Longer pages are cut back to their origin: a path this long is not a
    /// form's page anyone would recognise, and the column stays small.
    const MAX_CHARS: usize = 500;

    /// The page from a request's `Origin` and `Referer` headers. A `Referer`
    /// from another origin than `Origin` names a page that did not post the
    /// form, so only the origin is kept. `None` when neither names a web
    /// origin (`Origin: null` is what a page with `no-referrer` sends).
    pub fn from_headers(origin: Option<&str>, referer: Option<&str>) -> Option<FormPage> {
        let web = |text: &str| {
            url::Url::parse(text.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        };
        let origin = origin.and_then(web).map(|u| u.origin().ascii_serialization());
        match (origin, referer.and_then(web)) {
            (Some(origin), Some(referer)) if referer.origin().ascii_serialization() != origin => Some(FormPage(origin)),
            (_, Some(referer)) => Some(FormPage::of_url(&referer)),
            (Some(origin), None) => Some(FormPage(origin)),
            (None, None) => None,
        }
    }

    /// Origin and path of a URL (listgate's own form page, when the signup
    /// carried that form's token and the browser named no page).
    pub fn of_url(url: &url::Url) -> FormPage {
        let origin = url.origin().ascii_serialization();
        let page = format!("{origin}{}", url.path());
        if page.chars().count() > FormPage::MAX_CHARS { FormPage(origin) } else { FormPage(page) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key it is stored under, as consent texts are: hex SHA-256.
    pub fn sha256(&self) -> String {
        crate::mail::sha256_hex(self.0.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_reason_is_one_trimmed_line_of_at_most_500_characters() {
        assert_eq!(HoldReason::parse("  Abmahnung, Az. 12/26 ").unwrap().as_str(), "Abmahnung, Az. 12/26");
        assert!(HoldReason::parse(&"ä".repeat(500)).is_ok());
        for bad in ["", "   ", "two\nlines", "tab\there", "hidden \u{202E}txet", &"x".repeat(501)] {
            assert!(HoldReason::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_form_page_is_origin_and_path_only_and_a_mismatched_referer_gives_the_origin() {
        let page = |o: Option<&str>, r: Option<&str>| FormPage::from_headers(o, r).map(|p| p.as_str().to_string());
        let blog = Some("https://www.example.org/blog/newsletter".to_string());
        assert_eq!(page(None, Some("https://www.example.org/blog/newsletter?utm=x&email=a@b.c#top")), blog);
        assert_eq!(
            page(Some("https://www.example.org"), Some("https://user:pw@www.example.org/blog/newsletter")),
            blog
        );
        assert_eq!(page(Some("https://www.example.org"), None), Some("https://www.example.org".into()));
        assert_eq!(
            page(Some("https://www.example.org"), Some("https://evil.example/x")),
            Some("https://www.example.org".into())
        );
        // Unicode hosts and paths have one spelling: punycode, percent-encoded.
        assert_eq!(
            page(None, Some("https://BÜCHER.example/Anmeldung/ö")),
            Some("https://xn--bcher-kva.example/Anmeldung/%C3%B6".into())
        );
        assert_eq!(page(Some("http://[::1]:8080"), None), Some("http://[::1]:8080".into()));
        for nothing in
            [(Some("null"), None), (None, Some("about:blank")), (Some("file:///x"), Some("javascript:1")), (None, None)]
        {
            assert_eq!(page(nothing.0, nothing.1), None, "{nothing:?}");
        }
        let long = format!("https://www.example.org/{}", "a".repeat(600));
        assert_eq!(page(None, Some(&long)), Some("https://www.example.org".into()));
    }

    #[test]
    fn every_address_in_a_server_reply_is_masked_and_everything_else_is_kept() {
        let reply =
            "550 5.1.1 <Anna@Example.org>: Recipient address rejected; forwarded to bob.b@gmail.com, \"x@y.de\"";
        assert_eq!(
            mask_addresses(reply),
            "550 5.1.1 <A***@E***.org>: Recipient address rejected; forwarded to b***@g***.com, \"x***@y***.de\""
        );
        assert_eq!(mask_addresses("250 2.0.0 Ok: queued as 4Xy"), "250 2.0.0 Ok: queued as 4Xy");
        assert_eq!(mask_addresses("ä anna@example.org ü"), "ä a***@e***.org ü");
        assert_eq!(mask_addresses("a lone @ sign, me@ and @you"), "a lone @ sign, me@ and @you");
        assert_eq!(mask_addresses(""), "");
    }

    #[test]
    fn addresses_are_trimmed_checked_and_folded_for_comparison() {
        let e = Email::parse("  Anna.Muster@Example.ORG ").unwrap();
        assert_eq!(e.as_str(), "Anna.Muster@Example.ORG");
        assert_eq!(e.key().as_str(), "anna.muster@example.org");
        assert_eq!(e.masked(), "A***@E***.ORG");
        assert_eq!(Email::parse(""), Err(InputError::EmailMissing));
        assert_eq!(Email::parse("   "), Err(InputError::EmailMissing));
        for bad in [
            "anna",
            "anna@",
            "@example.org",
            "anna@example",
            "a b@example.org",
            "anna@[127.0.0.1]",
            "a@exa/mple.org",
            "a@-example.org",
            "a@example.123",
            "a@example..org",
            "a@exa_mple.org",
            "Anna <anna@example.org>",
            "anna@example.org\r\nBcc: x@y.z",
            "anna@exa mple.org",
        ] {
            assert_eq!(Email::parse(bad), Err(InputError::EmailInvalid), "{bad:?}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(InputError::EmailTooLong));
    }

    #[test]
    fn idn_domains_are_delivered_in_ascii_and_compare_equal() {
        let unicode = Email::parse("Jörg@Bücher.DE").err();
        assert_eq!(unicode, Some(InputError::EmailInvalid), "non-ASCII local part");
        let e = Email::parse("joerg@Bücher.DE").unwrap();
        assert_eq!(e.as_str(), "joerg@Bücher.DE");
        assert_eq!(e.ascii(), "joerg@xn--bcher-kva.de");
        assert_eq!(e.key().as_str(), "joerg@xn--bcher-kva.de");
        assert_eq!(Email::parse("JOERG@xn--bcher-kva.de").unwrap().key(), e.key());
        // Found by the fuzzer: within the limit in Unicode, over it in punycode.
        let long_idn = format!("j@{}de", "äöüßéèêàâçñ.".repeat(13));
        assert!(long_idn.chars().count() <= MAX_EMAIL_CHARS);
        assert_eq!(Email::parse(&long_idn), Err(InputError::EmailTooLong));
    }

    #[test]
    fn every_spelling_an_operator_types_gives_the_key_of_the_parsed_address() {
        let parsed = Email::parse("Anna+News@Bücher.de").unwrap();
        for typed in [
            "anna+news@bücher.de",
            "ANNA+NEWS@BÜCHER.DE",
            "anna+news@xn--bcher-kva.de",
            "Anna+News@XN--BCHER-KVA.DE",
            "  anna+news@Bücher.de \n",
        ] {
            assert_eq!(&EmailKey::lenient(typed), parsed.key(), "{typed}");
        }
        let plain = Email::parse("Tom.Smith@Example.ORG").unwrap();
        assert_eq!(&EmailKey::lenient("tom.smith@example.org"), plain.key());
        // Nothing listgate stores, yet still a key (that finds nothing).
        assert_eq!(EmailKey::lenient("No Address").as_str(), "no address");
        assert_eq!(parsed.key().masked(), "a***@x***.de");
    }

    #[test]
    fn tags_and_gmail_dots_are_one_inbox_and_other_addresses_are_not() {
        let inbox = |a: &str| Email::parse(a).unwrap().key().inbox();
        assert_eq!(inbox("Anna+News@Example.org"), inbox("anna@example.org"));
        assert_eq!(inbox("anna+a+b@example.org").as_str(), "anna@example.org");
        assert_eq!(inbox("A.N.N.A+x@GMail.com"), inbox("anna@googlemail.com"));
        assert_eq!(inbox("anna@googlemail.com").as_str(), "anna@gmail.com");
        assert_ne!(inbox("a.nna@example.org"), inbox("anna@example.org"), "dots count outside Gmail");
        assert_ne!(inbox("anna@example.org"), inbox("anna@example.com"));
        assert_eq!(inbox("joerg+1@Bücher.de").as_str(), "joerg@xn--bcher-kva.de");
        assert_ne!(inbox("+a@example.org"), inbox("+b@example.org"), "no base: not folded together");
    }

    #[test]
    fn names_refuse_control_characters_and_length() {
        assert_eq!(Name::parse(None), Ok(None));
        assert_eq!(Name::parse(Some("  ")), Ok(None));
        assert_eq!(Name::parse(Some(" Jürgen Groß ")).unwrap().unwrap().as_str(), "Jürgen Groß");
        assert_eq!(Name::parse(Some("Eve\r\nBcc: victim@example.org")), Err(InputError::NameInvalid));
        assert_eq!(Name::parse(Some("Eve\u{2028}x")), Err(InputError::NameInvalid));
        assert_eq!(Name::parse(Some(&"x".repeat(101))), Err(InputError::NameTooLong));
        assert!(Name::parse(Some(&"ä".repeat(100))).is_ok());
    }

    #[test]
    fn a_masked_address_keeps_only_the_first_letters_and_the_top_level_label() {
        assert_eq!(mask_address("anna@buecher.de"), "a***@b***.de");
        assert_eq!(mask_address("john@mail.smith.co.uk"), "j***@m***.uk", "a personal domain under co.uk");
        assert_eq!(mask_address("Tom@Bücher.de"), "T***@B***.de", "Unicode as logged");
        assert_eq!(mask_address("tom@xn--bcher-kva.de"), "t***@x***.de", "punycode as logged");
        assert_eq!(mask_address("ö@ü.ä"), "ö***@ü***.ä");
        for odd in ["", "@", "a@", "@b", "a@b", "a@.", "a@b.", "a@.b", "a@@b..c", "no-at-sign", "@@@"] {
            assert!(mask_address(odd).contains("***"), "{odd:?} gave {:?}", mask_address(odd));
        }
        assert_eq!(mask_address("a@b"), "a***@b***", "no dot: no label kept");
        assert_eq!(mask_address("a@b."), "a***@b***");
        assert_eq!(mask_address("a@[192.0.2.1]"), "a***@[***]", "an address literal keeps nothing");
    }
}
