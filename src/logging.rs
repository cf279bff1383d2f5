//! The log: `tracing` events on stderr, as text for people or as JSON lines
//! for log collectors (`LISTGATE_LOG_FORMAT=json`).
//!
//! Whatever the format, events carry the same fields, and those never hold
//! a full address or a client IP: handlers log `Email::masked()` and the
//! outbox `mask_address`, and no event names a client IP at all.

use std::io::IsTerminal;

/// The environment variable that picks the format. It is not a config key:
/// logging starts before the configuration loads, so that loading can log.
pub const FORMAT_VARIABLE: &str = "LISTGATE_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `tracing-subscriber`'s human format (the default).
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

impl LogFormat {
    /// Reads `LISTGATE_LOG_FORMAT`: unset or `text` is [`LogFormat::Text`],
    /// `json` is [`LogFormat::Json`]; anything else is an error, so a typo
    /// never leaves a log collector reading text it cannot parse.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        match value {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("{FORMAT_VARIABLE}: \"{other}\" is not a log format (use text or json)")),
        }
    }

    /// The format the environment asks for.
    pub fn from_env() -> Result<LogFormat, String> {
        let value = std::env::var_os(FORMAT_VARIABLE).map(|v| v.to_string_lossy().into_owned());
        LogFormat::parse(value.as_deref())
    }

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the global subscriber: stderr, in `format`, filtered by
/// `LISTGATE_LOG` (or `RUST_LOG`), default `info`.
pub fn init(format: LogFormat) {
    let filter = std::env::var("LISTGATE_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            builder.with_ansi(false).json().flatten_event(true).with_current_span(false).with_span_list(false).init()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_and_json_are_log_formats() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        for bad in ["", "JSON", "logfmt", " json"] {
            let e = LogFormat::parse(Some(bad)).unwrap_err();
            assert!(e.starts_with("LISTGATE_LOG_FORMAT: ") && e.contains("use text or json"), "{e}");
        }
    }
}
