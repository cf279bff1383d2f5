//! Test harness: each test gets its own database, key file, listgate server
//! on a random loopback port, and a real SMTP server (Python's aiosmtpd,
//! `tests/smtp_server.py`) whose received messages the test reads back.
//! Tests that read no mail start without one (`spawn_app_without_smtp`), so
//! they need no outside tool.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use listgate::Application;
use listgate::clock::SystemClock;
use listgate::config::Config;
use listgate::keys::KeyRing;
use tokio::sync::oneshot;

use crate::store::{TestDb, TestStore, Value, database_env};
use crate::tools::Tool;

/// How long a test waits for something that should happen in milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Python's aiosmtpd on a free loopback port, storing messages in a folder.
pub struct SmtpServer {
    pub port: u16,
    pub folder: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    /// `mode`: `ok`, `tempfail:N[:CODE]`, `reject` or `hold:SECONDS` (see `tests/smtp_server.py`).
    pub fn start(mode: &str) -> SmtpServer {
        SmtpServer::start_in(tempfile::tempdir().expect("temp dir"), mode, 0)
    }

    /// Starts (or restarts) a server on `port` (0: any) storing into `folder`.
    pub fn start_in(folder: tempfile::TempDir, mode: &str, port: u16) -> SmtpServer {
        SmtpServer::start_with(folder, mode, port, &[])
    }

    /// Like `start_in`, with more of `tests/smtp_server.py`'s options
    /// (`--tls CERT KEY`, `--implicit-tls`, `--auth USER:PASSWORD`).
    pub fn start_with(folder: tempfile::TempDir, mode: &str, port: u16, options: &[&str]) -> SmtpServer {
        let python = Tool::Aiosmtpd.path();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(folder.path())
            .arg("--mode")
            .arg(mode)
            .arg("--port")
            .arg(port.to_string())
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/smtp_server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("read port");
        let port =
            line.trim().parse().unwrap_or_else(|_| panic!("the SMTP test server did not start; it said {line:?}"));
        SmtpServer { port, folder, child }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Messages received so far, in order, as raw bytes.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.files("eml").iter().map(|p| std::fs::read(p).expect("read message")).collect()
    }

    /// The envelopes and session facts (`tls`, `user`) of the messages received so far.
    pub fn envelopes(&self) -> Vec<serde_json::Value> {
        let read = |p: &PathBuf| serde_json::from_slice(&std::fs::read(p).expect("read envelope")).expect("json");
        self.files("json").iter().map(read).collect()
    }

    /// The server's files with this extension, in the order received.
    fn files(&self, extension: &str) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.folder.path())
            .expect("read mail folder")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == extension))
            .collect();
        paths.sort();
        paths
    }

    /// Waits until at least `n` messages arrived and returns them all.
    pub async fn wait_for_messages(&self, n: usize) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(start.elapsed() < PATIENCE, "expected {n} mails, got {} within {PATIENCE:?}", messages.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl SmtpServer {
    /// Stops the server (an outage), keeping what it received.
    pub fn stop(mut self) -> (tempfile::TempDir, u16) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let folder = std::mem::replace(&mut self.folder, tempfile::tempdir().expect("temp dir"));
        (folder, self.port)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running listgate with its own state.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// The metrics listener's base URL (`server.metrics_bind` on port 0).
    pub metrics_base: String,
    /// Holds the database and key file; removed when the test ends.
    _dir: tempfile::TempDir,
    pub config: Config,
    /// The SMTP server, unless started by `spawn_app_without_smtp`.
    smtp: Option<SmtpServer>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
    /// The database `LISTGATE_TEST_STORE` chose (`store.rs`), unless a
    /// `tweak` pointed `config.database` elsewhere; dropped last.
    _store: TestStore,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("ok", |_| {}).await
}

/// Starts listgate against an SMTP server in `smtp_mode`, with `tweak`
/// applied to the configuration.
pub async fn spawn_app_with(smtp_mode: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_smtp(SmtpServer::start(smtp_mode), tweak).await
}

/// Starts listgate against `smtp`, with `tweak` applied to the configuration.
pub async fn spawn_app_with_smtp(smtp: SmtpServer, tweak: impl FnOnce(&mut Config)) -> TestApp {
    start_app(Some(smtp), tweak).await
}

/// Starts listgate with its `file://` mail transport into its own folder
/// (a `tweak` may point `mail.url` at a dead server instead), for tests
/// that read no mail: they need no outside tool and run under a plain
/// `cargo test` on any machine.
pub async fn spawn_app_without_smtp(tweak: impl FnOnce(&mut Config)) -> TestApp {
    start_app(None, tweak).await
}

/// Like `spawn_app_with`, on `clock`: the test moves time (expiry, the
/// hourly mail ceiling) instead of waiting for it.
pub async fn spawn_app_on_clock(
    smtp_mode: &str,
    clock: Arc<listgate::clock::ManualClock>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    start_app_on(Some(SmtpServer::start(smtp_mode)), clock, tweak).await
}

/// Like `spawn_app_without_smtp`, on `clock`: signups made while it stands
/// in the past are as old as retention needs, with no row edited by hand.
pub async fn spawn_app_without_smtp_on_clock(
    clock: Arc<listgate::clock::ManualClock>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    start_app_on(None, clock, tweak).await
}

async fn start_app(smtp: Option<SmtpServer>, tweak: impl FnOnce(&mut Config)) -> TestApp {
    start_app_on(smtp, Arc::new(SystemClock), tweak).await
}

/// Like `spawn_app_without_smtp`, with the daily anchor (`proof.tsa_url`)
/// on `schedule`: seconds instead of days.
pub async fn spawn_app_anchoring(schedule: listgate::app::AnchorSchedule, tweak: impl FnOnce(&mut Config)) -> TestApp {
    start_app_scheduled(None, Arc::new(SystemClock), Some(schedule), tweak).await
}

async fn start_app_on(
    smtp: Option<SmtpServer>,
    clock: listgate::clock::SharedClock,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    start_app_scheduled(smtp, clock, None, tweak).await
}

async fn start_app_scheduled(
    smtp: Option<SmtpServer>,
    clock: listgate::clock::SharedClock,
    anchor_schedule: Option<listgate::app::AnchorSchedule>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let base = format!("http://{addr}");

    let mut config = Config::load_from(None, Vec::new()).expect("defaults load");
    config.server.base_url = base.parse().expect("url");
    let store = TestStore::new(dir.path());
    store.configure(&mut config.database);
    config.secrets.key_file = dir.path().join("listgate.key");
    config.mail.url = match &smtp {
        Some(smtp) => smtp.url(),
        None => format!("file://{}", dir.path().join("mail").display()),
    };
    config.mail.retry_base = "1s".parse().expect("span");
    // Tests sign up many addresses from 127.0.0.1; the security tests turn
    // the per-IP limit back on.
    config.limits.signups_per_ip = listgate::config::RateSpec::Off;
    config.server.metrics_bind = Some("127.0.0.1:0".parse().expect("address"));
    tweak(&mut config);

    let mut app = Application::build_with_listener(config.clone(), clock, listener).await.expect("app builds");
    if let Some(schedule) = anchor_schedule {
        app = app.with_anchor_schedule(schedule);
    }
    let metrics_base = app.metrics_addr().map(|a| format!("http://{a}")).unwrap_or_default();
    let (shutdown, signal) = oneshot::channel::<()>();
    let stopped = tokio::spawn(app.run_until_stopped(async {
        let _ = signal.await;
    }));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client");
    TestApp {
        addr,
        base,
        metrics_base,
        _dir: dir,
        config,
        smtp,
        client,
        shutdown: Some(shutdown),
        stopped: Some(stopped),
        _store: store,
    }
}

impl TestApp {
    /// The SMTP server this app delivers to.
    pub fn smtp(&self) -> &SmtpServer {
        self.smtp.as_ref().expect("this app was started by spawn_app_without_smtp: it has no SMTP server")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.url(path)).form(form).send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }

    /// `GET /metrics` on the metrics listener (`server.metrics_bind`).
    pub async fn get_metrics(&self) -> reqwest::Response {
        self.client.get(format!("{}/metrics", self.metrics_base)).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn subscribe(&self, email: &str) -> reqwest::Response {
        self.post_form("/subscribe", &[("email", email)]).await
    }

    /// A mail client's RFC 8058 one-click unsubscribe with `token`.
    pub async fn one_click_with(&self, token: &str) -> reqwest::Response {
        let url = self.url(&format!("/unsubscribe?token={token}"));
        self.client.post(url).body("List-Unsubscribe=One-Click").send().await.expect("request")
    }

    /// One-click unsubscribe of subscription `id` on the default list.
    pub async fn one_click(&self, id: i64) -> reqwest::Response {
        let token = listgate::token::sign(
            &self.keys(),
            listgate::token::Purpose::Unsubscribe,
            self.subject(id),
            "newsletter",
            None,
        );
        self.one_click_with(&token).await
    }

    /// What today's tokens for subscription `id` name (layout 2: the row id, concealed in the token).
    pub fn subject(&self, id: i64) -> listgate::token::Subject {
        listgate::token::Subject::Public(id)
    }

    /// The stored addresses, in id order.
    pub fn stored_emails(&self) -> Vec<String> {
        self.db().rows("SELECT email FROM subscriptions ORDER BY id", &[])
    }

    /// A connection to the test's database, SQLite or PostgreSQL.
    pub fn db(&self) -> TestDb {
        TestDb::open(&self.config.database)
    }

    /// Whether this app runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.config.database.url.is_some()
    }

    /// Rows in the tables a request may change: subscriptions, outbox, proof events, declined.
    pub fn row_counts(&self) -> [i64; 4] {
        let db = self.db();
        let count = |table: &str| db.value(&format!("SELECT count(*) FROM {table}"), &[]);
        [count("subscriptions"), count("outbox"), count("proof_events"), count("declined_addresses")]
    }

    pub fn keys(&self) -> KeyRing {
        KeyRing::parse(&std::fs::read_to_string(&self.config.secrets.key_file).expect("key file")).expect("key ring")
    }

    /// Polls the database until `query` (one integer) returns `expected`.
    pub async fn wait_for_value(&self, query: &str, expected: i64) {
        let start = Instant::now();
        loop {
            let value: i64 = self.db().value(query, &[]);
            if value == expected {
                return;
            }
            assert!(start.elapsed() < PATIENCE, "`{query}` stayed {value}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Subscribes, waits for the mail, and returns (subscription id, confirm token).
    pub async fn signup_and_get_token(&self, email: &str) -> (i64, String) {
        let before = self.smtp().messages().len();
        assert_eq!(self.subscribe(email).await.status(), 200);
        let mails = self.smtp().wait_for_messages(before + 1).await;
        let token = confirm_token(&mails[before]);
        // The mail is recorded as sent just after the server took it.
        self.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
        let id = self.db().value("SELECT max(id) FROM subscriptions", &[]);
        (id, token)
    }

    /// Runs the `listgate` binary against this app's database and key, as
    /// an operator would beside the running server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_command(args).output().expect("run listgate")
    }

    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_listgate"));
        command
            .args(args)
            .env_remove("LISTGATE_CONFIG")
            .env_remove("LISTGATE_DATABASE__URL")
            .envs(database_env(&self.config.database))
            .env("LISTGATE_SECRETS__KEY_FILE", &self.config.secrets.key_file)
            .env("LISTGATE_SERVER__BASE_URL", &self.base)
            .env("LISTGATE_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    /// Subscribes and confirms; returns the subscription id.
    pub async fn confirmed_subscriber(&self, email: &str, name: Option<&str>) -> i64 {
        let before = self.smtp().messages().len();
        let mut form = vec![("email", email)];
        if let Some(name) = name {
            form.push(("name", name));
        }
        assert_eq!(self.post_form("/subscribe", &form).await.status(), 200);
        let mails = self.smtp().wait_for_messages(before + 1).await;
        let token = confirm_token(&mails[before]);
        self.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
        assert_eq!(self.post_form("/confirm", &[("token", &token)]).await.status(), 200);
        self.db().value("SELECT id FROM subscriptions WHERE email = ?1 AND status = 'confirmed'", &[Value::from(email)])
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.stopped.take() {
            tokio::time::timeout(PATIENCE, handle).await.expect("graceful shutdown in time").expect("server task");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Undoes quoted-printable soft breaks and `=XX` escapes (enough to read links).
/// A command's standard output, after asserting that it succeeded (its
/// exit code and standard error in the message when it did not).
pub fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn decode_qp(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message).replace("=\r\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The confirmation link's token from a mail (its plain-text part).
pub fn confirm_token(message: &[u8]) -> String {
    let text = decode_qp(message);
    let start = text.find("/confirm?token=").expect("mail has a confirm link") + "/confirm?token=".len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect()
}

/// A header's value from a raw message.
pub fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .find(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name)
                && line[name.len()..].starts_with(':')
        })
        .map(|line| line[name.len() + 1..].trim().to_string())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    listgate::mail::sha256_hex(bytes)
}
