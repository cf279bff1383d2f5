//! The `listgate` command: parses arguments and hands over to the library.
//! Data goes to stdout, messages to stderr. Exit codes: 0 done, 1 failed,
//! 2 bad usage.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use listgate::Application;
use listgate::admin::{self, export::Format};
use listgate::clock::SystemClock;
use listgate::config::Config;
use listgate::domain::Name;
use listgate::keys::{self, KeyRing};
use listgate::logging::{self, LogFormat};
use listgate::retention::{self, Cutoffs};
use listgate::store::queries::ExportFilter;

/// Double opt-in for newsletters, with proof of consent.
#[derive(Parser)]
#[command(name = "listgate", version, about, long_about = None, after_help = "\
Examples:
  listgate serve                          run with defaults (127.0.0.1:8080, ./listgate.db, mails into ./mail/)
  listgate --config /etc/listgate.toml serve
  LISTGATE_MAIL__URL=smtp://127.0.0.1:25 listgate serve
  listgate export --output subscribers.csv
  listgate show anna@example.org --proof
  listgate purge --dry-run
  listgate verify
  listgate --config /etc/listgate.toml check-config

Environment:
  LISTGATE_CONFIG        the configuration file, as --config
  LISTGATE_SECTION__KEY  any setting, e.g. LISTGATE_MAIL__URL
  LISTGATE_LOG           log filter (default info)
  LISTGATE_LOG_FORMAT    text (default) or json: one JSON object per log line")]
struct Cli {
    /// Configuration file (TOML). Without one, the documented defaults apply.
    #[arg(long, global = true, env = "LISTGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server, the mail outbox and the daily purge.
    ///
    /// Stops gracefully on SIGINT or SIGTERM.
    #[command(
        after_help = "Examples:\n  listgate serve\n  LISTGATE_SERVER__BIND=0.0.0.0:8080 LISTGATE_SERVER__BASE_URL=https://lists.example.com listgate serve"
    )]
    Serve,
    /// Export subscribers with their proof and signed unsubscribe links.
    ///
    /// Streams rows (constant memory) as CSV or JSON lines. Columns: email, name,
    /// list, status, signup_at, signup_ip, consent_sha256, confirmed_at,
    /// confirmed_ip, unsubscribed_at, unsubscribe_url, list_unsubscribe,
    /// list_unsubscribe_post. In CSV a cell starting with = + - @ gets a leading
    /// apostrophe so spreadsheets do not run it as a formula; JSON lines carry the
    /// exact values.
    #[command(after_help = "\
Examples:
  listgate export > confirmed.csv
  listgate export --list newsletter --format jsonl --output confirmed.jsonl
  listgate export --status unsubscribed --since 2026-11-01   # unsubscribes since the last sync
  listgate export --bom --output for-excel.csv")]
    Export {
        /// Only this list.
        #[arg(long)]
        list: Option<String>,
        /// Which subscriptions.
        #[arg(long, default_value = "confirmed", value_parser = ["confirmed", "pending", "unsubscribed", "all"])]
        status: String,
        /// Only rows whose latest event (signup, confirmation, unsubscribe) is at or after this
        /// date (2026-11-01, UTC) or time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Write here (created with mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Begin the CSV with a UTF-8 byte order mark, so Excel shows umlauts.
        #[arg(long)]
        bom: bool,
    },
    /// Show everything stored about one address, on every list (GDPR Art. 15).
    #[command(after_help = "\
Examples:
  listgate show anna@example.org
  listgate show anna@example.org --json
  listgate show anna@example.org --proof --dir /tmp   # one printable HTML document per subscription")]
    Show {
        email: String,
        /// Machine-readable JSON.
        #[arg(long, conflicts_with = "proof")]
        json: bool,
        /// Write one self-contained HTML proof document per subscription.
        #[arg(long)]
        proof: bool,
        /// Where --proof writes its documents.
        #[arg(long, default_value = ".", requires = "proof")]
        dir: PathBuf,
    },
    /// Erase an address's personal data on every list (GDPR Art. 17).
    ///
    /// Keeps only the proof chain's hash links. Asks for confirmation on a
    /// terminal; elsewhere --yes is required.
    #[command(after_help = "Example:\n  listgate erase anna@example.org --yes")]
    Erase {
        email: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// Only say what would be erased.
        #[arg(long)]
        dry_run: bool,
    },
    /// Erase what retention no longer allows to keep.
    ///
    /// Pending signups older than retention.unconfirmed, unsubscribed records
    /// older than retention.after_unsubscribe; confirmed ones are never touched.
    /// Prints counts per list and state. The server runs this daily by itself.
    #[command(after_help = "Examples:\n  listgate purge --dry-run\n  listgate purge")]
    Purge {
        /// Only count what would be erased.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rectify the stored name of an address (GDPR Art. 16).
    #[command(
        after_help = "Examples:\n  listgate correct anna@example.org --name \"Anna Schmidt\"\n  listgate correct anna@example.org --name \"\"   # remove the name"
    )]
    Correct {
        email: String,
        /// The new name; empty removes it.
        #[arg(long)]
        name: String,
        /// Only on this list.
        #[arg(long)]
        list: Option<String>,
    },
    /// Unsubscribe an address by hand (method "admin"), for an unsubscribe
    /// that reached you another way: a reply, a letter, the sending tool.
    ///
    /// The record stays as proof for retention.after_unsubscribe and is no
    /// longer exported as confirmed. Prints the lists the address left.
    #[command(
        after_help = "Examples:\n  listgate unsubscribe anna@example.org\n  listgate unsubscribe anna@example.org --list newsletter"
    )]
    Unsubscribe {
        email: String,
        /// Only on this list.
        #[arg(long)]
        list: Option<String>,
    },
    /// Make an online, consistent copy of the database while the server runs.
    #[command(after_help = "Example:\n  listgate backup /var/backups/listgate-$(date +%F).db")]
    Backup { file: PathBuf },
    /// Walk the proof log's HMAC chain and report the first broken link.
    ///
    /// Exits 0 when every event verifies, 1 when one was edited, inserted or deleted.
    #[command(after_help = "Example:\n  listgate verify && echo proof log intact")]
    Verify,
    /// Subscriptions per list and state, and daily signups, confirmations, unsubscribes.
    ///
    /// The daily counts are anonymous and survive purges.
    #[command(after_help = "Examples:\n  listgate stats\n  listgate stats --days 365 --json")]
    Stats {
        /// How many days of daily counts.
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long)]
        json: bool,
    },
    /// Make a new secret key entry for the key ring.
    ///
    /// Prints `ID:SECRET` with the next free key id. With --write it is
    /// appended to the key file: new links are then signed with it, while
    /// links signed with older keys keep working.
    #[command(
        after_help = "Examples:\n  listgate keygen            # print an entry, e.g. for LISTGATE_SECRETS__KEY\n  listgate keygen --write    # append it to secrets.key_file, then restart serve"
    )]
    Keygen {
        /// Append the new key to `secrets.key_file` instead of printing it.
        #[arg(long)]
        write: bool,
    },
    /// Validate the configuration and say what `serve` would do with it.
    ///
    /// Loads the file and the LISTGATE_* environment exactly as `serve` does,
    /// checks that each list's mail renders and that the key ring parses, and
    /// prints the bind address, lists, mail transport, retention and limits.
    /// Opens no database, creates no key, binds no port; never prints a secret.
    /// Exits 0 when valid, 1 with the first problem otherwise.
    #[command(
        name = "check-config",
        after_help = "Examples:\n  listgate --config /etc/listgate.toml check-config\n  LISTGATE_MAIL__URL=smtps://user:pass@mail.example.org listgate check-config"
    )]
    CheckConfig,
}

/// A failed command: its message, and whether it was a usage problem (exit 2).
struct Failure {
    message: String,
    usage: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, usage: false }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure { message: message.to_string(), usage: false }
    }
}

type Outcome = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match LogFormat::from_env() {
        Ok(format) => format,
        Err(message) => {
            eprintln!("listgate: {message}");
            return ExitCode::from(2);
        }
    };
    logging::init(log_format);
    let result = Config::load(cli.config.as_deref())
        .map_err(|e| Failure::from(e.to_string()))
        .and_then(|config| run(cli.command, config, cli.config.as_deref(), log_format));
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("listgate: {}", failure.message);
            ExitCode::from(if failure.usage { 2 } else { 1 })
        }
    }
}

/// `file` and `log_format` are for `check-config`, which reports where things came from.
fn run(command: Command, config: Config, file: Option<&std::path::Path>, log_format: LogFormat) -> Outcome {
    match command {
        Command::Serve => serve(config),
        Command::Export { list, status, since, format, output, bom } => {
            export(&config, list, &status, since, format, output, bom)
        }
        Command::Show { email, json, proof, dir } => show(&config, &email, json, proof, &dir),
        Command::Erase { email, yes, dry_run } => erase(&config, &email, yes, dry_run),
        Command::Purge { dry_run } => purge(&config, dry_run),
        Command::Correct { email, name, list } => correct(&config, &email, &name, list.as_deref()),
        Command::Unsubscribe { email, list } => unsubscribe(&config, &email, list.as_deref()),
        Command::Backup { file } => backup(&config, &file),
        Command::Verify => verify(&config),
        Command::Stats { days, json } => stats(&config, days, json),
        Command::Keygen { write } => keygen(&config, write),
        Command::CheckConfig => check_config(&config, file, log_format),
    }
}

fn check_config(config: &Config, file: Option<&std::path::Path>, log_format: LogFormat) -> Outcome {
    let key_from_env = admin::check_config::Sources::key_in_env(std::env::vars());
    let sources = admin::check_config::Sources { file, key_from_env, log_format };
    print!("{}", admin::check_config::report(config, &sources)?);
    Ok(ExitCode::SUCCESS)
}

fn serve(config: Config) -> Outcome {
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

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Creates an output file readable only by its owner: exports hold personal data.
fn create_private(path: &PathBuf) -> Result<std::fs::File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn export(
    config: &Config,
    list: Option<String>,
    status: &str,
    since: Option<String>,
    format: Format,
    output: Option<PathBuf>,
    bom: bool,
) -> Outcome {
    if let Some(list) = &list
        && config.list(list).is_none()
    {
        return Err(Failure { message: format!("--list: no list \"{list}\" in the configuration"), usage: true });
    }
    let since = since
        .map(|s| admin::export::parse_since(&s))
        .transpose()
        .map_err(|message| Failure { message, usage: true })?;
    let conn = admin::open_database(&config.database.path)?;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let filter = ExportFilter { list_id: list, status: admin::export::status_filter(status), since };
    let total = listgate::store::queries::count_export(&conn, &filter).map_err(|e| e.to_string())?;
    let bar = admin::progress_bar(total, "exporting");
    let options = admin::export::Options { filter, format, bom };
    let rows = match &output {
        Some(path) => {
            let mut out = BufWriter::new(create_private(path)?);
            let rows = admin::export::export(&conn, config, &keys, &options, &mut out, || bar.inc(1))?;
            out.into_inner().map_err(|e| e.to_string())?.sync_all().map_err(|e| e.to_string())?;
            rows
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            admin::export::export(&conn, config, &keys, &options, &mut out, || bar.inc(1))?
        }
    };
    bar.finish_and_clear();
    if let Some(path) = output {
        eprintln!("listgate: exported {rows} rows to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn show(config: &Config, email: &str, json: bool, proof: bool, dir: &std::path::Path) -> Outcome {
    let key = admin::address_key(email).map_err(|message| Failure { message, usage: true })?;
    let conn = admin::open_database(&config.database.path)?;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let report = admin::show::collect(&conn, &keys, &key, now())?;
    if proof {
        if report.records.is_empty() {
            return Err(format!("nothing stored for {email}").into());
        }
        for path in admin::show::write_proof_documents(&conn, &keys, &report, dir, now())? {
            println!("{}", path.display());
        }
    } else if json {
        println!("{}", serde_json::to_string_pretty(&admin::show::to_json(&report)).expect("json"));
    } else {
        print!("{}", admin::show::to_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn erase(config: &Config, email: &str, yes: bool, dry_run: bool) -> Outcome {
    let key = admin::address_key(email).map_err(|message| Failure { message, usage: true })?;
    let conn = admin::open_database(&config.database.path)?;
    let count = admin::stored_subscriptions(&conn, &key, None)?;
    if count == 0 {
        return Err(nothing_stored(email, None));
    }
    if dry_run {
        println!("would erase {count} subscription(s) of {email}");
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure { message: "erase: not on a terminal; add --yes to confirm".into(), usage: true });
        }
        eprint!("Erase {count} subscription(s) of {email} and their proof data for good? Type yes: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(|e| e.to_string())?;
        if answer.trim() != "yes" {
            eprintln!("listgate: nothing erased");
            return Ok(ExitCode::from(1));
        }
    }
    let erased = admin::erase::erase(&conn, &key)?;
    println!("erased {} subscription(s) of {email}", erased.subscriptions);
    // The sending tool learnt of the subscriber from an export or a webhook;
    // neither tells it of an erasure, which leaves nothing to report from.
    eprintln!("listgate: remove {email} from the tool that sends the newsletter too; erasure is not reported to it");
    if !erased.checkpointed {
        eprintln!(
            "listgate: the database is busy; the erased pages leave its WAL file at the server's next checkpoint"
        );
    }
    tracing::info!(email = %key.masked(), subscriptions = erased.subscriptions, "erased on request");
    Ok(ExitCode::SUCCESS)
}

fn purge(config: &Config, dry_run: bool) -> Outcome {
    let conn = admin::open_database(&config.database.path)?;
    let cutoffs = Cutoffs::at(&config.retention, now());
    let plan = retention::plan(&conn, &cutoffs).map_err(|e| e.to_string())?;
    let report = if dry_run {
        plan
    } else {
        let bar = admin::progress_bar(plan.total(), "purging");
        let report = retention::purge_all(&conn, &cutoffs, |n| bar.inc(n)).map_err(|e| e.to_string())?;
        bar.finish_and_clear();
        admin::erase::checkpoint(&conn);
        report
    };
    println!("{}", if dry_run { "would erase (dry run):" } else { "erased:" });
    println!("list\tstate\tcount");
    for line in report.lines() {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn correct(config: &Config, email: &str, name: &str, list: Option<&str>) -> Outcome {
    let key = admin::address_key(email).map_err(|message| Failure { message, usage: true })?;
    let name = Name::parse(Some(name)).map_err(|e| Failure {
        message: format!("--name: {}", e.message(listgate::config::Language::En)),
        usage: true,
    })?;
    let conn = admin::open_database(&config.database.path)?;
    if admin::stored_subscriptions(&conn, &key, list)? == 0 {
        return Err(nothing_stored(email, list));
    }
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let changed = admin::correct::correct_name(&conn, &keys, &key, list, name.as_ref(), now())?;
    if changed == 0 {
        println!("nothing changed (the name of {email} is already so)");
    } else {
        println!("corrected the name on {changed} subscription(s) of {email}");
    }
    Ok(ExitCode::SUCCESS)
}

fn unsubscribe(config: &Config, email: &str, list: Option<&str>) -> Outcome {
    let key = admin::address_key(email).map_err(|message| Failure { message, usage: true })?;
    let conn = admin::open_database(&config.database.path)?;
    if admin::stored_subscriptions(&conn, &key, list)? == 0 {
        return Err(nothing_stored(email, list));
    }
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let left = admin::unsubscribe::unsubscribe(&conn, config, &keys, &key, list, now())?;
    if left.is_empty() {
        println!(
            "nothing changed ({email} is already unsubscribed{})",
            list.map(|l| format!(" from {l}")).unwrap_or_default()
        );
    } else {
        println!("unsubscribed {email} from: {}", left.join(", "));
    }
    tracing::info!(email = %key.masked(), lists = left.len(), "unsubscribed by the operator");
    Ok(ExitCode::SUCCESS)
}

/// The failure of a command that changes an address of which nothing is
/// stored: exit 1, so a script sees that nothing was changed.
fn nothing_stored(email: &str, list: Option<&str>) -> Failure {
    let on = list.map(|l| format!(" on {l}")).unwrap_or_default();
    format!("nothing stored for {email}{on}; nothing changed").into()
}

fn backup(config: &Config, file: &std::path::Path) -> Outcome {
    let conn = admin::open_database(&config.database.path)?;
    let bytes = admin::backup::backup(&conn, file)?;
    println!("backed up to {} ({bytes} bytes, integrity ok)", file.display());
    Ok(ExitCode::SUCCESS)
}

fn verify(config: &Config) -> Outcome {
    let conn = admin::open_database(&config.database.path)?;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let report = admin::verify::verify(&conn, &keys)?;
    match report.first_break {
        None => {
            println!("ok: {} proof events verified ({} erased, links kept)", report.events, report.erased);
            Ok(ExitCode::SUCCESS)
        }
        Some(b) => {
            println!(
                "broken: event {} does not verify: {} ({} events before it verified)",
                b.event_id, b.reason, report.events
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn stats(config: &Config, days: u32, json: bool) -> Outcome {
    let conn = admin::open_database(&config.database.path)?;
    let stats = admin::stats::collect(&conn, days, now())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats).expect("json"));
    } else {
        print!("{}", admin::stats::to_text(&stats));
    }
    Ok(ExitCode::SUCCESS)
}

fn keygen(config: &Config, write: bool) -> Outcome {
    let path = &config.secrets.key_file;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read key file {}: {e}", path.display()).into()),
    };
    let ring_text = config.secrets.key.clone().or(existing.clone());
    let next_id = match &ring_text {
        Some(text) => KeyRing::parse(text)
            .map_err(|e| format!("current key ring: {e}"))?
            .current_id()
            .checked_add(1)
            .ok_or("no key ids left")?,
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
        // Let the key ring create the file with mode 0600, then put our entry in it.
        KeyRing::load_or_create(None, path)?;
        std::fs::write(path, format!("# listgate secret keys; the highest id signs new links.\n{entry}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    } else {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        writeln!(file, "{entry}")
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    eprintln!("listgate: added key {next_id} to {}; restart the server to sign new links with it", path.display());
    Ok(ExitCode::SUCCESS)
}
