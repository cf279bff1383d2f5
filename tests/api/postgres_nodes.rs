//! Several `listgate serve` processes on one PostgreSQL database (issue 15),
//! as an operator runs them: the real binary, the same key file, the same
//! `LISTGATE_DATABASE__URL`, a real SMTP server, a real cluster
//! (`pg::PgCluster`). These apply to PostgreSQL only: on SQLite there is one
//! node.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{PATIENCE, SmtpServer, confirm_token, header};
use crate::pg::PgCluster;

const BIN: &str = env!("CARGO_BIN_EXE_listgate");

/// What every node and every CLI call of one test share: the database, the
/// key file and the mail server.
struct Deployment {
    cluster: PgCluster,
    smtp: SmtpServer,
    dir: tempfile::TempDir,
}

impl Deployment {
    fn start() -> Deployment {
        let cluster = PgCluster::start();
        let smtp = SmtpServer::start("ok");
        let dir = tempfile::tempdir().unwrap();
        let deployment = Deployment { cluster, smtp, dir };
        // One key for every node, made once as an operator would.
        let made = deployment.cli(&["keygen", "--write"]);
        assert!(made.status.success(), "keygen: {}", String::from_utf8_lossy(&made.stderr));
        deployment
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("LISTGATE_DATABASE__URL", self.cluster.url()),
            ("LISTGATE_SECRETS__KEY_FILE", self.dir.path().join("listgate.key").display().to_string()),
            ("LISTGATE_MAIL__URL", self.smtp.url()),
            ("LISTGATE_SERVER__BASE_URL", "http://lists.example.test".into()),
            ("LISTGATE_LIMITS__SIGNUPS_PER_IP", "off".into()),
            ("LISTGATE_LIMITS__MAILS_PER_HOUR", "off".into()),
            // Leases of five timeouts: a killed node's mails go out from the other within seconds.
            ("LISTGATE_MAIL__TIMEOUT", "1s".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `listgate ARGS` against the deployment's database.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("LISTGATE_CONFIG")
            .envs(self.env())
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "listgate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts a node; returns once it serves.
    fn node(&self) -> Node {
        Node::start(self.dir.path(), &self.env())
    }

    /// Every subscription's address and status, from the CLI's export.
    fn stored(&self) -> BTreeMap<String, String> {
        self.cli_ok(&["export", "--status", "all", "--format", "jsonl"])
            .lines()
            .map(|line| {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                (row["email"].as_str().unwrap().to_string(), row["status"].as_str().unwrap().to_string())
            })
            .collect()
    }
}

/// One `listgate serve` process; its log is read all the time (a full pipe
/// would stall it) and kept.
struct Node {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(dir: &Path, env: &[(String, String)]) -> Node {
        let mut child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir)
            .env_remove("LISTGATE_CONFIG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LISTGATE_SERVER__BIND", "127.0.0.1:0")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        let address = loop {
            let serving = log.lock().unwrap().iter().find(|l| l.contains("listgate is serving")).cloned();
            if let Some(line) = serving {
                let at = line.find("address=").unwrap() + "address=".len();
                break line[at..].split_whitespace().next().unwrap().to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the node exited ({status}): {}", log.lock().unwrap().join("\n"));
            }
            assert!(started.elapsed() < PATIENCE, "the node did not start: {}", log.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        };
        Node { child, base: format!("http://{address}"), log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A JSON signup; the status, or `None` when no answer came (a node killed mid-request).
async fn sign_up(client: &reqwest::Client, base: &str, email: &str) -> Option<reqwest::StatusCode> {
    let response = client
        .post(format!("{base}/subscribe"))
        .json(&serde_json::json!({"email": email}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    Some(response.status())
}

/// Waits until the SMTP server holds a mail to each of `addresses`.
async fn wait_for_mails_to(smtp: &SmtpServer, addresses: &BTreeSet<String>, within: Duration) -> Vec<Vec<u8>> {
    let started = Instant::now();
    loop {
        let messages = smtp.messages();
        let reached: BTreeSet<String> = messages.iter().filter_map(|m| header(m, "To")).collect();
        let missing: Vec<&String> = addresses.iter().filter(|a| !reached.contains(*a)).collect();
        if missing.is_empty() {
            return messages;
        }
        assert!(
            started.elapsed() < within,
            "{} acknowledged signups got no mail, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A second mail to one address is the same mail again (a lease that ran
/// out after a node died mid-delivery): the same Message-ID.
fn assert_duplicates_share_their_message_id(messages: &[Vec<u8>]) {
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for message in messages {
        let to = header(message, "To").unwrap();
        ids.entry(to).or_default().insert(header(message, "Message-ID").unwrap());
    }
    let different: Vec<_> = ids.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(different.is_empty(), "one address got different mails: {different:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_on_one_node_is_confirmed_on_the_other_and_every_cli_command_reads_postgres() {
    let deployment = Deployment::start();
    let (a, b) = (deployment.node(), deployment.node());
    let client = client();
    let email = "Anna.Mueller+news@Bücher.example";

    assert_eq!(sign_up(&client, &a.base, email).await, Some(reqwest::StatusCode::ACCEPTED));
    let mail = deployment.smtp.wait_for_messages(1).await.remove(0);
    let token = confirm_token(&mail);
    let page = client.get(b.url(&format!("/confirm?token={token}"))).send().await.unwrap();
    assert_eq!(page.status(), 200, "node B reads node A's signup");
    let confirmed = client.post(b.url("/confirm")).form(&[("token", token.as_str())]).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    // A second click, on the other node, changes nothing.
    let again = client.post(a.url("/confirm")).form(&[("token", token.as_str())]).send().await.unwrap();
    assert_eq!(again.status(), 200);

    let export = deployment.cli_ok(&["export", "--format", "jsonl"]);
    let row: serde_json::Value = serde_json::from_str(export.lines().next().expect("one confirmed row")).unwrap();
    assert_eq!(row["status"], "confirmed");
    assert_eq!(row["signup_ip"], "127.0.0.1");
    let unsubscribe = row["unsubscribe_url"].as_str().unwrap().replace("http://lists.example.test", &a.base);
    let one_click = client.post(&unsubscribe).form(&[("List-Unsubscribe", "One-Click")]).send().await.unwrap();
    assert_eq!(one_click.status(), 200);

    let shown: serde_json::Value = serde_json::from_str(&deployment.cli_ok(&["show", email, "--json"])).unwrap();
    let shown = shown.to_string();
    assert!(shown.contains("\"unsubscribed\"") && shown.contains("one-click"), "{shown}");
    // The events of both nodes form one chain.
    let verified = deployment.cli_ok(&["verify"]);
    assert!(verified.starts_with("ok: ") && verified.contains(" proof events verified"), "{verified}");
    deployment.cli_ok(&["stats"]);
    let check = deployment.cli_ok(&["check-config"]);
    assert!(check.contains("PostgreSQL at 127.0.0.1:") && !check.contains("listgate.db"), "{check}");

    let backup = deployment.cli(&["backup", "copy.db"]);
    assert_eq!(backup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&backup.stderr).contains("pg_dump"));
    assert!(!deployment.dir.path().join("copy.db").exists());

    for node in [&a, &b] {
        let health: serde_json::Value = client.get(node.url("/healthz")).send().await.unwrap().json().await.unwrap();
        assert_eq!(health, serde_json::json!({"status": "ok", "database": "postgres"}));
    }

    // The operator's other commands, on a second subscriber.
    let second = "second@example.org";
    assert_eq!(sign_up(&client, &b.base, second).await, Some(reqwest::StatusCode::ACCEPTED));
    let mail = deployment.smtp.wait_for_messages(2).await.remove(1);
    let token = confirm_token(&mail);
    let confirmed = client.post(a.url("/confirm")).form(&[("token", token.as_str())]).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    deployment.cli_ok(&["correct", second, "--name", "Zweite Person"]);
    assert!(deployment.cli_ok(&["export", "--format", "jsonl"]).contains("Zweite Person"));
    deployment.cli_ok(&["show", second, "--proof", "--dir", "."]);
    let documents = std::fs::read_dir(deployment.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "html"))
        .count();
    assert!(documents >= 1, "a proof document was written");
    deployment.cli_ok(&["unsubscribe", second]);
    assert_eq!(deployment.stored()[second], "unsubscribed");
    let planned = deployment.cli_ok(&["purge", "--dry-run"]);
    deployment.cli_ok(&["purge"]);
    assert_eq!(deployment.stored().len(), 2, "nothing is past its retention yet: {planned}");

    deployment.cli_ok(&["erase", email, "--yes"]);
    deployment.cli_ok(&["erase", second, "--yes"]);
    assert!(deployment.stored().is_empty(), "erased on PostgreSQL too");
    deployment.cli_ok(&["verify"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_again_and_again_loses_no_acknowledged_signup_and_no_mail() {
    let deployment = Deployment::start();
    let b = deployment.node();
    let a = Arc::new(Mutex::new(deployment.node()));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let by_a = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Four clients, two per node, sign up as fast as the nodes answer.
    let mut clients = Vec::new();
    for c in 0..4 {
        let (a, b_base, acknowledged, stop, by_a) =
            (a.clone(), b.base.clone(), acknowledged.clone(), stop.clone(), by_a.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let email = format!("kill-{c}-{i}@example.org");
                let base = if c % 2 == 0 { a.lock().unwrap().base.clone() } else { b_base.clone() };
                if sign_up(&client, &base, &email).await == Some(reqwest::StatusCode::ACCEPTED) {
                    acknowledged.lock().unwrap().insert(email);
                    if c % 2 == 0 {
                        by_a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for _ in 0..5 {
        // Each node A has answered a few signups, and is mid-request, when it is killed.
        let answered = by_a.load(std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        while by_a.load(std::sync::atomic::Ordering::Relaxed) < answered + 5 {
            assert!(started.elapsed() < PATIENCE, "node A answers no signups");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let env = deployment.env();
        let dir = deployment.dir.path().to_path_buf();
        a.lock().unwrap().kill();
        let restarted = tokio::task::spawn_blocking(move || Node::start(&dir, &env)).await.unwrap();
        *a.lock().unwrap() = restarted;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = deployment.stored();
    let lost: Vec<_> = acknowledged.iter().filter(|e| !stored.contains_key(*e)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged signups are not stored, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(3)]
    );
    // Mails a killed node had claimed go out from a node once their lease (5 s) is over.
    let messages = wait_for_mails_to(&deployment.smtp, &acknowledged, Duration::from_secs(60)).await;
    assert_duplicates_share_their_message_id(&messages);
    deployment.cli_ok(&["verify"]);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_answers_503_with_retry_after_meanwhile_and_both_nodes_recover_by_themselves() {
    let deployment = Deployment::start();
    let nodes = [deployment.node(), deployment.node()];
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let unavailable = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut clients = Vec::new();
    for c in 0..4 {
        let (base, acknowledged, unavailable, stop) =
            (bases[c % 2].clone(), acknowledged.clone(), unavailable.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let email = format!("restart-{c}-{i}@example.org");
                let Ok(response) =
                    client.post(format!("{base}/subscribe")).json(&serde_json::json!({"email": email})).send().await
                else {
                    continue;
                };
                match response.status().as_u16() {
                    202 => {
                        acknowledged.lock().unwrap().insert(email);
                    }
                    503 => unavailable.lock().unwrap().push(response.headers().get("retry-after").cloned()),
                    other => panic!("unexpected answer {other}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acknowledged.lock().unwrap().len();
    tokio::task::block_in_place(|| deployment.cluster.restart());
    // Both nodes take signups again, without a restart of their own.
    let restarted = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = acknowledged.lock().unwrap().len();
        let healthy = {
            let client = client();
            let mut all = true;
            for base in &bases {
                all &= client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200);
            }
            all
        };
        if healthy && now > before + 20 {
            break;
        }
        assert!(restarted.elapsed() < PATIENCE, "the nodes did not recover: {}", nodes[0].log_text());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let unavailable = unavailable.lock().unwrap().clone();
    assert!(!unavailable.is_empty(), "requests during the restart were answered 503");
    assert!(unavailable.iter().all(|retry| retry.is_some()), "every 503 says when to retry");
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = deployment.stored();
    let lost: Vec<_> = acknowledged.iter().filter(|e| !stored.contains_key(*e)).collect();
    assert!(lost.is_empty(), "{} acknowledged signups were lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(3)]);
    wait_for_mails_to(&deployment.smtp, &acknowledged, Duration::from_secs(60)).await;
    deployment.cli_ok(&["verify"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_taking_signups_at_once_answer_every_one_without_a_deadlock() {
    // Every signup bumps the day's counter row and appends to the one proof
    // chain: two nodes taking those locks in opposite orders deadlocked, and
    // PostgreSQL failed one batch a second with 503s.
    let deployment = Deployment::start();
    let nodes = [deployment.node(), deployment.node()];
    let mut clients = Vec::new();
    for c in 0..16 {
        let base = nodes[c % 2].base.clone();
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut answers = Vec::new();
            for i in 0..25 {
                answers.push(sign_up(&client, &base, &format!("both-{c}-{i}@example.org")).await);
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    let refused: Vec<_> = answers.iter().filter(|a| **a != Some(reqwest::StatusCode::ACCEPTED)).collect();
    assert!(
        refused.is_empty(),
        "{} of {} signups were not accepted: {:?}",
        refused.len(),
        answers.len(),
        &refused[..refused.len().min(5)]
    );
    assert_eq!(deployment.stored().len(), 400);
    deployment.cli_ok(&["verify"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_purge_runs_on_one_node_at_a_time() {
    use listgate::store::{Store, StoreError};
    let cluster = PgCluster::start();
    let config = listgate::config::DatabaseConfig { url: Some(cluster.url()), ..Default::default() };
    let open = |config: listgate::config::DatabaseConfig| {
        tokio::task::spawn_blocking(move || Store::open(&config).unwrap_or_else(|e| panic!("{e}")))
    };
    let a = open(config.clone()).await.unwrap();
    let b = open(config).await.unwrap();

    let other = b.clone();
    let ran = a
        .on_one_node(|| async move {
            // While node A purges, node B finds the lock taken and skips its run.
            let skipped = other.on_one_node(|| async { Ok::<_, StoreError>(()) }).await.unwrap();
            assert!(skipped.is_none(), "node B purged while node A did");
            Ok::<_, StoreError>("purged")
        })
        .await
        .unwrap();
    assert_eq!(ran, Some("purged"));
    // Node A let go: node B's next run goes ahead.
    let next = b.on_one_node(|| async { Ok::<_, StoreError>("purged too") }).await.unwrap();
    assert_eq!(next, Some("purged too"));
    tokio::task::spawn_blocking(move || {
        a.close();
        b.close();
    })
    .await
    .unwrap();
}

/// Reads (here `/healthz`, public) run on pooled connections, at most
/// eight at once per node (`store::postgres::store::MAX_READERS`): a flood
/// of requests must not open a connection each and use up the database's
/// `max_connections` for every node. A poller counts the node's sessions
/// in `pg_stat_activity` (`application_name = 'listgate'`) all through a
/// flood of 400 concurrent health checks: the writer, at most eight
/// readers, and the daily purge's lock session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_health_checks_opens_at_most_eight_reader_connections() {
    let deployment = Deployment::start();
    let node = deployment.node();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = std::thread::spawn({
        let (url, done) = (deployment.cluster.url(), done.clone());
        move || {
            let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut most = 0_i64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let row = db
                    .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'listgate'", &[])
                    .unwrap();
                most = most.max(row.get(0));
                std::thread::sleep(Duration::from_millis(1));
            }
            most
        }
    });
    let client = client();
    let checks = (0..400).map(|_| {
        let (client, url) = (client.clone(), node.url("/healthz"));
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
    });
    let answers = futures_util::future::join_all(checks).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = poller.join().unwrap();
    let ok = answers.iter().filter(|a| matches!(a, Ok(Ok(s)) if *s == reqwest::StatusCode::OK)).count();
    assert_eq!(ok, 400, "every health check is answered, the reads take turns");
    assert!(most >= 2, "the poller saw the node's sessions ({most}), so it would see more");
    assert!(most <= 10, "{most} sessions of one node: the writer, 8 readers and the purge's lock at most");
}
