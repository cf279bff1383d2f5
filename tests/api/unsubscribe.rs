//! `GET`/`POST /unsubscribe`: the page, the RFC 8058 one-click POST in all
//! its shapes, and tokens that never expire.

use std::io::{Read, Write};

use listgate::token::{self, Purpose};

use crate::helpers::{TestApp, spawn_app};

async fn confirmed(app: &TestApp, email: &str) -> (i64, String) {
    let (id, token) = app.signup_and_get_token(email).await;
    assert_eq!(app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
    (id, token::sign(&app.keys(), Purpose::Unsubscribe, app.subject(id), "newsletter", None))
}

fn unsubscribed(app: &TestApp, id: i64) -> (String, Option<String>) {
    app.db().value("SELECT status, unsubscribe_method FROM subscriptions WHERE id = ?1", &[id.into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_page_changes_nothing_and_its_button_unsubscribes() {
    let app = spawn_app().await;
    let (id, token) = confirmed(&app, "page@example.org").await;
    let before = app.row_counts();
    let page = app.get(&format!("/unsubscribe?token={token}")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("action=\"/unsubscribe?token={token}\"")));
    assert_eq!(app.client.head(app.url(&format!("/unsubscribe?token={token}"))).send().await.unwrap().status(), 200);
    assert_eq!(app.row_counts(), before);
    assert_eq!(unsubscribed(&app, id).0, "confirmed");

    let response =
        app.client.post(app.url(&format!("/unsubscribe?token={token}"))).form(&[("x", "")]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("You are unsubscribed"));
    assert_eq!(unsubscribed(&app, id), ("unsubscribed".into(), Some("page".into())));
    // Idempotent: again is fine and records nothing new.
    let again = app.client.post(app.url(&format!("/unsubscribe?token={token}"))).body("").send().await.unwrap();
    assert_eq!(again.status(), 200);
    let events: i64 = app.db().value("SELECT count(*) FROM proof_events WHERE kind = 'unsubscribe'", &[]);
    assert_eq!(events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_works_as_multipart_and_without_content_length() {
    let app = spawn_app().await;
    let (multipart_id, multipart_token) = confirmed(&app, "multi@example.org").await;
    let boundary = "----listgateTestBoundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    let response = app
        .client
        .post(app.url(&format!("/unsubscribe?token={multipart_token}")))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(unsubscribed(&app, multipart_id), ("unsubscribed".into(), Some("one-click".into())));

    // A chunked request with no Content-Length, written by hand on a raw socket.
    let (chunked_id, chunked_token) = confirmed(&app, "chunked@example.org").await;
    let addr = app.addr;
    let path = format!("/unsubscribe?token={chunked_token}");
    let reply = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let body = "List-Unsubscribe=One-Click";
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(unsubscribed(&app, chunked_id), ("unsubscribed".into(), Some("one-click".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_tokens_never_expire_and_bad_ones_change_nothing() {
    let app = spawn_app().await;
    let (id, confirm_token) = app.signup_and_get_token("old@example.org").await;
    assert_eq!(app.post_form("/confirm", &[("token", &confirm_token)]).await.status(), 200);
    let before = app.row_counts();
    for bad in [confirm_token.as_str(), "garbage", ""] {
        let response = app.one_click_with(bad).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let response = app.client.post(app.url("/unsubscribe")).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(app.row_counts(), before);

    // Unsubscribe tokens carry no expiry: one signed today works whenever it is used.
    let token = token::sign(&app.keys(), Purpose::Unsubscribe, app.subject(id), "newsletter", None);
    assert!(
        token::verify(&app.keys(), &token, Purpose::Unsubscribe, time::macros::datetime!(2099-01-01 0:00 UTC)).is_ok()
    );
    let response = app.one_click_with(&token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(unsubscribed(&app, id).0, "unsubscribed");
}
