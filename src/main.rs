//! The `listgate` command: the clap definitions (whose `///` comments are
//! the `--help` texts) and a dispatch to one library function per command in
//! [`listgate::admin::commands`], which does the work. Data goes to stdout,
//! messages to stderr. Exit codes: 0 done, 1 failed, 2 bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use listgate::admin::commands::{self, Failure, Outcome, ShowForm, StatusFilter};
use listgate::admin::export::Format;
use listgate::clock::SystemClock;
use listgate::config::Config;
use listgate::domain::ImportFormat;
use listgate::logging::{self, LogFormat};

/// Double opt-in for newsletters, with proof of consent.
#[derive(Parser)]
#[command(name = "listgate", version, about, long_about = None, after_help = "\
Examples:
  listgate serve                          run with defaults (127.0.0.1:8080, ./listgate.db, mails into ./mail/)
  listgate --config /etc/listgate.toml serve
  LISTGATE_MAIL__URL=smtp://127.0.0.1:25 listgate serve
  listgate export --output subscribers.csv
  listgate import subscribed_members.csv --list newsletter --dry-run
  listgate show anna@example.org --proof
  listgate purge --dry-run
  listgate hold anna@example.org --reason \"Abmahnung, Az. 12/26\"
  listgate verify
  listgate anchor
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
    /// list_unsubscribe_post, evidence (double-opt-in, confirmation-only or
    /// none), imported_at (set on rows `listgate import` took in). In CSV a name starting with = + - @ gets a leading
    /// apostrophe so spreadsheets do not run it as a formula; addresses, links,
    /// times and IPs are always exact, as are all JSON lines values.
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
        #[arg(long, value_enum, default_value_t = StatusFilter::Confirmed)]
        status: StatusFilter,
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
    /// Take in an existing list with the proof it already has.
    ///
    /// Reads Mailchimp's audience exports, listmonk's subscriber export (with
    /// the columns docs/import.md adds), listgate's own export (CSV or JSON
    /// lines), or a CSV with listgate's column names (email, name, status,
    /// signup_at, signup_ip, confirmed_at, confirmed_ip, unsubscribed_at,
    /// consent_text; map others with --column). Without --format, the header
    /// tells the format. Each row becomes a confirmed or unsubscribed
    /// subscription with the times and IPs the file gives and a proof event
    /// `imported`; rows never confirmed are skipped, and nobody is mailed.
    /// An address already on the list, or twice in the file, is imported once
    /// (the first row wins), so a second run adds nothing. Exits 1 when a row
    /// was rejected (the report names its line); the other rows are imported.
    #[command(after_help = "\
Examples:
  listgate import subscribed_members_export.csv --list newsletter --dry-run
  listgate import unsubscribed_members_export.csv --list newsletter
  listgate import other-instance.jsonl --list newsletter
  listgate import cleverreach.csv --list newsletter --column email=E-Mail --column confirmed_at=activated")]
    Import {
        /// The file to import.
        file: PathBuf,
        /// The list the subscribers go to.
        #[arg(long)]
        list: String,
        /// The file's format; detected from its header when not given.
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// Read listgate's FIELD from the column HEADER (csv format), e.g. email=E-Mail.
        #[arg(long = "column", value_name = "FIELD=HEADER")]
        columns: Vec<String>,
        /// Check and report every row; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show everything stored about one address, on every list (GDPR Art. 15).
    #[command(after_help = "\
Examples:
  listgate show anna@example.org
  listgate show anna@example.org --json
  listgate show anna@example.org --proof --dir /tmp   # one printable HTML document per subscription
  listgate show anna@example.org --receipt            # consent records (ISO/IEC TS 27560, Kantara CR 1.1)")]
    Show {
        email: String,
        /// Machine-readable JSON.
        #[arg(long, conflicts_with_all = ["proof", "receipt"])]
        json: bool,
        /// One consent record per subscription, as JSON: the fields of
        /// ISO/IEC TS 27560 and the Kantara Consent Receipt 1.1.
        #[arg(long, conflicts_with = "proof")]
        receipt: bool,
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
    /// terminal; elsewhere --yes is required. Refuses (exit 1, nothing
    /// erased) while the address is under a legal hold (`listgate hold`).
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
    /// Prints counts per list and state, and how many records past retention
    /// a legal hold kept (`listgate hold`). The server runs this daily by itself.
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
    /// Place a legal hold on an address: purge and erase skip it until released.
    ///
    /// For a dispute (a warning letter, a complaint, a court case): the record
    /// that proves consent must stay while it lasts (GDPR Art. 17(3)(e)). The
    /// hold covers the address's subscriptions on every list (or --list only);
    /// it is a proof event `legal_hold` with the reason. While it stands, purge
    /// skips those subscriptions and says how many, and erase refuses. Exits 1
    /// when nothing is stored or the address is held already.
    #[command(
        after_help = "Examples:\n  listgate hold anna@example.org --reason \"Abmahnung Kanzlei Muster, Az. 12/26\"\n  listgate hold anna@example.org --reason \"complaint to the DPA\" --list newsletter"
    )]
    Hold {
        email: String,
        /// Why: the dispute the record is kept for (one line, at most 500 characters).
        #[arg(long)]
        reason: String,
        /// Only on this list.
        #[arg(long)]
        list: Option<String>,
    },
    /// End a legal hold: retention and erasure apply again.
    ///
    /// A proof event `legal_hold_released` records when. Exits 1 when the
    /// address is under no hold.
    #[command(
        after_help = "Examples:\n  listgate release anna@example.org\n  listgate release anna@example.org && listgate erase anna@example.org --yes"
    )]
    Release {
        email: String,
        /// Only on this list.
        #[arg(long)]
        list: Option<String>,
    },
    /// Make an online, consistent copy of the database while the server runs.
    #[command(after_help = "Example:\n  listgate backup /var/backups/listgate-$(date +%F).db")]
    Backup { file: PathBuf },
    /// Move this SQLite deployment into an empty PostgreSQL database.
    ///
    /// Copies every row with its id (subscriptions, proof events and their
    /// chain, consent texts, mail renderings, the outbox and webhook queues)
    /// in one transaction, and verifies the proof chain before and after.
    /// Refuses a target that holds any data. Stop `listgate serve` first.
    #[command(
        name = "migrate-store",
        after_help = "Example:\n  listgate migrate-store --to 'postgres://listgate:secret@db.internal/listgate?sslmode=require'"
    )]
    MigrateStore {
        /// The target database's URL, as `database.url` takes it.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Walk the proof log's HMAC chain and report the first broken link, then
    /// check every subscription row against its events.
    ///
    /// A row whose status, times, IPs, address, name, consent or form page do
    /// not follow from its chained events was edited outside listgate, and is
    /// named (its values are not printed). Ends with the chain's head: the number of events and the last link, in
    /// hex. Keep it outside the database (a log archive, a printout); with
    /// --head, verify also checks that the chain still extends it, so events
    /// cut off its end or a rewritten chain are found. Exits 0 when every event
    /// and row verifies (and the chain extends --head), 1 otherwise.
    #[command(
        after_help = "Examples:\n  listgate verify && echo proof log intact\n  listgate verify --head \"1024 5f3a…\"   # a head printed earlier"
    )]
    Verify {
        /// A head printed by an earlier verify, "N HEX": the chain must still extend it.
        #[arg(long, value_name = "N HEX")]
        head: Option<String>,
    },
    /// Timestamp the proof chain's head now at proof.tsa_url (RFC 3161).
    ///
    /// Asks the Time-Stamp Authority for a token over the SHA-256 of the head
    /// as verify prints it ("N HEX"), checks the reply (status, nonce,
    /// imprint) and stores the token; verify checks it against the chain from
    /// then on, and `show --proof` carries it with the openssl command that
    /// checks the TSA's signature. The server does this daily by itself when
    /// tsa_url is set. Exits 0 when stored (or when the chain has no events
    /// yet), 1 when the TSA is unreachable or answers wrongly (nothing is
    /// stored), 2 without a tsa_url.
    #[command(
        after_help = "Examples:\n  LISTGATE_PROOF__TSA_URL=https://freetsa.org/tsr listgate anchor\n  listgate anchor && listgate verify"
    )]
    Anchor,
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

fn main() -> ExitCode {
    // Before any file is created: the database, its WAL, backups, proofs
    // and mails hold personal data (see `listgate::files`).
    listgate::files::restrict_umask();
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
            failure.exit_code()
        }
    }
}

/// Hands each command to its library function, with the wall clock: the
/// binary is the one place that decides what time it is. `file` and
/// `log_format` are for `check-config`, which reports where things came from.
fn run(command: Command, config: Config, file: Option<&Path>, log_format: LogFormat) -> Outcome {
    let clock = SystemClock;
    match command {
        Command::Serve => commands::serve(config, Arc::new(clock)),
        Command::Export { list, status, since, format, output, bom } => {
            commands::export(&config, list, status, since, format, output.as_deref(), bom)
        }
        Command::Import { file, list, format, columns, dry_run } => {
            commands::import(&config, &clock, &file, list, format, &columns, dry_run)
        }
        Command::Show { email, json, receipt, proof, dir } => {
            let form = if proof {
                ShowForm::Proof(&dir)
            } else if receipt {
                ShowForm::Receipt
            } else if json {
                ShowForm::Json
            } else {
                ShowForm::Text
            };
            commands::show(&config, &clock, &email, form)
        }
        Command::Erase { email, yes, dry_run } => commands::erase(&config, &email, yes, dry_run),
        Command::Purge { dry_run } => commands::purge(&config, &clock, dry_run),
        Command::Correct { email, name, list } => commands::correct(&config, &clock, &email, &name, list.as_deref()),
        Command::Unsubscribe { email, list } => commands::unsubscribe(&config, &clock, &email, list.as_deref()),
        Command::Hold { email, reason, list } => commands::hold(&config, &clock, &email, &reason, list.as_deref()),
        Command::Release { email, list } => commands::release(&config, &clock, &email, list.as_deref()),
        Command::Backup { file } => commands::backup(&config, &file),
        Command::MigrateStore { to } => commands::migrate_store(&config, &to),
        Command::Verify { head } => commands::verify(&config, head.as_deref()),
        Command::Anchor => commands::anchor(&config, &clock),
        Command::Stats { days, json } => commands::stats(&config, &clock, days, json),
        Command::Keygen { write } => commands::keygen(&config, write),
        Command::CheckConfig => commands::check_config(&config, file, log_format),
    }
}
