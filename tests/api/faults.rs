//! Faults a deployment meets, injected against the real binary (as a child
//! process) and a real SMTP server the tests stop, start and make misbehave.
//! RELIABILITY.md lists what each proves. `LISTGATE_FAULT_KILLS=500` makes the
//! crash test a longer soak run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listgate::config::DatabaseConfig;

use crate::helpers::{PATIENCE, SmtpServer, header, sha256_hex, spawn_app_with, spawn_app_without_smtp};
use crate::store::{Backend, TestDb, TestStore, backend, sqlite_only};
use crate::tools::{Tool, require};

/// `listgate serve` as a child process on a fixed port, restartable on the
/// same database.
struct Binary {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The database `LISTGATE_TEST_STORE` chose (`store.rs`).
    database: DatabaseConfig,
    _store: TestStore,
    /// A program `listgate serve` runs under (strace and its options), if any.
    wrapper: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Binary {
    fn new(dir: &Path, mail_url: &str, extra: &[(&str, &str)]) -> Binary {
        let port = free_port();
        let store = TestStore::new(dir);
        let mut database = DatabaseConfig::default();
        store.configure(&mut database);
        let mut env: Vec<(String, String)> = vec![
            ("LISTGATE_SERVER__BIND".into(), format!("127.0.0.1:{port}")),
            ("LISTGATE_SERVER__BASE_URL".into(), format!("http://127.0.0.1:{port}")),
            ("LISTGATE_SECRETS__KEY_FILE".into(), dir.join("listgate.key").display().to_string()),
            ("LISTGATE_MAIL__URL".into(), mail_url.into()),
            ("LISTGATE_MAIL__RETRY_BASE".into(), "1s".into()),
            ("LISTGATE_MAIL__RETRY_MAX".into(), "2s".into()),
            ("LISTGATE_LIMITS__SIGNUPS_PER_IP".into(), "off".into()),
            ("LISTGATE_LIMITS__SIGNUPS_PER_ADDRESS".into(), "off".into()),
            // A burst here queues thousands of mails in seconds; every one
            // must arrive before the test ends, not an hour later.
            ("LISTGATE_LIMITS__MAILS_PER_HOUR".into(), "off".into()),
            ("LISTGATE_LOG".into(), "warn".into()),
        ];
        env.extend(store.env());
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Binary { child: None, port, dir: dir.to_path_buf(), env, database, _store: store, wrapper: Vec::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts the server and waits until `/healthz` answers.
    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("serve.log")).unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((program, options)) => {
                let mut command = Command::new(program);
                command.args(options).arg(env!("CARGO_BIN_EXE_listgate"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_listgate")),
        };
        let child = command
            .arg("serve")
            .env_remove("LISTGATE_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(self.url("/healthz")).timeout(Duration::from_millis(500)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "listgate did not become healthy; see {}",
                self.dir.join("serve.log").display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Also from Drop while a failed test unwinds, so a server that
            // has already exited is skipped, not a second panic.
            if let Some(pid) = server_pid(&child).filter(|_| !self.wrapper.is_empty()) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits (at most `limit`) for the exit.
    async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // Under a wrapper, the server itself: strace would detach and leave it running.
        let pid = if self.wrapper.is_empty() {
            child.id()
        } else {
            server_pid(&child).expect("the wrapper has started the server")
        };
        let ok = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        assert!(ok.success(), "kill -TERM {pid}");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > limit {
                child.kill().unwrap();
                panic!("listgate did not stop within {limit:?} after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Posts a signup; returns the status.
    async fn subscribe(&self, email: &str) -> reqwest::StatusCode {
        let client = reqwest::Client::new();
        client.post(self.url("/subscribe")).form(&[("email", email)]).send().await.unwrap().status()
    }

    fn db(&self) -> TestDb {
        TestDb::open(&self.database)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_listgate"))
            .args(args)
            .env_remove("LISTGATE_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }

    fn value(&self, sql: &str) -> i64 {
        self.db().value(sql, &[])
    }

    async fn wait_for(&self, sql: &str, expected: i64) {
        let start = Instant::now();
        loop {
            let value = self.value(sql);
            if value == expected {
                return;
            }
            assert!(start.elapsed() < PATIENCE * 2, "`{sql}` stayed {value}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Binary {
    /// Waits until `sql` counts 0, as long as the count keeps falling (a soak
    /// run leaves tens of thousands of mails to deliver).
    async fn wait_for_drain(&self, sql: &str) {
        let (mut last, mut since) = (i64::MAX, Instant::now());
        loop {
            let value = self.value(sql);
            if value == 0 {
                return;
            }
            if value < last {
                (last, since) = (value, Instant::now());
            }
            assert!(since.elapsed() < PATIENCE, "`{sql}` stuck at {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The process `listgate serve` runs in under a wrapper: the wrapper's
/// child, while there is one.
fn server_pid(wrapper: &Child) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", wrapper.id())).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Posts unique signups from `clients` concurrent clients until the server
/// stops answering; returns the addresses that got a 2xx.
fn load(
    url: String,
    prefix: String,
    clients: usize,
    acked: Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let counter = Arc::new(AtomicUsize::new(0));
    (0..clients)
        .map(|_| {
            let (url, prefix, counter, acked) = (url.clone(), prefix.clone(), counter.clone(), acked.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                loop {
                    let email = format!("{prefix}-{}@example.org", counter.fetch_add(1, Ordering::Relaxed));
                    match client.post(&url).form(&[("email", email.as_str())]).send().await {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push(email),
                        Ok(r) => panic!("unexpected status {} for {email}", r.status()),
                        Err(_) => return, // killed or stopped
                    }
                }
            })
        })
        .collect()
}

fn verify_ok(server: &Binary) {
    let out = server.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "verify: {}", String::from_utf8_lossy(&out.stdout));
    // SQLite's own check of its file; PostgreSQL has none built in (its
    // crash safety is its WAL replay, which these tests exercise).
    let db = server.db();
    if !db.is_postgres() {
        let check: String = db.value("PRAGMA integrity_check", &[]);
        assert_eq!(check, "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_signup_burst_loses_no_acknowledged_signup() {
    let kills: usize = std::env::var("LISTGATE_FAULT_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let smtp = SmtpServer::start("ok");
    let dir = tempfile::tempdir().unwrap();
    // On PostgreSQL a killed run's leased mails wait out their lease (five
    // `mail.timeout`s; nodes share the outbox), so the lease is made short,
    // as in postgres_nodes.rs; on SQLite the restart frees them at once.
    let short_lease: &[(&str, &str)] =
        if backend() == Backend::Postgres { &[("LISTGATE_MAIL__TIMEOUT", "1s")] } else { &[] };
    let mut server = Binary::new(dir.path(), &smtp.url(), short_lease);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut seed: u64 = 0x5eed;
    for round in 0..kills {
        server.start().await;
        let tasks = load(server.url("/subscribe"), format!("k{round}"), 4, acked.clone());
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(20 + (seed >> 33) % 130)).await;
        server.kill9();
        for t in tasks {
            t.await.unwrap();
        }
    }
    // One last, calm run delivers whatever the kills left queued.
    server.start().await;
    let drain = Instant::now();
    server.wait_for_drain("SELECT count(*) FROM outbox WHERE state = 'queued'").await;
    let drain = drain.elapsed();

    let acked = acked.lock().unwrap().clone();
    let db = server.db();
    let stored: HashSet<String> = db.rows::<String>("SELECT email FROM subscriptions", &[]).into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|e| !stored.contains(*e)).collect();
    assert!(lost.is_empty(), "{} acknowledged signups lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert_eq!(server.value("SELECT count(*) FROM outbox WHERE state <> 'sent'"), 0, "every mail delivered");
    assert_eq!(server.value("SELECT count(*) FROM subscriptions s WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.subscription_id = s.id)"), 0);
    verify_ok(&server);
    let mails = smtp.messages();
    let mut copies: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in &mails {
        *copies.entry(header(m, "Message-ID").unwrap()).or_default() += 1;
    }
    let ids: HashSet<String> = copies.keys().cloned().collect();
    let outbox = server.value("SELECT count(*) FROM outbox") as usize;
    assert_eq!(ids.len(), outbox, "every outbox row reached the server, under its own Message-ID");
    eprintln!(
        "figures: kills={kills} acknowledged={} stored={} (unacknowledged but committed: {}) mails_queued={outbox} mails_received={} duplicates={} most_copies_of_one_mail={} final_drain={drain:.1?}",
        acked.len(),
        stored.len(),
        stored.len() - acked.len(),
        mails.len(),
        mails.len() - ids.len(),
        copies.values().max().copied().unwrap_or(0)
    );
    assert!(acked.len() > kills, "the load actually ran");
}

/// SQLite only: the restart frees the dead run's lease at once, which only
/// SQLite's single node may do. On PostgreSQL the mail goes out again once
/// its lease has run out, with the same Message-ID
/// (`postgres_nodes::killing_a_node_again_and_again_loses_no_acknowledged_signup_and_no_mail`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_server_took_a_mail_sends_it_again_once_with_the_same_message_id() {
    if sqlite_only(
        "a restart frees the dead run's leases at once only on SQLite's one node; PostgreSQL's nodes wait out the lease",
    ) {
        return;
    }
    // The server stores each mail, then waits 3 s before saying 250.
    let smtp = SmtpServer::start("hold:3");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::new(dir.path(), &smtp.url(), &[]);
    server.start().await;
    assert_eq!(server.subscribe("twice@example.org").await, 200);
    smtp.wait_for_messages(1).await;
    server.kill9(); // before the 250 arrives: listgate never learns it was delivered
    assert_eq!(server.value("SELECT count(*) FROM outbox WHERE state = 'queued' AND leased = 1"), 1);
    server.start().await; // resumes the leased mail at once
    server.wait_for("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "exactly one duplicate");
    assert_eq!(mails[0], mails[1], "the same bytes, so the same Message-ID");
    let recorded: String = server.db().value("SELECT message_sha256 FROM outbox", &[]);
    assert_eq!(recorded, sha256_hex(&mails[1]));
    verify_ok(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_delays_mail_but_every_signup_is_answered_and_every_mail_arrives_as_queued() {
    let smtp = SmtpServer::start("ok");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::new(dir.path(), &smtp.url(), &[]);
    let (folder, port) = smtp.stop(); // the outage begins
    server.start().await;
    for i in 0..20 {
        assert_eq!(
            server.subscribe(&format!("outage{i}@example.org")).await,
            200,
            "signups keep working during the outage"
        );
    }
    server.wait_for("SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts >= 2", 20).await;
    let smtp = SmtpServer::start_in(folder, "ok", port); // the server returns
    let mails = smtp.wait_for_messages(20).await;
    server.wait_for("SELECT count(*) FROM outbox WHERE state = 'sent'", 20).await;
    let recorded: HashSet<String> =
        server.db().rows::<String>("SELECT message_sha256 FROM outbox", &[]).into_iter().collect();
    let received: HashSet<String> = mails.iter().map(|m| sha256_hex(m)).collect();
    assert_eq!(recorded, received, "every mail arrived exactly as queued");
    assert_eq!(mails.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_421_and_451_are_retried_until_delivered() {
    for code in ["421", "451"] {
        let app = spawn_app_with(&format!("tempfail:2:{code}"), |_| {}).await;
        assert_eq!(app.subscribe("busy@example.org").await.status(), 200);
        app.smtp().wait_for_messages(1).await;
        app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent' AND attempts = 3", 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_the_mail_is_failed_with_its_last_error_after_the_deadline() {
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming() {
            keep.lock().unwrap().push(stream);
        }
    });
    let app = spawn_app_without_smtp(|c| {
        c.mail.url = format!("smtp://127.0.0.1:{port}");
        c.mail.timeout = "1s".parse().unwrap();
        c.mail.give_up_after = "4s".parse().unwrap();
    })
    .await;
    assert_eq!(app.subscribe("silent@example.org").await.status(), 200);
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'failed'", 1).await;
    let (attempts, error): (i64, String) = app.db().value("SELECT attempts, last_error FROM outbox", &[]);
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    assert!(error.starts_with("gave up after") && error.to_lowercase().contains("timed out"), "{error}");
    let event: String = app.db().value("SELECT detail FROM proof_events WHERE kind = 'mail_failed'", &[]);
    assert!(event.contains("gave up after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_failure_is_retried_and_then_recorded_as_failed() {
    // smtps:// to a server that speaks plain SMTP: the TLS handshake fails.
    let plain = SmtpServer::start("ok");
    let app = spawn_app_with("ok", |c| {
        c.mail.url = format!("smtps://127.0.0.1:{}", plain.port);
        c.mail.give_up_after = "3s".parse().unwrap();
    })
    .await;
    assert_eq!(app.subscribe("tls@example.org").await.status(), 200);
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'failed'", 1).await;
    let (attempts, error): (i64, String) = app.db().value("SELECT attempts, last_error FROM outbox", &[]);
    assert!(attempts >= 2, "{attempts}");
    assert!(error.starts_with("gave up after"), "{error}");
    assert!(plain.messages().is_empty());
}

/// SQLite only: `database.max_pages` caps SQLite's file to stand in for a
/// full disk; PostgreSQL's disk is the database server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_stores_nothing_partial_and_recovers_when_space_returns() {
    if sqlite_only("database.max_pages caps SQLite's file to stand in for a full disk") {
        return;
    }
    let app = spawn_app_with("ok", |c| c.database.max_pages = 80).await;
    let mut accepted = Vec::new();
    let mut full = None;
    for i in 0..5000 {
        let email = format!("fill{i}-{}@example.org", "x".repeat(50));
        let r = app.post_form("/subscribe", &[("email", email.as_str()), ("name", &"N".repeat(100))]).await;
        if r.status() == 503 {
            full = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        accepted.push(email);
    }
    let full = full.expect("the database filled up");
    assert_eq!(full.headers()["retry-after"], "60");
    assert!(full.text().await.unwrap().contains("Nothing was stored."));
    let [subscriptions, outbox, events, _] = app.row_counts();
    assert_eq!(subscriptions as usize, accepted.len(), "no partial signup");
    assert_eq!(outbox, subscriptions, "every stored signup has its mail queued");
    assert!(events >= subscriptions);
    assert_eq!(app.get("/healthz").await.status(), 200, "reads still work");

    // Space returns: erasing the older half of the records frees whole pages,
    // which the writer reuses.
    for email in &accepted[..accepted.len() / 2] {
        assert!(app.cli(&["erase", email, "--yes"]).status.success());
    }
    let r = app.subscribe("after@example.org").await;
    assert_eq!(r.status(), 200, "recovered without a restart");
    let check: String = app.db().value("PRAGMA integrity_check", &[]);
    assert_eq!(check, "ok");
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_beside_load_never_make_a_client_see_database_is_locked() {
    let app = Arc::new(spawn_app_with("ok", |_| {}).await);
    // Some history for purge and export to chew on.
    for i in 0..20 {
        app.confirmed_subscriber(&format!("old{i}@example.org"), Some("Old")).await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..3 {
        let (app, stop) = (app.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let email = format!("busy{worker}-{n}@example.org");
                assert_eq!(app.subscribe(&email).await.status(), 200, "signup under admin load");
                n += 1;
            }
            n
        }));
    }
    let unsubscriber = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let keys = app.keys();
            // By row id, as links mailed before layout 2 carry it.
            let mut id = 1;
            while !stop.load(Ordering::Relaxed) && id <= 20 {
                let token = listgate::token::sign(
                    &keys,
                    listgate::token::Purpose::Unsubscribe,
                    listgate::token::Subject::Sequential(id),
                    "newsletter",
                    None,
                );
                let r = app.one_click_with(&token).await;
                assert_eq!(r.status(), 200);
                id += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let admin = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let mut runs = 0;
            for _ in 0..5 {
                for args in
                    [&["export", "--status", "all", "--format", "jsonl"][..], &["purge"], &["verify"], &["stats"]]
                {
                    let out = app.cli(args);
                    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
                    if args[0] == "export" {
                        // A consistent snapshot: every row whole, no address twice per list.
                        let mut seen = HashSet::new();
                        for line in String::from_utf8(out.stdout).unwrap().lines() {
                            let row: serde_json::Value = serde_json::from_str(line).unwrap();
                            let status = row["status"].as_str().unwrap();
                            assert_eq!(row["confirmed_at"].is_null(), status == "pending", "{row}");
                            assert_eq!(row["unsubscribed_at"].is_null(), status != "unsubscribed", "{row}");
                            assert!(seen.insert((row["email"].to_string(), row["status"].to_string())));
                        }
                    }
                    runs += 1;
                }
            }
            runs
        })
    };
    let runs = admin.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    unsubscriber.await.unwrap();
    let mut signups = 0;
    for l in load {
        signups += l.await.unwrap();
    }
    eprintln!("figures: admin_runs={runs} signups_during={signups}");
    assert!(signups > 0);
    assert_eq!(app.cli(&["verify"]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_0_quickly() {
    let smtp = SmtpServer::start("ok");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::new(dir.path(), &smtp.url(), &[]);
    server.start().await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(server.url("/subscribe"), "term".into(), 4, acked.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = server.terminate(Duration::from_secs(10)).await;
    for t in tasks {
        t.await.unwrap();
    }
    assert!(status.success(), "{status:?}");
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let stored: HashSet<String> =
        server.db().rows::<String>("SELECT email FROM subscriptions", &[]).into_iter().collect();
    assert!(acked.iter().all(|e| stored.contains(e)), "every answered signup is stored");
    assert_eq!(server.value("SELECT count(*) FROM outbox WHERE leased = 1"), 0, "no mail left half-delivered");
    verify_ok(&server);
}

/// Power cut, the half a test can see: an answer leaves only once its
/// write is on disk. strace records the server's system calls while signups
/// arrive one at a time. For each one the trace must show, in this order:
/// the request read, a write into the WAL, an fsync or fdatasync of the
/// WAL, the answer. It holds for `synchronous=FULL` (SQLite syncs inside
/// `COMMIT`) and for `NORMAL` with an fdatasync of the WAL before the
/// answers (the contract allows both); it fails for `NORMAL` alone, and
/// for answers sent before their sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_leaves_only_after_its_write_is_synced_to_the_disk() {
    if sqlite_only("PostgreSQL syncs its WAL inside its own commit") {
        return;
    }
    let strace = Tool::Strace.path();
    let smtp = SmtpServer::start("ok");
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.txt");
    let mut server = Binary::new(dir.path(), &smtp.url(), &[]);
    let calls = "trace=read,recvfrom,readv,write,writev,sendto,sendmsg,pwrite64,pwritev,fsync,fdatasync";
    let options = ["-f", "-qq", "-ttt", "-T", "-y", "-s", "40", "-e", calls, "-o"];
    server.wrapper = std::iter::once(strace.display().to_string())
        .chain(options.iter().map(|o| o.to_string()))
        .chain([trace.display().to_string()])
        .collect();
    server.start().await;
    let signups = 20;
    for i in 0..signups {
        // Unusual but valid: mixed case, a +tag, a Unicode domain.
        let status = server.subscribe(&format!("Synced+{i}@Bücher-{}.example", i % 3)).await;
        assert!(status.is_success(), "signup {i}: {status}");
    }
    assert!(server.terminate(Duration::from_secs(10)).await.success());

    let calls = SystemCall::read_trace(&trace);
    let is_wal = |call: &&SystemCall| call.fd.ends_with("-wal>");
    let writes: Vec<&SystemCall> = calls.iter().filter(|c| c.name.starts_with("pwrite")).filter(is_wal).collect();
    let syncs: Vec<&SystemCall> = calls.iter().filter(|c| c.name.ends_with("sync")).filter(is_wal).collect();
    let requests = calls.iter().filter(|c| c.name.contains("read") || c.name.starts_with("recv"));
    let mut answered = 0;
    for request in requests.filter(|c| c.text.contains("POST /subscribe")) {
        let answer = calls
            .iter()
            .find(|c| c.start >= request.end && c.fd == request.fd && c.text.contains("HTTP/1.1 "))
            .unwrap_or_else(|| panic!("no answer to the request read at {} in {}", request.start, trace.display()));
        let synced = writes
            .iter()
            .any(|w| w.start >= request.end && syncs.iter().any(|s| s.start >= w.end && s.end <= answer.start));
        assert!(
            synced,
            "the answer at {} left before the WAL was synced after the request read at {} ({})",
            answer.start,
            request.start,
            trace.display()
        );
        answered += 1;
    }
    if answered != signups {
        let log = std::fs::read_to_string(&trace).unwrap();
        let kept = dir.keep().join("strace.txt");
        let posts: Vec<&str> = log.lines().filter(|l| l.contains("POST")).take(5).collect();
        panic!(
            "{answered} of {signups} signups found in the trace ({} lines, {} calls parsed, kept at {}); lines with POST: {posts:#?}",
            log.lines().count(),
            calls.len(),
            kept.display()
        );
    }
}

/// One system call in an strace log (`-f -ttt -T -y`): its name, its first
/// argument (a descriptor with its path, `7</tmp/…/listgate.db-wal>`), its
/// text, and when it began and ended, in seconds.
struct SystemCall {
    name: String,
    fd: String,
    text: String,
    start: f64,
    end: f64,
}

impl SystemCall {
    /// Every finished call in `path`, a call that another thread
    /// interrupted (`<unfinished ...>`, then `<... NAME resumed>`) joined
    /// into one.
    fn read_trace(path: &Path) -> Vec<SystemCall> {
        let log = std::fs::read_to_string(path).unwrap();
        let mut unfinished: std::collections::HashMap<(String, String), (f64, String)> = Default::default();
        let mut calls = Vec::new();
        for line in log.lines() {
            // strace pads the PID column when the PIDs differ in length.
            let Some((pid, line)) = line.trim_start().split_once(' ') else { continue };
            let Some((at, rest)) = line.trim_start().split_once(' ') else { continue };
            let Ok(at) = at.parse::<f64>() else { continue };
            let (start, text) = if let Some(resumed) = rest.strip_prefix("<... ") {
                let name = resumed.split(' ').next().unwrap_or_default().to_string();
                let Some((start, head)) = unfinished.remove(&(pid.to_string(), name)) else { continue };
                (start, format!("{head}{}", resumed.split_once("resumed>").map_or("", |(_, tail)| tail)))
            } else if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
                let name = head.split('(').next().unwrap_or_default().to_string();
                unfinished.insert((pid.to_string(), name), (at, head.to_string()));
                continue;
            } else {
                (at, rest.to_string())
            };
            // `-T`: the time spent in the call ends the line, as `<0.000123>`.
            let Some(spent) = text.rsplit_once(" <").and_then(|(_, t)| t.strip_suffix('>')?.parse::<f64>().ok()) else {
                continue;
            };
            let Some((name, args)) = text.split_once('(') else { continue };
            let fd = args.split([',', ')']).next().unwrap_or_default().to_string();
            calls.push(SystemCall { name: name.to_string(), fd, text: text.clone(), start, end: start + spent });
        }
        calls.sort_by(|a, b| a.start.total_cmp(&b.start));
        calls
    }
}

/// SQLite only, as the crash test above: on PostgreSQL leased mail waits
/// out its lease (`store_parity` asserts that `release_leases` differs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_queued_and_leased_mail_at_once() {
    if sqlite_only(
        "a restart frees the dead run's leases at once only on SQLite's one node; PostgreSQL's nodes wait out the lease",
    ) {
        return;
    }
    require(&[Tool::Aiosmtpd]);
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::new(dir.path(), &format!("smtp://127.0.0.1:{closed}"), &[]);
    server.start().await;
    for i in 0..5 {
        assert_eq!(server.subscribe(&format!("resume{i}@example.org")).await, 200);
    }
    server.wait_for("SELECT count(*) FROM outbox WHERE attempts >= 1 AND leased = 0", 5).await;
    assert!(server.terminate(Duration::from_secs(10)).await.success());
    // As if the last run had died holding two mails, due only in an hour.
    server
        .db()
        .execute("UPDATE outbox SET leased = 1, next_attempt_at = '2999-01-01T00:00:00.000Z' WHERE id <= 2", &[]);
    let smtp = SmtpServer::start_in(tempfile::tempdir().unwrap(), "ok", closed);
    server.start().await;
    smtp.wait_for_messages(5).await;
    server.wait_for("SELECT count(*) FROM outbox WHERE state = 'sent'", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_counting_the_last_hours_mails_against_mails_per_hour() {
    require(&[Tool::Aiosmtpd]);
    let smtp = SmtpServer::start("ok");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::new(dir.path(), &smtp.url(), &[("LISTGATE_LIMITS__MAILS_PER_HOUR", "2")]);
    server.start().await;
    for i in 0..2 {
        assert_eq!(server.subscribe(&format!("hourly{i}@example.org")).await, 200);
    }
    server.wait_for("SELECT count(*) FROM outbox WHERE state = 'sent'", 2).await;
    assert!(server.terminate(Duration::from_secs(10)).await.success());
    server.start().await;
    assert_eq!(server.subscribe("hourly2@example.org").await, 200);
    let log = dir.path().join("serve.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).unwrap().contains("limits.mails_per_hour reached") {
        assert!(start.elapsed() < PATIENCE, "no warning in {}", log.display());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(server.value("SELECT count(*) FROM outbox WHERE state = 'queued'"), 1, "the third mail waits");
    assert_eq!(smtp.messages().len(), 2);
}
