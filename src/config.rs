//! Typed settings: `listgate.toml` (optional) overlaid with `LISTGATE_SECTION__KEY`
//! environment variables, then validated.
//!
//! The key names are part of the contract (`DESIGN.md`, "Configuration"), so
//! unknown keys are errors: a typo must not silently fall back to a default.
//! Every error is one line that names the key and the problem.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::clock::Zone;
use ipnet::IpNet;
use lettre::message::Mailbox;
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

/// Everything listgate reads from configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub secrets: SecretsConfig,
    pub mail: MailConfig,
    pub tokens: TokensConfig,
    pub retention: RetentionConfig,
    pub limits: LimitsConfig,
    pub lists: Vec<ListConfig>,
    pub proof: ProofConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Public URL used in every link; no trailing slash after loading.
    pub base_url: Url,
    /// Peers whose `trusted_proxy_header` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The one header the trusted proxies write. Only it is read: a proxy
    /// that writes `Forwarded` but passes the client's own `X-Forwarded-For`
    /// on must not let the client pick the recorded IP.
    pub trusted_proxy_header: ProxyHeader,
    /// Where `GET /metrics` is served, on a listener of its own. None (the
    /// default): no metrics listener. Counters that move per request would
    /// tell anyone who can read them whether an address was new, pending or
    /// subscribed, so they are never on the public listener, and only where
    /// the operator says; two instances on one host then never collide.
    pub metrics_bind: Option<SocketAddr>,
    /// How long a client may take to send a request's headers, counted from
    /// the moment the server waits for them: a new connection, or the end of
    /// the previous response on a kept-alive one. Without it a client that
    /// never finishes its headers holds a socket forever (slowloris).
    pub header_timeout: Span,
    /// A connection on which no byte moves either way for this long is
    /// closed: a client that stops reading its response, or stops sending
    /// in mid-body, gives its socket back. Longer than any request takes.
    pub idle_timeout: Span,
    /// How long a request's whole body may take to arrive once its headers
    /// are in. Forms are a few KiB (`limits.body_bytes`), so this is generous.
    pub body_timeout: Span,
    /// Open connections served at once; more wait in the kernel's accept
    /// queue until one closes. Lowered at start to fit the file-descriptor
    /// limit with room left for SQLite, SMTP and webhooks, so a flood of
    /// sockets cannot starve the database of descriptors.
    pub max_connections: usize,
    /// After SIGTERM: how long in-flight requests may take to finish before
    /// the remaining connections are dropped. Shorter than Docker's 10 s
    /// grace, so the outbox and the database still close cleanly after it.
    pub shutdown_timeout: Span,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The SQLite file (the default); unused when `url` is set.
    pub path: PathBuf,
    /// `postgres://user:pass@host:5432/db?sslmode=require`: PostgreSQL,
    /// several nodes on one database, instead of the SQLite file.
    pub url: Option<String>,
    /// PEM certificates to trust for the database's TLS, beside the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Hard cap on the database size in pages of 4 KiB (0: no cap). Writes
    /// past it fail cleanly with 503, as on a full disk.
    pub max_pages: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    pub key_file: PathBuf,
    /// Key ring given inline (usually via `LISTGATE_SECRETS__KEY`); wins over `key_file`.
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// `file://DIR`, `smtp://…` or `smtps://…`.
    pub url: String,
    pub from: String,
    pub resend_interval: Span,
    /// First retry delay after a temporary failure; doubles up to `retry_max`.
    pub retry_base: Span,
    /// Longest wait between two attempts.
    pub retry_max: Span,
    /// A mail still failing this long after it was queued is marked failed.
    pub give_up_after: Span,
    /// Longest time one delivery attempt (connect to the server's final reply) may take.
    pub timeout: Span,
    /// A PEM root certificate to trust besides the public roots, for a
    /// relay whose certificate comes from a private CA.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    pub confirm_ttl: Span,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub unconfirmed: Span,
    pub after_unsubscribe: Span,
}

/// `[proof]`: what keeps the proof chain honest outside the database.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProofConfig {
    /// An RFC 3161 Time-Stamp Authority (`https://…`): the server anchors
    /// the chain's head there once a day, and `listgate anchor` on demand
    /// (src/anchor). None (the default): no anchors.
    pub tsa_url: Option<Url>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Signup requests per client IP, e.g. `"20/10m"`, or `"off"`. Also
    /// applied, multiplied, to the networks around it (IPv4 /24, IPv6 /56
    /// and /48; see `limits::IPV4_LEVELS`, `limits::IPV6_LEVELS`).
    pub signups_per_ip: RateSpec,
    /// Signup requests per address, from any IP.
    pub signups_per_address: RateSpec,
    /// Confirmation mails per address and day, over all lists.
    pub mails_per_address_per_day: u32,
    /// All confirmation mails per hour (a sliding hour): above it, mails
    /// wait in the outbox. A number, or `"off"`.
    pub mails_per_hour: MailCeiling,
    pub decline_block: Span,
    pub body_bytes: usize,
    /// Name of the form field that humans leave empty.
    pub honeypot_field: String,
    /// A form token younger than this was filled in by a machine.
    pub form_min_age: Span,
    /// A form token older than this is stale (a replayed page).
    pub form_max_age: Span,
}

/// `limits.mails_per_hour`: a ceiling on all confirmation mail, or `"off"`.
/// 0 is refused rather than read as "off" or as "send nothing": neither
/// reading is obvious, and "send nothing" would hold every signup's mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailCeiling {
    Off,
    PerHour(NonZeroU32),
}

impl fmt::Display for MailCeiling {
    /// As written in the config: `1000` or `off`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailCeiling::Off => f.write_str("off"),
            MailCeiling::PerHour(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for MailCeiling {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MailCeiling, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let bad = |shown: &dyn fmt::Display| {
            serde::de::Error::custom(format!("\"{shown}\" is not a number of mails of at least 1, or \"off\""))
        };
        match Raw::deserialize(d)? {
            Raw::Text(text) if text.trim() == "off" => Ok(MailCeiling::Off),
            Raw::Text(text) => text.trim().parse::<NonZeroU32>().map(MailCeiling::PerHour).map_err(|_| bad(&text)),
            Raw::Number(n) => {
                u32::try_from(n).ok().and_then(NonZeroU32::new).map(MailCeiling::PerHour).ok_or_else(|| bad(&n))
            }
        }
    }
}

/// A rate: `N/SPAN` (`"20/10m"`: 20 per 10 minutes, as a burst that refills
/// evenly) or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSpec {
    Off,
    Limit { count: u32, per: Span },
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<RateSpec, String> {
        let text = text.trim();
        if text == "off" {
            return Ok(RateSpec::Off);
        }
        let bad = || format!("\"{text}\" is not a rate like 20/10m, or off");
        let (count, per) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let per: Span = per.parse().map_err(|_| bad())?;
        if per.approx().is_zero() {
            return Err(bad());
        }
        Ok(RateSpec::Limit { count, per })
    }
}

impl fmt::Display for RateSpec {
    /// As written in the config: `20/10m` or `off`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateSpec::Off => f.write_str("off"),
            RateSpec::Limit { count, per } => write!(f, "{count}/{per}"),
        }
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RateSpec, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The header a trusted reverse proxy writes the client address into.
///
/// The default is `X-Forwarded-For`: it is what nginx, Caddy, Traefik and
/// HAProxy write, and what the deployment guide configures, so existing
/// deployments keep recording the right address. A proxy that writes only
/// `Forwarded` (RFC 7239) or only `X-Real-IP` must say so here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    XForwardedFor,
    Forwarded,
    XRealIp,
}

impl ProxyHeader {
    /// The header's name, lowercase, as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
            ProxyHeader::XRealIp => "x-real-ip",
        }
    }
}

impl FromStr for ProxyHeader {
    type Err = String;

    /// Header names are case-insensitive, so `X-Forwarded-For` is accepted too.
    fn from_str(text: &str) -> Result<ProxyHeader, String> {
        [ProxyHeader::XForwardedFor, ProxyHeader::Forwarded, ProxyHeader::XRealIp]
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("\"{text}\" is not one of x-forwarded-for, forwarded, x-real-ip"))
    }
}

impl<'de> Deserialize<'de> for ProxyHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ProxyHeader, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub language: Language,
    pub consent_text: String,
    pub from: Option<String>,
    pub reply_to: Option<String>,
    pub thanks_url: Option<Url>,
    pub confirmed_url: Option<Url>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Receives a signed JSON POST on every confirmation and unsubscribe.
    pub webhook_url: Option<Url>,
    /// The HMAC key for the webhook's `X-Listgate-Signature` (at least 16
    /// characters; the receiver checks the signature with it).
    pub webhook_secret: Option<String>,
    /// Only accept signups carrying a valid form token from listgate's own
    /// form page (for sites that link to or frame `/form`).
    #[serde(default)]
    pub require_form_token: bool,
    /// Who sends the list's mail (the German Impressum): name, address,
    /// register entry. Several lines; shown in every confirmation mail and
    /// at the foot of every page of the list.
    pub imprint: Option<String>,
    /// The privacy notice (GDPR Art. 13), linked from the form, the
    /// confirm and unsubscribe pages and the confirmation mail.
    pub privacy_url: Option<Url>,
    /// The zone in which the confirmation mail states when the signup was
    /// made; UTC unless set.
    #[serde(default)]
    pub time_zone: Zone,
}

/// Languages listgate speaks on pages and in mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    De,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".parse().expect("valid default"),
            base_url: Url::parse("http://127.0.0.1:8080").expect("valid default"),
            trusted_proxies: Vec::new(),
            trusted_proxy_header: ProxyHeader::XForwardedFor,
            metrics_bind: None,
            header_timeout: Span::seconds(10),
            idle_timeout: Span::seconds(60),
            body_timeout: Span::seconds(30),
            max_connections: 4096,
            shutdown_timeout: Span::seconds(5),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { path: "listgate.db".into(), url: None, ca_file: None, max_pages: 0 }
    }
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig { key_file: "listgate.key".into(), key: None }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            url: "file://mail".into(),
            from: "Newsletter <newsletter@localhost>".into(),
            resend_interval: Span::seconds(15 * 60),
            retry_base: Span::seconds(30),
            retry_max: Span::seconds(3600),
            give_up_after: Span::seconds(86_400),
            timeout: Span::seconds(60),
            ca_file: None,
        }
    }
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig { confirm_ttl: Span::seconds(7 * 86_400) }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { unconfirmed: Span::seconds(14 * 86_400), after_unsubscribe: Span::years(4) }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            signups_per_ip: RateSpec::Limit { count: 20, per: Span::seconds(600) },
            signups_per_address: RateSpec::Limit { count: 10, per: Span::seconds(3600) },
            mails_per_address_per_day: 3,
            mails_per_hour: MailCeiling::PerHour(NonZeroU32::new(1000).expect("not 0")),
            decline_block: Span::seconds(30 * 86_400),
            body_bytes: 16_384,
            honeypot_field: "website".into(),
            form_min_age: Span::seconds(2),
            form_max_age: Span::seconds(4 * 3600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            secrets: SecretsConfig::default(),
            mail: MailConfig::default(),
            tokens: TokensConfig::default(),
            retention: RetentionConfig::default(),
            limits: LimitsConfig::default(),
            proof: ProofConfig::default(),
            lists: vec![ListConfig {
                id: "newsletter".into(),
                name: "Newsletter".into(),
                language: Language::En,
                consent_text: "Yes, send me the newsletter. I can unsubscribe at any time.".into(),
                from: None,
                reply_to: None,
                thanks_url: None,
                confirmed_url: None,
                allowed_origins: Vec::new(),
                webhook_url: None,
                webhook_secret: None,
                require_form_token: false,
                imprint: None,
                privacy_url: None,
                time_zone: Zone::utc(),
            }],
        }
    }
}

/// A configuration problem, rendered as one line: `config: KEY: PROBLEM`.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

fn problem(key: impl fmt::Display, what: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {what}"))
}

/// Where a delivery goes, decided from `mail.url`.
#[derive(Debug)]
pub enum MailTransport {
    /// Write each message as an `.eml` file into this folder.
    File(PathBuf),
    /// An `smtp://` or `smtps://` URL in lettre's `from_url` forms, parsed
    /// (with `mail.ca_file` read).
    Smtp(crate::mail::smtp::SmtpServer),
}

impl Config {
    /// Loads `file` (when given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(file, std::env::vars())
    }

    /// Loads `file` and the given `LISTGATE_*` variables; tests pass their own.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(format!("{}: {}", path.display(), one_line(&e.to_string()))))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let de = toml::Value::Table(table);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            problem(if path == "." { "(top level)".into() } else { path }, one_line(&e.inner().to_string()))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot; normalises `base_url`.
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.limits.mails_per_address_per_day == 0 {
            // 0 would silently send no confirmation mail at all.
            return Err(problem("limits.mails_per_address_per_day", "must be at least 1"));
        }
        let base = &self.server.base_url;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(problem("server.base_url", "must be an http:// or https:// URL"));
        }
        if base.query().is_some() || base.fragment().is_some() || base.path() != "/" {
            return Err(problem(
                "server.base_url",
                "must be the root of a host, like https://lists.example.com (no path, query or fragment)",
            ));
        }
        self.validate_connections()?;
        if let Some(url) = &self.database.url {
            crate::store::postgres::summarize_url(url).map_err(|e| problem("database.url", e.to_string()))?;
        }
        self.mail_transport()?;
        parse_mailbox(&self.mail.from).map_err(|e| problem("mail.from", e))?;
        if self.mail.retry_base.approx().is_zero() || self.mail.retry_max.approx() < self.mail.retry_base.approx() {
            return Err(problem("mail.retry_max", "must be at least mail.retry_base, which must not be 0"));
        }
        if self.mail.timeout.approx().is_zero() {
            return Err(problem("mail.timeout", "must not be 0"));
        }
        if self.limits.body_bytes < 1024 {
            return Err(problem("limits.body_bytes", "must be at least 1024"));
        }
        // The fields listgate's forms use; the honeypot must be none of them.
        const FORM_FIELDS: [&str; 6] = ["email", "name", "list", "form_token", "token", "action"];
        let honeypot = &self.limits.honeypot_field;
        if honeypot.is_empty() || FORM_FIELDS.contains(&honeypot.as_str()) {
            return Err(problem(
                "limits.honeypot_field",
                format!("must be a field name not used by the forms ({})", FORM_FIELDS.join(", ")),
            ));
        }
        if self.limits.form_min_age.approx() >= self.limits.form_max_age.approx() {
            return Err(problem("limits.form_max_age", "must be longer than limits.form_min_age"));
        }
        if let Some(url) = &self.proof.tsa_url
            && (!matches!(url.scheme(), "http" | "https") || url.host().is_none())
        {
            return Err(problem("proof.tsa_url", "must be an http:// or https:// URL"));
        }
        if self.lists.is_empty() {
            return Err(problem("lists", "at least one [[lists]] entry is needed"));
        }
        for (i, list) in self.lists.iter().enumerate() {
            let key = |k: &str| format!("lists[{i}].{k}");
            if !is_list_id(&list.id) {
                return Err(problem(key("id"), "use 1-64 characters a-z, 0-9, '-' or '_'"));
            }
            if self.lists[..i].iter().any(|other| other.id == list.id) {
                return Err(problem(key("id"), format!("\"{}\" is used twice", list.id)));
            }
            if list.name.trim().is_empty() {
                return Err(problem(key("name"), "must not be empty"));
            }
            if list.consent_text.trim().is_empty() {
                return Err(problem(key("consent_text"), "must not be empty"));
            }
            if let Some(from) = &list.from {
                parse_mailbox(from).map_err(|e| problem(key("from"), e))?;
            }
            if let Some(reply_to) = &list.reply_to {
                parse_mailbox(reply_to).map_err(|e| problem(key("reply_to"), e))?;
            }
            if let Some(imprint) = &list.imprint {
                check_imprint(imprint).map_err(|e| problem(key("imprint"), e))?;
            }
            for (name, url) in [
                ("privacy_url", &list.privacy_url),
                ("thanks_url", &list.thanks_url),
                ("confirmed_url", &list.confirmed_url),
                ("webhook_url", &list.webhook_url),
            ] {
                if let Some(url) = url
                    && !matches!(url.scheme(), "http" | "https")
                {
                    return Err(problem(key(name), "must be an http:// or https:// URL"));
                }
            }
            match (&list.webhook_url, &list.webhook_secret) {
                (Some(_), None) => return Err(problem(key("webhook_secret"), "is needed with webhook_url")),
                (_, Some(secret)) if secret.chars().count() < 16 => {
                    return Err(problem(key("webhook_secret"), "must be at least 16 characters"));
                }
                _ => {}
            }
            for origin in &list.allowed_origins {
                let parsed = Url::parse(origin).ok();
                let is_origin = parsed.as_ref().is_some_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.origin().ascii_serialization() == *origin
                });
                if !is_origin {
                    return Err(problem(
                        key("allowed_origins"),
                        format!("\"{origin}\" is not an origin like https://www.example.com"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The delivery target named by `mail.url`.
    pub fn mail_transport(&self) -> Result<MailTransport, ConfigError> {
        let url = self.mail.url.trim();
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(problem("mail.url", "file:// needs a folder, e.g. file://mail"));
            }
            return Ok(MailTransport::File(PathBuf::from(dir)));
        }
        if url.starts_with("smtp://") || url.starts_with("smtps://") {
            return crate::mail::smtp::SmtpServer::from_url(url, self.mail.ca_file.as_deref())
                .map(MailTransport::Smtp)
                .map_err(|e| problem("mail.url", one_line(&e)));
        }
        Err(problem("mail.url", "must start with file://, smtp:// or smtps://"))
    }

    /// Settings that send secrets or personal data over the network in
    /// clear text: an `http://` `webhook_url` (addresses, names, signed
    /// calls) and an `smtp://` URL with a password but without
    /// `tls=required` (plain, or opportunistic STARTTLS, which anyone on the
    /// path can strip). Valid, so not errors, but `serve` and
    /// `check-config` say so. Loopback hosts are left out: that traffic
    /// never leaves the machine. Each warning names its key and shows no
    /// secret (only the host).
    pub fn cleartext_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Ok(url) = Url::parse(self.mail.url.trim())
            && url.scheme() == "smtp"
            && url.password().is_some()
            && !url.query_pairs().any(|(k, v)| k == "tls" && v == "required")
            && !is_loopback(&url)
        {
            warnings.push(format!(
                "mail.url: the SMTP password for {} may be sent unencrypted (smtp:// without ?tls=required); \
                 use ?tls=required or smtps://",
                url.host_str().unwrap_or("the server")
            ));
        }
        if let Some(summary) = self.database.url.as_deref().and_then(|u| crate::store::postgres::summarize_url(u).ok())
            && summary.sslmode != "require"
            && !summary.loopback_only
        {
            warnings.push(format!(
                "database.url: subscribers' data and the database password may cross the network to {} unencrypted \
                 (sslmode={}); use sslmode=require",
                summary.target, summary.sslmode
            ));
        }
        for (i, list) in self.lists.iter().enumerate() {
            if let Some(url) = &list.webhook_url
                && url.scheme() == "http"
                && !is_loopback(url)
            {
                warnings.push(format!(
                    "lists[{i}].webhook_url: subscribers' addresses go to {} unencrypted (http://); use https://",
                    url.host_str().unwrap_or("the receiver")
                ));
            }
        }
        warnings
    }

    /// Lists that lack what German and EU law ask of every mail and form:
    /// an `imprint` (who sends it) and a `privacy_url` (GDPR Art. 13).
    /// Valid, so not errors (a first run has neither), but `serve` and
    /// `check-config` say so.
    pub fn legal_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, list) in self.lists.iter().enumerate() {
            if list.imprint.is_none() {
                warnings.push(format!(
                    "lists[{i}].imprint: list \"{}\" has no imprint; its mails and pages do not say who sends them",
                    list.id
                ));
            }
            if list.privacy_url.is_none() {
                warnings.push(format!(
                    "lists[{i}].privacy_url: list \"{}\" links no privacy notice from its form, pages and mail",
                    list.id
                ));
            }
        }
        warnings
    }

    /// The configured list with this id.
    pub fn list(&self, id: &str) -> Option<&ListConfig> {
        self.lists.iter().find(|l| l.id == id)
    }

    /// Whether list `id` names a `webhook_url` to tell of confirmations and unsubscribes.
    pub fn has_webhook(&self, id: &str) -> bool {
        self.list(id).is_some_and(|l| l.webhook_url.is_some())
    }

    /// `base_url` without a trailing slash, ready to have a path appended.
    pub fn base(&self) -> &str {
        self.server.base_url.as_str().trim_end_matches('/')
    }
}

impl ListConfig {
    /// The imprint's lines as mails and pages show them: trimmed, without
    /// blank ones; none when the list has no imprint.
    pub fn imprint_lines(&self) -> Vec<&str> {
        self.imprint.as_deref().map_or_else(Vec::new, |i| i.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
    }

    /// The list's sender, falling back to `mail.from`.
    pub fn from_mailbox<'a>(&'a self, config: &'a Config) -> &'a str {
        self.from.as_deref().unwrap_or(&config.mail.from)
    }
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        // For smtp:// (not a special scheme) an IPv4 host stays a "domain".
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An imprint is the operator's text, shown on pages and in mails: a few
/// lines of printable characters.
fn check_imprint(imprint: &str) -> Result<(), String> {
    if imprint.trim().is_empty() {
        return Err("must not be empty (leave the key out instead)".into());
    }
    if imprint.chars().count() > 2000 {
        return Err("must be at most 2000 characters".into());
    }
    if imprint.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err("must not contain control characters other than line breaks".into());
    }
    Ok(())
}

fn is_list_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Parses `Name <addr@host>` or `addr@host`.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    Mailbox::from_str(text).map_err(|e| format!("\"{text}\" is not a mail address ({e})"))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Config {
    /// The `[server]` connection settings: every timeout must run (0 would
    /// mean "never", the hold this exists to end) and at least one
    /// connection must be served.
    fn validate_connections(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        for (key, span) in [
            ("server.header_timeout", server.header_timeout),
            ("server.idle_timeout", server.idle_timeout),
            ("server.body_timeout", server.body_timeout),
            ("server.shutdown_timeout", server.shutdown_timeout),
        ] {
            if span.approx().is_zero() {
                return Err(problem(key, "must not be 0 (a duration like 10s)"));
            }
        }
        if server.max_connections == 0 {
            return Err(problem("server.max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

/// The `(section, key)` an environment variable `LISTGATE_SECTION__KEY`
/// sets, lowercased; `None` for any other variable.
pub fn env_setting(name: &str) -> Option<(String, String)> {
    let (section, key) = name.strip_prefix("LISTGATE_")?.split_once("__")?;
    Some((section.to_ascii_lowercase(), key.to_ascii_lowercase()))
}

/// Applies `LISTGATE_SECTION__KEY=value` over the file's table. Values are
/// read as TOML when they parse (numbers, booleans, arrays) and as strings
/// otherwise, so `LISTGATE_MAIL__URL=smtp://…` needs no quotes.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some((section, key)) = env_setting(&name) else { continue };
        if section == "lists" || section.is_empty() || key.is_empty() {
            return Err(problem(&name, "lists and whole sections cannot be set from the environment"));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(section_table) => {
                section_table.insert(key, value);
            }
            _ => return Err(problem(&name, format!("`{section}` is not a section"))),
        }
    }
    Ok(())
}

/// A span of time as written in the config: `30s`, `15m`, `12h`, `14d`, `2w`, `4y`.
/// Years are calendar years (a signup on 29 February expires on 28 February
/// four years later, not 1,461 days later), as the limitation period counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    seconds: i64,
    years: i32,
}

impl Span {
    pub const fn seconds(seconds: i64) -> Span {
        Span { seconds, years: 0 }
    }

    pub const fn years(years: i32) -> Span {
        Span { seconds: 0, years }
    }

    /// `t` plus this span.
    pub fn after(self, t: OffsetDateTime) -> OffsetDateTime {
        shift_years(t, self.years) + time::Duration::seconds(self.seconds)
    }

    /// `t` minus this span.
    pub fn before(self, t: OffsetDateTime) -> OffsetDateTime {
        shift_years(t, -self.years) - time::Duration::seconds(self.seconds)
    }

    /// Approximate length, for timers and `Retry-After`.
    pub fn approx(self) -> std::time::Duration {
        std::time::Duration::from_secs((self.seconds + i64::from(self.years) * 365 * 86_400).max(0) as u64)
    }
}

fn shift_years(t: OffsetDateTime, years: i32) -> OffsetDateTime {
    if years == 0 {
        return t;
    }
    let year = t.year() + years;
    let date = t.date();
    let shifted = date.replace_year(year).unwrap_or_else(|_| {
        // 29 February in a year without one: the day before, 28 February.
        date.replace_day(28).and_then(|d| d.replace_year(year)).expect("28 February exists")
    });
    t.replace_date(shifted)
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: i64 = number
            .parse()
            .ok()
            .filter(|n| *n <= 1_000_000)
            .ok_or_else(|| format!("\"{text}\" is not a duration like 15m, 14d or 4y"))?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" if n <= 1_000 => return Ok(Span::years(n as i32)),
            _ => return Err(format!("\"{text}\" is not a duration like 15m, 14d or 4y")),
        };
        Ok(Span::seconds(n * seconds))
    }
}

impl fmt::Display for Span {
    /// In the config's own notation, largest whole unit first: `15m`, `14d`,
    /// `4y`. Weeks are left out, so a configured `14d` reads back as `14d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A span is either whole years or seconds (see `FromStr`), never both.
        if self.years != 0 {
            return write!(f, "{}y", self.years);
        }
        let unit = [(86_400, "d"), (3_600, "h"), (60, "m")]
            .into_iter()
            .find(|(n, _)| self.seconds != 0 && self.seconds % n == 0)
            .unwrap_or((1, "s"));
        write!(f, "{}{}", self.seconds / unit.0, unit.1)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listgate.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load_from(Some(&path), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn no_file_gives_the_documented_defaults() {
        let c = Config::load_from(None, Vec::new()).unwrap();
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.base(), "http://127.0.0.1:8080");
        assert_eq!(c.database.path, PathBuf::from("listgate.db"));
        assert!(matches!(c.mail_transport().unwrap(), MailTransport::File(dir) if dir == Path::new("mail")));
        assert_eq!(c.lists.len(), 1);
        assert_eq!(c.lists[0].id, "newsletter");
        assert_eq!(c.mail.resend_interval, Span::seconds(900));
        assert_eq!(c.retention.after_unsubscribe, Span::years(4));
        assert_eq!(c.limits.signups_per_ip, RateSpec::Limit { count: 20, per: Span::seconds(600) });
    }

    #[test]
    fn the_configuration_shown_in_the_readme_loads_and_equals_the_defaults() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let block = readme.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let c = load(block, &[]).unwrap_or_else(|e| panic!("README's configuration does not load: {e}"));
        let d = Config::default();
        assert_eq!(c.server.bind, d.server.bind);
        assert_eq!(c.server.trusted_proxy_header, d.server.trusted_proxy_header);
        assert_eq!(c.mail.resend_interval, d.mail.resend_interval);
        assert_eq!(c.mail.retry_max, d.mail.retry_max);
        assert_eq!(c.limits.signups_per_address, d.limits.signups_per_address);
        assert_eq!(c.limits.form_max_age, d.limits.form_max_age);
        assert_eq!(c.limits.mails_per_hour, d.limits.mails_per_hour);
        assert_eq!(c.retention.after_unsubscribe, d.retention.after_unsubscribe);
        assert_eq!(c.lists[0].consent_text, d.lists[0].consent_text);
    }

    #[test]
    fn connection_settings_default_to_bounded_values_and_take_seconds_from_the_environment() {
        let d = Config::default().server;
        assert_eq!(d.header_timeout, Span::seconds(10));
        assert!(d.idle_timeout.approx() >= d.header_timeout.approx());
        assert!(d.shutdown_timeout.approx() < std::time::Duration::from_secs(10), "under Docker's stop grace");
        let c = load(
            "[server]\nheader_timeout = \"2s\"\nmax_connections = 100\n",
            &[("LISTGATE_SERVER__SHUTDOWN_TIMEOUT", "3s"), ("LISTGATE_SERVER__MAX_CONNECTIONS", "50")],
        )
        .unwrap();
        assert_eq!(c.server.header_timeout.approx(), std::time::Duration::from_secs(2));
        assert_eq!(c.server.shutdown_timeout.approx(), std::time::Duration::from_secs(3));
        assert_eq!(c.server.max_connections, 50);
    }

    #[test]
    fn the_readme_reference_configuration_states_the_connection_defaults() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = readme.split("\n## Configuration\n").nth(1).expect("a Configuration section");
        let block = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let c = load(block, &[]).unwrap_or_else(|e| panic!("README's reference configuration does not load: {e}"));
        let (c, d) = (c.server, Config::default().server);
        assert_eq!(c.header_timeout, d.header_timeout);
        assert_eq!(c.idle_timeout, d.idle_timeout);
        assert_eq!(c.body_timeout, d.body_timeout);
        assert_eq!(c.max_connections, d.max_connections);
        assert_eq!(c.shutdown_timeout, d.shutdown_timeout);
    }

    #[test]
    fn a_zero_connection_timeout_or_cap_is_refused_naming_the_key() {
        for key in ["header_timeout", "idle_timeout", "body_timeout", "shutdown_timeout"] {
            let e = load(&format!("[server]\n{key} = \"0s\"\n"), &[]).unwrap_err();
            assert!(e.to_string().starts_with(&format!("config: server.{key}: must not be 0")), "{e}");
        }
        let e = load("", &[("LISTGATE_SERVER__MAX_CONNECTIONS", "0")]).unwrap_err();
        assert!(e.to_string().starts_with("config: server.max_connections: must be at least 1"), "{e}");
    }

    #[test]
    fn rates_parse_or_name_the_key() {
        assert_eq!("off".parse::<RateSpec>(), Ok(RateSpec::Off));
        assert_eq!("5/1h".parse::<RateSpec>(), Ok(RateSpec::Limit { count: 5, per: Span::seconds(3600) }));
        for bad in ["0/1m", "5", "5/0s", "x/1m", "5/1 minute"] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
        let e = load("", &[("LISTGATE_LIMITS__SIGNUPS_PER_IP", "lots")]).unwrap_err();
        assert!(e.to_string().starts_with("config: limits.signups_per_ip:"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load(
            "[mail]\nurl = \"file://x\"\n",
            &[
                ("LISTGATE_MAIL__URL", "smtp://127.0.0.1:2525"),
                ("LISTGATE_LIMITS__BODY_BYTES", "4096"),
                ("LISTGATE_CONFIG", "ignored"),
            ],
        )
        .unwrap();
        let MailTransport::Smtp(server) = c.mail_transport().unwrap() else { panic!("an SMTP transport") };
        assert_eq!(server.describe(), "smtp 127.0.0.1:2525, plain SMTP, not encrypted, no AUTH");
        assert_eq!(c.limits.body_bytes, 4096);
    }

    #[test]
    fn mails_per_hour_is_a_number_of_at_least_1_or_off_from_the_file_or_the_environment() {
        let per_hour = |n| MailCeiling::PerHour(NonZeroU32::new(n).unwrap());
        assert_eq!(Config::default().limits.mails_per_hour, per_hour(1000));
        assert_eq!(load("[limits]\nmails_per_hour = 50\n", &[]).unwrap().limits.mails_per_hour, per_hour(50));
        assert_eq!(load("[limits]\nmails_per_hour = \"off\"\n", &[]).unwrap().limits.mails_per_hour, MailCeiling::Off);
        let env = |v| load("", &[("LISTGATE_LIMITS__MAILS_PER_HOUR", v)]).map(|c| c.limits.mails_per_hour);
        assert_eq!(env("200").unwrap(), per_hour(200));
        assert_eq!(env("off").unwrap(), MailCeiling::Off);
        for bad in ["0", "-5", "lots", "1.5"] {
            let e = env(bad).unwrap_err();
            assert!(e.to_string().starts_with("config: limits.mails_per_hour:"), "{bad}: {e}");
        }
        assert_eq!(per_hour(1000).to_string(), "1000");
        assert_eq!(MailCeiling::Off.to_string(), "off");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e =
            load("[[lists]]\nid = \"a\"\nname = \"A\"\nlanguage = \"fr\"\nconsent_text = \"ok\"\n", &[]).unwrap_err();
        assert!(e.to_string().starts_with("config: lists[0].language:"), "{e}");
        let e = load("[server]\nbnd = \"1.2.3.4:5\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("server") && e.to_string().contains("bnd"), "{e}");
        let e = load("[tokens]\nconfirm_ttl = \"7 days\"\n", &[]).unwrap_err();
        assert!(e.to_string().starts_with("config: tokens.confirm_ttl:"), "{e}");
        let e = load("", &[("LISTGATE_MAIL__URL", "ftp://x")]).unwrap_err();
        assert_eq!(e.to_string(), "config: mail.url: must start with file://, smtp:// or smtps://");
        let e = load(
            "[[lists]]\nid = \"a\"\nname = \"A\"\nconsent_text = \"ok\"\nthanks_url = \"javascript:alert(1)\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("config: lists[0].thanks_url:"), "{e}");
        let list = "[[lists]]\nid = \"a\"\nname = \"A\"\nconsent_text = \"ok\"\nwebhook_url = \"https://crm.example.org/hook\"\n";
        let e = load(list, &[]).unwrap_err();
        assert_eq!(e.to_string(), "config: lists[0].webhook_secret: is needed with webhook_url");
        let e = load(&format!("{list}webhook_secret = \"short\"\n"), &[]).unwrap_err();
        assert_eq!(e.to_string(), "config: lists[0].webhook_secret: must be at least 16 characters");
        assert!(load(&format!("{list}webhook_secret = \"0123456789abcdef\"\n"), &[]).is_ok());
        let e = load("", &[("LISTGATE_LIMITS__MAILS_PER_ADDRESS_PER_DAY", "0")]).unwrap_err();
        assert_eq!(e.to_string(), "config: limits.mails_per_address_per_day: must be at least 1");
    }

    #[test]
    fn the_tsa_url_is_off_by_default_and_taken_from_the_file_or_the_environment_if_http_or_https() {
        assert!(Config::default().proof.tsa_url.is_none());
        let c = load("[proof]\ntsa_url = \"https://freetsa.org/tsr\"\n", &[]).unwrap();
        assert_eq!(c.proof.tsa_url.unwrap().as_str(), "https://freetsa.org/tsr");
        let c = load("", &[("LISTGATE_PROOF__TSA_URL", "http://127.0.0.1:3180/")]).unwrap();
        assert_eq!(c.proof.tsa_url.unwrap().as_str(), "http://127.0.0.1:3180/");
        for bad in ["ftp://tsa.example.org/", "file:///tmp/tsa", "mailto:tsa@example.org"] {
            let e = load("", &[("LISTGATE_PROOF__TSA_URL", bad)]).unwrap_err();
            assert_eq!(e.to_string(), "config: proof.tsa_url: must be an http:// or https:// URL", "{bad}");
        }
        let e = load("[proof]\ntsa_url = \"not a url\"\n", &[]).unwrap_err();
        assert!(e.to_string().starts_with("config: proof.tsa_url:"), "{e}");
        let e = load("[proof]\ntsa = \"https://freetsa.org/tsr\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("tsa"), "{e}");
    }

    #[test]
    fn the_trusted_proxy_header_defaults_to_x_forwarded_for_and_names_the_key_when_unknown() {
        assert_eq!(Config::default().server.trusted_proxy_header, ProxyHeader::XForwardedFor);
        let c = load("[server]\ntrusted_proxy_header = \"Forwarded\"\n", &[]).unwrap();
        assert_eq!(c.server.trusted_proxy_header, ProxyHeader::Forwarded);
        let c = load("", &[("LISTGATE_SERVER__TRUSTED_PROXY_HEADER", "x-real-ip")]).unwrap();
        assert_eq!(c.server.trusted_proxy_header, ProxyHeader::XRealIp);
        let e = load("", &[("LISTGATE_SERVER__TRUSTED_PROXY_HEADER", "x-client-ip")]).unwrap_err();
        let expected =
            "config: server.trusted_proxy_header: \"x-client-ip\" is not one of x-forwarded-for, forwarded, x-real-ip";
        assert!(e.to_string().starts_with(expected), "{e}");
    }

    #[test]
    fn a_list_without_imprint_or_privacy_notice_is_warned_of_and_a_broken_one_refused() {
        let list = "[[lists]]\nid = \"a\"\nname = \"A\"\nconsent_text = \"ok\"\n";
        let warnings = load(list, &[]).unwrap().legal_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("lists[0].imprint: list \"a\" has no imprint"), "{warnings:?}");
        assert!(warnings[1].starts_with("lists[0].privacy_url: list \"a\" links no privacy notice"), "{warnings:?}");
        let complete = format!(
            "{list}imprint = \"\"\"\nExample GmbH\nStreet 1\n\"\"\"\nprivacy_url = \"https://example.com/privacy\"\ntime_zone = \"Europe/Berlin\"\n"
        );
        let c = load(&complete, &[]).unwrap();
        assert!(c.legal_warnings().is_empty());
        assert_eq!(c.lists[0].time_zone.name(), "Europe/Berlin");
        for (bad, expected) in [
            ("imprint = \"  \"", "config: lists[0].imprint: must not be empty"),
            ("imprint = \"Example\\u0007GmbH\"", "config: lists[0].imprint: must not contain control characters"),
            (
                "privacy_url = \"javascript:alert(1)\"",
                "config: lists[0].privacy_url: must be an http:// or https:// URL",
            ),
            ("time_zone = \"Europe/Atlantis\"", "config: lists[0].time_zone: \"Europe/Atlantis\" is not a time zone"),
        ] {
            let e = load(&format!("{list}{bad}\n"), &[]).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{bad}: {e}");
        }
        let long = format!("{list}imprint = \"{}\"\n", "x".repeat(2001));
        assert!(load(&long, &[]).unwrap_err().to_string().contains("at most 2000 characters"));
    }

    #[test]
    fn cleartext_webhooks_and_smtp_passwords_are_warned_of_off_loopback_only() {
        let warnings = |url: &str, webhook: Option<&str>| {
            let mut c = Config::default();
            c.mail.url = url.into();
            c.lists[0].webhook_url = webhook.map(|w| w.parse().unwrap());
            c.cleartext_warnings()
        };
        assert!(warnings("file://mail", None).is_empty());
        for quiet in [
            "smtp://mail.example.org:25",
            "smtp://user:pw@mail.example.org:587?tls=required",
            "smtps://user:pw@mail.example.org",
            "smtp://user:pw@127.0.0.1:25",
            "smtp://user:pw@[::1]:25",
            "smtp://user:pw@localhost",
        ] {
            assert!(warnings(quiet, None).is_empty(), "{quiet}");
        }
        for loud in ["smtp://user:s3cret@mail.example.org:587", "smtp://user:s3cret@mail.example.org?tls=opportunistic"]
        {
            let w = warnings(loud, None);
            assert_eq!(w.len(), 1, "{loud}");
            assert!(w[0].starts_with("mail.url: the SMTP password for mail.example.org"), "{}", w[0]);
            assert!(!w[0].contains("s3cret") && !w[0].contains("user"), "{}", w[0]);
        }
        let w = warnings("file://mail", Some("http://crm.example.org/hook?key=k3y"));
        assert_eq!(
            w,
            ["lists[0].webhook_url: subscribers' addresses go to crm.example.org unencrypted (http://); use https://"]
        );
        assert!(warnings("file://mail", Some("https://crm.example.org/hook")).is_empty());
        assert!(warnings("file://mail", Some("http://127.0.0.1:9000/hook")).is_empty());
    }

    #[test]
    fn years_are_calendar_years_and_leap_days_fall_back() {
        let t = datetime!(2024-02-29 12:00 UTC);
        assert_eq!(Span::years(4).after(t), datetime!(2028-02-29 12:00 UTC));
        assert_eq!(Span::years(1).after(t), datetime!(2025-02-28 12:00 UTC));
        assert_eq!("14d".parse::<Span>().unwrap().after(t), datetime!(2024-03-14 12:00 UTC));
        assert!("14".parse::<Span>().is_err());
        assert!("-3d".parse::<Span>().is_err());
    }

    #[test]
    fn spans_and_rates_print_as_they_are_written() {
        for text in ["30s", "15m", "12h", "14d", "4y", "0s", "90s"] {
            assert_eq!(text.parse::<Span>().unwrap().to_string(), text);
        }
        assert_eq!("2w".parse::<Span>().unwrap().to_string(), "14d");
        assert_eq!("20/10m".parse::<RateSpec>().unwrap().to_string(), "20/10m");
        assert_eq!(RateSpec::Off.to_string(), "off");
    }
}
