//! Webhooks against a real HTTP receiver on loopback (a small warp server in
//! the test): confirmations and unsubscribes arrive signed within seconds,
//! a failing receiver gets the call again, and the signature verifies with
//! the list's secret and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use listgate::webhooks::signature;
use tokio::sync::mpsc;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};

use crate::helpers::{PATIENCE, TestApp, spawn_app_with};

const SECRET: &str = "a webhook secret of some length";

/// One call as the receiver saw it.
#[derive(Debug)]
struct Call {
    headers: HeaderMap,
    body: Vec<u8>,
    json: serde_json::Value,
}

/// A receiver on 127.0.0.1 answering 500 to the first `failures` calls and
/// 204 after; every call is handed to the test.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<Call>) {
    let (calls, heard) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let route = warp::post().and(warp::path("hook")).and(warp::header::headers_cloned()).and(warp::body::bytes()).map(
        move |headers: HeaderMap, body: bytes::Bytes| {
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let _ = calls.send(Call { headers, body: body.to_vec(), json });
            if seen.fetch_add(1, Ordering::SeqCst) < failures {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::NO_CONTENT
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, heard)
}

async fn next_call(heard: &mut mpsc::UnboundedReceiver<Call>) -> Call {
    tokio::time::timeout(PATIENCE, heard.recv()).await.expect("a webhook call in time").expect("receiver running")
}

async fn app_with_webhook(url: &str) -> TestApp {
    let url = url.parse().unwrap();
    spawn_app_with("ok", |c| {
        c.lists[0].webhook_url = Some(url);
        c.lists[0].webhook_secret = Some(SECRET.into());
    })
    .await
}

/// Checks `X-Listgate-Signature` as a receiver would: HMAC-SHA256 over
/// "t.body" with the shared secret, and a fresh time.
fn assert_signed(call: &Call) {
    let header = call.headers["x-listgate-signature"].to_str().unwrap();
    let t: i64 = header.strip_prefix("t=").and_then(|r| r.split(',').next()).unwrap().parse().unwrap();
    assert!((time::OffsetDateTime::now_utc().unix_timestamp() - t).abs() < 60, "a fresh time: {header}");
    assert_eq!(header, signature(SECRET, t, &call.body));
    assert_ne!(header, signature("another secret of some length", t, &call.body));
    let mut tampered = call.body.clone();
    tampered[0] = b' ';
    assert_ne!(header, signature(SECRET, t, &tampered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_and_one_click_unsubscribe_reach_the_webhook_signed_within_seconds() {
    let (url, mut heard) = receiver(0).await;
    let app = app_with_webhook(&url).await;
    app.confirmed_subscriber("Anna@Example.org", Some("Anna")).await;

    let call = next_call(&mut heard).await;
    assert_signed(&call);
    assert_eq!(call.headers["x-listgate-event"], "confirmed");
    assert_eq!(call.headers["content-type"], "application/json");
    let body = &call.json;
    assert_eq!((body["event"].as_str(), body["list"].as_str()), (Some("confirmed"), Some("newsletter")));
    assert_eq!((body["email"].as_str(), body["name"].as_str()), (Some("Anna@Example.org"), Some("Anna")));
    assert_eq!(call.headers["x-listgate-delivery"].to_str().unwrap(), body["delivery"].to_string());
    // The unsubscribe link in the call works like the exported one.
    let unsubscribe_url = body["unsubscribe_url"].as_str().unwrap().to_string();
    assert!(unsubscribe_url.starts_with(&format!("{}/unsubscribe?token=", app.base)), "{unsubscribe_url}");

    let token = unsubscribe_url.split("token=").nth(1).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let verified = listgate::token::verify(&app.keys(), token, listgate::token::Purpose::Unsubscribe, now).unwrap();
    let id = app.db().value("SELECT id FROM subscriptions", &[]);
    assert_eq!(verified.subject, app.subject(id), "a new-style link (layout 2)");
    assert_eq!(app.one_click_with(token).await.status(), 200);
    let call = next_call(&mut heard).await;
    assert_signed(&call);
    assert_eq!(call.headers["x-listgate-event"], "unsubscribed");
    assert_eq!((call.json["event"].as_str(), call.json["method"].as_str()), (Some("unsubscribed"), Some("one-click")));
    assert!(call.json.get("unsubscribe_url").is_none());

    app.wait_for_value("SELECT count(*) FROM webhook_calls WHERE state = 'sent' AND http_status = 204", 2).await;
    // A repeated one-click changes nothing and calls nobody.
    assert_eq!(app.one_click(id).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(heard.try_recv().is_err(), "no call for a repeat");
    let stored: i64 = app.db().value("SELECT count(*) FROM webhook_calls", &[]);
    assert_eq!(stored, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_same_call_again_until_it_answers_2xx() {
    let (url, mut heard) = receiver(1).await;
    let app = app_with_webhook(&url).await;
    app.confirmed_subscriber("retry@example.org", None).await;
    let first = next_call(&mut heard).await;
    let second = next_call(&mut heard).await; // retry_base is 1 s in tests
    assert_eq!(first.headers["x-listgate-delivery"], second.headers["x-listgate-delivery"]);
    assert_eq!(first.json, second.json);
    assert_signed(&second);
    app.wait_for_value("SELECT count(*) FROM webhook_calls WHERE state = 'sent' AND attempts = 2", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_still_retrying_after_an_unsubscribe_is_dropped_not_sent_late() {
    let (url, mut heard) = receiver(1).await;
    let app = app_with_webhook(&url).await;
    let id = app.confirmed_subscriber("changed.mind@example.org", None).await;
    let failed = next_call(&mut heard).await; // answered 500: due again a second later
    assert_eq!(failed.json["event"], "confirmed");
    assert_eq!(app.one_click(id).await.status(), 200);
    assert_eq!(next_call(&mut heard).await.json["event"], "unsubscribed");
    app.wait_for_value(
        "SELECT count(*) FROM webhook_calls WHERE event = 'confirmed' AND state = 'failed' AND last_error LIKE 'superseded%'",
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(heard.try_recv().is_err(), "the stale confirmation never reaches the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_loses_nothing_and_an_operator_unsubscribe_is_called_too() {
    // Nothing listens here: connection refused, tried again later.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = app_with_webhook(&format!("http://127.0.0.1:{closed}/hook")).await;
    app.confirmed_subscriber("later@example.org", None).await;
    app.wait_for_value(
        "SELECT count(*) FROM webhook_calls WHERE state = 'queued' AND attempts >= 1 AND last_error LIKE '%connect%'",
        1,
    )
    .await;
    // The command reads the same list configuration as the server.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("listgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[lists]]\nid = \"newsletter\"\nname = \"Newsletter\"\nconsent_text = \"ok\"\n\
             webhook_url = \"http://127.0.0.1:{closed}/hook\"\nwebhook_secret = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    assert_eq!(app.cli(&["unsubscribe", "later@example.org", "--config", config]).status.code(), Some(0));
    let queued: i64 =
        app.db().value("SELECT count(*) FROM webhook_calls WHERE event = 'unsubscribed' AND state = 'queued'", &[]);
    assert_eq!(queued, 1, "the operator's unsubscribe is queued for the webhook too");
    // Erasure takes the calls (and the address in them) with it.
    assert_eq!(app.cli(&["erase", "later@example.org", "--yes"]).status.code(), Some(0));
    let left: i64 = app.db().value("SELECT count(*) FROM webhook_calls", &[]);
    assert_eq!(left, 0);
}
