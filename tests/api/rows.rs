//! `verify` checks every subscription row against its chained events: an
//! attacker with the database file but not the key, who drops the triggers
//! and edits rows (a pending signup made "confirmed", an IP changed, an
//! unsubscribe hidden, a row deleted or made up, a legal hold deleted so purge
//! can destroy the record, or one made up so erasure is refused), is found,
//! and each edited subscription is named without printing its personal values.

use listgate::config::Language;

use crate::helpers::{TestApp, spawn_app_with};
use crate::store::Value;

/// What a command printed, whether it succeeded or not (verify fails here).
fn printed(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn drop_triggers(app: &TestApp) {
    app.db().batch(if app.on_postgres() {
        "DROP TRIGGER proof_events_erase_only ON proof_events; DROP TRIGGER proof_events_no_delete ON proof_events"
    } else {
        "DROP TRIGGER proof_events_erase_only; DROP TRIGGER proof_events_no_delete;
         DROP TRIGGER subscriptions_one_live_insert; DROP TRIGGER subscriptions_one_live_update"
    });
}

async fn edited_rows_fail_verify_naming_each_subscription(language: Language) {
    let app = spawn_app_with("ok", |c| {
        c.lists[0].language = language;
        c.limits.form_min_age = "0s".parse().unwrap();
    })
    .await;
    // Unusual but valid input, and every path that changes a row.
    let anna = app.confirmed_subscriber("Anna+News@BÜCHER.example", Some("Anna Müller")).await;
    let (pending, _) = app.signup_and_get_token("pending@straße.example").await;
    let left = app.confirmed_subscriber("left@example.org", None).await;
    assert_eq!(app.one_click(left).await.status(), 200);
    let operator = app.confirmed_subscriber("operator@example.org", Some("Otto")).await;
    let held = app.confirmed_subscriber("held@example.org", None).await;
    let unheld = app.confirmed_subscriber("unheld@example.org", None).await;
    for args in [
        &["correct", "Anna+News@bücher.example", "--name", "Anna Schmidt"][..],
        &["correct", "operator@example.org", "--name", ""],
        &["unsubscribe", "operator@example.org"],
        &["hold", "held@example.org", "--reason", "Abmahnung vom 1.12.2026"],
        &["hold", "unheld@example.org", "--reason", "Anfrage"],
        &["release", "unheld@example.org"],
    ] {
        let out = app.cli(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let clean = app.cli(&["verify"]);
    assert_eq!(clean.status.code(), Some(0), "{}", printed(&clean));
    assert!(printed(&clean).contains("ok: 6 subscription rows match their proof events"), "{}", printed(&clean));
    assert!(printed(&clean).lines().last().unwrap().starts_with("head: "), "the head comes last");

    drop_triggers(&app);
    let db = app.db();
    let id = |id: i64| Value::from(id);
    db.execute(
        "UPDATE subscriptions SET status = 'confirmed', confirmed_at = signup_at, confirmed_ip = signup_ip WHERE id = ?1",
        &[id(pending)],
    );
    db.execute("UPDATE subscriptions SET confirmed_ip = '203.0.113.99' WHERE id = ?1", &[id(anna)]);
    db.execute(
        "UPDATE subscriptions SET status = 'confirmed', unsubscribed_at = NULL, unsubscribed_ip = NULL,
                unsubscribe_method = NULL WHERE id = ?1",
        &[id(left)],
    );
    db.execute("DELETE FROM subscriptions WHERE id = ?1", &[id(operator)]);
    db.execute(
        "INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
         SELECT list_id, 'made.up@example.org', 'made.up@example.org', 'confirmed', consent_sha256, signup_at, signup_ip
         FROM subscriptions WHERE id = ?1",
        &[id(anna)],
    );
    let made_up: i64 = db.value("SELECT max(id) FROM subscriptions", &[]);
    db.execute("DELETE FROM legal_holds WHERE subscription_id = ?1", &[id(held)]);
    db.execute(
        "INSERT INTO legal_holds (subscription_id, reason, held_at) VALUES (?1, 'made up', '2026-01-01T00:00:00.000Z')",
        &[id(unheld)],
    );

    let broken = app.cli(&["verify"]);
    let text = printed(&broken);
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(text.starts_with("ok: "), "the chain itself still verifies: {text}");
    for line in [
        format!(
            "broken: subscription {pending} (list newsletter): its status is \"confirmed\", but its proof events say \"pending\": the row was edited"
        ),
        format!(
            "broken: subscription {anna} (list newsletter): its confirmation IP differs from what its proof events say: the row was edited"
        ),
        format!(
            "broken: subscription {left} (list newsletter): its status is \"confirmed\", but its proof events say \"unsubscribed\": the row was edited"
        ),
        format!("broken: subscription {operator}: it has proof events but no row (the row was deleted, not erased)"),
        format!(
            "broken: subscription {made_up} (list newsletter): the row has no proof events (none records its signup or import)"
        ),
        format!("broken: subscription {held} (list newsletter): its legal hold of "),
        "is gone, but no proof event released it: the hold was deleted".to_string(),
        format!(
            "broken: subscription {unheld} (list newsletter): it has a legal hold of 2026-01-01T00:00:00.000Z, but no proof event placed it"
        ),
        "rows: 7 found wrong checking 6 subscription rows against their proof events".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    assert_eq!(text.matches("broken: ").count(), 7, "{text}");
    for personal in ["203.0.113.99", "127.0.0.1", "Anna", "bücher", "xn--", "made.up", "Abmahnung", "made up"] {
        assert!(!text.contains(personal), "verify prints no personal value ({personal}):\n{text}");
    }
    assert!(text.lines().last().unwrap().starts_with("head: 24 "), "the chain's own head still ends it: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_row_on_an_english_list_fails_verify_naming_the_subscription() {
    edited_rows_fail_verify_naming_each_subscription(Language::En).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_row_on_a_german_list_fails_verify_naming_the_subscription() {
    edited_rows_fail_verify_naming_each_subscription(Language::De).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_whose_events_were_cut_off_the_end_fails_the_row_check() {
    let app = spawn_app_with("ok", |_| {}).await;
    app.confirmed_subscriber("kept@example.org", None).await;
    let cut = app.confirmed_subscriber("cut@example.org", None).await;
    drop_triggers(&app);
    app.db().execute("DELETE FROM proof_events WHERE subscription_id = ?1", &[Value::from(cut)]);
    let out = app.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    assert!(
        printed(&out).contains(&format!("broken: subscription {cut} (list newsletter): the row has no proof events"))
    );
}
