//! Answers given before a handler gets far — rate limits, unreadable or
//! oversized bodies, unknown lists, warp's own 404 and 405 — carry the same
//! headers as every other: CORS for the lists' allowed origins (the site's
//! `fetch()` must be able to read a 429 or a 400 to tell its visitor), and
//! the security headers.
//!
//! hyper answers some malformed requests itself before any filter runs (400
//! for a garbled request line or a bad `Content-Length`, 414, 431); those
//! have an empty body and are out of reach here.

use reqwest::{Method, Response};

use crate::helpers::{TestApp, spawn_app_without_smtp};

const SITE: &str = "https://www.example.com";

/// A server whose list allows `SITE`, with `signups_per_ip`.
async fn site_app(signups_per_ip: &str) -> TestApp {
    let limit = signups_per_ip.parse().unwrap();
    spawn_app_without_smtp(|c| {
        c.lists[0].allowed_origins = vec![SITE.into()];
        c.limits.signups_per_ip = limit;
    })
    .await
}

/// A `fetch()`-style JSON request to `/subscribe` from `origin`.
async fn send(app: &TestApp, origin: &str, method: Method, content_type: &str, body: String) -> Response {
    app.client
        .request(method, app.url("/subscribe"))
        .header("origin", origin)
        .header("accept", "application/json")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn allowed_origin(response: &Response) -> Option<&str> {
    response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_to_an_allowed_origin_carries_the_cors_headers() {
    let app = site_app("off").await;
    let json = "application/json";
    let big = format!(r#"{{"email": "{}@example.org"}}"#, "a".repeat(20_000));
    let cases = [
        (Method::POST, json, "{not json".to_string(), 400),
        (Method::POST, "application/x-www-form-urlencoded", "email=%ff%fe".to_string(), 400),
        (Method::POST, json, r#"{"email": "x@example.org", "list": "nope"}"#.to_string(), 404),
        (Method::POST, json, big, 413),
        (Method::POST, "text/plain", "email=x@example.org".to_string(), 415),
        (Method::PUT, json, "{}".to_string(), 405),
    ];
    for (method, content_type, body, status) in cases {
        let what = format!("{method} {content_type} → {status}");
        let answer = send(&app, SITE, method.clone(), content_type, body.clone()).await;
        assert_eq!(answer.status(), status, "{what}");
        assert_eq!(allowed_origin(&answer), Some(SITE), "{what}");
        assert_eq!(answer.headers()["vary"], "Origin", "{what}");
        let other = send(&app, "https://evil.example", method, content_type, body).await;
        assert_eq!(other.status(), status, "{what}");
        assert_eq!(allowed_origin(&other), None, "{what}: other origins read nothing");
    }

    // The per-IP limit answers before the body is read; the script can read
    // the 429 and its Retry-After.
    let limited = site_app("1/1h").await;
    let signup = || send(&limited, SITE, Method::POST, json, r#"{"email": "cors@example.org"}"#.to_string());
    let mut answer = signup().await;
    while answer.status() == 202 {
        answer = signup().await;
    }
    assert_eq!(answer.status(), 429);
    assert_eq!(allowed_origin(&answer), Some(SITE));
    assert!(answer.headers().contains_key("retry-after"));
    assert_eq!(answer.headers()["access-control-expose-headers"], "retry-after");
    let other = send(&limited, "https://evil.example", Method::POST, json, "{}".to_string()).await;
    assert_eq!((other.status().as_u16(), allowed_origin(&other)), (429, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warp_rejections_carry_the_security_headers() {
    let app = site_app("off").await;
    let requests = [
        (Method::GET, "/nowhere", 404),
        (Method::GET, "/subscribe/x", 404),
        (Method::GET, "/subscribe", 405),
        (Method::PUT, "/subscribe", 405),
        (Method::DELETE, "/confirm", 405),
        (Method::PATCH, "/", 405),
    ];
    for (method, path, status) in requests {
        let answer = app.client.request(method.clone(), app.url(path)).header("origin", SITE).send().await.unwrap();
        assert_eq!(answer.status(), status, "{method} {path}");
        let h = answer.headers();
        assert_eq!(h["referrer-policy"], "no-referrer", "{method} {path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{method} {path}");
        assert_eq!(h["x-frame-options"], "DENY", "{method} {path}");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{method} {path}");
        assert_eq!(h["cache-control"], "no-store", "{method} {path}");
        assert_eq!(allowed_origin(&answer), Some(SITE), "{method} {path}");
    }
}
