//! What a link gives away, and that links already mailed keep working.
//! Tokens (layout 2) carry the row id concealed by a keyed permutation;
//! links signed before (layout 1) carry it in clear and are still honoured.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use listgate::keys::KeyRing;

use crate::helpers::{TestApp, confirm_token, spawn_app};

/// The 8-byte id field of a token (bytes 4..12 of its payload).
fn id_field(token: &str) -> i64 {
    let payload = URL_SAFE_NO_PAD.decode(token.split_once('.').expect("token").0).expect("base64url payload");
    i64::from_be_bytes(payload[4..12].try_into().unwrap())
}

/// A token as listgate signed it before layout 2, byte by byte from the
/// old layout table: version 1, purpose, key id, row id, expiry, list.
fn layout_1_token(keys: &KeyRing, purpose: u8, row_id: i64, expires: i64) -> String {
    let mut payload = vec![1, purpose];
    payload.extend_from_slice(&keys.current_id().to_be_bytes());
    payload.extend_from_slice(&row_id.to_be_bytes());
    payload.extend_from_slice(&expires.to_be_bytes());
    payload.extend_from_slice(b"newsletter");
    let tag = hmac::sign(&keys.current().token, &payload);
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

async fn mailed_token(app: &TestApp, email: &str) -> (i64, String) {
    let before = app.smtp().messages().len();
    assert_eq!(app.subscribe(email).await.status(), 200);
    let token = confirm_token(&app.smtp().wait_for_messages(before + 1).await[before]);
    let id = app.db().value("SELECT id FROM subscriptions WHERE email = ?1", &[email.into()]);
    (id, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consecutive_signups_links_reveal_no_order_and_no_row_id() {
    let app = spawn_app().await;
    let (first_id, first) = mailed_token(&app, "first@example.org").await;
    let (second_id, second) = mailed_token(&app, "second@example.org").await;
    assert_eq!(second_id, first_id + 1, "the rows themselves are consecutive");
    let (a, b) = (id_field(&first), id_field(&second));
    assert_ne!(a, first_id, "the confirm link carries no row id");
    assert_ne!(b, second_id);
    assert!(b.wrapping_sub(a).unsigned_abs() > 1 << 20, "no small difference between consecutive links: {a} {b}");
    for id in [first_id, second_id] {
        let bytes = id.to_be_bytes();
        for token in [&first, &second] {
            let payload = URL_SAFE_NO_PAD.decode(token.split_once('.').unwrap().0).unwrap();
            assert!(!payload.windows(8).any(|w| w == bytes), "row id {id} nowhere in the payload");
        }
    }
    // Confirmed, both are exported with unsubscribe links of the new kind.
    for token in [&first, &second] {
        assert_eq!(app.post_form("/confirm", &[("token", token)]).await.status(), 200);
    }
    let export = app.cli(&["export", "--format", "jsonl"]);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let links: Vec<i64> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["unsubscribe_url"].as_str().unwrap().to_string())
        .map(|url| id_field(url.split("token=").nth(1).unwrap()))
        .collect();
    assert_eq!(links, [a, b], "the export's links carry the same concealed ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_and_unsubscribe_links_mailed_before_concealed_ids_still_work() {
    let app = spawn_app().await;
    let (id, _) = mailed_token(&app, "old-links@example.org").await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
    let keys = app.keys();
    let week = time::OffsetDateTime::now_utc().unix_timestamp() + 7 * 86_400;
    let confirm = layout_1_token(&keys, b'c', id, week);
    assert_eq!(app.get(&format!("/confirm?token={confirm}")).await.status(), 200);
    assert_eq!(app.post_form("/confirm", &[("token", &confirm)]).await.status(), 200);
    app.wait_for_value(&format!("SELECT count(*) FROM subscriptions WHERE id = {id} AND status = 'confirmed'"), 1)
        .await;
    let unsubscribe = layout_1_token(&keys, b'u', id, 0);
    assert_eq!(app.one_click_with(&unsubscribe).await.status(), 200);
    app.wait_for_value(&format!("SELECT count(*) FROM subscriptions WHERE id = {id} AND status = 'unsubscribed'"), 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concealed_id_relabelled_as_an_old_row_id_link_is_refused() {
    let app = spawn_app().await;
    let (id, token) = mailed_token(&app, "relabel@example.org").await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
    let (payload, tag) = token.split_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
    assert_eq!(raw[0], 2, "today's layout");
    raw[0] = 1;
    let relabelled = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&raw));
    let before = app.row_counts();
    assert_eq!(app.post_form("/confirm", &[("token", &relabelled)]).await.status(), 400);
    // The row id put into a signed-looking layout 1 token for the row is a forgery too.
    raw[4..12].copy_from_slice(&id.to_be_bytes());
    let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&raw));
    assert_eq!(app.post_form("/confirm", &[("token", &forged)]).await.status(), 400);
    assert_eq!(app.row_counts(), before);
    assert_eq!(app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
}
