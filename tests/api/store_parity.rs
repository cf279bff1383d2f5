//! The store interface (`store::db::Db`) answers the same on both backends:
//! one scenario runs every `Db` method, in the same order with the same
//! values, on a fresh SQLite file and on a fresh PostgreSQL database, and
//! compares the two answers at each step. The domain is written once
//! against `Db`, so any difference here would be a behaviour that changes
//! with the backend. The one difference on purpose, `release_leases`, is
//! asserted as such. And the proof chain stays one chain when two
//! PostgreSQL sessions (two nodes) append to it at once. Last, one scenario
//! of unusual valid input runs through HTTP and the CLI on both stores and
//! must read the same.

use std::fmt::{Debug, Display};
use std::sync::{Arc, Barrier};

use listgate::clock::Timestamp;
use listgate::domain::{Email, EmailKey, Evidence, ImportFormat, Status, UnsubscribeMethod, WebhookEvent};
use listgate::keys::{KeyRing, new_entry};
use listgate::proof::{self, EventKind};
use listgate::store::db::{
    DailyCount, Db, ExportFilter, ImportRow, ImportedSubscription, NewAnchor, NewMail, NewSubscription, RenderingRow,
};
use listgate::store::postgres::{PgSession, open_session};
use time::Duration;

use crate::helpers::{TestApp, spawn_app_with};
use crate::pg::PgCluster;

/// A SQLite connection and a PostgreSQL session, each on a fresh migrated
/// database and inside a transaction, as the domain's callers hold them.
struct Twins {
    sqlite: rusqlite::Connection,
    postgres: PgSession,
    _dir: tempfile::TempDir,
    _cluster: PgCluster,
}

impl Twins {
    fn start() -> Twins {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = listgate::store::open_connection(&dir.path().join("parity.db")).unwrap();
        listgate::store::migrate(&sqlite).unwrap();
        let cluster = PgCluster::start();
        let postgres = open_session(&cluster.url(), None).unwrap_or_else(|e| panic!("{e}"));
        postgres.migrate().unwrap();
        sqlite.execute_batch("BEGIN").unwrap();
        // As the writer does: its deferred writes and kept chain head are what is compared.
        postgres.begin_write().unwrap();
        Twins { sqlite, postgres, _dir: dir, _cluster: cluster }
    }

    /// Runs `step` on SQLite, then on PostgreSQL, asserts both answered the
    /// same, and returns that answer.
    fn same<T: PartialEq + Debug, E: Display>(&self, what: &str, step: impl Fn(&dyn Db) -> Result<T, E>) -> T {
        let sqlite = step(&self.sqlite).unwrap_or_else(|e| panic!("{what} on SQLite: {e}"));
        let postgres = step(&self.postgres).unwrap_or_else(|e| panic!("{what} on PostgreSQL: {e}"));
        assert_eq!(sqlite, postgres, "{what}: SQLite (left) and PostgreSQL (right) differ");
        sqlite
    }

    /// Runs a statement of the test's own on both (no `Db` method writes
    /// what it sets up).
    fn raw(&self, sql: &str) {
        self.sqlite.execute_batch(sql).unwrap();
        self.postgres.batch(sql).unwrap();
    }

    fn commit(self) {
        self.sqlite.execute_batch("COMMIT").unwrap();
        self.postgres.commit().unwrap();
    }
}

/// `minutes` after the scenario's start.
fn at(minutes: i64) -> Timestamp {
    Timestamp::from_stored("2026-03-01T09:00:00.000Z").unwrap() + Duration::minutes(minutes)
}

/// Sorted, for statements whose row order SQL leaves open (`RETURNING`,
/// `UNION ALL … LIMIT` without `ORDER BY`): both backends may list them in
/// any order, and the domain does not rely on one.
fn sorted<T: Ord>(mut rows: Vec<T>) -> Vec<T> {
    rows.sort();
    rows
}

fn rendering(reply_to: Option<&str>) -> RenderingRow {
    RenderingRow {
        format: 2,
        sender: "list@xn--bcher-kva.example".into(),
        from_header: "Bücherliste <list@xn--bcher-kva.example>".into(),
        reply_to: reply_to.map(Into::into),
        subject: "Bitte bestätigen Sie Ihre Anmeldung ✉️".into(),
        text_body: "Hallo %%LISTGATE_NAME%%,\n".repeat(200),
        html_body: "<p>Hallo&nbsp;%%LISTGATE_NAME%%</p>\n".repeat(200),
    }
}

fn signup<'a>(
    list_id: &'a str,
    email: &'a Email,
    name: Option<&'a str>,
    minutes: i64,
    ip: &'a str,
) -> NewSubscription<'a> {
    NewSubscription {
        list_id,
        email: email.as_str(),
        email_key: email.key(),
        name,
        consent_sha256: "c1",
        now: at(minutes),
        ip,
        form_page_sha256: None,
    }
}

fn mail<'a>(subscription_id: i64, to: &'a Email, message_id: &'a str, minutes: i64) -> NewMail<'a> {
    NewMail {
        subscription_id,
        rendering_sha256: "r1",
        to_email: to.ascii(),
        link: "https://news.example/confirm?t=AbC-_123",
        message_id,
        date_header: "Sun, 01 Mar 2026 09:00:00 +0000",
        now: at(minutes),
        consent_when: "1 March 2026 at 09:00:00 (UTC)",
        consent_where: "on the page https://www.news.example/signup",
    }
}

/// Every export row, as text (`ExportRecord` borrows from the row it came from).
fn export(db: &dyn Db, filter: &ExportFilter) -> Result<Vec<String>, String> {
    let mut rows = Vec::new();
    db.for_each_export_row(filter, &mut |record| {
        rows.push(format!("{record:?}"));
        Ok(())
    })?;
    Ok(rows)
}

fn keys() -> KeyRing {
    KeyRing::parse(&new_entry(1).unwrap()).unwrap()
}

#[test]
fn every_store_operation_answers_the_same_on_sqlite_and_postgres() {
    let twins = Twins::start();
    let keys = keys();
    twins.same("ping", |db| db.ping());

    // Consent texts and renderings are stored once; the first one stays.
    let consent = "Ja, ich möchte den Newsletter der Bücherliste erhalten. Abmelden geht jederzeit. ✉️";
    twins.same("insert_consent_text", |db| db.insert_consent_text("c1", consent, at(0)));
    twins.same("insert_consent_text again", |db| db.insert_consent_text("c1", "other", at(1)));
    twins.same("select_consent_text", |db| db.select_consent_text("c1"));
    twins.same("select_consent_text of none", |db| db.select_consent_text("nope"));
    let page = "https://xn--bcher-kva.example/anmeldung/%C3%B6";
    twins.same("insert_form_page", |db| db.insert_form_page("p1", page, at(0)));
    twins.same("insert_form_page again", |db| db.insert_form_page("p1", "https://other.example", at(1)));
    twins.same("select_form_page", |db| db.select_form_page("p1"));
    twins.same("select_form_page of none", |db| db.select_form_page("nope"));
    twins.same("insert_rendering", |db| db.insert_rendering("r1", &rendering(None), at(0)));
    twins.same("insert_rendering again", |db| db.insert_rendering("r1", &rendering(Some("x@example.org")), at(1)));
    twins.same("insert_rendering with reply-to", |db| {
        db.insert_rendering("r2", &rendering(Some("Antwort <reply@example.org>")), at(0))
    });
    twins.same("select_rendering", |db| db.select_rendering("r1"));
    twins.same("select_rendering with reply-to", |db| db.select_rendering("r2"));
    twins.same("select_rendering of none", |db| db.select_rendering("nope"));

    // Signups: a Unicode domain with mixed case and a +tag, a long name,
    // an IPv6 address, a mixed-case list, one address on two lists.
    let anna = Email::parse("Anna.Example+News@Bücher.example").unwrap();
    let bob = Email::parse("BOB@Example.ORG").unwrap();
    let carol = Email::parse("carol@example.org").unwrap();
    let dave = Email::parse("dave@example.org").unwrap();
    let erin = Email::parse("erin@example.org").unwrap();
    let long_name = "Zoë Ångström-Øresund 🦀 ".repeat(40);
    let a = twins.same("insert_subscription (Unicode domain, +tag)", |db| {
        db.insert_subscription(&signup("news", &anna, Some(&long_name), 0, "192.0.2.1"))
    });
    let b = twins.same("insert_subscription (IPv6)", |db| {
        db.insert_subscription(&signup("news", &bob, None, 1, "2001:db8::17"))
    });
    let c_news =
        twins.same("insert_subscription", |db| db.insert_subscription(&signup("news", &carol, None, 2, "192.0.2.3")));
    let c_other = twins.same("insert_subscription (second list)", |db| {
        db.insert_subscription(&signup("Other-List", &carol, Some("Carol"), 3, "192.0.2.3"))
    });
    let d =
        twins.same("insert_subscription", |db| db.insert_subscription(&signup("news", &dave, None, 4, "192.0.2.4")));
    let e = twins.same("insert_subscription (with a form page)", |db| {
        db.insert_subscription(&NewSubscription {
            form_page_sha256: Some("p1"),
            ..signup("news", &erin, None, -9000, "::1")
        })
    });
    assert_eq!([a, b, c_news, c_other, d, e], [1, 2, 3, 4, 5, 6]);

    let anna_typed = EmailKey::lenient(" anna.example+NEWS@BÜCHER.example ");
    twins.same("select_live_subscription of another spelling", |db| db.select_live_subscription("news", &anna_typed));
    twins.same("select_live_subscription on another list", |db| db.select_live_subscription("Other-List", anna.key()));
    twins.same("confirm_subscription", |db| db.confirm_subscription(a, at(5), "2001:db8::1"));
    twins.same("confirm_subscription again", |db| db.confirm_subscription(a, at(6), "2001:db8::1"));
    twins.same("confirm_subscription", |db| db.confirm_subscription(c_other, at(6), "192.0.2.3"));
    twins.same("unsubscribe_subscription (never confirmed)", |db| {
        db.unsubscribe_subscription(c_news, at(7), "192.0.2.3", UnsubscribeMethod::Page)
    });
    twins.same("unsubscribe_subscription (confirmed)", |db| {
        db.unsubscribe_subscription(c_other, at(8), "192.0.2.3", UnsubscribeMethod::OneClick)
    });
    twins.same("unsubscribe_subscription again", |db| {
        db.unsubscribe_subscription(c_news, at(9), "192.0.2.3", UnsubscribeMethod::Admin)
    });
    twins.same("select_live_subscription after unsubscribing", |db| db.select_live_subscription("news", carol.key()));
    twins.same("update_name", |db| db.update_name(a, Some("Änne")));
    twins.same("update_name to none", |db| db.update_name(c_other, None));
    for id in [a, b, c_news, c_other, d, e, 99] {
        twins.same("select_subscription", |db| db.select_subscription(id));
    }
    twins.same("subscriptions_of_address", |db| db.subscriptions_of_address(carol.key()));
    twins.same("subscriptions_of_address of none", |db| db.subscriptions_of_address(&EmailKey::lenient("x@y.example")));

    // An imported subscription: unsubscribed, no signup IP, an IPv6
    // confirmation, a Unicode domain; where it came from, and how strong.
    let frank = Email::parse("Frank@Straße.example").unwrap();
    let f = twins.same("insert_imported_subscription", |db| {
        db.insert_imported_subscription(&ImportedSubscription {
            list_id: "news",
            email: frank.as_str(),
            email_key: frank.key(),
            name: Some("Frank \"F\" O'Neil, Jr."),
            status: Status::Unsubscribed,
            consent_sha256: "c1",
            signup_at: at(-20_000),
            signup_ip: "",
            confirmed_at: at(-19_000),
            confirmed_ip: Some("2001:db8::f"),
            unsubscribed_at: Some(at(-10_000)),
        })
    });
    let origin = ImportRow {
        imported_at: at(10),
        format: ImportFormat::Mailchimp,
        source_sha256: "9f".repeat(32),
        line: 1_048_577,
        evidence: Evidence::ConfirmationOnly,
    };
    twins.same("insert_import", |db| db.insert_import(f, &origin));
    assert_eq!(twins.same("select_import", |db| db.select_import(f)), Some(origin));
    twins.same("select_import of listgate's own", |db| db.select_import(a));
    twins.same("subscriptions_of_address of the imported", |db| db.subscriptions_of_address(frank.key()));
    twins.same("first_subscription_on_list (unsubscribed)", |db| db.first_subscription_on_list("news", frank.key()));
    twins.same("first_subscription_on_list (typed)", |db| db.first_subscription_on_list("news", &anna_typed));
    twins.same("first_subscription_on_list of none", |db| db.first_subscription_on_list("Other-List", frank.key()));

    // The outbox: queue, count, claim, send, retry, fail.
    twins.same("insert_outbox", |db| db.insert_outbox(&mail(a, &anna, "<1@news.example>", 0)));
    twins.same("insert_outbox", |db| db.insert_outbox(&mail(b, &bob, "<2@news.example>", 1)));
    twins.same("insert_outbox", |db| db.insert_outbox(&mail(d, &dave, "<3@news.example>", 4)));
    let mail_id = |subscription| twins.same("mails_of_subscription", |db| db.mails_of_subscription(subscription))[0].id;
    let (m1, m2, m3) = (mail_id(a), mail_id(b), mail_id(d));
    twins.same("recent_mails", |db| db.recent_mails(a, at(0)));
    twins.same("recent_mails since later", |db| db.recent_mails(a, at(1)));
    twins.same("mails_to_inbox_itself_since", |db| db.mails_to_inbox_itself_since(&bob.key().inbox(), at(0)));
    twins.same("mails_to_inbox_itself_since (+tag)", |db| db.mails_to_inbox_itself_since(&anna.key().inbox(), at(0)));
    let (inbox, other_inbox) = ([0x00, 0xff, 0x7f, 0x80].repeat(4), vec![1_u8; 16]);
    twins.same("insert_inbox_mail", |db| db.insert_inbox_mail(&inbox, at(0)));
    twins.same("insert_inbox_mail same time", |db| db.insert_inbox_mail(&inbox, at(0)));
    twins.same("insert_inbox_mail later", |db| db.insert_inbox_mail(&inbox, at(60)));
    twins.same("insert_inbox_mail other", |db| db.insert_inbox_mail(&other_inbox, at(0)));
    twins.same("inbox_mails_since", |db| db.inbox_mails_since(&inbox, at(0)));
    twins.same("inbox_mails_since of none", |db| db.inbox_mails_since(&[9; 16], at(0)));
    twins.same("delete_old_inbox_mails", |db| db.delete_old_inbox_mails(at(30)));
    twins.same("inbox_mails_since after forgetting", |db| db.inbox_mails_since(&inbox, at(-60)));
    twins.raw("UPDATE outbox SET to_name = 'Old Name' WHERE id = 1");
    twins.same("select_outbox_mail with an old name", |db| db.select_outbox_mail(m1));
    twins.same("forget_queued_mail_names", |db| db.forget_queued_mail_names());
    twins.same("select_outbox_mail", |db| db.select_outbox_mail(m1));
    twins.same("select_outbox_mail of none", |db| db.select_outbox_mail(99));
    twins.same("next_due_mail", |db| db.next_due_mail());
    twins.same("count_queued_mails", |db| db.count_queued_mails());
    twins.same("claim_due_mails", |db| db.claim_due_mails(at(30), at(40), 2).map(sorted_mails));
    twins.same("claim_due_mails takes only the unclaimed", |db| {
        db.claim_due_mails(at(35), at(45), 10).map(|rows| rows.len())
    });
    twins.same("mark_mail_sent", |db| db.mark_mail_sent(m1, at(31), "250 2.0.0 Ok: queued as 4F2A9", "ab12"));
    twins.same("mark_mail_sent again", |db| db.mark_mail_sent(m1, at(32), "250 again", "cd34"));
    twins.same("mark_mail_retry", |db| db.mark_mail_retry(m2, at(50), "451 4.7.1 greylisted, try later"));
    twins.same("next_due_mail", |db| db.next_due_mail());
    let retried = twins.same("claim_due_mails after the retry time", |db| {
        db.claim_due_mails(at(50), at(60), 10)
            .map(|rows| sorted(rows.into_iter().map(|r| (r.id, r.attempts)).collect()))
    });
    assert_eq!(retried, [(m2, 2), (m3, 2)], "the retried mail and the one whose lease ran out, not the sent one");
    twins.same("mark_mail_failed", |db| db.mark_mail_failed(m2, "550 5.1.1 <bob@example.org>: no such user"));
    twins.same("mark_mail_failed again", |db| db.mark_mail_failed(m2, "again"));
    twins.same("claim_due_mails after the lease", |db| db.claim_due_mails(at(61), at(70), 10).map(sorted_mails));
    twins.same("mark_mail_sent", |db| db.mark_mail_sent(m3, at(62), "250 OK", "ef56"));
    twins.same("sent_mails_since", |db| db.sent_mails_since(at(0)));
    twins.same("sent_mails_since later", |db| db.sent_mails_since(at(31)));
    twins.same("release_leases with none held", |db| db.release_leases(at(63)));
    twins.same("next_due_mail with none queued", |db| db.next_due_mail());
    twins.same("count_queued_mails", |db| db.count_queued_mails());
    for id in [a, b, d, 99] {
        twins.same("mails_of_subscription", |db| db.mails_of_subscription(id));
    }

    // A proof chain of a few events, one of them erased later.
    let events = [
        (a, EventKind::Signup, Some("192.0.2.1")),
        (a, EventKind::MailSent, None),
        (d, EventKind::Signup, Some("192.0.2.4")),
        (a, EventKind::Confirm, Some("2001:db8::1")),
        (d, EventKind::Signup, Some("192.0.2.4")),
        (c_news, EventKind::Unsubscribe, Some("192.0.2.3")),
    ];
    twins.same("last_proof_link of an empty chain", |db| db.last_proof_link());
    for (n, (subscription, kind, ip)) in events.into_iter().enumerate() {
        let detail = serde_json::json!({"n": n, "name": "Zoë", "list": "news"});
        twins.same("append (last_proof_link, insert_proof_event)", |db| {
            proof::append(db, &keys, subscription, at(10 + n as i64), kind, ip, &detail)
        });
    }
    let ids: Vec<i64> =
        twins.same("select_proof_events", |db| db.select_proof_events(0, 100)).iter().map(|e| e.id).collect();
    twins.same("insert_proof_event", |db| {
        let link = db.last_proof_link()?.unwrap_or_default();
        db.insert_proof_event(&listgate::store::db::NewProofEvent {
            subscription_id: b,
            at: "2026-03-01T09:30:00.000Z",
            kind: "name_corrected",
            ip: None,
            detail: "{}",
            key_id: 1,
            digest: "not a digest",
            link: &link,
        })
    });
    twins.same("last_proof_link", |db| db.last_proof_link());
    for id in [ids[0], ids[3], 99] {
        twins.same("previous_proof_link", |db| db.previous_proof_link(id));
    }
    twins.same("select_proof_events", |db| db.select_proof_events(0, 100));
    twins.same("select_proof_events, a page", |db| db.select_proof_events(ids[1], 2));
    twins.same("select_proof_events_of", |db| db.select_proof_events_of(d));
    twins.same("select_subscriptions_page", |db| db.select_subscriptions_page(0, 100));
    twins.same("select_subscriptions_page, a page", |db| db.select_subscriptions_page(1, 2));
    twins.same("select_proof_events_of_range", |db| db.select_proof_events_of_range(0, i64::MAX));
    twins.same("select_proof_events_of_range, a range", |db| db.select_proof_events_of_range(1, d));
    twins.same("count_proof_events", |db| db.count_proof_events());
    twins.same("count_subscriptions", |db| db.count_subscriptions());
    let report = twins.same("verify_chain", |db| proof::verify_chain(db, &keys));
    assert_eq!(report.first_break.map(|b| b.event_id), Some(ids[5] + 1), "the hand-made event does not verify");

    // Anchors of chain heads: stored (a token with bytes SQL text would
    // mangle), listed, the newest, the first covering a position.
    twins.same("latest_anchor of none", |db| db.latest_anchor());
    twins.same("first_anchor_covering of none", |db| db.first_anchor_covering(1));
    for (events, minutes) in [(2_u64, 20), (5, 21)] {
        twins.same("insert_anchor", |db| {
            db.insert_anchor(&NewAnchor {
                events,
                link: &format!("{events:02x}").repeat(32),
                tsa_url: "https://tsa.example/tsr?ü=1",
                requested_at: at(minutes),
                gen_time: at(minutes) + Duration::milliseconds(1234),
                serial: "00ff01",
                token: &[0x30, 0x82, 0x00, 0xff, 0x00, 0x80, 0x27, 0x5c],
            })
        });
    }
    let anchors = twins.same("select_anchors", |db| db.select_anchors());
    assert_eq!(anchors.iter().map(|a| a.events).collect::<Vec<_>>(), [2, 5]);
    twins.same("latest_anchor", |db| db.latest_anchor());
    for position in [1, 2, 3, 5, 6] {
        twins.same("first_anchor_covering", |db| db.first_anchor_covering(position));
    }
    for id in [0, ids[0], ids[3], 99] {
        twins.same("proof_event_position", |db| db.proof_event_position(id));
    }

    // An erased subscription: its mails go with it, its events are blanked.
    twins.same("insert_webhook_call (erased later)", |db| db.insert_webhook_call(d, WebhookEvent::Confirmed, at(20)));
    twins.same("erase_proof_events", |db| db.erase_proof_events(d));
    twins.same("delete_subscription", |db| db.delete_subscription(d));
    twins.same("select_subscription of the erased", |db| db.select_subscription(d));
    twins.same("mails_of_subscription of the erased", |db| db.mails_of_subscription(d));
    twins.same("select_proof_events_of the erased", |db| db.select_proof_events_of(d));
    twins.same("select_proof_events after erasure", |db| db.select_proof_events(0, 100));
    twins.same("next_due_webhook_call after the cascade", |db| db.next_due_webhook_call());

    // Declined addresses: a longer block wins, expiry counts and deletes.
    twins.same("upsert_declined", |db| db.upsert_declined("h1", at(100)));
    twins.same("upsert_declined shorter", |db| db.upsert_declined("h1", at(50)));
    twins.same("upsert_declined", |db| db.upsert_declined("h2", at(10)));
    twins.same("is_declined", |db| db.is_declined("h1", at(60)));
    twins.same("is_declined at its end", |db| db.is_declined("h1", at(100)));
    twins.same("is_declined of none", |db| db.is_declined("h3", at(0)));
    twins.same("count_expired_declines", |db| db.count_expired_declines(at(60)));
    twins.same("delete_expired_declines", |db| db.delete_expired_declines(at(60)));
    twins.same("count_expired_declines after", |db| db.count_expired_declines(at(100)));

    // Daily counters: every kind, twice on one day, two lists, two days.
    let kinds =
        [DailyCount::Signup, DailyCount::Confirmation, DailyCount::Unsubscribe, DailyCount::Request, DailyCount::Bot];
    for which in kinds {
        twins.same("count_daily", |db| db.count_daily(which, "2026-03-01", "news"));
    }
    twins.same("count_daily", |db| db.count_daily(DailyCount::Signup, "2026-03-01", "news"));
    twins.same("count_daily", |db| db.count_daily(DailyCount::Unsubscribe, "2026-03-02", "Other-List"));
    twins.same("count_daily", |db| db.count_daily(DailyCount::Bot, "2026-03-02", "news"));
    twins.same("daily_stats_since", |db| db.daily_stats_since("2026-03-01"));
    twins.same("daily_stats_since later", |db| db.daily_stats_since("2026-03-02"));
    twins.same("daily_stats_since the future", |db| db.daily_stats_since("2027-01-01"));

    // The export, with each filter and all of them together.
    let filters = [
        ExportFilter::default(),
        ExportFilter { list_id: Some("news".into()), ..Default::default() },
        ExportFilter { list_id: Some("Other-List".into()), ..Default::default() },
        ExportFilter { status: Some(Status::Confirmed), ..Default::default() },
        ExportFilter { status: Some(Status::Unsubscribed), ..Default::default() },
        ExportFilter { since: Some(at(7)), ..Default::default() },
        ExportFilter { list_id: Some("news".into()), status: Some(Status::Pending), since: Some(at(1)) },
        ExportFilter { list_id: Some("nope".into()), ..Default::default() },
    ];
    for filter in &filters {
        let counted = twins.same("count_export", |db| db.count_export(filter));
        let rows = twins.same("for_each_export_row", |db| export(db, filter));
        assert_eq!(rows.len() as u64, counted, "{filter:?}");
    }

    // Legal holds on a pending and an unsubscribed subscription: placed once
    // (a second hold is no new row), read back, and kept out of the purge.
    let reason = "Abmahnung Kanzlei Müller, Az. 12/26 – „Rundbrief“ ✉️";
    twins.same("insert_legal_hold", |db| db.insert_legal_hold(e, reason, at(20)));
    twins.same("insert_legal_hold again", |db| db.insert_legal_hold(e, "another reason", at(21)));
    twins.same("insert_legal_hold", |db| db.insert_legal_hold(c_other, "complaint", at(22)));
    twins.same("select_legal_hold", |db| db.select_legal_hold(e));
    twins.same("select_legal_hold of none", |db| db.select_legal_hold(a));
    twins.same("select_legal_holds_of_range", |db| db.select_legal_holds_of_range(0, i64::MAX));
    twins.same("select_legal_holds_of_range, a range", |db| db.select_legal_holds_of_range(a, e));

    // Retention: what a purge would take, with cutoffs that split the rows,
    // and what the holds keep from it.
    for (pending_before, unsubscribed_before) in [(at(0), at(0)), (at(3), at(8)), (at(10_000), at(10_000))] {
        twins.same("purge_plan", |db| db.purge_plan(pending_before, unsubscribed_before));
        twins.same("purge_candidates", |db| db.purge_candidates(pending_before, unsubscribed_before, 100).map(sorted));
        twins.same("purge_candidates, limited", |db| {
            db.purge_candidates(pending_before, unsubscribed_before, 1).map(|rows| rows.len())
        });
        twins.same("count_held_past_retention", |db| db.count_held_past_retention(pending_before, unsubscribed_before));
    }
    let held = twins.same("count_held_past_retention", |db| db.count_held_past_retention(at(10_000), at(10_000)));
    assert_eq!(held, 2, "both holds keep their subscription from the purge");
    twins.same("delete_legal_hold", |db| db.delete_legal_hold(c_other));
    twins.same("delete_legal_hold again", |db| db.delete_legal_hold(c_other));
    twins.same("select_legal_hold after release", |db| db.select_legal_hold(c_other));
    twins.same("purge_candidates after a release", |db| db.purge_candidates(at(10_000), at(10_000), 100).map(sorted));
    twins.same("count_by_status", |db| db.count_by_status());

    // Webhook calls: queue, claim, sent, retry (with and without a status), fail.
    twins.same("next_due_webhook_call of none", |db| db.next_due_webhook_call());
    twins.same("insert_webhook_call", |db| db.insert_webhook_call(a, WebhookEvent::Confirmed, at(5)));
    twins.same("insert_webhook_call", |db| db.insert_webhook_call(c_news, WebhookEvent::Unsubscribed, at(7)));
    twins.same("insert_webhook_call", |db| db.insert_webhook_call(c_other, WebhookEvent::Unsubscribed, at(8)));
    twins.same("next_due_webhook_call", |db| db.next_due_webhook_call());
    let claimed =
        twins.same("claim_due_webhook_calls", |db| db.claim_due_webhook_calls(at(7), at(17), 10).map(sorted_calls));
    let [first, second] = [claimed[0].id, claimed[1].id];
    twins.same("mark_webhook_sent", |db| db.mark_webhook_sent(first, at(8), 204));
    twins.same("mark_webhook_retry", |db| db.mark_webhook_retry(second, at(30), Some(503), "Service Unavailable"));
    let third = twins
        .same("claim_due_webhook_calls", |db| db.claim_due_webhook_calls(at(9), at(19), 10).map(sorted_calls))[0]
        .id;
    twins.same("mark_webhook_retry without a status", |db| {
        db.mark_webhook_retry(third, at(30), None, "connection refused")
    });
    twins.same("next_due_webhook_call", |db| db.next_due_webhook_call());
    twins.same("claim_due_webhook_calls after the retry time", |db| {
        db.claim_due_webhook_calls(at(30), at(40), 10).map(sorted_calls)
    });
    twins.same("mark_webhook_failed", |db| db.mark_webhook_failed(second, Some(410), "Gone"));
    twins.same("mark_webhook_failed without a status", |db| db.mark_webhook_failed(third, None, "timed out"));
    twins.same("next_due_webhook_call when all are done", |db| db.next_due_webhook_call());
    twins.same("claim_due_webhook_calls when all are done", |db| db.claim_due_webhook_calls(at(1000), at(1010), 10));

    // The one difference on purpose: a lease held now is released on SQLite
    // (one node: it is its own crashed run's) and never on PostgreSQL,
    // where it may be another node's, delivering right now.
    twins.same("insert_outbox", |db| db.insert_outbox(&mail(b, &bob, "<4@news.example>", 70)));
    twins.same("claim_due_mails", |db| db.claim_due_mails(at(70), at(80), 10).map(|rows| rows.len()));
    let released = (twins.sqlite.release_leases(at(71)).unwrap(), twins.postgres.release_leases(at(71)).unwrap());
    assert_eq!(released, (1, 0), "(SQLite, PostgreSQL)");
    twins.commit();
}

/// Claimed mails by id (`RETURNING` leaves their order open).
fn sorted_mails(mut mails: Vec<listgate::store::db::OutboxRow>) -> Vec<listgate::store::db::OutboxRow> {
    mails.sort_by_key(|mail| mail.id);
    mails
}

/// Webhook calls by id (`RETURNING` leaves their order open).
fn sorted_calls(mut calls: Vec<listgate::store::db::WebhookCall>) -> Vec<listgate::store::db::WebhookCall> {
    calls.sort_by_key(|call| call.id);
    calls
}

/// The scenario above calls every method of `Db`: a method added to the
/// trait without a line here fails this test, not a later comparison.
#[test]
fn the_parity_scenario_calls_every_store_method() {
    let trait_source = include_str!("../../src/store/db.rs");
    let body = trait_source.split("pub trait Db {").nth(1).expect("the trait Db");
    let methods: Vec<&str> = body.split("fn ").skip(1).map(|rest| rest.split('(').next().unwrap().trim()).collect();
    assert!(methods.len() > 50, "{methods:?}");
    let scenario = include_str!("store_parity.rs");
    let missing: Vec<&&str> = methods.iter().filter(|m| !scenario.contains(&format!(".{m}("))).collect();
    assert!(missing.is_empty(), "Db methods the parity scenario never calls: {missing:?}");
}

/// Two nodes (two sessions, two threads) each append many proof events at
/// once, each in its own transaction begun as a writer's batch is
/// (`begin_write`). The chain lock it takes makes them take turns: every event
/// chains to the one committed before it, and the whole chain verifies.
#[test]
fn two_postgres_nodes_appending_proof_events_at_once_build_one_unbroken_chain() {
    const EVENTS: i64 = 60;
    let cluster = PgCluster::start();
    open_session(&cluster.url(), None).unwrap().migrate().unwrap();
    let entry = new_entry(1).unwrap();
    let start = Arc::new(Barrier::new(2));
    let nodes: Vec<_> = (0..2_i64)
        .map(|node| {
            let (url, entry, start) = (cluster.url(), entry.clone(), start.clone());
            std::thread::spawn(move || {
                let keys = KeyRing::parse(&entry).unwrap();
                let session = open_session(&url, None).unwrap();
                start.wait();
                for n in 0..EVENTS {
                    session.begin_write().unwrap();
                    let ip = format!("2001:db8::{node}");
                    let detail = serde_json::json!({"node": node, "n": n});
                    proof::append(&session, &keys, node + 1, at(n), EventKind::Signup, Some(&ip), &detail).unwrap();
                    session.commit().unwrap();
                }
            })
        })
        .collect();
    for node in nodes {
        node.join().expect("a node failed");
    }

    let reader = open_session(&cluster.url(), None).unwrap();
    let keys = KeyRing::parse(&entry).unwrap();
    let report = proof::verify_chain(&reader, &keys).unwrap();
    assert_eq!((report.events, report.erased, report.first_break), (2 * EVENTS as u64, 0, None));
    // The nodes really took turns: otherwise this proves nothing.
    let order: Vec<Option<i64>> =
        reader.select_proof_events(0, 1000).unwrap().iter().map(|e| e.subscription_id).collect();
    let turns = order.windows(2).filter(|pair| pair[0] != pair[1]).count();
    assert!(turns > 1, "one node appended all its events before the other began: {order:?}");
}

/// A stored time that does not read back as one (a hand-edited row) is an
/// error on both backends, naming the text, never a guessed time. (Codes
/// cannot be edited so: the schemas' CHECKs refuse unknown ones.)
#[test]
fn a_hand_edited_time_is_an_error_on_both_backends_never_a_guess() {
    let twins = Twins::start();
    twins.same("insert_consent_text", |db| db.insert_consent_text("c1", "Yes.", at(0)));
    let email = Email::parse("anna@example.org").unwrap();
    let id = twins.same("insert_subscription", |db| db.insert_subscription(&signup("news", &email, None, 0, "::1")));
    for (edit, says) in [
        ("UPDATE subscriptions SET signup_at = 'yesterday'", "yesterday"),
        ("UPDATE subscriptions SET signup_at = '2026-03-01T09:00:00Z'", "2026-03-01T09:00:00Z"),
        ("UPDATE subscriptions SET confirmed_at = '1. März 2026'", "1. März 2026"),
    ] {
        twins.raw("SAVEPOINT edit");
        twins.raw(edit);
        let on_sqlite = twins.sqlite.select_subscription(id).expect_err(edit).to_string();
        let on_postgres = twins.postgres.select_subscription(id).expect_err(edit).to_string();
        assert!(on_sqlite.contains(says), "{edit}: SQLite says {on_sqlite}");
        assert!(on_postgres.contains(says), "{edit}: PostgreSQL says {on_postgres}");
        twins.raw("ROLLBACK TO SAVEPOINT edit");
    }
    twins.same("select_subscription after the edits", |db| db.select_subscription(id).map(|row| row.is_some()));
}

/// `text` without what two runs of one scenario differ in: ISO times
/// (`2026-03-01T09:00:00.000Z`), tokens in links, the app's base URL, and
/// the 32- and 64-digit hex of Message-IDs and of hashes over times
/// (`consent_sha256` goes too: it is one fixed text's).
fn without_run_details(text: &str, base: &str) -> String {
    let text = text.replace(base, "<base>");
    let bytes = text.as_bytes();
    let is_time = |at: usize| {
        let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
        bytes.len() >= at + shape.len()
            && shape.iter().zip(&bytes[at..]).all(|(s, b)| if *s == b'd' { b.is_ascii_digit() } else { s == b })
    };
    let word_at = |at: usize| bytes[at..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if is_time(i) {
            out.push_str("<time>");
            i += 24;
        } else if text[i..].starts_with("token=") {
            out.push_str("token=<token>");
            i += "token=".len();
            while i < text.len() && (bytes[i].is_ascii_alphanumeric() || b"-_.".contains(&bytes[i])) {
                i += 1;
            }
        } else if starts_word
            && matches!(word_at(i), 32 | 64)
            && bytes[i..i + word_at(i)].iter().all(|b| b.is_ascii_hexdigit())
        {
            out.push_str("<hex>");
            i += word_at(i);
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// One scenario of unusual but valid input, through HTTP and the CLI:
/// Unicode domains and their ASCII spelling, mixed case, `+tags`, Gmail's
/// dots, IPv6 client addresses from a trusted proxy, a name in several
/// scripts. It runs on a SQLite app and on a PostgreSQL app with one key,
/// and every answer, export, `show`, `stats` and `verify` must read the
/// same but for times and tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_valid_input_gets_the_same_answers_exports_and_proofs_on_sqlite_and_postgres() {
    let proxied = |c: &mut listgate::config::Config| {
        c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        c.server.trusted_proxy_header = listgate::config::ProxyHeader::XForwardedFor;
    };
    let sqlite = spawn_app_with("ok", |c| {
        c.database.url = None;
        proxied(c);
    })
    .await;
    let cluster = PgCluster::start();
    let (url, key_file) = (cluster.url(), sqlite.config.secrets.key_file.clone());
    let postgres = spawn_app_with("ok", |c| {
        c.database.url = Some(url);
        c.secrets.key_file = key_file;
        proxied(c);
    })
    .await;
    let on_sqlite = without_run_details(&transcript(&sqlite).await, &sqlite.base);
    let on_postgres = without_run_details(&transcript(&postgres).await, &postgres.base);
    let (sqlite_lines, postgres_lines): (Vec<&str>, Vec<&str>) =
        (on_sqlite.lines().collect(), on_postgres.lines().collect());
    for (line, (a, b)) in sqlite_lines.iter().zip(&postgres_lines).enumerate() {
        assert_eq!(a, b, "line {line} differs: SQLite (left) and PostgreSQL (right); SQLite said\n{on_sqlite}");
    }
    assert_eq!(sqlite_lines.len(), postgres_lines.len(), "SQLite said\n{on_sqlite}\nPostgreSQL said\n{on_postgres}");
}

/// What the scenario shows an operator and a subscriber, as text.
async fn transcript(app: &TestApp) -> String {
    let mut said = String::new();
    let signups = [
        ("Anna.Mueller+news@Bücher.example", "Anna Müller", "2001:db8::7"),
        ("anna.mueller+news@xn--bcher-kva.example", "Anna", "2001:db8:0:0::7"),
        ("BOB@Example.ORG", "Бob Ωmega 李", "::ffff:192.0.2.5"),
        ("bob@example.org", "", "198.51.100.23"),
        ("J.Doe+x@GMAIL.com", "", "2001:db8:ffff::1"),
        ("jdoe@gmail.com", "", "2001:DB8:FFFF::2"),
        ("jörg@example.org", "", "2001:db8::9"),
        ("user@[IPv6:2001:db8::1]", "", "2001:db8::9"),
    ];
    for (email, name, ip) in signups {
        let form = [("email", email), ("name", name)];
        let response =
            app.client.post(app.url("/subscribe")).header("x-forwarded-for", ip).form(&form).send().await.unwrap();
        said += &format!("signup {email} from {ip}: {}\n", response.status());
        // Each mail sent before the next signup: proof events in one order.
        app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
    }
    let mails = app.smtp().messages();
    let mut tokens: Vec<(String, String)> = mails
        .iter()
        .map(|mail| (crate::helpers::header(mail, "To").unwrap(), crate::helpers::confirm_token(mail)))
        .collect();
    tokens.sort();
    for (to, token) in &tokens {
        let response = app
            .client
            .post(app.url("/confirm"))
            .header("x-forwarded-for", "2001:db8::c0:ffee")
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        said += &format!("confirm {to}: {}\n", response.status());
    }
    let cli = |args: &[&str]| {
        let out = app.cli(args);
        format!(
            "$ listgate {}\n{}{}exit {:?}\n",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        )
    };
    said += &cli(&["unsubscribe", "BOB@EXAMPLE.org"]);
    for args in [
        &["export", "--status", "all", "--format", "jsonl"][..],
        &["export", "--format", "csv"],
        &["show", "ANNA.MUELLER+NEWS@BÜCHER.EXAMPLE", "--json"],
        &["show", "anna.mueller+news@xn--bcher-kva.example"],
        &["show", "jdoe@gmail.com"],
        &["stats"],
        &["verify"],
        &["erase", "anna.mueller+news@bücher.example", "--yes"],
        &["show", "Anna.Mueller+news@Bücher.example"],
        &["export", "--status", "all", "--format", "jsonl"],
        &["verify"],
    ] {
        said += &cli(args);
    }
    said += &format!("rows: {:?}\n", app.row_counts());
    said
}
