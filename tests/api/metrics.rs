//! `GET /metrics`: the counters move by exactly what happened through HTTP,
//! and Prometheus's own checker (`promtool`) accepts the text.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::helpers::{PATIENCE, TestApp, spawn_app, spawn_app_without_smtp};
use crate::tools::{Tool, require};

async fn scrape(app: &TestApp) -> String {
    let response = app.get_metrics().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

/// The value of the one sample named exactly `series` (name and labels).
fn value(text: &str, series: &str) -> u64 {
    let values: Vec<u64> = text
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{series} has value {v:?}")))
        .collect();
    assert_eq!(values.len(), 1, "{series} should appear once in:\n{text}");
    values[0]
}

/// Scrapes until `series` reaches `expected` (the outbox counts a mail just
/// after it records it), and returns that scrape.
async fn scrape_until(app: &TestApp, series: &str, expected: u64) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(app).await;
        if value(&text, series) == expected {
            return text;
        }
        assert!(start.elapsed() < PATIENCE, "{series} stayed {}, expected {expected}", value(&text, series));
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Runs `promtool check metrics` on `text`.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(Tool::Promtool.path())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_a_confirmation_and_a_one_click_unsubscribe_move_the_counters_by_one_each() {
    require(&[Tool::Promtool, Tool::Aiosmtpd]);
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let id = app.confirmed_subscriber("metrics@example.org", None).await;
    assert_eq!(app.one_click(id).await.status(), 200);
    // A repeated unsubscribe and a signup of the confirmed address change nothing.
    assert_eq!(app.one_click(id).await.status(), 200);
    let after = scrape_until(&app, "listgate_mails_sent_total", value(&before, "listgate_mails_sent_total") + 1).await;

    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(moved("listgate_signups_total"), 1);
    assert_eq!(moved("listgate_confirmations_total"), 1);
    assert_eq!(moved("listgate_unsubscribes_total{method=\"one-click\"}"), 1);
    assert_eq!(moved("listgate_unsubscribes_total{method=\"page\"}"), 0);
    assert_eq!(moved("listgate_mails_failed_total"), 0);
    assert_eq!(moved("listgate_mails_retried_total"), 0);
    assert_eq!(moved("listgate_bot_signups_dropped_total"), 0);
    assert_eq!(moved("listgate_rate_limited_total{limit=\"ip\"}"), 0);
    assert_eq!(value(&after, "listgate_mails_queued"), 0);
    assert_eq!(moved("listgate_http_requests_total{route=\"subscribe\",status=\"2xx\"}"), 1);
    assert_eq!(moved("listgate_http_requests_total{route=\"confirm\",status=\"2xx\"}"), 1);
    assert_eq!(moved("listgate_http_requests_total{route=\"unsubscribe\",status=\"2xx\"}"), 2);
    assert_eq!(moved("listgate_http_request_duration_seconds_count{route=\"subscribe\"}"), 1);
    assert!(!after.contains("example.org") && !after.contains("127.0.0.1"), "no address or IP in a label");

    let (ok, said) = promtool_check(&after);
    assert!(ok && said.trim().is_empty(), "promtool check metrics complains:\n{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_rate_limits_and_odd_requests_are_counted_without_their_paths() {
    require(&[Tool::Promtool]);
    let app = spawn_app_without_smtp(|_| {}).await;
    let honeypot = [("email", "bot@example.org"), ("website", "http://spam.example")];
    assert_eq!(app.post_form("/subscribe", &honeypot).await.status(), 200);
    assert_eq!(app.subscribe("not an address").await.status(), 400);
    assert_eq!(app.get("/confirm/secret-looking-token").await.status(), 404);
    let post = app.client.post(format!("{}/metrics", app.metrics_base)).send().await.unwrap();
    assert_eq!(post.status(), 405, "the metrics take no input");
    let text = scrape(&app).await;
    assert_eq!(value(&text, "listgate_bot_signups_dropped_total"), 1);
    assert_eq!(value(&text, "listgate_signups_total"), 0);
    assert_eq!(value(&text, "listgate_http_requests_total{route=\"subscribe\",status=\"4xx\"}"), 1);
    assert_eq!(value(&text, "listgate_http_requests_total{route=\"other\",status=\"4xx\"}"), 1);
    assert!(!text.contains("secret-looking-token"), "{text}");
    app.stop().await;

    let limited = spawn_app_without_smtp(|c| c.limits.signups_per_ip = "1/1h".parse().unwrap()).await;
    assert_eq!(limited.subscribe("first@example.org").await.status(), 200);
    assert_eq!(limited.subscribe("second@example.org").await.status(), 429);
    let text = scrape(&limited).await;
    assert_eq!(value(&text, "listgate_rate_limited_total{limit=\"ip\"}"), 1);
    assert_eq!(value(&text, "listgate_rate_limited_total{limit=\"address\"}"), 0);
    assert_eq!(value(&text, "listgate_http_requests_total{route=\"subscribe\",status=\"4xx\"}"), 1);
    let (ok, said) = promtool_check(&text);
    assert!(ok && said.trim().is_empty(), "promtool check metrics complains:\n{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_never_serves_metrics_in_any_spelling() {
    // Counters that move per request would tell anyone whether an address
    // was new, pending or subscribed: they live on server.metrics_bind only.
    let app = spawn_app_without_smtp(|_| {}).await;
    for path in ["/metrics", "/metrics/", "/metrics?x=1", "//metrics", "/Metrics", "/metrics/%2e", "/./metrics"] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let response = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 404, "{method} {path} on the public listener");
            let body = response.text().await.unwrap();
            assert!(!body.contains("listgate_"), "{method} {path}: {body}");
        }
    }
    assert!(scrape(&app).await.contains("listgate_signups_total 0"), "the metrics listener serves them");
    let elsewhere = app.client.get(format!("{}/", app.metrics_base)).send().await.unwrap();
    assert_eq!(elsewhere.status(), 404, "and nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_metrics_bind_there_is_no_metrics_listener_and_a_taken_port_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = listgate::config::Config::load_from(None, Vec::new()).unwrap();
    assert_eq!(config.server.metrics_bind, None, "off by default");
    let store = crate::store::TestStore::new(dir.path());
    store.configure(&mut config.database);
    config.secrets.key_file = dir.path().join("listgate.key");
    config.mail.url = format!("file://{}", dir.path().join("mail").display());
    let clock = std::sync::Arc::new(listgate::clock::SystemClock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listgate::Application::build_with_listener(config.clone(), clock.clone(), listener).await.unwrap();
    assert_eq!(app.metrics_addr(), None);
    drop(app);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.server.metrics_bind = Some(taken.local_addr().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = listgate::Application::build_with_listener(config, clock, listener).await.err().expect("port taken");
    assert!(
        error.contains("server.metrics_bind") && error.contains(&taken.local_addr().unwrap().to_string()),
        "{error}"
    );
}

#[test]
fn promtool_rejects_a_broken_exposition() {
    require(&[Tool::Promtool]);
    // The checker is real: a counter without `_total` and a bad value fail it.
    let (ok, said) = promtool_check("# HELP x_seconds X.\n# TYPE x_seconds counter\nx_seconds 1\n");
    assert!(!ok && said.contains("_total"), "{said}");
    let (ok, _) = promtool_check("# HELP y_total Y.\n# TYPE y_total counter\ny_total one\n");
    assert!(!ok);
}
