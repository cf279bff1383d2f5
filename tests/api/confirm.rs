//! `GET`/`POST /confirm`: scanners change nothing, bad tokens fail safely,
//! "I did not sign up" erases and blocks.

use listgate::token::{self, Purpose};

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_link_opened_by_scanners_changes_nothing_however_often() {
    let app = spawn_app().await;
    let (_, token) = app.signup_and_get_token("scan@example.org").await;
    let before = app.row_counts();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/confirm?token={token}")).await.status(), 200);
        let head = app.client.head(app.url(&format!("/confirm?token={token}"))).send().await.unwrap();
        assert_eq!(head.status(), 200);
    }
    let status: String = app.db().value("SELECT status FROM subscriptions", &[]);
    assert_eq!(status, "pending");
    assert_eq!(app.row_counts(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_wrong_purpose_and_expired_tokens_fail_and_change_nothing() {
    let app = spawn_app().await;
    let (id, token) = app.signup_and_get_token("tokens@example.org").await;
    let keys = app.keys();
    let mut flipped = token.clone().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let unsubscribe = token::sign(&keys, Purpose::Unsubscribe, app.subject(id), "newsletter", None);
    let other_list = token::sign(
        &keys,
        Purpose::Confirm,
        app.subject(id),
        "other",
        Some(time::OffsetDateTime::now_utc() + time::Duration::days(1)),
    );
    let expired = token::sign(
        &keys,
        Purpose::Confirm,
        app.subject(id),
        "newsletter",
        Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(1)),
    );
    let foreign_key = listgate::keys::KeyRing::parse(&listgate::keys::new_entry(1).unwrap()).unwrap();
    let forged = token::sign(
        &foreign_key,
        Purpose::Confirm,
        app.subject(id),
        "newsletter",
        Some(time::OffsetDateTime::now_utc() + time::Duration::days(1)),
    );
    let before = app.row_counts();

    let cases = [
        (flipped.as_str(), 400, "Invalid link"),
        (&token[..token.len() - 3], 400, "Invalid link"),
        ("", 400, "Invalid link"),
        ("not-a-token", 400, "Invalid link"),
        (unsubscribe.as_str(), 400, "Invalid link"),
        (forged.as_str(), 400, "Invalid link"),
        (other_list.as_str(), 410, "no longer valid"),
        (expired.as_str(), 410, "Link expired"),
    ];
    for (bad, status, text) in cases {
        let page = app.get(&format!("/confirm?token={bad}")).await;
        let post = app.post_form("/confirm", &[("token", bad)]).await;
        assert_eq!(page.status(), status, "GET {bad}");
        assert_eq!(post.status(), status, "POST {bad}");
        assert!(post.text().await.unwrap().contains(text), "POST {bad}");
    }
    let expired_page = app.get(&format!("/confirm?token={expired}")).await.text().await.unwrap();
    assert!(expired_page.contains("/form?list=newsletter"), "an expired link offers to sign up again");
    let missing = app.post_form("/confirm", &[]).await;
    assert_eq!(missing.status(), 400);
    assert_eq!(app.row_counts(), before);
    let status: String = app.db().value("SELECT status FROM subscriptions", &[]);
    assert_eq!(status, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_did_not_sign_up_erases_the_signup_and_blocks_further_mails() {
    let app = spawn_app().await;
    let (id, token) = app.signup_and_get_token("Victim@Example.org").await;
    let response = app.post_form("/confirm", &[("token", &token), ("action", "decline")]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("the signup is deleted"));

    let db = app.db();
    assert_eq!(app.row_counts()[..2], [0, 0], "subscription and outbox rows are gone");
    let leftover: i64 = db.value(
        "SELECT count(*) FROM proof_events WHERE subscription_id IS NOT NULL OR ip IS NOT NULL OR detail IS NOT NULL",
        &[],
    );
    assert_eq!(leftover, 0, "proof events keep only their chain links");
    let hash: String = db.value("SELECT address_hash FROM declined_addresses", &[]);
    assert!(!hash.contains("victim") && hash.len() == 64, "only a keyed hash is kept");
    assert_eq!(db.store(|store| listgate::proof::verify_chain(store, &app.keys()).unwrap()).first_break, None);

    // A new signup of the same address (any case) gets the same answer, but no mail and nothing stored.
    let again = app.subscribe("victim@example.org").await;
    assert_eq!(again.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.smtp().messages().len(), 1);
    assert_eq!(app.row_counts()[..2], [0, 0]);

    // The old link no longer confirms anything.
    let late = app.post_form("/confirm", &[("token", &token)]).await;
    assert_eq!(late.status(), 410);
    let _ = id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_did_not_sign_up_on_a_unicode_domain_blocks_every_spelling_of_the_address() {
    let app = spawn_app().await;
    let (_, token) = app.signup_and_get_token("Tom@Bücher.de").await;
    let response = app.post_form("/confirm", &[("token", &token), ("action", "decline")]).await;
    assert_eq!(response.status(), 200);
    let spellings = ["Tom@Bücher.de", "tom@bücher.de", "TOM@BÜCHER.DE", "tom@xn--bcher-kva.de", "Tom@XN--BCHER-KVA.DE"];
    for spelling in spellings {
        assert_eq!(app.subscribe(spelling).await.status(), 200, "{spelling}: the same answer as ever");
        assert_eq!(app.row_counts()[..2], [0, 0], "{spelling}: nothing stored, no mail queued");
    }
    // Another address on the same domain is not blocked.
    assert_eq!(app.subscribe("anna@bücher.de").await.status(), 200);
    app.smtp().wait_for_messages(2).await;
    assert_eq!(app.row_counts()[0], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_a_confirmed_subscription_does_not_unsubscribe_it() {
    let app = spawn_app().await;
    let (_, token) = app.signup_and_get_token("keep@example.org").await;
    assert_eq!(app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
    let response = app.post_form("/confirm", &[("token", &token), ("action", "decline")]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("already subscribed"));
    let status: String = app.db().value("SELECT status FROM subscriptions", &[]);
    assert_eq!(status, "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_after_an_unsubscribe_keeps_the_proof_and_says_the_subscription_ended() {
    let app = spawn_app().await;
    let (id, token) = app.signup_and_get_token("left@example.org").await;
    assert_eq!(app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
    assert_eq!(app.one_click(id).await.status(), 200);
    let before = app.row_counts();
    let response = app.post_form("/confirm", &[("token", &token), ("action", "decline")]).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("This address is no longer subscribed"), "{page}");
    assert!(!page.contains("deleted"), "nothing was deleted: {page}");
    assert_eq!(app.row_counts(), before, "the unsubscribed record stays as proof, and no address is blocked");
    let status: String = app.db().value("SELECT status FROM subscriptions", &[]);
    assert_eq!(status, "unsubscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_url_gets_a_303_after_confirming() {
    let app =
        spawn_app_with("ok", |c| c.lists[0].confirmed_url = Some("https://www.example.org/welcome".parse().unwrap()))
            .await;
    let (_, token) = app.signup_and_get_token("welcome@example.org").await;
    let response = app.post_form("/confirm", &[("token", &token)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "https://www.example.org/welcome");
}
