//! CORS for the site's `fetch()`: the answer is readable by an origin a
//! list names in `allowed_origins`, and by no other.
//!
//! The subscribe handler decides for the list it serves, the preflight for
//! all lists ([`Decided`]).
//! Every other answer — a 429 before the body is read, a 400, 413 or 415 on
//! a body that never names a list, a 404 for an unknown list, and warp's own
//! rejections — gets the rule the preflight already applied: the origin is
//! allowed if any list allows it. Otherwise the site's script sees only a
//! network error and cannot tell its visitor to wait or fix the address.
//! No credentials are ever allowed (listgate sets no cookies).

use std::sync::Arc;

use warp::http::{HeaderValue, header};
use warp::reply::Response;

/// Marks an answer whose CORS headers its handler already set, allowing
/// the origin or not; [`complete`] leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct Decided;

/// Every origin some list allows.
pub fn all_allowed_origins(config: &crate::config::Config) -> Arc<Vec<String>> {
    let mut origins: Vec<String> = config.lists.iter().flat_map(|l| l.allowed_origins.iter().cloned()).collect();
    origins.sort();
    origins.dedup();
    Arc::new(origins)
}

/// Adds `Access-Control-Allow-Origin` (and `Vary: Origin`) to an answer no
/// list has decided on, when the request's `origin` is allowed by any list.
pub fn complete(mut response: Response, origin: Option<&str>, allowed: &[String]) -> Response {
    let Some(origin) = origin else { return response };
    let decided = response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        || response.extensions().get::<Decided>().is_some();
    if decided {
        return response;
    }
    response.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed.iter().any(|o| o == origin) {
        allow(&mut response, origin);
    }
    response
}

/// Lets `origin` read the answer, its `Retry-After` included (not a
/// CORS-safelisted header, and what a 429 or 503 tells the script).
pub fn allow(response: &mut Response, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Response {
        Response::new(String::new().into())
    }

    #[test]
    fn an_undecided_answer_is_opened_to_origins_some_list_allows_only() {
        let allowed = vec!["https://www.example.com".to_string()];
        let r = complete(answer(), Some("https://www.example.com"), &allowed);
        assert_eq!(r.headers()["access-control-allow-origin"], "https://www.example.com");
        assert_eq!(r.headers()["access-control-expose-headers"], "retry-after");
        assert_eq!(r.headers()["vary"], "Origin");
        let r = complete(answer(), Some("https://evil.example"), &allowed);
        assert!(r.headers().get("access-control-allow-origin").is_none());
        assert_eq!(r.headers()["vary"], "Origin");
        let r = complete(answer(), None, &allowed);
        assert!(r.headers().is_empty());
    }

    #[test]
    fn a_handlers_own_decision_is_kept() {
        let allowed = vec!["https://www.example.com".to_string()];
        let mut refused = answer();
        refused.extensions_mut().insert(Decided);
        let r = complete(refused, Some("https://www.example.com"), &allowed);
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
}
