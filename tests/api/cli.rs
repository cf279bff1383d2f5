//! The operator CLI as a process, against a database filled through HTTP
//! while the server runs.

use crate::helpers::{TestApp, spawn_app, spawn_app_with, spawn_app_without_smtp, stdout};
use crate::store::{Value, sqlite_only};
use crate::tools::{Tool, require};

/// Names that break naive CSV, spreadsheets and encodings.
const TRICKY_NAMES: [&str; 5] =
    ["Müller, Jürgen", "Anna \"Nan\" Groß", "=HYPERLINK(\"http://evil\")", "+49 30 123", "Zoë @home"];

async fn filled(app: &TestApp) -> Vec<i64> {
    let mut ids = Vec::new();
    for (i, name) in TRICKY_NAMES.iter().enumerate() {
        ids.push(app.confirmed_subscriber(&format!("user{i}@example.org"), Some(name)).await);
    }
    // One pending, not exported by default.
    assert_eq!(app.subscribe("pending@example.org").await.status(), 200);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_csv_reads_back_exactly_in_rust_and_python() {
    require(&[Tool::Python3, Tool::Aiosmtpd]);
    let app = spawn_app().await;
    let ids = filled(&app).await;
    let csv_text = stdout(&app.cli(&["export"]));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(headers, listgate::admin::export::COLUMNS.map(str::to_string).to_vec());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), TRICKY_NAMES.len(), "only confirmed subscribers by default");
    let keys = app.keys();
    for ((row, name), id) in rows.iter().zip(TRICKY_NAMES).zip(&ids) {
        let expected_name = listgate::admin::export::neutralise_formula(name);
        assert_eq!(&row[1], expected_name.as_ref());
        assert_eq!(&row[2], "newsletter");
        assert_eq!(&row[3], "confirmed");
        assert_eq!(&row[5], "127.0.0.1");
        assert_eq!(&row[8], "127.0.0.1");
        let url = &row[10];
        assert!(url.starts_with(&format!("{}/unsubscribe?token=", app.base)));
        let token = url.split("token=").nth(1).unwrap();
        let verified = listgate::token::verify(
            &keys,
            token,
            listgate::token::Purpose::Unsubscribe,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert_eq!(verified.subject, app.subject(*id), "a new-style link (layout 2)");
        assert_eq!(&row[11], format!("<{url}>"));
        assert_eq!(&row[12], "List-Unsubscribe=One-Click");
    }
    assert_eq!(&rows[2][1], "'=HYPERLINK(\"http://evil\")", "formula neutralised");
    assert_eq!(&rows[3][1], "'+49 30 123");

    // Python's csv module reads the same file back to the same cells.
    let path = std::env::temp_dir().join(format!("listgate-export-{}.csv", std::process::id()));
    std::fs::write(&path, &csv_text).unwrap();
    let python = std::process::Command::new(Tool::Python3.path())
        .arg("-c")
        .arg("import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline='', encoding='utf-8')))))")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    let parsed: Vec<Vec<String>> = serde_json::from_slice(&python.stdout).unwrap();
    let from_rust: Vec<Vec<String>> =
        std::iter::once(headers).chain(rows.iter().map(|r| r.iter().map(str::to_string).collect())).collect();
    assert_eq!(parsed, from_rust);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_jsonl_filters_and_writes_private_files() {
    let app = spawn_app().await;
    filled(&app).await;
    let lines = stdout(&app.cli(&["export", "--format", "jsonl", "--status", "all"]));
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), TRICKY_NAMES.len() + 1);
    assert_eq!(rows[2]["name"], TRICKY_NAMES[2], "JSON lines carry exact values");
    assert_eq!(rows.last().unwrap()["status"], "pending");
    assert_eq!(rows.last().unwrap()["confirmed_at"], serde_json::Value::Null);

    let pending = stdout(&app.cli(&["export", "--format", "jsonl", "--status", "pending"]));
    assert_eq!(pending.lines().count(), 1);
    let future = stdout(&app.cli(&["export", "--format", "jsonl", "--since", "2999-01-01"]));
    assert_eq!(future, "");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.csv");
    let output = app.cli(&["export", "--bom", "--output", file.to_str().unwrap()]);
    assert!(output.status.success());
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with("\u{feff}email,".as_bytes()), "BOM for Excel");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let bad = app.cli(&["export", "--list", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = app.cli(&["export", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_since_gives_the_unsubscribes_since_the_last_sync() {
    let app = spawn_app().await;
    let ids = filled(&app).await;
    let checkpoint = listgate::clock::Timestamp::from(time::OffsetDateTime::now_utc()).to_string();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let token = listgate::token::sign(
        &app.keys(),
        listgate::token::Purpose::Unsubscribe,
        app.subject(ids[1]),
        "newsletter",
        None,
    );
    let response = app.one_click_with(&token).await;
    assert_eq!(response.status(), 200);
    let lines = stdout(&app.cli(&["export", "--format", "jsonl", "--status", "unsubscribed", "--since", &checkpoint]));
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["email"], "user1@example.org");
    assert!(rows[0]["unsubscribed_at"].as_str().unwrap() >= checkpoint.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_everything_and_writes_a_proof_document_that_checks_out() {
    let app = spawn_app().await;
    app.confirmed_subscriber("Show.Me@example.org", Some("Jürgen")).await;
    let text = stdout(&app.cli(&["show", "show.me@EXAMPLE.org"]));
    assert!(text.contains("Show.Me@example.org on list newsletter"), "{text}");
    assert!(
        text.contains("signed up:")
            && text.contains("confirmed:")
            && text.contains("mail 1:")
            && text.contains("signup 127.0.0.1")
    );

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&app.cli(&["show", "show.me@example.org", "--json"]))).unwrap();
    let record = &json["records"][0];
    assert_eq!(record["subscription"]["name"], "Jürgen");
    assert_eq!(record["events"][0]["kind"], "signup");
    assert_eq!(record["events"][0]["detail"]["email"], "Show.Me@example.org");
    assert_eq!(record["mails"][0]["state"], "sent");

    let dir = tempfile::tempdir().unwrap();
    let listed = stdout(&app.cli(&["show", "show.me@example.org", "--proof", "--dir", dir.path().to_str().unwrap()]));
    let path = std::path::PathBuf::from(listed.trim());
    assert!(path.starts_with(dir.path()));
    let html = std::fs::read_to_string(&path).unwrap();
    let received = &app.smtp().messages()[0];
    let sha = crate::helpers::sha256_hex(received);
    assert_eq!(
        html.matches(&sha).count(),
        3,
        "the received mail's hash in the mail_sent event, as recorded, and as rebuilt"
    );
    assert!(html.contains("matches") && !html.contains("does not match"));
    assert_eq!(html.matches("verified</span>").count(), 3, "signup, mail_sent, confirm each verified");
    assert!(html.contains("The whole proof log verifies"));
    assert!(html.contains("Yes, send me the newsletter."));
    assert!(html.contains("\nMessage-ID: &") && !html.contains("Message-ID: <"), "the mail as sent, HTML-escaped");
    assert!(html.contains("Auto-Submitted: auto-generated"));

    let nobody = stdout(&app.cli(&["show", "nobody@example.org"]));
    assert_eq!(nobody.trim(), "nothing stored for nobody@example.org");
}

/// Every table's text, and the SQLite file's and WAL's bytes. On
/// PostgreSQL there are no such bytes to search: it keeps old row versions
/// in its files and WAL until VACUUM and recycling reuse them, as
/// docs/deployment.md ("Erasure on PostgreSQL") tells operators.
fn everything(app: &TestApp) -> (String, Option<Vec<u8>>) {
    let db = app.db();
    let mut dump = String::new();
    for table in [
        "subscriptions",
        "outbox",
        "proof_events",
        "declined_addresses",
        "consent_texts",
        "mail_renderings",
        "daily_stats",
    ] {
        for row in db.rows::<Vec<Value>>(&format!("SELECT * FROM {table}"), &[]) {
            for value in row {
                if let Value::Text(text) = value {
                    dump.push_str(&text);
                    dump.push('\n');
                }
            }
        }
    }
    if app.on_postgres() {
        return (dump, None);
    }
    let mut bytes = std::fs::read(&app.config.database.path).unwrap();
    let wal = app.config.database.path.with_extension("db-wal");
    bytes.extend(std::fs::read(wal).unwrap_or_default());
    (dump, Some(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_leaves_nothing_of_the_address_in_any_table_or_file() {
    let app = spawn_app().await;
    app.confirmed_subscriber("keep.me@example.org", Some("Keeper")).await;
    app.confirmed_subscriber("Forget.Me@Example.org", Some("Vergessmich")).await;
    let (dump, bytes) = everything(&app);
    assert!(dump.contains("Forget.Me@Example.org") && dump.contains("Vergessmich"));
    if let Some(bytes) = &bytes {
        assert!(bytes.windows(7).any(|w| w == b"Forget."), "the address is in the file before");
    }

    let refused = app.cli(&["erase", "forget.me@example.org"]);
    assert_eq!(refused.status.code(), Some(2), "no --yes and no terminal: bad usage, nothing erased");
    let dry = stdout(&app.cli(&["erase", "forget.me@example.org", "--dry-run"]));
    assert_eq!(dry.trim(), "would erase 1 subscription(s) of forget.me@example.org");
    assert_eq!(app.row_counts()[0], 2);

    let erased = app.cli(&["erase", "FORGET.ME@example.org", "--yes"]);
    assert_eq!(stdout(&erased).trim(), "erased 1 subscription(s) of FORGET.ME@example.org");
    let told = String::from_utf8_lossy(&erased.stderr);
    assert!(told.contains("remove FORGET.ME@example.org from the tool that sends the newsletter too"), "{told}");
    let (dump, bytes) = everything(&app);
    for needle in ["Forget.Me", "forget.me", "Vergessmich"] {
        assert!(!dump.to_lowercase().contains(&needle.to_lowercase()), "{needle} left in a table");
        assert!(
            !bytes
                .as_deref()
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes())),
            "{needle} left in the database files"
        );
    }
    assert!(dump.contains("keep.me@example.org"), "others are untouched");
    let verify = stdout(&app.cli(&["verify"]));
    assert!(verify.starts_with("ok: 6 proof events verified (3 erased"), "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_an_edited_a_deleted_and_an_inserted_event() {
    let app = spawn_app().await;
    app.confirmed_subscriber("chain@example.org", None).await;
    app.confirmed_subscriber("chain2@example.org", None).await;
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0));
    let db = app.db();
    // The one statement spelled per store: PostgreSQL names a trigger's table.
    db.batch(if app.on_postgres() {
        "DROP TRIGGER proof_events_erase_only ON proof_events; DROP TRIGGER proof_events_no_delete ON proof_events"
    } else {
        "DROP TRIGGER proof_events_erase_only; DROP TRIGGER proof_events_no_delete"
    });

    db.execute("UPDATE proof_events SET ip = '203.0.113.66' WHERE id = 3", &[]);
    let edited = app.cli(&["verify"]);
    assert_eq!(edited.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&edited.stdout).starts_with("broken: event 3 does not verify: content was changed")
    );
    db.execute("UPDATE proof_events SET ip = '127.0.0.1' WHERE id = 3", &[]);
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0));

    let saved: (i64, Option<i64>, String, String, Option<String>, String, i64, String, String) = db.value(
        "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link FROM proof_events WHERE id = 4",
        &[],
    );
    db.execute("DELETE FROM proof_events WHERE id = 4", &[]);
    let deleted = app.cli(&["verify"]);
    assert_eq!(deleted.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&deleted.stdout).starts_with("broken: event 5 "), "the event after the gap");
    db.execute("INSERT INTO proof_events (id, subscription_id, at, kind, ip, detail, key_id, digest, link) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", &[saved.0.into(), saved.1.into(), saved.2.into(), saved.3.into(), saved.4.into(), saved.5.into(), saved.6.into(), saved.7.into(), saved.8.into()]);
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0), "restored");

    // A forged event slipped in between 4 and 5, copying a genuine one.
    db.execute(
        "INSERT INTO proof_events (id, subscription_id, at, kind, ip, detail, key_id, digest, link)
         SELECT 1000, subscription_id, at, kind, ip, detail, key_id, digest, link FROM proof_events WHERE id = 2",
        &[],
    );
    db.execute("UPDATE proof_events SET id = id + 2000 WHERE id BETWEEN 5 AND 999", &[]);
    let inserted = app.cli(&["verify"]);
    assert_eq!(inserted.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&inserted.stdout).starts_with("broken: event 1000 "),
        "{}",
        String::from_utf8_lossy(&inserted.stdout)
    );
}

/// The head `verify` printed (`head: N HEX`).
fn printed_head(verify: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&verify.stdout).to_string();
    text.lines().find_map(|l| l.strip_prefix("head: ")).unwrap_or_else(|| panic!("no head in {text}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_head_shows_events_cut_off_the_end_and_a_rewritten_chain() {
    a_kept_head_shows_cut_and_rewritten_chains(listgate::config::Language::En).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_head_shows_events_cut_off_the_end_of_a_german_lists_chain() {
    a_kept_head_shows_cut_and_rewritten_chains(listgate::config::Language::De).await;
}

async fn a_kept_head_shows_cut_and_rewritten_chains(language: listgate::config::Language) {
    let app = spawn_app_with("ok", |c| c.lists[0].language = language).await;
    app.confirmed_subscriber("head@example.org", None).await;
    let first = app.cli(&["verify"]);
    assert_eq!(first.status.code(), Some(0));
    let head = printed_head(&first);
    let (count, link) = head.split_once(' ').unwrap();
    assert_eq!(count, "3", "signup, mail sent, confirm: {head}");
    assert_eq!(link.len(), 64);

    // The chain grows and still extends the kept head.
    app.confirmed_subscriber("later@example.org", None).await;
    let later = app.cli(&["verify", "--head", &head]);
    assert_eq!(later.status.code(), Some(0), "{}", String::from_utf8_lossy(&later.stdout));
    assert!(String::from_utf8_lossy(&later.stdout).contains(&format!("ok: the chain extends the head {head}")));
    let newer = printed_head(&later);
    assert!(newer.starts_with("6 "), "{newer}");
    assert_eq!(app.cli(&["verify", "--head", &newer.to_uppercase()]).status.code(), Some(0), "hex in either case");

    // A head the chain never had, and malformed ones.
    let forged = format!("3 {}", "0".repeat(64));
    let rewritten = app.cli(&["verify", "--head", &forged]);
    assert_eq!(rewritten.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rewritten.stdout).contains("the chain was rewritten"));
    for bad in ["", "3", "three abc", &format!("0 {link}"), &format!("3 {}", &link[2..]), &format!("3 {link} x")] {
        let out = app.cli(&["verify", "--head", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Cutting the last three events off leaves a chain that verifies by
    // itself, but no longer reaches the newer head.
    let db = app.db();
    db.batch(if app.on_postgres() {
        "DROP TRIGGER proof_events_no_delete ON proof_events"
    } else {
        "DROP TRIGGER proof_events_no_delete"
    });
    db.execute("DELETE FROM proof_events WHERE id > 3", &[]);
    let alone = app.cli(&["verify"]);
    assert!(
        String::from_utf8_lossy(&alone.stdout).starts_with("ok: 3 proof events verified"),
        "a cut chain verifies by itself"
    );
    assert_eq!(alone.status.code(), Some(1), "but the cut signup's row has no events left");
    let cut = app.cli(&["verify", "--head", &newer]);
    assert_eq!(cut.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&cut.stdout).contains("fewer than the 6 of the head"),
        "{}",
        String::from_utf8_lossy(&cut.stdout)
    );
    let older = app.cli(&["verify", "--head", &head]);
    assert!(
        String::from_utf8_lossy(&older.stdout).contains(&format!("ok: the chain extends the head {head}")),
        "the older head is still extended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_the_server_logs_daily_is_the_one_verify_prints_and_stays_consistent_under_signups() {
    let app = spawn_app().await;
    app.confirmed_subscriber("daily@example.org", None).await;
    let store = crate::store::off_runtime(|| listgate::store::Store::open(&app.config.database).unwrap());
    let keys = std::sync::Arc::new(app.keys());
    let walked = listgate::app::walk_chain(&store, keys.clone()).await.unwrap();
    assert_eq!(walked.head().to_string(), printed_head(&app.cli(&["verify"])));

    // Walked while signups append: whatever it reports, verify --head accepts.
    let during = tokio::spawn({
        let store = store.clone();
        async move { listgate::app::walk_chain(&store, keys).await.unwrap() }
    });
    for i in 0..5 {
        assert_eq!(app.subscribe(&format!("during{i}@example.org")).await.status(), 200);
    }
    let head = during.await.unwrap().head().to_string();
    let check = app.cli(&["verify", "--head", &head]);
    assert_eq!(check.status.code(), Some(0), "{head}: {}", String::from_utf8_lossy(&check.stdout));
    crate::store::off_runtime(|| store.close());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_on_a_unicode_domain_is_found_in_every_spelling_and_erased_from_every_file() {
    let app = spawn_app().await;
    app.confirmed_subscriber("Anna@Bücher.de", Some("Anna")).await;
    app.confirmed_subscriber("other@example.org", None).await;
    let spellings = ["anna@bücher.de", "ANNA@BÜCHER.DE", "anna@xn--bcher-kva.de"];
    for spelling in spellings {
        let shown = stdout(&app.cli(&["show", spelling]));
        assert!(shown.starts_with("Anna@Bücher.de on list newsletter"), "{spelling}: {shown}");
        let proof = tempfile::tempdir().unwrap();
        let written = app.cli(&["show", spelling, "--proof", "--dir", proof.path().to_str().unwrap()]);
        assert_eq!(stdout(&written).lines().count(), 1, "{spelling}: one proof document");
    }
    let corrected = stdout(&app.cli(&["correct", spellings[1], "--name", "Anna Bücher"]));
    assert_eq!(corrected.trim(), "corrected the name on 1 subscription(s) of ANNA@BÜCHER.DE");
    let left = stdout(&app.cli(&["unsubscribe", spellings[2]]));
    assert_eq!(left.trim(), "unsubscribed anna@xn--bcher-kva.de from: newsletter");
    let erased = stdout(&app.cli(&["erase", spellings[0], "--yes"]));
    assert_eq!(erased.trim(), "erased 1 subscription(s) of anna@bücher.de");

    let (dump, bytes) = everything(&app);
    for needle in ["bücher.de", "xn--bcher-kva", "Anna Bücher"] {
        assert!(!dump.to_lowercase().contains(&needle.to_lowercase()), "{needle} left in a table");
        assert!(
            !bytes
                .as_deref()
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes())),
            "{needle} left in the database files"
        );
    }
    assert!(dump.contains("other@example.org"), "others are untouched");

    // Now nothing is stored: showing says so (a valid answer to an access
    // request); changing fails with one line, so a script sees it.
    for spelling in spellings {
        assert_eq!(stdout(&app.cli(&["show", spelling])).trim(), "nothing stored for anna@xn--bcher-kva.de");
    }
    for args in [
        vec!["erase", spellings[0], "--yes"],
        vec!["correct", spellings[1], "--name", "Anna"],
        vec!["unsubscribe", spellings[2]],
    ] {
        let output = app.cli(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim(), format!("listgate: nothing stored for {}; nothing changed", args[1]), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_changes_the_name_and_records_only_hashes() {
    let app = spawn_app().await;
    let id = app.confirmed_subscriber("rename@example.org", Some("Anna Muller")).await;
    let out = stdout(&app.cli(&["correct", "rename@example.org", "--name", "Anna Müller"]));
    assert_eq!(out.trim(), "corrected the name on 1 subscription(s) of rename@example.org");
    let db = app.db();
    let name: String = db.value("SELECT name FROM subscriptions WHERE id = ?1", &[id.into()]);
    assert_eq!(name, "Anna Müller");
    let detail: String = db.value("SELECT detail FROM proof_events WHERE kind = 'name_corrected'", &[]);
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["old_name_sha256"], crate::helpers::sha256_hex("Anna Muller".as_bytes()));
    assert_eq!(detail["new_name_sha256"], crate::helpers::sha256_hex("Anna Müller".as_bytes()));
    let bad = app.cli(&["correct", "rename@example.org", "--name", "x\ny"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_by_hand_is_recorded_as_admin_and_ends_the_export_as_confirmed() {
    let app = spawn_app().await;
    let id = app.confirmed_subscriber("Leaving@Example.org", None).await;
    app.confirmed_subscriber("staying@example.org", None).await;

    let elsewhere = app.cli(&["unsubscribe", "leaving@example.org", "--list", "elsewhere"]);
    assert_eq!(elsewhere.status.code(), Some(1), "nothing stored on that list: a script must see it");
    assert_eq!(
        String::from_utf8_lossy(&elsewhere.stderr).trim(),
        "listgate: nothing stored for leaving@example.org on elsewhere; nothing changed"
    );
    let out = stdout(&app.cli(&["unsubscribe", "leaving@example.org"]));
    assert_eq!(out.trim(), "unsubscribed leaving@example.org from: newsletter");
    let (status, method, ip): (String, String, String) = app
        .db()
        .value("SELECT status, unsubscribe_method, unsubscribed_ip FROM subscriptions WHERE id = ?1", &[id.into()]);
    assert_eq!((status.as_str(), method.as_str(), ip.as_str()), ("unsubscribed", "admin", ""));
    let detail: String = app
        .db()
        .value("SELECT detail FROM proof_events WHERE kind = 'unsubscribe' AND subscription_id = ?1", &[id.into()]);
    assert_eq!(detail, r#"{"method":"admin"}"#);
    let confirmed = stdout(&app.cli(&["export", "--status", "confirmed"]));
    assert!(!confirmed.to_lowercase().contains("leaving@example.org") && confirmed.contains("staying@example.org"));

    // Again: nothing left to do, and that is not an error. Bad input is.
    let again = stdout(&app.cli(&["unsubscribe", "leaving@example.org"]));
    assert!(again.starts_with("nothing changed"), "{again}");
    assert_eq!(app.cli(&["unsubscribe", " "]).status.code(), Some(2));
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0));
}

/// SQLite only: `backup` copies SQLite's file (`VACUUM INTO`); on
/// PostgreSQL it writes nothing and points to `pg_dump`
/// (`postgres_nodes::a_signup_on_one_node_is_confirmed_on_the_other_and_every_cli_command_reads_postgres`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_signups_go_on_gives_a_sound_copy_that_serves() {
    if sqlite_only("backup writes a copy of SQLite's file") {
        return;
    }
    let app = spawn_app().await;
    app.confirmed_subscriber("before@example.org", None).await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let writes = {
        let (client, url) = (app.client.clone(), app.url("/subscribe"));
        tokio::spawn(async move {
            for i in 0..50 {
                let email = format!("during{i}@example.org");
                assert_eq!(client.post(&url).form(&[("email", email.as_str())]).send().await.unwrap().status(), 200);
            }
        })
    };
    let output = tokio::task::spawn_blocking({
        let mut command = app.cli_command(&["backup", copy.to_str().unwrap()]);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    writes.await.unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("integrity ok"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let again = app.cli(&["backup", copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "never overwrites");

    let verify = app.cli_command(&["verify"]).env("LISTGATE_DATABASE__PATH", &copy).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
    let copied = listgate::store::open_connection(&copy).unwrap();
    let n: i64 = copied.query_row("SELECT count(*) FROM subscriptions", [], |r| r.get(0)).unwrap();
    assert!((1..=51).contains(&n));
    let export = stdout(&app.cli_command(&["export"]).env("LISTGATE_DATABASE__PATH", &copy).output().unwrap());
    assert!(export.contains("before@example.org"));

    // `serve` on the copy: it answers and takes signups.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut served = app
        .cli_command(&["serve"])
        .env("LISTGATE_DATABASE__PATH", &copy)
        .env("LISTGATE_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("LISTGATE_MAIL__URL", format!("file://{}", dir.path().join("mail").display()))
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut healthy = false;
    for _ in 0..200 {
        if app.client.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let signup = app
        .client
        .post(format!("{url}/subscribe"))
        .form(&[("email", "restored@example.org")])
        .send()
        .await
        .map(|r| r.status());
    served.kill().unwrap();
    served.wait().unwrap();
    assert!(healthy, "serve on the backup copy became healthy");
    assert_eq!(signup.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_states_and_days() {
    let app = spawn_app().await;
    filled(&app).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&app.cli(&["stats", "--json"]))).unwrap();
    assert_eq!(json["by_status"]["newsletter"]["confirmed"], 5);
    assert_eq!(json["by_status"]["newsletter"]["pending"], 1);
    assert_eq!(json["daily"][0]["signups"], 6);
    assert_eq!(json["daily"][0]["confirmations"], 5);
    let text = stdout(&app.cli(&["stats"]));
    assert!(text.contains("newsletter\t1\t5\t0"), "{text}");
}

/// List ids may hold `-`, `_` and digits: `stats` lists a day's lists in
/// byte order on both stores, also on a PostgreSQL database that sorts
/// text by a language's rules (the test databases do, `store.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_lists_a_days_lists_in_byte_order_on_every_store() {
    let ids = ["news-a", "news1", "news_a", "newsb"];
    let app = spawn_app_without_smtp(|c| {
        let template = c.lists[0].clone();
        c.lists = ids
            .iter()
            .map(|id| {
                let mut list = template.clone();
                list.id = (*id).into();
                list
            })
            .collect();
    })
    .await;
    for (i, id) in ids.iter().enumerate().rev() {
        let email = format!("reader{i}@example.org");
        assert_eq!(app.post_form("/subscribe", &[("email", email.as_str()), ("list", id)]).await.status(), 200);
    }
    let text = stdout(&app.cli(&["stats"]));
    let days = text.split("\nday\t").nth(1).expect("a daily table");
    let listed: Vec<&str> = days.lines().skip(1).map(|line| line.split('\t').nth(1).unwrap()).collect();
    assert_eq!(listed, ids, "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&app.cli(&["stats", "--json"]))).unwrap();
    let listed: Vec<&str> = json["daily"].as_array().unwrap().iter().map(|d| d["list"].as_str().unwrap()).collect();
    assert_eq!(listed, ids);
}

#[test]
fn commands_on_a_missing_database_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_listgate"))
        .args(["export"])
        .current_dir(dir.path())
        .env_remove("LISTGATE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("listgate: no database at listgate.db"));
    assert!(!dir.path().join("listgate.db").exists(), "a command never creates an empty database");
}

/// `listgate ARGS` in `dir` with nothing from the test's own environment
/// but `env`, as a fresh shell on the host would run it.
fn listgate_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_listgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

const SMTP_PASSWORD: &str = "Pa55%2Fw0rd-NOT-FOR-LOGS";

const VALID_CONFIG: &str = r#"
[server]
bind = "0.0.0.0:8080"
base_url = "https://lists.example.com"
trusted_proxies = ["10.0.0.0/8"]

[mail]
url = "smtp://mailer:Pa55%2Fw0rd-NOT-FOR-LOGS@mail.example.com:587?tls=required"
from = "Example News <news@example.com>"

[retention]
after_unsubscribe = "3y"

[limits]
signups_per_ip = "off"

[[lists]]
id = "newsletter"
name = "Newsletter"
consent_text = "Yes, send me the newsletter."

[[lists]]
id = "rundbrief"
name = "Rundbrief"
language = "de"
consent_text = "Ja, schickt mir den Rundbrief."
from = "Rundbrief <rundbrief@example.com>"
thanks_url = "https://www.example.com/danke"
confirmed_url = "https://www.example.com/bestaetigt"
allowed_origins = ["https://www.example.com", "https://example.com"]
require_form_token = true
"#;

#[test]
fn check_config_says_what_serve_would_do_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("listgate.toml"), VALID_CONFIG).unwrap();
    let output = listgate_in(dir.path(), &["--config", "listgate.toml", "check-config"], &[]);
    let text = stdout(&output);
    for expected in [
        "configuration: listgate.toml and the LISTGATE_* environment",
        "  bind: 0.0.0.0:8080",
        "  base_url: https://lists.example.com",
        "  trusted_proxies: 10.0.0.0/8",
        "  trusted_proxy_header: x-forwarded-for (the only header read from trusted proxies)",
        "database: listgate.db (missing; serve creates it)",
        "key: file listgate.key (missing; serve generates one, mode 0600)",
        "  transport: smtp mail.example.com:587, STARTTLS, required, AUTH with the URL's credentials",
        "  from: Example News <news@example.com>",
        "  unconfirmed: 14d after signup, then erased",
        "  after_unsubscribe: 3y after the unsubscribe, then erased",
        "  signups_per_ip: off",
        "  signups_per_address: 10/1h",
        "  mails_per_hour: 1000",
        "lists: 2",
        "  newsletter: \"Newsletter\", language en",
        "    from: Example News <news@example.com> (mail.from)",
        "    allowed_origins: none",
        "    require_form_token: no",
        "  rundbrief: \"Rundbrief\", language de",
        "    from: Rundbrief <rundbrief@example.com>",
        "    thanks_url: https://www.example.com/danke",
        "    confirmed_url: https://www.example.com/bestaetigt",
        "    allowed_origins: https://www.example.com, https://example.com",
        "    require_form_token: yes",
        "    imprint: none",
        "    privacy_url: none",
        "    time_zone: UTC",
        "log format: text (LISTGATE_LOG_FORMAT)",
        "warning: lists[0].imprint: list \"newsletter\" has no imprint; its mails and pages do not say who sends them",
        "warning: lists[1].privacy_url: list \"rundbrief\" links no privacy notice from its form, pages and mail",
        "ok: the configuration is valid",
    ] {
        assert!(text.lines().any(|l| l == expected), "no line {expected:?} in:\n{text}");
    }
    let everything = format!("{text}{}", String::from_utf8_lossy(&output.stderr));
    for secret in [SMTP_PASSWORD, "Pa55", "mailer"] {
        assert!(!everything.contains(secret), "{secret:?} in the output:\n{everything}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["listgate.toml"], "no database, key or mail folder");
}

#[test]
fn check_config_reads_the_environment_and_names_where_the_key_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let keys = listgate_in(dir.path(), &["keygen"], &[]);
    let entry = stdout(&keys).trim().to_string();
    let url = format!("smtps://mailer:{SMTP_PASSWORD}@[::1]");
    let env = [
        ("LISTGATE_MAIL__URL", url.as_str()),
        ("LISTGATE_SECRETS__KEY", entry.as_str()),
        ("LISTGATE_LOG_FORMAT", "json"),
    ];
    let output = listgate_in(dir.path(), &["check-config"], &env);
    let text = stdout(&output);
    assert!(text.contains("configuration: built-in defaults and the LISTGATE_* environment (no file)\n"), "{text}");
    assert!(text.contains("  transport: smtp [::1]:465, implicit TLS (smtps), AUTH with the URL's credentials\n"));
    assert!(text.contains("key: environment (LISTGATE_SECRETS__KEY): 1 key(s), new links signed with key 1"));
    assert!(text.contains("log format: json (LISTGATE_LOG_FORMAT)\n"));
    let secret = entry.split_once(':').unwrap().1;
    let everything = format!("{text}{}", String::from_utf8_lossy(&output.stderr));
    for hidden in [SMTP_PASSWORD, "Pa55", secret] {
        assert!(!everything.contains(hidden), "{hidden:?} in the output:\n{everything}");
    }

    let key_file = dir.path().join("listgate.key");
    std::fs::write(&key_file, format!("{entry}\n")).unwrap();
    let env = [("LISTGATE_MAIL__URL", "file:///var/mail/listgate")];
    {
        // Like serve, check-config warns of a key file others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = stdout(&listgate_in(dir.path(), &["check-config"], &env));
        assert!(
            text.contains("(exists: 1 key(s), new links signed with key 1); warning: other users can read it"),
            "{text}"
        );
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let output = listgate_in(dir.path(), &["check-config"], &env);
    let text = stdout(&output);
    assert!(text.contains("key: file listgate.key (exists: 1 key(s), new links signed with key 1)\n"), "{text}");
    assert!(text.contains("  transport: file folder /var/mail/listgate (missing; serve creates it)\n"), "{text}");
    assert!(!text.contains(secret));
}

#[test]
fn check_config_fails_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |toml: &str, env: &[(&str, &str)]| {
        std::fs::write(dir.path().join("listgate.toml"), toml).unwrap();
        let output = listgate_in(dir.path(), &["--config", "listgate.toml", "check-config"], env);
        assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
        assert!(output.stdout.is_empty(), "no report for an invalid configuration");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!stderr.contains(SMTP_PASSWORD) && !stderr.contains("Pa55"), "{stderr}");
        stderr
    };
    let bad_list = VALID_CONFIG.replace("language = \"de\"", "language = \"fr\"");
    assert!(check(&bad_list, &[]).starts_with("listgate: config: lists[1].language:"));
    let bad_tls = VALID_CONFIG.replace("tls=required", "tls=sometimes");
    assert!(check(&bad_tls, &[]).starts_with("listgate: config: mail.url: tls=sometimes is not known"));
    let typo = VALID_CONFIG.replace("[retention]\nafter_unsubscribe", "[retention]\nafter_unsubscribed");
    let stderr = check(&typo, &[]);
    assert!(stderr.starts_with("listgate: config: retention") && stderr.contains("after_unsubscribed"), "{stderr}");
    let stderr = check(VALID_CONFIG, &[("LISTGATE_LIMITS__SIGNUPS_PER_ADDRESS", "lots")]);
    assert!(stderr.starts_with("listgate: config: limits.signups_per_address:"), "{stderr}");
    std::fs::write(dir.path().join("listgate.key"), "1:not-a-key\n").unwrap();
    assert!(check(VALID_CONFIG, &[]).starts_with("listgate: listgate.key: key 1 "));
    std::fs::remove_file(dir.path().join("listgate.key")).unwrap();
    let stderr = check("[server\nbind = 1", &[]);
    assert!(stderr.starts_with("listgate: config: listgate.toml:"), "{stderr}");

    let missing = listgate_in(dir.path(), &["--config", "nowhere.toml", "check-config"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("listgate: config: cannot read nowhere.toml:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_keeps_addresses_starting_with_minus_plus_or_equals_exact_and_guards_names() {
    let app = spawn_app().await;
    let addresses = ["-anna@example.org", "+news@example.org", "=eq@example.org"];
    for address in addresses {
        app.confirmed_subscriber(address, Some("=1+1")).await;
    }
    let csv_text = stdout(&app.cli(&["export"]));
    let rows: Vec<csv::StringRecord> =
        csv::Reader::from_reader(csv_text.as_bytes()).records().map(Result::unwrap).collect();
    let exported: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(exported, addresses, "the sending tool gets the addresses exactly");
    for row in &rows {
        assert_eq!(&row[1], "'=1+1", "the free-text name is guarded");
        assert!(row[10].starts_with(&app.base), "URLs exactly");
    }
}
