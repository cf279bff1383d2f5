//! Files with personal data are private whatever umask listgate is started
//! with: the real binary, started with umask 022, serving a signup through
//! the file transport while the operator backs up, prints a proof and
//! exports beside it.
//!
//! SQLite only: the database files (`listgate.db`, its WAL and shared
//! memory, `backup`'s copy) are the ones whose modes it checks; on
//! PostgreSQL the server keeps the data and `backup` writes no file.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_listgate");

/// `listgate ARGS` in `dir` under umask 022 (a common default that leaves
/// files world-readable), with the defaults and no config file.
fn listgate(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("LISTGATE_CONFIG")
        .env("LISTGATE_SERVER__BIND", "127.0.0.1:0")
        .env("LISTGATE_LOG", "info");
    // SAFETY: umask(2) is async-signal-safe and only changes the child's mask.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    command
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Stops the server if the test fails half-way, so no `listgate serve` outlives it.
struct KillOnFailure(Option<u32>);

impl Drop for KillOnFailure {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

/// The next log line containing `needle`, within 30 s.
async fn wait_for(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.recv()).await;
        let line = line.expect("log line in time").expect("listgate still running");
        if line.contains(needle) {
            return line;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no log line with {needle:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_personal_data_are_owner_only_under_umask_022() {
    if crate::store::sqlite_only("checks the modes of SQLite's files and of backup's copy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = listgate(dir.path(), &["serve"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut guard = KillOnFailure(Some(child.id()));
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let serving = wait_for(&mut lines, "listgate is serving").await;
    let addr = serving.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/subscribe"))
        .form(&[("email", "modes@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for(&mut lines, "confirmation mail written").await;

    // Beside the running server, as an operator would.
    let proofs = dir.path().join("proofs");
    std::fs::create_dir(&proofs).unwrap();
    for args in [
        &["backup", "copy.db"][..],
        &["show", "modes@example.org", "--proof", "--dir", "proofs"],
        &["export", "--status", "all", "--output", "export.csv"],
    ] {
        let output = listgate(dir.path(), args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    let path = |name: &str| dir.path().join(name);
    for file in ["listgate.db", "listgate.db-wal", "listgate.db-shm", "listgate.key", "copy.db", "export.csv"] {
        assert_eq!(mode(&path(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&path("mail")), 0o700, "the mail folder");
    let mails: Vec<_> = std::fs::read_dir(path("mail")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(mails.len(), 1);
    assert_eq!(mode(&mails[0]), 0o600, "{}", mails[0].display());
    let documents: Vec<_> = std::fs::read_dir(&proofs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(documents.len(), 1);
    assert_eq!(mode(&documents[0]), 0o600, "{}", documents[0].display());

    let ok = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(ok.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    guard.0 = None;
    assert!(status.success(), "{status:?}");
}
