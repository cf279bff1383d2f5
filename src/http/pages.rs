//! Pages (askama templates in `templates/pages/`), security headers, and
//! [`AppError`]: the one place where a failure becomes a status and a page.

use askama::Template;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::config::{Language, ListConfig};
use crate::domain::InputError;

/// What the foot of every page of a list shows: who runs it (the
/// imprint) and a link to its privacy notice.
#[derive(Debug, Default, Clone)]
pub struct Footer<'a> {
    pub imprint_lines: Vec<&'a str>,
    pub privacy_url: Option<&'a str>,
}

impl<'a> Footer<'a> {
    pub fn of(list: &'a ListConfig) -> Footer<'a> {
        Footer { imprint_lines: list.imprint_lines(), privacy_url: list.privacy_url.as_ref().map(url::Url::as_str) }
    }

    pub fn is_empty(&self) -> bool {
        self.imprint_lines.is_empty() && self.privacy_url.is_none()
    }
}

#[derive(Template)]
#[template(path = "pages/form.html")]
pub struct FormPage<'a> {
    pub de: bool,
    pub footer: Footer<'a>,
    pub list_id: &'a str,
    pub list_name: &'a str,
    pub consent_text: &'a str,
    pub action: &'a str,
    pub honeypot: &'a str,
    pub form_token: &'a str,
}

#[derive(Template)]
#[template(path = "pages/pending.html")]
pub struct PendingPage<'a> {
    pub de: bool,
    pub footer: Footer<'a>,
    pub list_name: &'a str,
}

#[derive(Template)]
#[template(path = "pages/confirm.html")]
pub struct ConfirmPage<'a> {
    pub de: bool,
    pub footer: Footer<'a>,
    pub list_name: &'a str,
    pub consent_text: &'a str,
    pub token: &'a str,
}

#[derive(Template)]
#[template(path = "pages/confirmed.html")]
pub struct ConfirmedPage<'a> {
    pub de: bool,
    pub footer: Footer<'a>,
    pub list_name: &'a str,
}

#[derive(Template)]
#[template(path = "pages/declined.html")]
pub struct DeclinedPage<'a> {
    pub de: bool,
    pub footer: Footer<'a>,
    pub list_name: &'a str,
    pub already_confirmed: bool,
    pub already_unsubscribed: bool,
    /// The signup is under a legal hold: blocked, but kept.
    pub held: bool,
}

#[derive(Template)]
#[template(path = "pages/unsubscribe.html")]
pub struct UnsubscribePage<'a> {
    pub de: bool,
    pub footer: Footer<'a>,
    pub list_name: &'a str,
    pub token: &'a str,
}

#[derive(Template)]
#[template(path = "pages/unsubscribed.html")]
pub struct UnsubscribedPage<'a> {
    pub de: bool,
    pub footer: Footer<'a>,
    pub list_name: &'a str,
}

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorPage<'a> {
    de: bool,
    footer: Footer<'a>,
    title: &'a str,
    message: &'a str,
    retry_url: Option<&'a str>,
}

/// The stylesheet every page links; served by listgate itself so the CSP can
/// forbid inline styles and every other origin.
pub const STYLESHEET: &str = include_str!("../../templates/style.css");

/// Renders a page into a response with `status`.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => with_type(status, body, "text/html; charset=utf-8"),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            with_type(StatusCode::INTERNAL_SERVER_ERROR, "Internal error".to_string(), "text/plain; charset=utf-8")
        }
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    with_type(status, value.to_string(), "application/json")
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A 303 to a configured URL (never one taken from the request).
pub fn see_other(location: &url::Url) -> Response {
    let mut response = Response::new(String::new().into());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location.as_str()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Headers on every response: tokens live in URLs, so no Referer may carry
/// them away; nothing may frame, sniff or script our pages.
pub fn security_headers(config: &crate::config::Config) -> warp::http::HeaderMap {
    let mut h = warp::http::HeaderMap::new();
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
        form_action_sources(config).join(" ")
    );
    h.insert("content-security-policy", HeaderValue::from_str(&csp).expect("origins are valid header values"));
    h
}

/// Where our pages' forms may send the browser: listgate itself, `base_url`
/// (which differs from the page's own origin when a proxy renames the
/// host), and every list's `thanks_url` and `confirmed_url` origin.
/// Chromium applies `form-action` to the redirects a form's POST answers
/// with, so without the last ones the 303 after confirming on our page
/// would be blocked. All come from the configuration, none from a request.
pub fn form_action_sources(config: &crate::config::Config) -> Vec<String> {
    let mut sources = vec!["'self'".to_string(), config.server.base_url.origin().ascii_serialization()];
    let redirects = config.lists.iter().flat_map(|l| [&l.thanks_url, &l.confirmed_url]).flatten();
    for origin in redirects.map(|url| url.origin().ascii_serialization()) {
        if !sources.contains(&origin) {
            sources.push(origin);
        }
    }
    sources
}

/// Everything that can go wrong in a request, each with its status and page.
#[derive(Debug)]
pub enum AppError {
    /// A field is missing or malformed (400).
    Input(InputError),
    /// The `list` names no configured list (404).
    UnknownList,
    /// A token is malformed, tampered or of the wrong kind (400).
    TokenInvalid,
    /// A confirmation token is past its time (410); offers a new signup.
    TokenExpired {
        retry_url: Option<String>,
    },
    /// The subscription behind a valid token no longer exists (410).
    Gone {
        retry_url: Option<String>,
    },
    /// Body over `limits.body_bytes` (413).
    BodyTooLarge,
    /// Body of a type we do not read (415).
    UnsupportedMediaType,
    /// A rate limit was hit (429); try again after this many seconds.
    TooManyRequests {
        retry_after: u64,
    },
    NotFound,
    MethodNotAllowed,
    /// The database is full or unreachable (503); nothing was stored.
    Unavailable,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Input(_) | AppError::TokenInvalid => StatusCode::BAD_REQUEST,
            AppError::UnknownList | AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::TokenExpired { .. } | AppError::Gone { .. } => StatusCode::GONE,
            AppError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short machine-readable code for JSON callers.
    fn code(&self) -> &'static str {
        match self {
            AppError::Input(_) => "invalid_input",
            AppError::UnknownList => "unknown_list",
            AppError::TokenInvalid => "invalid_token",
            AppError::TokenExpired { .. } => "expired_token",
            AppError::Gone { .. } => "gone",
            AppError::BodyTooLarge => "body_too_large",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::TooManyRequests { .. } => "too_many_requests",
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::Unavailable => "unavailable",
        }
    }

    fn texts(&self, language: Language) -> (&'static str, &'static str) {
        let de = language == Language::De;
        match self {
            AppError::Input(e) => {
                (if de { "Bitte prüfen Sie Ihre Eingabe" } else { "Please check your input" }, e.message(language))
            }
            AppError::UnknownList => {
                if de {
                    ("Liste nicht gefunden", "Diese Liste gibt es hier nicht.")
                } else {
                    ("List not found", "There is no such list here.")
                }
            }
            AppError::TokenInvalid => {
                if de {
                    (
                        "Ungültiger Link",
                        "Dieser Link ist ungültig oder unvollständig. Bitte kopieren Sie ihn vollständig aus der E-Mail.",
                    )
                } else {
                    ("Invalid link", "This link is invalid or incomplete. Please copy it completely from the email.")
                }
            }
            AppError::TokenExpired { .. } => {
                if de {
                    (
                        "Link abgelaufen",
                        "Dieser Bestätigungslink ist abgelaufen. Melden Sie sich bitte erneut an; Sie erhalten dann einen neuen Link.",
                    )
                } else {
                    ("Link expired", "This confirmation link has expired. Please sign up again to get a new link.")
                }
            }
            AppError::Gone { .. } => {
                if de {
                    ("Link nicht mehr gültig", "Zu diesem Link gibt es keine offene Anmeldung mehr.")
                } else {
                    ("Link no longer valid", "There is no open signup for this link any more.")
                }
            }
            AppError::BodyTooLarge => {
                if de {
                    ("Zu viele Daten", "Die Anfrage ist zu groß.")
                } else {
                    ("Too much data", "The request is too large.")
                }
            }
            AppError::UnsupportedMediaType => {
                if de {
                    ("Format nicht unterstützt", "Bitte senden Sie ein Formular oder JSON.")
                } else {
                    ("Unsupported format", "Please send a form or JSON.")
                }
            }
            AppError::TooManyRequests { .. } => {
                if de {
                    ("Zu viele Anfragen", "Bitte warten Sie einige Minuten und versuchen Sie es dann noch einmal.")
                } else {
                    ("Too many requests", "Please wait a few minutes and try again.")
                }
            }
            AppError::NotFound => {
                if de {
                    ("Nicht gefunden", "Diese Seite gibt es nicht.")
                } else {
                    ("Not found", "There is no such page.")
                }
            }
            AppError::MethodNotAllowed => {
                if de {
                    ("Nicht erlaubt", "Diese Anfrage ist hier nicht erlaubt.")
                } else {
                    ("Not allowed", "This request is not allowed here.")
                }
            }
            AppError::Unavailable => {
                if de {
                    (
                        "Vorübergehend nicht verfügbar",
                        "Bitte versuchen Sie es in einigen Minuten noch einmal. Es wurde nichts gespeichert.",
                    )
                } else {
                    ("Temporarily unavailable", "Please try again in a few minutes. Nothing was stored.")
                }
            }
        }
    }

    /// The error as a page of `list` (in its language, with its footer), or as JSON.
    pub fn respond_on(&self, list: &ListConfig, as_json: bool) -> Response {
        self.respond_with(list.language, Footer::of(list), as_json)
    }

    /// The error as a page in `language`, before any list is known, or as JSON.
    pub fn respond(&self, language: Language, as_json: bool) -> Response {
        self.respond_with(language, Footer::default(), as_json)
    }

    fn respond_with(&self, language: Language, footer: Footer<'_>, as_json: bool) -> Response {
        let (title, message) = self.texts(language);
        let mut response = if as_json {
            let mut body = serde_json::json!({"status": "error", "error": self.code(), "message": message});
            if let AppError::Input(e) = self {
                body["field"] = e.field().into();
            }
            json(self.status(), &body)
        } else {
            let retry_url = match self {
                AppError::TokenExpired { retry_url } | AppError::Gone { retry_url } => retry_url.as_deref(),
                _ => None,
            };
            html(self.status(), &ErrorPage { de: language == Language::De, footer, title, message, retry_url })
        };
        let retry_after = match self {
            AppError::Unavailable => Some(60),
            AppError::TooManyRequests { retry_after } => Some((*retry_after).max(1)),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> AppError {
        if e.is_full() {
            tracing::error!(error = %e, "database is full; answering 503");
        } else {
            tracing::error!(error = %e, "database error");
        }
        AppError::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn form_action_allows_the_configured_redirect_origins_once_each() {
        let mut config = Config::default();
        config.server.base_url = "https://lists.example.com".parse().unwrap();
        let mut second = config.lists[0].clone();
        config.lists[0].thanks_url = Some("https://www.example.com/thanks?x=1".parse().unwrap());
        config.lists[0].confirmed_url = Some("https://www.example.com/welcome".parse().unwrap());
        second.id = "events".into();
        second.confirmed_url = Some("http://events.example.org:8080/yes".parse().unwrap());
        config.lists.push(second);
        assert_eq!(
            form_action_sources(&config),
            ["'self'", "https://lists.example.com", "https://www.example.com", "http://events.example.org:8080"]
        );
        let headers = security_headers(&config);
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains(
                "form-action 'self' https://lists.example.com https://www.example.com http://events.example.org:8080;"
            ),
            "{csp}"
        );
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}
