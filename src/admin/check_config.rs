//! `listgate check-config`: what `serve` would do with this configuration,
//! told before it does it.
//!
//! The configuration is loaded and validated by the same `Config::load` as
//! `serve`; here the checks `serve` makes only later at start follow (each
//! list's mail renders, the key ring parses), without side effects: no
//! database is opened, no key or mail folder created, no port bound. The
//! report never shows a secret: not the key, not the SMTP password.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{Config, ListConfig, MailTransport, env_setting};
use crate::keys::{KeyRing, KeySource};
use crate::logging::LogFormat;

/// Where the configuration came from, besides the values themselves.
pub struct Sources<'a> {
    /// The `--config` file, if one was given.
    pub file: Option<&'a Path>,
    /// Whether `secrets.key` was set through `LISTGATE_SECRETS__KEY`.
    pub key_from_env: bool,
    pub log_format: LogFormat,
}

impl Sources<'_> {
    /// Whether the environment sets `secrets.key` (sections and keys are
    /// matched case-insensitively, as `Config::load` does).
    pub fn key_in_env(env: impl IntoIterator<Item = (String, String)>) -> bool {
        env.into_iter()
            .any(|(name, _)| env_setting(&name).is_some_and(|(section, key)| section == "secrets" && key == "key"))
    }
}

/// Which store `serve` will use: the SQLite file, or PostgreSQL (never the
/// URL's password).
fn database(config: &Config) -> String {
    match config.database.url.as_deref().map(crate::store::postgres::summarize_url) {
        Some(Ok(summary)) => {
            format!("PostgreSQL at {} (sslmode={}; database.path is not used)", summary.target, summary.sslmode)
        }
        // `Config::load` validated the URL.
        Some(Err(e)) => e.to_string(),
        None => existence(&config.database.path, "serve creates it"),
    }
}

/// The report, or the first problem `serve` would stop at, as one line.
pub fn report(config: &Config, sources: &Sources<'_>) -> Result<String, String> {
    let mut out = String::new();
    let origin = match sources.file {
        Some(path) => format!("{} and the LISTGATE_* environment", path.display()),
        None => "built-in defaults and the LISTGATE_* environment (no file)".into(),
    };
    line(&mut out, 0, "configuration", &origin);
    server(&mut out, config);
    line(&mut out, 0, "database", &database(config));
    line(&mut out, 0, "key", &key(config, sources)?);
    mail(&mut out, config)?;
    section(&mut out, "tokens");
    line(&mut out, 1, "confirm_ttl", &format!("{} (confirmation links expire)", config.tokens.confirm_ttl));
    retention_and_limits(&mut out, config);
    section(&mut out, "proof");
    let tsa = config.proof.tsa_url.as_ref().map_or(
        "off (set proof.tsa_url to have an RFC 3161 Time-Stamp Authority stamp the chain's head)".to_string(),
        |url| format!("{url} (the server stamps the chain's head daily; listgate anchor at once)"),
    );
    line(&mut out, 1, "tsa_url", &tsa);
    line(&mut out, 0, "lists", &config.lists.len().to_string());
    for list in &config.lists {
        describe_list(&mut out, config, list)?;
    }
    line(&mut out, 0, "log format", &format!("{} (LISTGATE_LOG_FORMAT)", sources.log_format.name()));
    for warning in config.cleartext_warnings().into_iter().chain(config.legal_warnings()) {
        line(&mut out, 0, "warning", &warning);
    }
    out.push_str("ok: the configuration is valid\n");
    Ok(out)
}

fn line(out: &mut String, indent: usize, key: &str, value: &str) {
    let _ = writeln!(out, "{:indent$}{key}: {value}", "", indent = indent * 2);
}

fn section(out: &mut String, name: &str) {
    let _ = writeln!(out, "{name}:");
}

fn existence(path: &Path, if_missing: &str) -> String {
    let state = if path.exists() { "exists".to_string() } else { format!("missing; {if_missing}") };
    format!("{} ({state})", path.display())
}

fn server(out: &mut String, config: &Config) {
    section(out, "server");
    line(out, 1, "bind", &config.server.bind.to_string());
    line(out, 1, "base_url", config.base());
    let metrics = config
        .server
        .metrics_bind
        .map_or("off (set server.metrics_bind to serve /metrics)".to_string(), |a| a.to_string());
    line(out, 1, "metrics_bind", &metrics);
    let proxies: Vec<String> = config.server.trusted_proxies.iter().map(ToString::to_string).collect();
    line(out, 1, "trusted_proxies", &list_or_none(&proxies));
    if !proxies.is_empty() {
        let header = config.server.trusted_proxy_header.name();
        line(out, 1, "trusted_proxy_header", &format!("{header} (the only header read from trusted proxies)"));
    }
    line(out, 1, "connections", &connections(config));
}

/// The connection limits `serve` would apply, with the cap as lowered to
/// the descriptor limit it will run with.
fn connections(config: &Config) -> String {
    let fds = crate::http::serve::fd_limit_when_serving();
    let limits = crate::http::serve::Limits::from_config(&config.server, fds);
    let server = &config.server;
    let descriptors = fds.map_or("unknown".to_string(), |n| n.to_string());
    format!(
        "at most {} open (descriptor limit {descriptors}), headers within {}, bodies within {}, closed after {} idle; shutdown waits {}",
        limits.max_connections,
        server.header_timeout,
        server.body_timeout,
        server.idle_timeout,
        server.shutdown_timeout
    )
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

/// Where the key ring comes from; a ring that is there must parse, as
/// `serve` would refuse it otherwise.
fn key(config: &Config, sources: &Sources<'_>) -> Result<String, String> {
    let summary =
        |ring: &KeyRing| format!("{} key(s), new links signed with key {}", ring.all().count(), ring.current_id());
    let path = &config.secrets.key_file;
    Ok(match KeyRing::read(config.secrets.key.as_deref(), path)? {
        Some((ring, KeySource::File { warn_permissions })) => {
            let warning = if warn_permissions { "; warning: other users can read it (chmod 600)" } else { "" };
            format!("file {} (exists: {}){warning}", path.display(), summary(&ring))
        }
        Some((ring, _)) => {
            let from =
                if sources.key_from_env { "environment (LISTGATE_SECRETS__KEY)" } else { "inline (secrets.key)" };
            format!("{from}: {}; secrets.key_file is not used", summary(&ring))
        }
        None => format!("file {} (missing; serve generates one, mode 0600)", path.display()),
    })
}

fn mail(out: &mut String, config: &Config) -> Result<(), String> {
    let m = &config.mail;
    section(out, "mail");
    let transport = match config.mail_transport().map_err(|e| e.to_string())? {
        MailTransport::File(dir) => format!("file folder {}", existence(&dir, "serve creates it")),
        MailTransport::Smtp(server) => server.describe(),
    };
    line(out, 1, "transport", &transport);
    if let Some(ca) = &m.ca_file {
        line(out, 1, "ca_file", &ca.display().to_string());
    }
    line(out, 1, "from", &m.from);
    line(out, 1, "resend_interval", &m.resend_interval.to_string());
    let retry = format!("after {}, doubling up to {}; give up after {}", m.retry_base, m.retry_max, m.give_up_after);
    line(out, 1, "retries", &retry);
    line(out, 1, "timeout", &m.timeout.to_string());
    Ok(())
}

fn retention_and_limits(out: &mut String, config: &Config) {
    let r = &config.retention;
    section(out, "retention");
    line(out, 1, "unconfirmed", &format!("{} after signup, then erased", r.unconfirmed));
    line(out, 1, "after_unsubscribe", &format!("{} after the unsubscribe, then erased", r.after_unsubscribe));
    let l = &config.limits;
    section(out, "limits");
    line(out, 1, "signups_per_ip", &l.signups_per_ip.to_string());
    line(out, 1, "signups_per_address", &l.signups_per_address.to_string());
    line(out, 1, "mails_per_address_per_day", &l.mails_per_address_per_day.to_string());
    line(out, 1, "mails_per_hour", &l.mails_per_hour.to_string());
    line(out, 1, "decline_block", &l.decline_block.to_string());
    line(out, 1, "body_bytes", &l.body_bytes.to_string());
    line(out, 1, "honeypot_field", &l.honeypot_field);
    line(out, 1, "form_min_age", &l.form_min_age.to_string());
    line(out, 1, "form_max_age", &l.form_max_age.to_string());
}

/// A list, after checking that its confirmation mail renders.
fn describe_list(out: &mut String, config: &Config, list: &ListConfig) -> Result<(), String> {
    crate::mail::render(config, list).map_err(|e| format!("list {}: the confirmation mail: {e}", list.id))?;
    line(out, 1, &list.id, &format!("\"{}\", language {}", list.name, list.language.code()));
    let from = match &list.from {
        Some(from) => from.clone(),
        None => format!("{} (mail.from)", config.mail.from),
    };
    line(out, 2, "from", &from);
    line(out, 2, "imprint", list.imprint.as_deref().map_or("none", str::trim).lines().next().unwrap_or_default());
    let privacy = list.privacy_url.as_ref().map_or("none".to_string(), ToString::to_string);
    line(out, 2, "privacy_url", &privacy);
    line(out, 2, "time_zone", list.time_zone.name());
    let optional = [
        ("reply_to", list.reply_to.clone()),
        ("thanks_url", list.thanks_url.as_ref().map(ToString::to_string)),
        ("confirmed_url", list.confirmed_url.as_ref().map(ToString::to_string)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            line(out, 2, key, &value);
        }
    }
    line(out, 2, "allowed_origins", &list_or_none(&list.allowed_origins));
    line(out, 2, "require_form_token", if list.require_form_token { "yes" } else { "no" });
    if let Some(url) = &list.webhook_url {
        line(out, 2, "webhook_url", &format!("{url} (calls signed with webhook_secret)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limits_are_reported_as_serve_applies_them() {
        let config = Config::default();
        let sources = Sources { file: None, key_from_env: false, log_format: LogFormat::Text };
        let text = report(&config, &sources).unwrap();
        assert!(
            text.contains("headers within 10s, bodies within 30s, closed after 1m idle; shutdown waits 5s"),
            "{text}"
        );
    }

    #[test]
    fn the_key_is_found_in_the_environment_as_config_load_finds_it() {
        let env = |name: &str| vec![(name.to_string(), "1:x".to_string())];
        assert!(Sources::key_in_env(env("LISTGATE_SECRETS__KEY")));
        assert!(Sources::key_in_env(env("LISTGATE_secrets__Key")));
        assert!(!Sources::key_in_env(env("LISTGATE_SECRETS__KEY_FILE")));
        assert!(!Sources::key_in_env(env("SECRETS__KEY")));
    }

    #[test]
    fn a_broken_inline_key_is_an_error_and_no_secret_is_shown() {
        let mut config = Config::default();
        let sources = Sources { file: None, key_from_env: true, log_format: LogFormat::Text };
        config.secrets.key = Some("1:tooshort".into());
        let e = report(&config, &sources).unwrap_err();
        assert!(e.starts_with("secrets.key: "), "{e}");
        let secret = "A".repeat(43);
        config.secrets.key = Some(format!("1:{secret}"));
        let text = report(&config, &sources).unwrap();
        assert!(text.contains("key: environment (LISTGATE_SECRETS__KEY): 1 key(s)"), "{text}");
        assert!(!text.contains(&secret), "{text}");
    }
}
