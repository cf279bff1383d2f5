//! Erased data leaves every file of the database within a minute: the
//! "I did not sign up" button, the server's purge and `listgate erase`
//! beside the running server, each while other signups keep writing.
//! The files are searched byte for byte, the way anyone holding a copy of
//! them would look.
//!
//! SQLite only: PostgreSQL keeps old row versions in its files and WAL until
//! VACUUM and WAL recycling reuse them, which docs/deployment.md ("Erasure
//! on PostgreSQL") tells operators to plan for; that the tables hold
//! nothing of an erased address is checked on both stores
//! (`cli::erase_leaves_nothing_of_the_address_in_any_table_or_file`,
//! `confirm::i_did_not_sign_up_erases_the_signup_and_blocks_further_mails`,
//! `retention`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::store::sqlite_only;

const ERASED_FROM_FILES: &str =
    "searches SQLite's files for erased bytes; PostgreSQL keeps old row versions until VACUUM";

use crate::helpers::{TestApp, confirm_token, header, spawn_app};
use crate::store::off_runtime;

/// The contract's bound.
const WITHIN: Duration = Duration::from_secs(60);

/// Signups from another task, one after the other, until dropped.
struct SignupLoad {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SignupLoad {
    fn start(app: &TestApp, prefix: &'static str) -> SignupLoad {
        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (client, url) = (app.client.clone(), app.url("/subscribe"));
        let (stopped, counted) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                n += 1;
                let email = format!("{prefix}{n}@example.org");
                let answer = client.post(&url).form(&[("email", email.as_str())]).send().await.expect("signup");
                assert_eq!(answer.status(), 200);
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        SignupLoad { stop, done, task: Some(task) }
    }

    /// Waits until the load has made `n` more signups: it is really running.
    async fn wait_for(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        let start = Instant::now();
        while self.done.load(Ordering::Relaxed) < target {
            assert!(start.elapsed() < WITHIN, "the background signups stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.take().unwrap().await.expect("load task");
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for SignupLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `listgate.db`, `listgate.db-wal`, `listgate.db-shm`: whichever exist.
fn database_files(app: &TestApp) -> Vec<PathBuf> {
    let path = &app.config.database.path;
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&name)))
        .collect();
    files.sort();
    files
}

/// A file's bytes, read by another process: closing a descriptor of the
/// database files in this one would drop the POSIX locks the server's
/// SQLite holds on them (a `listgate` beside it could then reset the
/// `-shm` under the server's mapping).
fn read_from_outside(file: &std::path::Path) -> Vec<u8> {
    std::process::Command::new("cat").arg(file).output().expect("run cat").stdout
}

/// The database files that hold any of `needles` (ASCII, any case).
fn files_holding(app: &TestApp, needles: &[&str]) -> Vec<String> {
    let mut holding = Vec::new();
    for file in database_files(app) {
        let bytes = read_from_outside(&file);
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes())) {
                holding.push(format!("{} holds {needle}", file.display()));
            }
        }
    }
    holding
}

/// Polls the files until none holds any of `needles`; fails after a minute.
async fn wait_until_no_file_holds(app: &TestApp, needles: &[&str], erased_at: Instant) -> Duration {
    loop {
        let holding = files_holding(app, needles);
        if holding.is_empty() {
            return erased_at.elapsed();
        }
        assert!(erased_at.elapsed() < WITHIN, "a minute after the erasure: {holding:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs `email` up with `name` and waits for its confirmation mail (other
/// mails keep arriving under load); returns the confirm token.
async fn signup_with_name(app: &TestApp, email: &str, name: &str) -> String {
    let form = [("email", email), ("name", name)];
    assert_eq!(app.post_form("/subscribe", &form).await.status(), 200);
    let start = Instant::now();
    loop {
        let mail = app.smtp().messages().into_iter().find(|m| header(m, "To").is_some_and(|to| to.contains(email)));
        if let Some(mail) = mail {
            return confirm_token(&mail);
        }
        assert!(start.elapsed() < WITHIN, "no confirmation mail to {email}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn stored(app: &TestApp, email: &str) -> i64 {
    app.db().value("SELECT count(*) FROM subscriptions WHERE email = ?1", &[email.into()])
}

/// Declines `email`'s signup through the page's button and returns when
/// the answer came.
async fn decline(app: &TestApp, token: &str) -> Instant {
    let declined = app.post_form("/confirm", &[("token", token), ("action", "decline")]).await;
    assert_eq!(declined.status(), 200);
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_signup_leaves_every_database_file_within_a_minute_under_signup_load() {
    if sqlite_only(ERASED_FROM_FILES) {
        return;
    }
    let app = spawn_app().await;
    let load = SignupLoad::start(&app, "decline-load");
    load.wait_for(20).await;

    // The load goes on after the decline: the cleanup is not starved by it.
    let (email, name) = ("declined.victim@example.org", "Zebulonia");
    let token = signup_with_name(&app, email, name).await;
    assert!(!files_holding(&app, &[email, name]).is_empty(), "the search finds the address before");
    let erased_at = decline(&app, &token).await;
    assert_eq!(stored(&app, email), 0);
    let took = wait_until_no_file_holds(&app, &[email, name], erased_at).await;
    load.wait_for(20).await;
    eprintln!("gone from every file {took:?} after the decline, under load");

    // The load stops as the decline is answered: no later write can
    // overwrite the old WAL frames by chance, the erasure itself must.
    let (email, name) = ("declined.again@example.org", "Ottilindis");
    let token = signup_with_name(&app, email, name).await;
    let erased_at = decline(&app, &token).await;
    let signups = load.stop().await;
    let took = wait_until_no_file_holds(&app, &[email, name], erased_at).await;
    eprintln!("gone from every file {took:?} after the decline as the load stopped; {signups} signups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_purge_leaves_every_database_file_within_a_minute_under_signup_load() {
    if sqlite_only(ERASED_FROM_FILES) {
        return;
    }
    let app = spawn_app().await;
    let load = SignupLoad::start(&app, "purge-load");
    load.wait_for(20).await;
    let (email, name) = ("purged.victim@example.org", "Quirinalis");
    signup_with_name(&app, email, name).await;
    assert!(!files_holding(&app, &[email, name]).is_empty(), "the search finds the address before");

    // The server's purge, run at a time when every pending signup is past
    // `retention.unconfirmed`, through a store like the server's own.
    let store = off_runtime(|| listgate::store::Store::open(&app.config.database).unwrap());
    let (_keep, running) = tokio::sync::watch::channel(false);
    let later = OffsetDateTime::now_utc() + time::Duration::days(15);
    let report = listgate::app::purge_once(&store, &app.config.retention, later, &running).await.unwrap();
    let erased_at = Instant::now();
    assert!(report.total() >= 1);
    let signups = load.stop().await;
    assert_eq!(stored(&app, email), 0);
    let took = wait_until_no_file_holds(&app, &[email, name], erased_at).await;
    tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    eprintln!("gone from every file {took:?} after the purge; {signups} signups meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_on_the_command_line_beside_the_running_server_leaves_every_database_file_within_a_minute() {
    if sqlite_only(ERASED_FROM_FILES) {
        return;
    }
    let app = spawn_app().await;
    let load = SignupLoad::start(&app, "erase-load");
    load.wait_for(20).await;
    let (email, name) = ("erased.victim@example.org", "Wendelgard");
    let token = signup_with_name(&app, email, name).await;
    assert_eq!(app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
    assert!(!files_holding(&app, &[email, name]).is_empty(), "the search finds the address before");

    let cli = app.cli_command(&["erase", email, "--yes"]);
    let erased = tokio::task::spawn_blocking(move || {
        let mut cli = cli;
        cli.output().expect("run listgate")
    })
    .await
    .unwrap();
    assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));
    let erased_at = Instant::now();
    let signups = load.stop().await;
    assert_eq!(stored(&app, email), 0);
    let took = wait_until_no_file_holds(&app, &[email, name], erased_at).await;
    eprintln!("gone from every file {took:?} after the erase; {signups} signups meanwhile");
}
