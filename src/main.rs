//! The `listgate` command: parses arguments and hands over to the library.
//! Data goes to stdout, messages to stderr. Exit codes: 0 done, 1 failed,
//! 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use listgate::clock::SystemClock;
use listgate::config::Config;
use listgate::{Application, app, keys, proof, store};

/// Double opt-in for newsletters, with proof of consent.
#[derive(Parser)]
#[command(name = "listgate", version, about, long_about = None, after_help = "\
Examples:
  listgate serve                          run with defaults (127.0.0.1:8080, ./listgate.db, mails into ./mail/)
  listgate --config /etc/listgate.toml serve
  LISTGATE_MAIL__URL=smtp://127.0.0.1:25 listgate serve
  listgate keygen --write                 add a new signing key (old links keep working)
  listgate verify                         check the proof log for tampering")]
struct Cli {
    /// Configuration file (TOML). Without one, the documented defaults apply.
    #[arg(long, global = true, env = "LISTGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the mail outbox.
    Serve,
    /// Make a new secret key entry for the key ring.
    ///
    /// Prints `ID:SECRET` with the next free key id. With --write it is
    /// appended to the key file: new links are then signed with it, while
    /// links signed with older keys keep working.
    Keygen {
        /// Append the new key to `secrets.key_file` instead of printing it.
        #[arg(long)]
        write: bool,
    },
    /// Walk the proof log's HMAC chain and report the first broken link.
    ///
    /// Exits 0 when every event verifies, 1 when one was edited, inserted or deleted.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let result = match cli.command {
        Command::Serve => serve(config),
        Command::Keygen { write } => keygen(&config, write),
        Command::Verify => verify(&config),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("listgate: {message}");
    ExitCode::from(1)
}

/// Logs go to stderr; `LISTGATE_LOG` (or `RUST_LOG`) sets the filter, default `info`.
fn init_logging() {
    let filter = std::env::var("LISTGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn serve(config: Config) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let app = Application::build(config, Arc::new(SystemClock)).await?;
        app.run_until_stopped(shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn keygen(config: &Config, write: bool) -> Result<ExitCode, String> {
    let path = &config.secrets.key_file;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read key file {}: {e}", path.display())),
    };
    let ring_text = config.secrets.key.clone().or(existing.clone());
    let next_id = match &ring_text {
        Some(text) => keys::KeyRing::parse(text).map_err(|e| format!("current key ring: {e}"))?.current_id().checked_add(1).ok_or("no key ids left")?,
        None => 1,
    };
    let entry = keys::new_entry(next_id)?;
    if !write {
        println!("{entry}");
        return Ok(ExitCode::SUCCESS);
    }
    if config.secrets.key.is_some() {
        return Err("secrets.key is set, so the key file is not used: add the printed entry to secrets.key instead (run keygen without --write)".into());
    }
    if existing.is_none() {
        // Let the key ring create the file with mode 0600, then replace its fresh key by ours.
        keys::KeyRing::load_or_create(None, path)?;
        std::fs::write(path, format!("# listgate secret keys; the highest id signs new links.\n{entry}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    } else {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        writeln!(file, "{entry}").and_then(|_| file.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    eprintln!("listgate: added key {next_id} to {}; restart the server to sign new links with it", path.display());
    Ok(ExitCode::SUCCESS)
}

fn verify(config: &Config) -> Result<ExitCode, String> {
    let keys = app::load_keys(config)?;
    let db = &config.database.path;
    if !db.exists() {
        return Err(format!("no database at {}", db.display()));
    }
    let conn = store::open_connection(db).map_err(|e| format!("cannot open database {}: {e}", db.display()))?;
    let report = proof::verify_chain(&conn, &keys).map_err(|e| e.to_string())?;
    match report.first_break {
        None => {
            println!("ok: {} proof events verified ({} erased, links kept)", report.events, report.erased);
            Ok(ExitCode::SUCCESS)
        }
        Some(b) => {
            println!("broken: event {} does not verify: {} ({} events before it verified)", b.event_id, b.reason, report.events);
            Ok(ExitCode::from(1))
        }
    }
}
