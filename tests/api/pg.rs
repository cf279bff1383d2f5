//! A throwaway PostgreSQL cluster for the PostgreSQL store's tests.
//!
//! [`PgCluster::start`] runs Debian's `initdb` into a temporary folder and
//! starts a server on its own free port on 127.0.0.1, with its unix socket
//! in that folder, so tests never meet each other or a system PostgreSQL.
//! `fsync` and `synchronous_commit` are on, as in production: a durability
//! test against a cluster that does not flush would prove nothing.
//! Dropping it stops the server (`-m immediate`) and removes the folder.
//!
//! Starting takes a second or two (`initdb` most of it; a whole test with
//! its cluster took about 0.9 s on the 2-core build machine), so a test
//! starts one cluster and makes what it needs inside it. When the tests run
//! as root, the cluster runs as the `postgres` user: `initdb` and `postgres`
//! refuse to run as root. A test process killed outright (SIGKILL) leaves
//! its cluster running: no `Drop` runs then.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::tools::Tool;

/// A running PostgreSQL cluster that lives as long as this value.
pub struct PgCluster {
    /// The cluster's data folder, socket and log.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The user the server runs as when the tests run as root.
    run_as: Option<(u32, u32)>,
    /// Whether it serves TLS (`server.crt`, `server.key` in its data folder).
    tls: bool,
}

impl PgCluster {
    /// Initialises and starts a new cluster; fails the test with the
    /// server's log if it cannot.
    pub fn start() -> PgCluster {
        PgCluster::start_with(None)
    }

    /// As [`PgCluster::start`], serving TLS (as well as clear text) with
    /// this certificate and key (PEM).
    pub fn start_with_tls(cert: &Path, key: &Path) -> PgCluster {
        PgCluster::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> PgCluster {
        let bin = Tool::Postgres.path();
        let dir = tempfile::Builder::new().prefix("listgate-pg").tempdir().expect("temporary folder");
        let run_as = unprivileged_user();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("hand the folder to postgres");
        }
        let mut cluster = PgCluster { dir, bin, port: 0, run_as, tls: tls.is_some() };
        // `-A trust`: only this folder's socket and 127.0.0.1 reach it.
        // `--no-sync`: initdb's own files need not survive a power cut.
        cluster.run(
            "initdb",
            &["-D", &cluster.data().display().to_string(), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            &["--locale=C", "--no-sync", "--no-instructions"],
        );
        if let Some((cert, key)) = tls {
            // The server reads them as itself, and refuses a key others can read.
            for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
                let to = cluster.data().join(name);
                std::fs::copy(from, &to).expect("copy the TLS files");
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                if let Some((uid, gid)) = run_as {
                    std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("hand the TLS files to postgres");
                }
            }
        }
        // Another process may take a free port between our look and the
        // server's bind: then pick another.
        for _ in 0..5 {
            cluster.port = free_port();
            cluster.write_settings();
            if cluster.pg_ctl(&["start", "-w", "-t", "60", "-l", &cluster.log().display().to_string()]).status.success()
            {
                return cluster;
            }
        }
        panic!("PostgreSQL did not start; its log:\n{}", std::fs::read_to_string(cluster.log()).unwrap_or_default());
    }

    /// A URL for the `postgres` database as the `postgres` superuser over TCP.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server the way an operator's `pg_ctl restart -m fast`
    /// does: connections are cut, committed data stays. Returns when the
    /// server accepts connections again.
    pub fn restart(&self) {
        let out = self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60", "-l", &self.log().display().to_string()]);
        assert!(out.status.success(), "pg_ctl restart: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server and removes its folder, for a cluster that is never
    /// dropped (one shared by a whole test process, `store.rs`).
    pub fn stop(&self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        let _ = std::fs::remove_dir_all(self.dir.path());
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The settings `postgresql.auto.conf` carries, rewritten for each port
    /// tried; `restart` keeps them.
    fn write_settings(&self) {
        let mut settings = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nshared_buffers = 16MB\nmax_connections = 50\n",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            settings.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let path = self.data().join("postgresql.auto.conf");
        std::fs::write(&path, settings).expect("write postgresql.auto.conf");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("hand the settings to postgres");
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.data().display().to_string();
        let mut all = vec!["-D", &data];
        all.extend_from_slice(args);
        self.command("pg_ctl", &all).output().expect("run pg_ctl")
    }

    /// Runs a program of the cluster's PostgreSQL and fails the test on error.
    fn run(&self, program: &str, args: &[&str], more: &[&str]) {
        let out = self.command(program, args).args(more).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir(self.dir.path()).env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
        // The folder belongs to postgres; the TempDir, dropped next, removes it as root.
    }
}

/// The `postgres` user's uid and gid when the tests run as root, else `None`
/// (the server then runs as whoever runs the tests).
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("run id");
        assert!(out.status.success(), "the tests run as root and there is no `postgres` user to run PostgreSQL as");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
    };
    Some((id("-u"), id("-g")))
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}
