//! `listgate import` as a process, beside a running server, on files as
//! the tools write them (`tests/fixtures/import/`): Mailchimp's three audience
//! files, listmonk's export with and without the subscription columns,
//! a CleverReach-style CSV mapped with `--column`, and listgate's own export
//! moved from one instance to another.

use std::path::{Path, PathBuf};

use crate::helpers::{TestApp, spawn_app_without_smtp};
use crate::store::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import").join(name)
}

/// Runs `listgate import` with `args`; returns (exit code, stdout, stderr).
fn import(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    let output = app.cli(&all);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn import_file(app: &TestApp, file: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![file.to_str().unwrap(), "--list", "newsletter"];
    args.extend_from_slice(extra);
    import(app, &args)
}

/// `listgate export --status all --format jsonl`, one JSON object per row.
fn export_all(app: &TestApp) -> Vec<serde_json::Value> {
    let output = app.cli(&["export", "--status", "all", "--format", "jsonl"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn row<'a>(rows: &'a [serde_json::Value], email: &str) -> &'a serde_json::Value {
    rows.iter().find(|r| r["email"] == email).unwrap_or_else(|| panic!("{email} not exported: {rows:?}"))
}

fn verify_passes(app: &TestApp) {
    let output = app.cli(&["verify"]);
    assert!(output.status.success(), "verify: {}", String::from_utf8_lossy(&output.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailchimp_files_come_in_with_their_evidence_and_nobody_is_mailed() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let (code, out, _) = import_file(&app, &fixture("mailchimp_subscribed.csv"), &[]);
    assert_eq!(code, 1, "a row was rejected: {out}");
    assert!(out.starts_with("format: mailchimp (detected from the header)\n"), "{out}");
    assert!(out.contains("line 4: skipped: the address is on line 2 already, which was imported"), "{out}");
    assert!(out.contains("line 5: rejected: Email Address: "), "{out}");
    assert!(
        out.contains("imported 3 of 5 rows into newsletter: 3 confirmed, 0 unsubscribed; 1 skipped, 1 rejected"),
        "{out}"
    );

    let (code, out, _) = import_file(&app, &fixture("mailchimp_unsubscribed.csv"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 2 of 2 rows into newsletter: 0 confirmed, 2 unsubscribed"), "{out}");
    assert!(out.contains("1 unsubscribed rows left longer ago than retention.after_unsubscribe (4y)"), "{out}");

    let (code, out, _) = import_file(&app, &fixture("mailchimp_cleaned.csv"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("its addresses bounced, and none is imported"), "{out}");
    assert!(out.contains("line 2: skipped: cleaned in Mailchimp"), "{out}");
    assert!(out.contains("imported 0 of 2 rows"), "{out}");

    let rows = export_all(&app);
    assert_eq!(rows.len(), 5);
    let anna = row(&rows, "anna@example.com");
    assert_eq!(anna["name"], "Anna Schmidt, \"die Große\"", "commas and quotes survive");
    assert_eq!(anna["status"], "confirmed");
    assert_eq!(anna["signup_at"], "2021-03-04T08:12:55.000Z", "Mailchimp's times are UTC");
    assert_eq!(anna["signup_ip"], "203.0.113.7");
    assert_eq!(anna["confirmed_at"], "2021-03-04T08:14:02.000Z");
    assert_eq!(anna["evidence"], "double-opt-in");
    assert!(anna["imported_at"].is_string());
    let bob = row(&rows, "bob@example.org");
    assert_eq!(bob["evidence"], "confirmation-only", "an API add has no opt-in time or IPs");
    assert_eq!(bob["signup_ip"], "");
    let joerg = row(&rows, "joerg+news@Bücher.de");
    assert_eq!(joerg["name"], "Jörg O'Brien");
    assert_eq!(joerg["signup_ip"], "2001:db8::7");
    assert_eq!(joerg["confirmed_ip"], "192.0.2.44", "IPv4-mapped IPv6 is stored as IPv4, as listgate stores it");
    let carla = row(&rows, "carla@example.com");
    assert_eq!(carla["status"], "unsubscribed");
    assert_eq!(carla["unsubscribed_at"], "2025-06-06T12:56:15.000Z");

    // Nobody is mailed, and the chain holds one `imported` event per subscription.
    let db = app.db();
    assert_eq!(db.value::<i64>("SELECT count(*) FROM outbox", &[]), 0);
    assert_eq!(db.value::<i64>("SELECT count(*) FROM proof_events WHERE kind = 'imported'", &[]), 5);
    verify_passes(&app);

    // `show` says plainly where the evidence came from.
    let show = app.cli(&["show", "ANNA@example.com"]);
    let text = String::from_utf8(show.stdout).unwrap();
    assert!(text.contains("from a mailchimp file (line 2"), "{text}");
    assert!(text.contains("collected by another system: listgate cannot vouch"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&app.cli(&["show", "anna@example.com", "--json"]).stdout).unwrap();
    let record = &json["records"][0];
    assert_eq!(record["import"]["format"], "mailchimp");
    assert_eq!(record["import"]["line"], 2);
    let detail = &record["events"][0]["detail"];
    assert_eq!(detail["values"]["OPTIN_TIME"], "2021-03-04 08:12:55", "the original text is kept");
    assert!(detail["values"].get("NOTES").is_none(), "columns listgate does not read are not stored");
    assert!(detail["values"].get("LATITUDE").is_none());
    let dir = tempfile::tempdir().unwrap();
    let proof = app.cli(&["show", "anna@example.com", "--proof", "--dir", dir.path().to_str().unwrap()]);
    let path = String::from_utf8(proof.stdout).unwrap().trim().to_string();
    let html = std::fs::read_to_string(path).unwrap();
    assert!(html.contains("This evidence was collected by another system"), "{html}");

    // The unsubscribe from 2019 is past retention: the next purge erases it.
    let purge = app.cli(&["purge"]);
    assert!(purge.status.success());
    assert_eq!(app.db().value::<i64>("SELECT count(*) FROM subscriptions WHERE email = 'dan@example.net'", &[]), 0);
    assert_eq!(app.db().value::<i64>("SELECT count(*) FROM subscriptions WHERE email = 'carla@example.com'", &[]), 1);
    verify_passes(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_import_of_the_same_file_changes_nothing_and_a_dry_run_writes_nothing() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let file = fixture("mailchimp_subscribed.csv");
    let (code, dry, _) = import_file(&app, &file, &["--dry-run"]);
    assert_eq!(code, 1);
    assert!(dry.contains("would import 3 of 5 rows"), "{dry}");
    assert!(dry.contains("line 4: skipped: the address is on line 2 already, which would be imported"), "{dry}");
    assert!(dry.contains("(dry run: nothing written)"), "{dry}");
    assert_eq!(app.row_counts(), [0, 0, 0, 0], "a dry run writes nothing");

    let (_, first, _) = import_file(&app, &file, &[]);
    assert!(first.contains("imported 3 of 5 rows"), "{first}");
    let counts = app.row_counts();
    let (code, again, _) = import_file(&app, &file, &[]);
    assert_eq!(code, 1, "the bad row is still bad");
    assert!(again.contains("imported 0 of 5 rows"), "{again}");
    assert!(again.contains("line 2: skipped: imported from this file before"), "{again}");
    assert_eq!(app.row_counts(), counts, "nothing changed");
    let (_, dry_again, _) = import_file(&app, &file, &["--dry-run"]);
    assert!(dry_again.contains("would import 0 of 5 rows"), "{dry_again}");

    // A signup through the form meets the imported subscriber like any other.
    assert_eq!(app.subscribe("ANNA@example.com").await.status(), 200);
    assert_eq!(
        app.db().value::<i64>("SELECT count(*) FROM subscriptions WHERE email_key = 'anna@example.com'", &[]),
        1
    );
    verify_passes(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listmonk_needs_the_subscription_columns_and_then_comes_in() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let (code, _, err) = import_file(&app, &fixture("listmonk_export.csv"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no subscription status and no confirmation time") && err.contains("docs/import.md"), "{err}");
    assert_eq!(app.row_counts(), [0, 0, 0, 0]);

    let (code, out, _) = import_file(&app, &fixture("listmonk_subscriptions.csv"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("format: listmonk (detected from the header)"), "{out}");
    assert!(out.contains("line 3: skipped: blocklisted in listmonk"), "{out}");
    assert!(out.contains("line 4: skipped: pending (never confirmed)"), "{out}");
    assert!(out.contains("imported 2 of 4 rows"), "{out}");
    let rows = export_all(&app);
    let anna = row(&rows, "anna@example.com");
    assert_eq!(anna["signup_at"], "2024-03-01T09:15:42.123Z");
    assert_eq!(anna["confirmed_at"], "2024-03-01T09:20:03.750Z");
    assert_eq!(anna["confirmed_ip"], "203.0.113.7", "the client's address, first in X-Forwarded-For");
    assert_eq!(anna["evidence"], "confirmation-only", "listmonk keeps no signup IP");
    let lou = row(&rows, "lou@example.net");
    assert_eq!(lou["confirmed_at"], "2021-01-10T10:05:00.000Z", "+01 offsets are honoured");
    assert!(lou["confirmed_ip"].is_null());
    verify_passes(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tool_s_csv_comes_in_through_column_mappings() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let file = fixture("cleverreach.csv");
    let (code, _, err) = import_file(&app, &file, &[]);
    assert_eq!(code, 0, "{err}");
    // Without mappings only `email` is known: no row has a confirmation time.
    assert_eq!(app.row_counts()[0], 0);

    let columns = [
        "--column",
        "first_name=Vorname",
        "--column",
        "last_name=Nachname",
        "--column",
        "signup_at=registered",
        "--column",
        "confirmed_at=activated",
        "--column",
        "unsubscribed_at=deactivated",
    ];
    let (code, out, _) = import_file(&app, &file, &columns);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("format: csv (as --column implies)"), "{out}");
    assert!(out.contains("line 3: skipped: pending (never confirmed)"), "{out}");
    assert!(out.contains("line 5: rejected: the signup time is after the confirmation time"), "{out}");
    assert!(out.contains("imported 2 of 4 rows into newsletter: 1 confirmed, 1 unsubscribed"), "{out}");
    let rows = export_all(&app);
    assert_eq!(row(&rows, "emma@example.de")["name"], "Emma Weiß");
    assert_eq!(row(&rows, "greta@example.de")["status"], "unsubscribed");

    // Usage mistakes change nothing and exit 2.
    for bad in [
        vec!["--column", "mail=email"],
        vec!["--column", "email"],
        vec!["--column", "email=email", "--format", "mailchimp"],
    ] {
        let (code, _, err) = import_file(&app, &file, &bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
    let (code, _, err) = import(&app, &[file.to_str().unwrap(), "--list", "nope"]);
    assert_eq!((code, err.contains("no list \"nope\"")), (2, true), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_files_and_rows_are_refused_with_their_line() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // A file whose header says nothing of addresses, and one that is no text.
    for (name, bytes) in [("none.csv", &b"a,b\n1,2\n"[..]), ("binary.csv", &[0xff, 0xfe, 0x00, 0x01, 0x80][..])] {
        let (code, _, err) = import_file(&app, &write(name, bytes), &[]);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(err.starts_with("listgate: "), "one clear line: {err}");
    }
    let missing = import_file(&app, Path::new("/nonexistent/list.csv"), &[]);
    assert_eq!(missing.0, 1);

    let future = (time::OffsetDateTime::now_utc() + time::Duration::days(2)).date();
    let rows = format!(
        "email,name,confirmed_at,confirmed_ip,signup_at\n\
         ok@example.com,Ok,2024-01-01 10:00:00,192.0.2.1,2024-01-01 09:00:00\n\
         ragged@example.com,Ragged\n\
         late@example.com,Late,{future} 10:00:00,,\n\
         badip@example.com,Bad,2024-01-01 10:00:00,999.1.1.1,\n\
         badtime@example.com,Bad,01.01.2024,,\n\
         ctl@example.com,\"a\x07b\",2024-01-01 10:00:00,,\n\
         long@example.com,{},2024-01-01 10:00:00,,\n\
         {}@example.com,Long,2024-01-01 10:00:00,,\n",
        "n".repeat(101),
        "x".repeat(250),
    );
    let mut bytes = rows.into_bytes();
    bytes.extend_from_slice(b"latin1@example.com,J\xf6rg,2024-01-01 10:00:00,,\n");
    // A terminal escape sequence in a value reaches the report escaped.
    bytes.extend_from_slice(b"esc@example.com,E,\x1b[2J,,\n");
    let (code, out, _) = import_file(&app, &write("rows.csv", &bytes), &[]);
    assert_eq!(code, 1);
    for expected in [
        "line 3: rejected: has 2 fields, the header 5",
        "line 4: rejected: ",
        "line 5: rejected: confirmed_ip \"999.1.1.1\" is not an IP address",
        "line 6: rejected: confirmed_at \"01.01.2024\" is not a time",
        "line 7: rejected: name: ",
        "line 8: rejected: name: ",
        "line 9: rejected: email: ",
        "line 10: rejected: is not UTF-8 text",
        "line 11: rejected: confirmed_at \"\\u{1b}[2J\" is not a time",
        "imported 1 of 10 rows",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    assert!(out.contains("is in the future"), "{out}");
    assert!(!out.contains('\u{1b}'), "no raw escape reaches the terminal");
    assert_eq!(app.stored_emails(), ["ok@example.com"]);

    // JSON lines: a broken line is one rejected row.
    let json = write("broken.jsonl", b"{\"email\": \"j@example.com\", \"status\": \"confirmed\"\nnot json\n");
    let (code, out, _) = import_file(&app, &json, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("line 1: rejected: is not a JSON object") && out.contains("line 2: rejected"), "{out}");
    verify_passes(&app);
}

/// On a new instance, `import` creates the database and key as `serve`
/// would, but only for a file it can import: a bad one leaves nothing.
#[test]
fn a_file_that_cannot_be_imported_creates_no_database_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |file: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_listgate"))
            .args(["import", file.to_str().unwrap(), "--list", "newsletter"])
            .current_dir(dir.path())
            .env_remove("LISTGATE_CONFIG")
            .env_remove("LISTGATE_DATABASE__URL")
            .env("LISTGATE_DATABASE__PATH", dir.path().join("new.db"))
            .env("LISTGATE_SECRETS__KEY_FILE", dir.path().join("new.key"))
            .env("LISTGATE_MAIL__URL", format!("file://{}", dir.path().join("mail").display()))
            .output()
            .unwrap()
    };
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\u{feff}\n").unwrap();
    let headless = dir.path().join("headless.csv");
    std::fs::write(&headless, "a,b\n1,2\n").unwrap();
    for (file, says) in [(&empty, "is empty: nothing to import"), (&headless, "cannot tell the format")] {
        let out = run(file);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!dir.path().join("new.db").exists() && !dir.path().join("new.key").exists());
    }
    let out = run(&fixture("mailchimp_unsubscribed.csv"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("new.db").exists() && dir.path().join("new.key").exists(), "created for a good file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_list_moves_to_another_instance_with_every_state_time_and_ip() {
    let source = crate::helpers::spawn_app().await;
    for (i, name) in ["Müller, Jürgen", "Anna \"Nan\" Groß", "-Minus-", "=SUM(A1)"].iter().enumerate() {
        source.confirmed_subscriber(&format!("user{i}@Example.org"), Some(name)).await;
    }
    source.confirmed_subscriber("leaver+tag@bücher.de", None).await;
    assert!(source.cli(&["unsubscribe", "leaver+tag@bücher.de"]).status.success());
    assert_eq!(source.subscribe("pending@example.org").await.status(), 200);
    verify_passes(&source);
    let exported = export_all(&source);
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("all.csv");
    let bom_path = dir.path().join("for-excel.csv");
    let jsonl_path = dir.path().join("all.jsonl");
    for (path, format, bom) in [(&csv_path, "csv", false), (&bom_path, "csv", true), (&jsonl_path, "jsonl", false)] {
        let mut args = vec!["export", "--status", "all", "--format", format, "--output", path.to_str().unwrap()];
        if bom {
            args.push("--bom");
        }
        assert!(source.cli(&args).status.success());
    }

    // What must survive the move: everything but the links, the consent
    // hash (compared on its own below) and the import marks.
    let essentials = |rows: &[serde_json::Value]| -> Vec<serde_json::Value> {
        let mut kept: Vec<serde_json::Value> = rows
            .iter()
            .filter(|r| r["status"] != "pending")
            .map(|r| {
                serde_json::json!([
                    r["email"],
                    r["name"],
                    r["list"],
                    r["status"],
                    r["signup_at"],
                    r["signup_ip"],
                    r["confirmed_at"],
                    r["confirmed_ip"],
                    r["unsubscribed_at"],
                    r["evidence"]
                ])
            })
            .collect();
        kept.sort_by_key(|v| v[0].to_string());
        kept
    };
    for path in [&csv_path, &bom_path, &jsonl_path] {
        let target = spawn_app_without_smtp(|_| {}).await;
        let (code, out, _) = import_file(&target, path, &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("format: listgate"), "{out}");
        assert!(out.contains("skipped: pending (never confirmed)"), "{out}");
        assert!(out.contains("imported 5 of 6 rows into newsletter: 4 confirmed, 1 unsubscribed"), "{out}");
        let moved = export_all(&target);
        assert_eq!(essentials(&moved), essentials(&exported), "from {}", path.display());
        assert!(moved.iter().all(|r| r["imported_at"].is_string()));
        // The same list configuration shows the same text: its hash, and
        // the text behind it, move along with the subscribers.
        assert!(moved.iter().zip(&exported).all(|(m, e)| m["consent_sha256"] == e["consent_sha256"]));
        verify_passes(&target);
        // The old unsubscribe links name ids of the source; the moved
        // subscribers get links of their own, which work.
        let link = moved.iter().find(|r| r["status"] == "confirmed").unwrap()["unsubscribe_url"].as_str().unwrap();
        let token = link.split("token=").nth(1).unwrap();
        let page = target.client_post_unsubscribe(token).await;
        assert_eq!(page, 200);
    }
}

impl TestApp {
    /// One-click unsubscribe (RFC 8058) with `token`; the status code.
    async fn client_post_unsubscribe(&self, token: &str) -> u16 {
        let url = self.url(&format!("/unsubscribe?token={token}"));
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_half_way_runs_again_to_completion_without_duplicates() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let rows = 30_000;
    let mut text = String::from("email,name,signup_at,signup_ip,confirmed_at,confirmed_ip\n");
    for i in 0..rows {
        text.push_str(&format!(
            "user{i}@example.com,User {i},2024-01-01 10:00:00,192.0.2.{},2024-01-01 10:05:00,2001:db8::{i:x}\n",
            i % 250
        ));
    }
    std::fs::write(&path, text).unwrap();
    let mut child = app
        .cli_command(&["import", path.to_str().unwrap(), "--list", "newsletter"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some batches are in, and before all are.
    let started = std::time::Instant::now();
    loop {
        let stored: i64 = app.db().value("SELECT count(*) FROM subscriptions", &[]);
        if stored > 0 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the import never committed a batch");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial: i64 = app.db().value("SELECT count(*) FROM subscriptions", &[]);
    assert!(partial % listgate::admin::import::BATCH_ROWS as i64 == 0, "whole batches only: {partial}");
    assert!(partial < rows, "killed before the end");

    let (code, out, _) = import_file(&app, &path, &[]);
    assert_eq!(code, 0, "{}", &out[..out.len().min(2000)]);
    assert!(out.contains(&format!("imported {} of {rows} rows", rows - partial)), "{}", out.lines().last().unwrap());
    assert_eq!(app.db().value::<i64>("SELECT count(*) FROM subscriptions", &[]), rows);
    assert_eq!(app.db().value::<i64>("SELECT count(DISTINCT email_key) FROM subscriptions", &[]), rows);
    assert_eq!(app.db().value::<i64>("SELECT count(*) FROM proof_events", &[]), rows);
    assert_eq!(
        app.db().value::<i64>(
            "SELECT count(*) FROM subscriptions WHERE email = ?1",
            &[Value::from("user29999@example.com")]
        ),
        1
    );
    verify_passes(&app);
}
