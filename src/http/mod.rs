//! HTTP: one filter per route, the shared request parts (client IP, a
//! size-limited body, the raw query), and the rejection handler for warp's
//! own 404/405. Handlers live in [`handlers`], pages and errors in [`pages`].

pub mod client_ip;
pub mod cors;
pub mod forms;
pub mod handlers;
pub mod pages;
pub mod serve;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::sync::Notify;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::clock::SharedClock;
use crate::config::Language;
use crate::store::Store;
use crate::subscriptions::Context;
use pages::AppError;

/// What every handler can reach.
pub struct AppState {
    pub ctx: Context,
    pub store: Store,
    pub clock: SharedClock,
    /// Woken after a signup queues a mail, so delivery starts at once.
    pub outbox_wake: Arc<Notify>,
    /// Wakes the webhook caller after a change it must report.
    pub webhook_wake: Arc<Notify>,
    /// Signup rate limits, checked before anything is stored.
    pub limits: crate::limits::SignupLimits,
    /// Counters for `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// The language for pages that belong to no list (bad tokens, 404s): the first list's.
    pub fn default_language(&self) -> Language {
        self.ctx.config.lists.first().map_or(Language::En, |l| l.language)
    }

    /// The signup page of a list, offered on expired links.
    pub fn form_url(&self, list_id: &str) -> String {
        format!("{}/form?list={list_id}", self.ctx.config.base())
    }
}

fn with_state(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The client address per `client_ip::resolve`.
fn client_ip(state: Arc<AppState>) -> impl Filter<Extract = (IpAddr,), Error = Infallible> + Clone {
    serve::peer().and(warp::header::headers_cloned()).map(move |peer: Option<SocketAddr>, headers: HeaderMap| {
        let server = &state.ctx.config.server;
        client_ip::resolve(peer, &headers, &server.trusted_proxies, server.trusted_proxy_header)
    })
}

/// The request's `Origin`, if it has a readable one.
fn request_origin() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::optional::<String>("origin").or(warp::any().map(|| None)).unify()
}

/// The raw query string, if any.
fn raw_query() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::query::raw().map(Some).or(warp::any().map(|| None)).unify()
}

/// The body, at most `limit` bytes. Unlike warp's `content_length_limit`,
/// this also reads chunked bodies without a Content-Length, which RFC 8058
/// one-click unsubscribes may send.
fn body(limit: usize) -> impl Filter<Extract = (Result<Bytes, AppError>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(move |length: Option<u64>, stream| read_limited(length, stream, limit))
}

async fn read_limited<S, B>(length: Option<u64>, stream: S, limit: usize) -> Result<Bytes, AppError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if length.is_some_and(|n| n > limit as u64) {
        return Err(AppError::BodyTooLarge);
    }
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| AppError::Input(crate::domain::InputError::BodyInvalid))?;
        if body.len() + chunk.remaining() > limit {
            return Err(AppError::BodyTooLarge);
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            body.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

/// GET, and HEAD (which a link checker may send) for pages.
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// The metrics listener's one route, `GET /metrics` (Prometheus text); any
/// other request there gets warp's 404 or 405. Never part of `routes`: the
/// public listener answers 404 to `/metrics` in every spelling.
pub fn metrics_routes(state: Arc<AppState>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("metrics").and(get_or_head()).and(warp::any().map(move || state.clone())).then(handlers::metrics)
}

/// All public routes, with security headers on every answer.
pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let limit = state.ctx.config.limits.body_bytes;
    let s = || with_state(state.clone());

    let subscribe = warp::path!("subscribe")
        .and(warp::post())
        .and(s())
        .and(client_ip(state.clone()))
        .and(warp::header::headers_cloned())
        .and(body(limit))
        .then(handlers::subscribe);
    let preflight = warp::path!("subscribe")
        .and(warp::options())
        .and(s())
        .and(warp::header::headers_cloned())
        .then(handlers::subscribe_preflight);
    let confirm_page = warp::path!("confirm").and(get_or_head()).and(s()).and(raw_query()).then(handlers::confirm_page);
    let confirm = warp::path!("confirm")
        .and(warp::post())
        .and(s())
        .and(client_ip(state.clone()))
        .and(body(limit))
        .then(handlers::confirm);
    let unsubscribe_page =
        warp::path!("unsubscribe").and(get_or_head()).and(s()).and(raw_query()).then(handlers::unsubscribe_page);
    let unsubscribe = warp::path!("unsubscribe")
        .and(warp::post())
        .and(s())
        .and(client_ip(state.clone()))
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(body(limit))
        .then(handlers::unsubscribe);
    let index = warp::path::end().and(get_or_head()).and(s()).then(|state| handlers::form_page(state, None));
    let form = warp::path!("form").and(get_or_head()).and(s()).and(raw_query()).then(handlers::form_page);
    let healthz = warp::path!("healthz").and(get_or_head()).and(s()).then(handlers::healthz);
    let stylesheet = warp::path!("style.css").and(get_or_head()).map(handlers::stylesheet);

    let language = state.default_language();
    let security_headers = pages::security_headers(&state.ctx.config);
    let cors_origins = cors::all_allowed_origins(&state.ctx.config);
    let answers = subscribe
        .or(preflight)
        .unify()
        .or(confirm_page)
        .unify()
        .or(confirm)
        .unify()
        .or(unsubscribe_page)
        .unify()
        .or(unsubscribe)
        .unify()
        .or(index)
        .unify()
        .or(form)
        .unify()
        .or(healthz)
        .unify()
        .or(stylesheet)
        .unify()
        .recover(move |rejection| handle_rejection(rejection, language))
        .unify();
    request_origin()
        .and(answers)
        .map(move |origin: Option<String>, response| cors::complete(response, origin.as_deref(), &cors_origins))
        .with(warp::reply::with::headers(security_headers))
        .with(warp::reply::with::default_header("cache-control", "no-store"))
        .with(count_requests(state.metrics.clone()))
}

/// Counts every answer, 404s included, under its route and status class,
/// and times it from the request to the response headers.
fn count_requests(metrics: Arc<crate::metrics::Metrics>) -> warp::log::Log<impl Fn(warp::log::Info<'_>) + Clone> {
    warp::log::custom(move |info| metrics.request(info.path(), info.status().as_u16(), info.elapsed()))
}

/// warp's own rejections (no route, wrong method, bad header) as pages.
async fn handle_rejection(rejection: Rejection, language: Language) -> Result<Response, Infallible> {
    let error = if rejection.is_not_found() {
        AppError::NotFound
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        AppError::MethodNotAllowed
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        AppError::BodyTooLarge
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some() {
        AppError::Input(crate::domain::InputError::BodyInvalid)
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        AppError::Input(crate::domain::InputError::BodyInvalid)
    };
    Ok(error.respond(language, false))
}
