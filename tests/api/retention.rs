//! Retention at its boundaries, with the time passed in: 14 days for
//! pending signups, 4 (calendar) years after an unsubscribe, leap days.

use listgate::config::Span;
use listgate::domain::Status;
use listgate::retention::{self, Cutoffs};
use listgate::token::{self, Purpose};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::helpers::{TestApp, spawn_app};
use crate::store::off_runtime;

struct Fixture {
    pending: i64,
    pending_token: String,
    confirmed: i64,
    unsubscribed: i64,
}

/// One subscription in each state, with times set to known values.
async fn fixture(app: &TestApp) -> Fixture {
    let (pending, pending_token) = app.signup_and_get_token("pending@example.org").await;
    let confirmed = app.confirmed_subscriber("confirmed@example.org", None).await;
    let unsubscribed = app.confirmed_subscriber("left@example.org", None).await;
    let token = token::sign(&app.keys(), Purpose::Unsubscribe, app.subject(unsubscribed), "newsletter", None);
    let response = app.one_click_with(&token).await;
    assert_eq!(response.status(), 200);
    let db = app.db();
    db.execute("UPDATE subscriptions SET signup_at = '2024-02-15T12:00:00.000Z' WHERE id = ?1", &[pending.into()]);
    db.execute("UPDATE subscriptions SET signup_at = '2020-01-01T00:00:00.000Z' WHERE id = ?1", &[confirmed.into()]);
    db.execute(
        "UPDATE subscriptions SET unsubscribed_at = '2024-02-29T12:00:00.000Z' WHERE id = ?1",
        &[unsubscribed.into()],
    );
    Fixture { pending, pending_token, confirmed, unsubscribed }
}

fn exists(app: &TestApp, id: i64) -> bool {
    app.db().value::<i64>("SELECT count(*) FROM subscriptions WHERE id = ?1", &[id.into()]) == 1
}

fn purge(app: &TestApp, retention: &listgate::config::RetentionConfig, now: OffsetDateTime) -> u64 {
    app.db().database(|store| retention::purge_all(store, &Cutoffs::at(retention, now), |_| {}).unwrap().total())
}

const MS: time::Duration = time::Duration::milliseconds(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_signups_go_just_after_14_days_and_confirmed_ones_never() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let r = &app.config.retention;
    let boundary = datetime!(2024-02-29 12:00 UTC); // signup 2024-02-15 12:00 + 14 days

    let plan = app.db().store(|store| retention::plan(store, &Cutoffs::at(r, boundary)).unwrap());
    assert_eq!(plan.total(), 0);
    assert_eq!(purge(&app, r, boundary), 0, "exactly 14 days: kept");
    assert!(exists(&app, f.pending));

    let before = app.row_counts();
    let plan = app.db().store(|store| retention::plan(store, &Cutoffs::at(r, boundary + MS)).unwrap());
    assert_eq!(plan.erased.get(&("newsletter".into(), Status::Pending)), Some(&1));
    assert_eq!(app.row_counts(), before, "planning (dry run) changes nothing");
    assert_eq!(purge(&app, r, boundary + MS), 1, "a millisecond later: erased");
    assert!(!exists(&app, f.pending));

    assert_eq!(purge(&app, r, datetime!(2124-01-01 0:00 UTC)), 1, "a century later only the unsubscribed one goes");
    assert!(exists(&app, f.confirmed), "confirmed subscriptions are never purged");

    // The purged signup's link no longer acts; the chain still verifies; the day's counts stay.
    let late = app.post_form("/confirm", &[("token", &f.pending_token)]).await;
    assert_eq!(late.status(), 410);
    let db = app.db();
    assert_eq!(db.store(|store| listgate::proof::verify_chain(store, &app.keys()).unwrap()).first_break, None);
    let signups: i64 = db.value("SELECT sum(signups) FROM daily_stats", &[]);
    assert_eq!(signups, 3, "anonymous statistics survive purges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_records_stay_four_calendar_years_from_a_leap_day() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let r = &app.config.retention;
    let four_years = datetime!(2028-02-29 12:00 UTC);
    let link_subject = app.subject(f.unsubscribed); // as its mails carry it
    assert_eq!(purge(&app, r, four_years - time::Duration::days(14)), 1, "only the pending one");
    assert_eq!(purge(&app, r, four_years), 0, "exactly four years: kept");
    assert!(exists(&app, f.unsubscribed));
    assert_eq!(purge(&app, r, four_years + MS), 1);
    assert!(!exists(&app, f.unsubscribed));

    // Its unsubscribe link still answers 200 and records nothing.
    let events_before = app.row_counts()[2];
    let token = token::sign(&app.keys(), Purpose::Unsubscribe, link_subject, "newsletter", None);
    let response = app.one_click_with(&token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.row_counts()[2], events_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_signup_unsubscribed_before_confirming_goes_like_a_pending_one() {
    // Never confirmed, so no consent to prove: an unsubscribe (here from an
    // export row's link) does not buy it four years.
    let app = spawn_app().await;
    let (id, _) = app.signup_and_get_token("never.confirmed@example.org").await;
    let token = token::sign(&app.keys(), Purpose::Unsubscribe, app.subject(id), "newsletter", None);
    assert_eq!(app.one_click_with(&token).await.status(), 200);
    let db = app.db();
    db.execute("UPDATE subscriptions SET signup_at = '2024-02-15T12:00:00.000Z' WHERE id = ?1", &[id.into()]);
    db.execute("UPDATE subscriptions SET unsubscribed_at = '2024-02-16T12:00:00.000Z' WHERE id = ?1", &[id.into()]);
    let r = &app.config.retention;
    let boundary = datetime!(2024-02-29 12:00 UTC); // signup + 14 days
    assert_eq!(purge(&app, r, boundary), 0, "exactly 14 days after the signup: kept");
    let plan = app.db().store(|store| retention::plan(store, &Cutoffs::at(r, boundary + MS)).unwrap());
    assert_eq!(plan.erased.get(&("newsletter".into(), Status::Unsubscribed)), Some(&1));
    assert_eq!(purge(&app, r, boundary + MS), 1, "a millisecond later: erased");
    assert!(!exists(&app, id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_year_after_29_february_counts_to_28_february() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let mut r = app.config.retention.clone();
    r.after_unsubscribe = Span::years(1);
    assert_eq!(purge(&app, &r, datetime!(2025-02-28 18:00 UTC)), 1, "only the pending one");
    assert!(exists(&app, f.unsubscribed), "on 28 February 2025 the year is not over");
    assert_eq!(purge(&app, &r, datetime!(2025-03-01 00:00 UTC)), 1);
    assert!(!exists(&app, f.unsubscribed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_purge_runs_through_the_writer_in_batches() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    // More rows than one batch, all long pending.
    let db = app.db();
    db.batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
         INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
         SELECT 'newsletter', 'bulk' || i || '@example.org', 'bulk' || i || '@example.org', 'pending',
                (SELECT consent_sha256 FROM subscriptions LIMIT 1), '2020-01-01T00:00:00.000Z', '192.0.2.1' FROM n",
        count = retention::BATCH * 2 + 7
    ));
    let store = off_runtime(|| listgate::store::Store::open(&app.config.database).unwrap());
    let (_keep, running) = tokio::sync::watch::channel(false);
    let report =
        listgate::app::purge_once(&store, &app.config.retention, OffsetDateTime::now_utc(), &running).await.unwrap();
    assert_eq!(report.total(), retention::BATCH as u64 * 2 + 7 + 1, "the bulk rows and the fixture's pending one");
    assert!(exists(&app, f.confirmed) && exists(&app, f.unsubscribed));
    off_runtime(|| store.close());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_dry_run_and_purge_on_the_command_line() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let out = app.cli(&["purge", "--dry-run"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("would erase (dry run):\nlist\tstate\tcount\nnewsletter\tpending\t1\ntotal\t\t1\n"),
        "{text}"
    );
    assert!(exists(&app, f.pending));
    let out = app.cli(&["purge"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout).unwrap().starts_with("erased:\nlist\tstate\tcount\nnewsletter\tpending\t1\n")
    );
    assert!(!exists(&app, f.pending));
}
