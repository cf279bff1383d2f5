//! The whole double opt-in as a subscriber lives it, with every proof checked.

use listgate::clock::Timestamp;
use listgate::token::{self, Purpose};

use crate::helpers::{header, sha256_hex, spawn_app};
use crate::store::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_signs_up_confirms_and_unsubscribes_with_one_click_and_every_step_is_proven() {
    let app = spawn_app().await;

    // 1. The plain HTML form posts.
    let response = app.post_form("/subscribe", &[("email", "Anna.Muster@Example.org"), ("name", "Anna Müller")]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("check your inbox"));

    // 2. The confirmation mail arrives at the real SMTP server.
    let mails = app.smtp().wait_for_messages(1).await;
    let mail = &mails[0];
    let token = crate::helpers::confirm_token(mail);
    assert_eq!(header(mail, "Auto-Submitted").as_deref(), Some("auto-generated"));
    assert_eq!(header(mail, "From").as_deref(), Some("Newsletter <newsletter@localhost>"));
    assert_eq!(
        header(mail, "To").as_deref(),
        Some("Anna.Muster@example.org"),
        "delivered to the ASCII form, domain lowercased; the name is never in a mail"
    );
    assert!(header(mail, "Date").is_some());
    let message_id = header(mail, "Message-ID").unwrap();
    let envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(app.smtp().folder.path().join("00001.json")).unwrap()).unwrap();
    assert_eq!(envelope["rcpt_tos"][0], "Anna.Muster@example.org");

    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;

    // 3. Opening the link (as a mail scanner would) changes nothing.
    let before = app.row_counts();
    let page = app.get(&format!("/confirm?token={token}")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Confirm subscription") && html.contains("I did not sign up"));
    let status: String = app.db().value("SELECT status FROM subscriptions", &[]);
    assert_eq!((status.as_str(), app.row_counts()), ("pending", before));

    // 4. Pressing the button confirms.
    let response = app.post_form("/confirm", &[("token", &token)]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("you are subscribed"));

    // 5. The proof: times, IPs, consent, Message-ID and the message hash.
    let db = app.db();
    let (id, status, signup_at, signup_ip, confirmed_at, confirmed_ip, consent): (
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
    ) = db.value(
        "SELECT id, status, signup_at, signup_ip, confirmed_at, confirmed_ip, consent_sha256 FROM subscriptions",
        &[],
    );
    assert_eq!(status, "confirmed");
    assert_eq!((signup_ip.as_str(), confirmed_ip.as_str()), ("127.0.0.1", "127.0.0.1"));
    let (signup, confirmed) =
        (Timestamp::from_stored(&signup_at).unwrap(), Timestamp::from_stored(&confirmed_at).unwrap());
    assert!(
        signup <= confirmed && (Timestamp::from(time::OffsetDateTime::now_utc()) - signup) < time::Duration::minutes(1)
    );
    assert_eq!(signup_at.len(), "2026-11-22T07:24:59.123Z".len(), "UTC with milliseconds");
    let consent_text: String = db.value("SELECT text FROM consent_texts WHERE sha256 = ?1", &[Value::from(&consent)]);
    assert_eq!(sha256_hex(consent_text.as_bytes()), consent);

    let (outbox_id, stored_id, stored_sha, reply): (i64, String, String, String) =
        db.value("SELECT id, message_id, message_sha256, smtp_reply FROM outbox WHERE state = 'sent'", &[]);
    assert_eq!(stored_id, message_id);
    assert_eq!(stored_sha, sha256_hex(mail), "recorded hash is the hash of the bytes the server received");
    assert!(reply.starts_with("250 ") && reply.contains("queued as test00001"), "{reply}");
    let rebuilt = db.store(|store| listgate::mail::rebuild(store, outbox_id).unwrap().unwrap());
    assert_eq!(&rebuilt, mail, "the mail is rebuilt byte for byte from storage");

    let kinds: Vec<(String, Option<String>)> =
        db.rows("SELECT kind, ip FROM proof_events WHERE subscription_id = ?1 ORDER BY id", &[id.into()]);
    let expected = [("signup", Some("127.0.0.1")), ("mail_sent", None), ("confirm", Some("127.0.0.1"))];
    assert_eq!(kinds, expected.map(|(k, ip)| (k.to_string(), ip.map(str::to_string))).to_vec());
    let mail_event: String = db.value("SELECT detail FROM proof_events WHERE kind = 'mail_sent'", &[]);
    let mail_event: serde_json::Value = serde_json::from_str(&mail_event).unwrap();
    assert_eq!(
        (mail_event["message_id"].as_str(), mail_event["message_sha256"].as_str()),
        (Some(&*message_id), Some(&*stored_sha))
    );

    // 6. Confirming again is harmless.
    let again = app.post_form("/confirm", &[("token", &token)]).await;
    assert_eq!(again.status(), 200);
    let confirms: i64 = db.value("SELECT count(*) FROM proof_events WHERE kind = 'confirm'", &[]);
    assert_eq!(confirms, 1);

    // 7. A mail client's RFC 8058 one-click unsubscribe, exactly as sent: no cookies, urlencoded body.
    let unsubscribe = token::sign(&app.keys(), Purpose::Unsubscribe, app.subject(id), "newsletter", None);
    let response = app
        .client
        .post(app.url(&format!("/unsubscribe?token={unsubscribe}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, method, ip): (String, String, String) =
        db.value("SELECT status, unsubscribe_method, unsubscribed_ip FROM subscriptions", &[]);
    assert_eq!((status.as_str(), method.as_str(), ip.as_str()), ("unsubscribed", "one-click", "127.0.0.1"));

    // 8. The chain holds.
    let report = db.store(|store| listgate::proof::verify_chain(store, &app.keys()).unwrap());
    assert_eq!((report.events, report.first_break), (4, None));
    app.stop().await;
}
