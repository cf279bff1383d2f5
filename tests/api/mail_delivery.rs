//! The outbox against a real SMTP server that misbehaves.

use crate::helpers::{sha256_hex, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_retried_and_the_mail_arrives_after_the_server_recovers() {
    let app = spawn_app_with("tempfail:1", |_| {}).await;
    assert_eq!(app.subscribe("retry@example.org").await.status(), 200);
    let mails = app.smtp.wait_for_messages(1).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;
    let (attempts, sha, error): (i64, String, Option<String>) = app
        .db()
        .query_row("SELECT attempts, message_sha256, last_error FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(attempts, 2, "one 451, then delivered");
    assert_eq!(sha, sha256_hex(&mails[0]));
    assert_eq!(error, None);
    let sent_events: i64 =
        app.db().query_row("SELECT count(*) FROM proof_events WHERE kind = 'mail_sent'", [], |r| r.get(0)).unwrap();
    assert_eq!(sent_events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_550_is_recorded_as_failed_and_not_retried() {
    let app = spawn_app_with("reject", |_| {}).await;
    assert_eq!(app.subscribe("rejected@example.org").await.status(), 200);
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'failed'", 1).await;
    // Several retry intervals later (retry_base is 1s in tests) it is still one attempt.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (attempts, error): (i64, String) =
        app.db().query_row("SELECT attempts, last_error FROM outbox", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(attempts, 1);
    assert!(error.contains("550"), "{error}");
    let detail: String =
        app.db().query_row("SELECT detail FROM proof_events WHERE kind = 'mail_failed'", [], |r| r.get(0)).unwrap();
    assert!(detail.contains("550"), "{detail}");
    assert!(app.smtp.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_keeps_the_mail_queued_and_the_signup_answered() {
    // Nothing listens on this port: connection refused, a temporary failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with("ok", |c| c.mail.url = format!("smtp://127.0.0.1:{closed}")).await;
    assert_eq!(app.subscribe("outage@example.org").await.status(), 200);
    app.wait_for_value(
        "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts >= 1 AND last_error IS NOT NULL",
        1,
    )
    .await;
    assert_eq!(app.row_counts()[0], 1, "the signup is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_sends_from_its_own_address_with_reply_to() {
    let app = spawn_app_with("ok", |c| {
        c.lists[0].from = Some("Büro Müller <news@example.org>".into());
        c.lists[0].reply_to = Some("hello@example.org".into());
    })
    .await;
    assert_eq!(app.subscribe("from@example.org").await.status(), 200);
    let mails = app.smtp.wait_for_messages(1).await;
    let from = crate::helpers::header(&mails[0], "From").unwrap();
    assert!(from.starts_with("=?utf-8?b?") && from.ends_with("<news@example.org>"), "{from}");
    assert_eq!(crate::helpers::header(&mails[0], "Reply-To").as_deref(), Some("hello@example.org"));
    assert!(crate::helpers::header(&mails[0], "Message-ID").unwrap().ends_with("@example.org>"));
    let envelope = std::fs::read_to_string(app.smtp.folder.path().join("00001.json")).unwrap();
    assert!(envelope.contains("\"mail_from\": \"news@example.org\""), "{envelope}");
}
