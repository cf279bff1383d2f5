//! Issue 17's legal hold, as an operator uses it: `listgate hold EMAIL
//! --reason` stops the purge (the CLI's and the server's) and `erase` for
//! that record, `show` lists the hold, and `listgate release` lets both act
//! again. On an English and a German list, on either store.

use std::process::Output;
use std::sync::Arc;

use listgate::clock::ManualClock;
use listgate::config::Language;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::helpers::{TestApp, spawn_app_without_smtp_on_clock, stdout};
use crate::store::{Value, off_runtime};

const REASON: &str = "Abmahnung Kanzlei Müller, Az. 12/26";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A server whose list speaks `language`, its clock in 2024 so the signups
/// made on it are long past `retention.unconfirmed` when the CLI (on the
/// wall clock) looks; and the configuration file the CLI reads.
async fn app_in(language: Language) -> (TestApp, Arc<ManualClock>, tempfile::TempDir, String) {
    let clock = Arc::new(ManualClock::new(datetime!(2024-03-01 09:00 UTC)));
    let consent = match language {
        Language::De => "Ja, schickt mir den Rundbrief. Abbestellen geht jederzeit.",
        Language::En => "Yes, send me the newsletter. I can unsubscribe at any time.",
    };
    let app = spawn_app_without_smtp_on_clock(clock.clone(), |c| {
        c.lists[0].language = language;
        c.lists[0].consent_text = consent.into();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("listgate.toml");
    let code = match language {
        Language::De => "de",
        Language::En => "en",
    };
    std::fs::write(
        &file,
        format!(
            "[[lists]]\nid = \"newsletter\"\nname = \"News\"\nlanguage = \"{code}\"\nconsent_text = \"{consent}\"\n"
        ),
    )
    .unwrap();
    (app, clock, dir, file.to_str().unwrap().to_string())
}

fn cli(app: &TestApp, config: &str, args: &[&str]) -> Output {
    app.cli(&[&["--config", config], args].concat())
}

fn subscriptions_of(app: &TestApp, email: &str) -> i64 {
    app.db().value("SELECT count(*) FROM subscriptions WHERE email = ?1", &[Value::from(email)])
}

fn events(app: &TestApp, kind: &str) -> i64 {
    app.db().value("SELECT count(*) FROM proof_events WHERE kind = ?1", &[Value::from(kind)])
}

fn holds(app: &TestApp) -> i64 {
    app.db().value("SELECT count(*) FROM legal_holds", &[])
}

/// The whole story on one list: bad input changes nothing; a hold blocks
/// purge (CLI and server) and erase and is listed by show; after release,
/// purge and erase act.
async fn a_hold_blocks_purge_and_erase_until_released(language: Language) {
    let (app, clock, _dir, config) = app_in(language).await;
    // Anna and Bob signed up in 2024 and never confirmed: past retention now.
    // Carol signed up just now.
    for email in ["anna@example.org", "bob@example.org"] {
        assert_eq!(app.subscribe(email).await.status(), 200);
    }
    clock.set(OffsetDateTime::now_utc());
    assert_eq!(app.subscribe("carol@example.org").await.status(), 200);

    // Bad input: a clear one-line error, and nothing changes.
    let empty = cli(&app, &config, &["hold", "anna@example.org", "--reason", "  "]);
    assert_eq!(empty.status.code(), Some(2), "{}", stderr(&empty));
    assert!(stderr(&empty).contains("--reason: the reason is empty"), "{}", stderr(&empty));
    let two_lines = cli(&app, &config, &["hold", "anna@example.org", "--reason", "one\ntwo"]);
    assert_eq!(two_lines.status.code(), Some(2));
    assert!(stderr(&two_lines).contains("one line"), "{}", stderr(&two_lines));
    let long = "x".repeat(501);
    let too_long = cli(&app, &config, &["hold", "anna@example.org", "--reason", &long]);
    assert_eq!(too_long.status.code(), Some(2));
    assert!(stderr(&too_long).contains("too long"), "{}", stderr(&too_long));
    let missing = cli(&app, &config, &["hold", "anna@example.org"]);
    assert_eq!(missing.status.code(), Some(2), "--reason is required");
    let unknown = cli(&app, &config, &["hold", "nobody@example.org", "--reason", REASON]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("nothing stored for nobody@example.org"), "{}", stderr(&unknown));
    let not_held = cli(&app, &config, &["release", "anna@example.org"]);
    assert_eq!(not_held.status.code(), Some(1));
    assert!(stderr(&not_held).contains("anna@example.org is under no legal hold; nothing changed"));
    assert_eq!((holds(&app), events(&app, "legal_hold"), events(&app, "legal_hold_released")), (0, 0, 0));

    // The hold: any spelling of the address finds it; one proof event with the reason.
    let held = stdout(&cli(&app, &config, &["hold", "Anna@EXAMPLE.org", "--reason", REASON]));
    assert!(held.starts_with("held 1 subscription(s) of Anna@EXAMPLE.org (newsletter)"), "{held}");
    assert_eq!((holds(&app), events(&app, "legal_hold")), (1, 1));
    let detail: String = app.db().value("SELECT detail FROM proof_events WHERE kind = 'legal_hold'", &[]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&detail).unwrap(), serde_json::json!({"reason": REASON}));
    assert_eq!(stdout(&cli(&app, &config, &["hold", "carol@example.org", "--reason", REASON])).lines().count(), 1);
    // Twice: an error that names the standing hold, and no second event.
    let twice = cli(&app, &config, &["hold", "anna@example.org", "--reason", "another dispute"]);
    assert_eq!(twice.status.code(), Some(1));
    let why = stderr(&twice);
    assert!(why.starts_with("listgate: anna@example.org is under a legal hold already, on newsletter since "), "{why}");
    assert!(why.ends_with(&format!("(reason: {REASON}); nothing changed\n")) && why.lines().count() == 1, "{why}");
    assert_eq!((holds(&app), events(&app, "legal_hold")), (2, 2));

    // show lists the hold: text, JSON, the receipt and the proof document.
    let text = stdout(&cli(&app, &config, &["show", "anna@example.org"]));
    assert!(text.contains("  legal hold:    since ") && text.contains(&format!("(reason: {REASON})")), "{text}");
    assert!(text.contains(" legal_hold - {\"reason\":"), "the event: {text}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&cli(&app, &config, &["show", "anna@example.org", "--json"]))).unwrap();
    assert_eq!(json["records"][0]["hold"]["reason"], REASON);
    let receipts: serde_json::Value =
        serde_json::from_str(&stdout(&cli(&app, &config, &["show", "anna@example.org", "--receipt"]))).unwrap();
    assert_eq!(receipts[0]["legal_hold"]["reason"], REASON);
    assert_eq!(receipts[0]["language"], if language == Language::De { "de" } else { "en" });
    let proofs = tempfile::tempdir().unwrap();
    let written =
        stdout(&cli(&app, &config, &["show", "anna@example.org", "--proof", "--dir", proofs.path().to_str().unwrap()]));
    let document = std::fs::read_to_string(written.trim()).unwrap();
    let heading =
        if language == Language::De { "<h2>Rechtliche Aufbewahrung (Legal Hold)</h2>" } else { "<h2>Legal hold</h2>" };
    assert!(document.contains(heading) && document.contains("Abmahnung Kanzlei Müller"), "{document}");
    let bob = stdout(&cli(&app, &config, &["show", "bob@example.org"]));
    assert!(!bob.contains("legal hold"), "{bob}");

    // Purge skips the held record and says so; Bob, not held, goes.
    let dry = cli(&app, &config, &["purge", "--dry-run"]);
    let dry_text = stdout(&dry);
    assert!(dry_text.contains("newsletter\tpending\t1\ntotal\t\t1\n"), "{dry_text}");
    assert!(dry_text.contains("skipped, held by a legal hold\t\t1\n"), "{dry_text}");
    let purge = cli(&app, &config, &["purge"]);
    let purged = stdout(&purge);
    assert!(purged.contains("total\t\t1\n") && purged.contains("skipped, held by a legal hold\t\t1\n"), "{purged}");
    assert!(stderr(&purge).contains("skipped 1 subscription(s) past retention held by a legal hold"));
    assert_eq!((subscriptions_of(&app, "anna@example.org"), subscriptions_of(&app, "bob@example.org")), (1, 0));

    // The server's own daily purge skips it too, and reports it.
    let store = off_runtime(|| listgate::store::Store::open(&app.config.database).unwrap());
    let (_keep, running) = tokio::sync::watch::channel(false);
    let report =
        listgate::app::purge_once(&store, &app.config.retention, OffsetDateTime::now_utc(), &running).await.unwrap();
    off_runtime(|| store.close());
    assert_eq!((report.total(), report.held), (0, 1));
    assert_eq!(subscriptions_of(&app, "anna@example.org"), 1);

    // Erase refuses, naming the hold and its reason, and erases nothing.
    for args in [&["erase", "anna@example.org", "--yes"][..], &["erase", "anna@example.org", "--dry-run"]] {
        let refused = cli(&app, &config, args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        let why = stderr(&refused);
        assert!(why.contains("anna@example.org is under a legal hold on newsletter since"), "{why}");
        assert!(why.contains(&format!("(reason: {REASON}); nothing erased")), "{why}");
        assert_eq!(why.lines().count(), 1, "one clear line: {why}");
    }
    assert_eq!(subscriptions_of(&app, "anna@example.org"), 1);
    let blanked: i64 = app.db().value("SELECT count(*) FROM proof_events WHERE erased = 1", &[]);
    assert!(blanked >= 1, "Bob's events, blanked by the purge; Anna's stay");
    assert!(events(&app, "legal_hold") == 2 && events(&app, "signup") >= 2);
    assert!(stdout(&cli(&app, &config, &["verify"])).starts_with("ok: "));

    // Release: one event each; then erase and purge act again.
    let released = stdout(&cli(&app, &config, &["release", "anna@example.org"]));
    assert!(released.starts_with("released the legal hold on 1 subscription(s) of anna@example.org"), "{released}");
    assert_eq!(stdout(&cli(&app, &config, &["release", "carol@example.org"])).lines().count(), 1);
    assert_eq!((holds(&app), events(&app, "legal_hold_released")), (0, 2));
    assert_eq!(cli(&app, &config, &["release", "anna@example.org"]).status.code(), Some(1), "released already");
    assert!(!stdout(&cli(&app, &config, &["show", "anna@example.org"])).contains("legal hold:"));
    let erase = stdout(&cli(&app, &config, &["erase", "carol@example.org", "--yes"]));
    assert!(erase.starts_with("erased 1 subscription(s) of carol@example.org"), "{erase}");
    let purged = stdout(&cli(&app, &config, &["purge"]));
    assert!(purged.contains("total\t\t1\n") && purged.contains("skipped, held by a legal hold\t\t0\n"), "{purged}");
    assert_eq!((subscriptions_of(&app, "anna@example.org"), subscriptions_of(&app, "carol@example.org")), (0, 0));
    // Erasure blanked the reason with the rest of the events; the chain holds.
    assert_eq!(events(&app, "legal_hold"), 0);
    assert!(stdout(&cli(&app, &config, &["verify"])).starts_with("ok: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_an_english_list_blocks_purge_and_erase_until_released() {
    a_hold_blocks_purge_and_erase_until_released(Language::En).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_a_german_list_blocks_purge_and_erase_until_released() {
    a_hold_blocks_purge_and_erase_until_released(Language::De).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_with_list_covers_that_list_only_and_a_later_hold_adds_the_others() {
    let clock = Arc::new(ManualClock::new(datetime!(2024-03-01 09:00 UTC)));
    let app = spawn_app_without_smtp_on_clock(clock, |c| {
        let mut second = c.lists[0].clone();
        second.id = "second".into();
        c.lists.push(second);
    })
    .await;
    for list in ["newsletter", "second"] {
        let form = [("email", "dora@example.org"), ("list", list)];
        assert_eq!(app.post_form("/subscribe", &form).await.status(), 200);
    }
    let none = app.cli(&["hold", "dora@example.org", "--reason", REASON, "--list", "other"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("nothing stored for dora@example.org on other"), "{}", stderr(&none));
    stdout(&app.cli(&["hold", "dora@example.org", "--reason", REASON, "--list", "newsletter"]));
    assert_eq!((holds(&app), events(&app, "legal_hold")), (1, 1));

    // Purge skips the held one; the other list's goes.
    let purged = stdout(&app.cli(&["purge"]));
    assert!(purged.contains("second\tpending\t1\n") && purged.contains("held by a legal hold\t\t1\n"), "{purged}");
    assert!(!purged.contains("newsletter\tpending"), "{purged}");
    assert_eq!(subscriptions_of(&app, "dora@example.org"), 1);

    // A hold on every list later adds what is new and leaves the first as it is.
    assert_eq!(app.post_form("/subscribe", &[("email", "dora@example.org"), ("list", "second")]).await.status(), 200);
    let all = app.cli(&["hold", "dora@example.org", "--reason", "a second dispute"]);
    assert!(stdout(&all).starts_with("held 1 subscription(s) of dora@example.org (second)"));
    assert!(stderr(&all).contains("held already, left as they are: on newsletter since"), "{}", stderr(&all));
    assert_eq!((holds(&app), events(&app, "legal_hold")), (2, 2));
    let refused = stderr(&app.cli(&["erase", "dora@example.org", "--yes"]));
    assert!(refused.contains(&format!("(reason: {REASON}), on second since ")), "{refused}");
    assert!(refused.contains("(reason: a second dispute); nothing erased"), "{refused}");

    stdout(&app.cli(&["release", "dora@example.org", "--list", "second"]));
    assert_eq!((holds(&app), events(&app, "legal_hold_released")), (1, 1));
    let help = stdout(&app.cli(&["hold", "--help"]));
    assert!(help.contains("--reason") && help.contains("Examples:"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_did_not_sign_up_blocks_a_held_signup_but_keeps_its_record_until_released() {
    for (language, stopped, deleted) in [
        (Language::En, "Thank you, the signup will not go ahead", "Thank you, the signup is deleted"),
        (Language::De, "Danke, die Anmeldung wird nicht fortgesetzt", "Danke, die Anmeldung ist gelöscht"),
    ] {
        let (app, _clock, _dir, config) = app_in(language).await;
        assert_eq!(app.subscribe("eve@example.org").await.status(), 200);
        let id: i64 = app.db().value("SELECT id FROM subscriptions WHERE email = 'eve@example.org'", &[]);
        let token =
            listgate::token::sign(&app.keys(), listgate::token::Purpose::Confirm, app.subject(id), "newsletter", None);
        let form = [("token", token.as_str()), ("action", "decline")];
        let decline = || app.post_form("/confirm", &form);
        stdout(&cli(&app, &config, &["hold", "eve@example.org", "--reason", REASON]));

        let page = decline().await;
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        assert!(page.contains(stopped), "{page}");
        assert_eq!(subscriptions_of(&app, "eve@example.org"), 1, "the hold keeps the record");

        stdout(&cli(&app, &config, &["release", "eve@example.org"]));
        let page = decline().await.text().await.unwrap();
        assert!(page.contains(deleted), "{page}");
        assert_eq!(subscriptions_of(&app, "eve@example.org"), 0);
    }
}
