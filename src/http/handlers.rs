//! Request handlers: parse the request into typed values, call one operation
//! in `subscriptions` through the store writer, render the answer. Every
//! handler returns a complete response; errors go through [`AppError`].

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::AppState;
use super::forms::{self, FormError, SignupFields};
use super::pages::{self, AppError};
use crate::config::Language;
use crate::domain::{Email, FormPage, InputError, Name, Status};
use crate::metrics::{self, Limit};
use crate::store::db::Db;
use crate::subscriptions::{
    self, ConfirmOutcome, DeclineOutcome, PreparedList, Signup, SignupOutcome, UnsubscribeMethod, UnsubscribeOutcome,
};
use crate::token::{self, Purpose, TokenError, VerifiedToken};

/// Whether the caller wants JSON: a JSON body or `Accept: application/json`.
fn wants_json(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"))
    };
    has(header::CONTENT_TYPE) || has(header::ACCEPT)
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn form_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, AppError> {
    forms::pairs(bytes).map_err(AppError::from)
}

impl From<FormError> for AppError {
    fn from(e: FormError) -> AppError {
        match e {
            FormError::Unreadable => AppError::Input(InputError::BodyInvalid),
            FormError::UnsupportedType => AppError::UnsupportedMediaType,
        }
    }
}

/// `Access-Control-Allow-Origin` for origins the list allows; nothing
/// otherwise. Answers given before the list is known get theirs in
/// [`super::cors::complete`].
fn add_cors(response: &mut Response, headers: &HeaderMap, list: &PreparedList) {
    response.extensions_mut().insert(super::cors::Decided);
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return };
    response.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    if list.config.allowed_origins.iter().any(|o| o == origin) {
        super::cors::allow(response, origin);
    }
}

/// `OPTIONS /subscribe`: CORS preflight for `fetch()` with a JSON body.
pub async fn subscribe_preflight(state: Arc<AppState>, headers: HeaderMap) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
    let allowed = state.ctx.lists.values().any(|l| l.config.allowed_origins.iter().any(|o| o == origin));
    let mut response = Response::new(String::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.extensions_mut().insert(super::cors::Decided);
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed && let Ok(value) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, accept"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}

/// `POST /subscribe`.
pub async fn subscribe(
    state: Arc<AppState>,
    ip: IpAddr,
    headers: HeaderMap,
    body: Result<Bytes, AppError>,
) -> Response {
    let as_json = wants_json(&headers);
    let fallback_language = state.default_language();
    if let Err(wait) = state.limits.check_ip(ip) {
        tracing::info!("signup refused: rate limit per IP");
        state.metrics.rate_limited(Limit::PerIp);
        return AppError::TooManyRequests { retry_after: wait.as_secs() }.respond(fallback_language, as_json);
    }
    let honeypot = &state.ctx.config.limits.honeypot_field;
    let fields =
        match body.and_then(|b| forms::parse_signup(content_type(&headers), &b, honeypot).map_err(AppError::from)) {
            Ok(fields) => fields,
            Err(e) => return e.respond(fallback_language, as_json),
        };
    let list = match resolve_list(&state, fields.list.as_deref()) {
        Ok(list) => list,
        Err(e) => return e.respond(fallback_language, as_json),
    };
    let language = list.config.language;
    let page = FormPage::from_headers(header_text(&headers, header::ORIGIN), header_text(&headers, header::REFERER));
    let mut response = match subscribe_to(&state, list, ip, page, fields).await {
        Ok(()) if as_json => pages::json(StatusCode::ACCEPTED, &json!({"status": Status::Pending})),
        Ok(()) => match &list.config.thanks_url {
            Some(url) => pages::see_other(url),
            None => pages::html(
                StatusCode::OK,
                &pages::PendingPage {
                    de: language == Language::De,
                    footer: pages::Footer::of(&list.config),
                    list_name: &list.config.name,
                },
            ),
        },
        Err(e) => e.respond_on(&list.config, as_json),
    };
    add_cors(&mut response, &headers, list);
    response
}

/// The named list, or the only list when none is named.
fn resolve_list<'a>(state: &'a AppState, id: Option<&str>) -> Result<&'a PreparedList, AppError> {
    match id.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => state.ctx.list(id).ok_or(AppError::UnknownList),
        None if state.ctx.lists.len() == 1 => Ok(state.ctx.lists.values().next().expect("one list")),
        None => Err(AppError::Input(InputError::ListMissing)),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn subscribe_to(
    state: &AppState,
    list: &PreparedList,
    ip: IpAddr,
    page: Option<FormPage>,
    fields: SignupFields,
) -> Result<(), AppError> {
    let email = Email::parse(fields.email.as_deref().unwrap_or("")).map_err(AppError::Input)?;
    let name = Name::parse(fields.name.as_deref()).map_err(AppError::Input)?;
    if let Err(wait) = state.limits.check_address(email.key()) {
        tracing::info!(list = %list.config.id, "signup refused: rate limit per address");
        state.metrics.rate_limited(Limit::PerAddress);
        return Err(AppError::TooManyRequests { retry_after: wait.as_secs() });
    }
    let (ctx, now) = (state.ctx.clone(), state.clock.now());
    if let Some(reason) = bot_reason(state, list, &fields, now) {
        // The same answer as a person gets, but nothing stored or sent; the
        // counter write makes it take as long as a real signup.
        tracing::info!(list = %list.config.id, reason, "signup dropped as a bot's");
        let list_id = list.config.id.clone();
        state.store.write(move |conn| subscriptions::count_bot(conn, &list_id, now)).await?;
        state.metrics.bot_dropped();
        return Ok(());
    }
    // listgate's own form page sends no Referer (its policy is no-referrer);
    // a valid form token (bot_reason checked it) says the form was that page.
    let page = page.or_else(|| {
        fields.form_token.as_ref()?;
        url::Url::parse(&state.form_url(&list.config.id)).ok().map(|url| FormPage::of_url(&url))
    });
    let signup = Signup { list_id: list.config.id.clone(), email, name, ip, page };
    let masked = signup.email.masked();
    let (metrics, wake) = (state.metrics.clone(), state.outbox_wake.clone());
    let job = move |conn: &dyn Db| subscriptions::signup(conn, &ctx, &signup, now);
    let outcome = state
        .store
        .write_then(job, move |outcome| {
            if matches!(outcome, SignupOutcome::Created { .. }) {
                metrics.signup();
            }
            if matches!(outcome, SignupOutcome::Created { .. } | SignupOutcome::Resent { .. }) {
                wake.notify_one();
            }
        })
        .await?;
    tracing::info!(list = %list.config.id, email = %masked, "signup received");
    tracing::debug!(?outcome, "signup outcome");
    Ok(())
}

/// Why a submission looks like a machine's, if it does: a filled honeypot,
/// or a form token that is forged, stale, too fresh, or missing where the
/// list requires one.
fn bot_reason(
    state: &AppState,
    list: &PreparedList,
    fields: &SignupFields,
    now: time::OffsetDateTime,
) -> Option<&'static str> {
    if fields.honeypot.as_deref().is_some_and(|h| !h.is_empty()) {
        return Some("honeypot filled");
    }
    let limits = &state.ctx.config.limits;
    match fields.form_token.as_deref() {
        Some(token) if !token::check_form(&state.ctx.keys, token, &list.config.id, now, limits.form_min_age) => {
            Some("form token forged, stale or too fresh")
        }
        None if list.config.require_form_token => Some("form token missing"),
        _ => None,
    }
}

fn query_token(query: &Option<String>) -> Option<String> {
    let pairs = forms::pairs(query.as_deref().unwrap_or("").as_bytes()).ok()?;
    forms::first(&pairs, "token").map(str::to_string)
}

/// Verifies a token and finds its list; the error page speaks the list's
/// language when the token is genuine.
fn verify_token<'a>(
    state: &'a AppState,
    token: Option<&str>,
    purpose: Purpose,
) -> Result<(VerifiedToken, &'a PreparedList), (AppError, Language)> {
    let fallback = state.default_language();
    let token = token.ok_or((AppError::TokenInvalid, fallback))?;
    match token::verify(&state.ctx.keys, token, purpose, state.clock.now()) {
        Ok(verified) => match state.ctx.list(&verified.list_id) {
            Some(list) => Ok((verified, list)),
            // Signed by us for a list that has since been removed from the config.
            None => Err((AppError::Gone { retry_url: None }, fallback)),
        },
        Err(TokenError::Invalid) => Err((AppError::TokenInvalid, fallback)),
        Err(TokenError::Expired { list_id }) => {
            let list = state.ctx.list(&list_id);
            let retry_url = list.map(|l| state.form_url(&l.config.id));
            Err((AppError::TokenExpired { retry_url }, list.map_or(fallback, |l| l.config.language)))
        }
    }
}

/// `GET /confirm?token=`: a page with buttons. Changes nothing, so mail
/// scanners that fetch every link confirm no one.
pub async fn confirm_page(state: Arc<AppState>, query: Option<String>) -> Response {
    let token = query_token(&query);
    match verify_token(&state, token.as_deref(), Purpose::Confirm) {
        Ok((_, list)) => pages::html(
            StatusCode::OK,
            &pages::ConfirmPage {
                de: list.config.language == Language::De,
                footer: pages::Footer::of(&list.config),
                list_name: &list.config.name,
                consent_text: &list.config.consent_text,
                token: token.as_deref().unwrap_or(""),
            },
        ),
        Err((e, language)) => e.respond(language, false),
    }
}

/// `POST /confirm` with `token` (and `action=decline` for "I did not sign up").
pub async fn confirm(state: Arc<AppState>, ip: IpAddr, body: Result<Bytes, AppError>) -> Response {
    let fallback = state.default_language();
    let pairs = match body.and_then(|b| form_pairs(&b)) {
        Ok(pairs) => pairs,
        Err(e) => return e.respond(fallback, false),
    };
    let (verified, list) = match verify_token(&state, forms::first(&pairs, "token"), Purpose::Confirm) {
        Ok(v) => v,
        Err((e, language)) => return e.respond(language, false),
    };
    let de = list.config.language == Language::De;
    let (ctx, now) = (state.ctx.clone(), state.clock.now());
    if forms::first(&pairs, "action") == Some("decline") {
        let result = state.store.write_erasing(move |conn| subscriptions::decline(conn, &ctx, &verified, now)).await;
        return match result {
            Ok(outcome) => {
                tracing::info!(list = %list.config.id, ?outcome, "signup declined");
                let page = pages::DeclinedPage {
                    de,
                    footer: pages::Footer::of(&list.config),
                    list_name: &list.config.name,
                    already_confirmed: outcome == DeclineOutcome::AlreadyConfirmed,
                    already_unsubscribed: outcome == DeclineOutcome::AlreadyUnsubscribed,
                    held: outcome == DeclineOutcome::Held,
                };
                pages::html(StatusCode::OK, &page)
            }
            Err(e) => AppError::from(e).respond_on(&list.config, false),
        };
    }
    let (metrics, wake) = (state.metrics.clone(), state.webhook_wake.clone());
    let job = move |conn: &dyn Db| subscriptions::confirm(conn, &ctx, &verified, ip, now);
    let result = state
        .store
        .write_then(job, move |outcome| {
            if *outcome == ConfirmOutcome::Confirmed {
                metrics.confirmation();
                wake.notify_one();
            }
        })
        .await;
    match result {
        Ok(ConfirmOutcome::Confirmed | ConfirmOutcome::AlreadyConfirmed) => {
            tracing::info!(list = %list.config.id, "subscription confirmed");
            match &list.config.confirmed_url {
                Some(url) => pages::see_other(url),
                None => pages::html(
                    StatusCode::OK,
                    &pages::ConfirmedPage { de, footer: pages::Footer::of(&list.config), list_name: &list.config.name },
                ),
            }
        }
        Ok(ConfirmOutcome::Gone) => {
            AppError::Gone { retry_url: Some(state.form_url(&list.config.id)) }.respond_on(&list.config, false)
        }
        Err(e) => AppError::from(e).respond_on(&list.config, false),
    }
}

/// `GET /unsubscribe?token=`: a page with one button; changes nothing.
pub async fn unsubscribe_page(state: Arc<AppState>, query: Option<String>) -> Response {
    let token = query_token(&query);
    match verify_token(&state, token.as_deref(), Purpose::Unsubscribe) {
        Ok((_, list)) => pages::html(
            StatusCode::OK,
            &pages::UnsubscribePage {
                de: list.config.language == Language::De,
                footer: pages::Footer::of(&list.config),
                list_name: &list.config.name,
                token: token.as_deref().unwrap_or(""),
            },
        ),
        Err((e, language)) => e.respond(language, false),
    }
}

/// `POST /unsubscribe?token=`: from our page's button or a mail client's
/// one-click POST. Always 200 with a page, never a redirect (RFC 8058).
pub async fn unsubscribe(
    state: Arc<AppState>,
    ip: IpAddr,
    query: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, AppError>,
) -> Response {
    let token = query_token(&query);
    let (verified, list) = match verify_token(&state, token.as_deref(), Purpose::Unsubscribe) {
        Ok(v) => v,
        Err((e, language)) => return e.respond(language, false),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => return e.respond_on(&list.config, false),
    };
    let method = if forms::is_one_click(content_type(&headers), &body) {
        UnsubscribeMethod::OneClick
    } else {
        UnsubscribeMethod::Page
    };
    let (ctx, now) = (state.ctx.clone(), state.clock.now());
    let (metrics, wake) = (state.metrics.clone(), state.webhook_wake.clone());
    let job = move |conn: &dyn Db| subscriptions::unsubscribe(conn, &ctx, &verified, Some(ip), method, now);
    let result = state
        .store
        .write_then(job, move |outcome| {
            if *outcome == UnsubscribeOutcome::Unsubscribed {
                metrics.unsubscribe(method);
                wake.notify_one();
            }
        })
        .await;
    match result {
        Ok(outcome) => {
            tracing::info!(list = %list.config.id, method = method.as_str(), ?outcome, "unsubscribe");
            pages::html(
                StatusCode::OK,
                &pages::UnsubscribedPage {
                    de: list.config.language == Language::De,
                    footer: pages::Footer::of(&list.config),
                    list_name: &list.config.name,
                },
            )
        }
        Err(e) => AppError::from(e).respond_on(&list.config, false),
    }
}

/// `GET /` and `GET /form?list=L`: the signup page, which is also the snippet to copy.
pub async fn form_page(state: Arc<AppState>, query: Option<String>) -> Response {
    let pairs = forms::pairs(query.as_deref().unwrap_or("").as_bytes()).unwrap_or_default();
    let list = match forms::first(&pairs, "list") {
        Some(id) => state.ctx.list(id),
        None => state.ctx.config.lists.first().and_then(|l| state.ctx.list(&l.id)),
    };
    let Some(list) = list else {
        return AppError::UnknownList.respond(state.default_language(), false);
    };
    let action = format!("{}/subscribe", state.ctx.config.base());
    let limits = &state.ctx.config.limits;
    let form_token = token::sign_form(&state.ctx.keys, &list.config.id, state.clock.now(), limits.form_max_age);
    pages::html(
        StatusCode::OK,
        &pages::FormPage {
            de: list.config.language == Language::De,
            footer: pages::Footer::of(&list.config),
            list_id: &list.config.id,
            list_name: &list.config.name,
            consent_text: &list.config.consent_text,
            action: &action,
            honeypot: &limits.honeypot_field,
            form_token: &form_token,
        },
    )
}

/// `GET /healthz`: 200 when the database answers, 503 when it does not,
/// naming which kind it is, so a load balancer takes a node that lost its
/// PostgreSQL out of rotation and an operator sees why.
pub async fn healthz(state: Arc<AppState>) -> Response {
    let database = state.store.kind();
    match state.store.read(|c| c.ping()).await {
        Ok(()) => pages::json(StatusCode::OK, &json!({"status": "ok", "database": database})),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            pages::json(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "unavailable", "database": database}))
        }
    }
}

/// `GET /metrics`: Prometheus text. The queue length is counted in the
/// database at each scrape, because the CLI and restarts change the outbox
/// behind the server's back; a failed count leaves only that gauge out.
pub async fn metrics(state: Arc<AppState>) -> Response {
    let queued = match state.store.read(|c| c.count_queued_mails()).await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot count queued mails");
            None
        }
    };
    let mut response = Response::new(state.metrics.render(queued).into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    response
}

/// `GET /style.css`.
pub fn stylesheet() -> Response {
    let mut response = Response::new(pages::STYLESHEET.into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
