//! The CLI's commands, one public function per `listgate` subcommand:
//! `main.rs` parses the arguments and calls exactly one of these. Each opens
//! what it needs (database, key ring), calls the library, and speaks to the
//! operator as the CLI does: data on stdout, messages on stderr, and an
//! [`Outcome`] that `main.rs` turns into the exit code (0 done, 1 failed,
//! 2 bad usage).
//!
//! Time comes from the [`Clock`] a command is given, never from the system
//! directly, so a test can run `purge` or `stats` at any moment it likes.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::Application;
use crate::admin::{self, export::Format};
use crate::clock::{Clock, SharedClock};
use crate::config::{Config, Language};
use crate::domain::{HoldReason, ImportFormat, Name, Status};
use crate::keys::{self, KeyRing};
use crate::logging::LogFormat;
use crate::retention::{self, Cutoffs};
use crate::store::Database;
use crate::store::db::ExportFilter;

/// A failed command: its one-line message, and whether it was a usage
/// problem (exit 2) rather than a failure (exit 1).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub usage: bool,
}

impl Failure {
    /// A usage problem: the command line asks for something that cannot be,
    /// like a list that is not configured or an empty address.
    pub fn bad_usage(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), usage: true }
    }

    /// 2 for bad usage, 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(if self.usage { 2 } else { 1 })
    }
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

/// How a command ends: an exit code of its choosing (`verify` finding a
/// broken link exits 1 without failing), or a [`Failure`] to report.
pub type Outcome = Result<ExitCode, Failure>;

/// `export --status`: which subscriptions to export. The values are the
/// stored states, plus `all` for no filter.
// No `///` on the variants: clap would turn them into a "Possible values:"
// list in `--help`, where the CLI has always shown one line of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    Confirmed,
    Pending,
    Unsubscribed,
    All,
}

impl StatusFilter {
    /// The state as `ExportFilter::status` takes it: `None` for `all`.
    pub fn status(self) -> Option<Status> {
        match self {
            StatusFilter::Confirmed => Some(Status::Confirmed),
            StatusFilter::Pending => Some(Status::Pending),
            StatusFilter::Unsubscribed => Some(Status::Unsubscribed),
            StatusFilter::All => None,
        }
    }
}

/// `listgate serve`: builds the application on a runtime of its own and runs
/// it until SIGINT or SIGTERM. `clock` is the one the whole server runs on.
pub fn serve(config: Config, clock: SharedClock) -> Outcome {
    for warning in config.cleartext_warnings().into_iter().chain(config.legal_warnings()) {
        tracing::warn!("{warning}");
    }
    // Each open connection costs a descriptor; a soft limit of 1,024 under a
    // far higher hard one would be the first thing a flood of sockets exhausts.
    match crate::http::serve::raise_fd_limit() {
        Ok(limit) => tracing::info!(open_files = limit, "file-descriptor limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the file-descriptor limit (RLIMIT_NOFILE)"),
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        // Handlers first: a SIGTERM that arrives as soon as the log says
        // "serving" (a supervisor, a test) must stop the server cleanly,
        // not kill it with the signal's default action.
        let stop = shutdown_signal();
        let app = Application::build(config, clock).await?;
        app.run_until_stopped(stop).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Installs the SIGINT and SIGTERM handlers now; the returned future
/// resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let wait = |installed: std::io::Result<tokio::signal::unix::Signal>| async move {
            match installed {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(interrupt) => {}
            _ = wait(terminate) => {}
        }
    }
}

/// `listgate check-config`: prints what `serve` would do with `config`.
/// `file` and `log_format` are for the report, which says where things came from.
pub fn check_config(config: &Config, file: Option<&Path>, log_format: LogFormat) -> Outcome {
    let key_from_env = admin::check_config::Sources::key_in_env(std::env::vars());
    let sources = admin::check_config::Sources { file, key_from_env, log_format };
    print!("{}", admin::check_config::report(config, &sources)?);
    Ok(ExitCode::SUCCESS)
}

/// Creates an output file readable only by its owner: exports hold personal data.
fn create_private(path: &Path) -> Result<std::fs::File, String> {
    crate::files::private_options().open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// `listgate export`: streams the chosen subscriptions to `output` (created
/// with mode 0600) or stdout, with a progress bar on a terminal. A list that
/// is not configured and a `since` that is no time are bad usage.
pub fn export(
    config: &Config,
    list: Option<String>,
    status: StatusFilter,
    since: Option<String>,
    format: Format,
    output: Option<&Path>,
    bom: bool,
) -> Outcome {
    if let Some(list) = &list
        && config.list(list).is_none()
    {
        return Err(Failure::bad_usage(format!("--list: no list \"{list}\" in the configuration")));
    }
    let since = since.map(|s| admin::export::parse_since(&s)).transpose().map_err(Failure::bad_usage)?;
    let conn = crate::store::Database::open(&config.database)?;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let filter = ExportFilter { list_id: list, status: status.status(), since };
    let total = conn.count_export(&filter).map_err(|e| e.to_string())?;
    let bar = admin::progress_bar(total, "exporting");
    let options = admin::export::Options { filter, format, bom };
    let rows = match output {
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

/// `listgate import FILE --list L`: takes the file's subscribers in (see
/// `admin::import`), reporting on stdout the format and each row not taken,
/// then the totals. Exits 1 when a row was rejected; the rest are in.
pub fn import(
    config: &Config,
    clock: &dyn Clock,
    file: &Path,
    list: String,
    format: Option<ImportFormat>,
    columns: &[String],
    dry_run: bool,
) -> Outcome {
    if config.list(&list).is_none() {
        return Err(Failure::bad_usage(format!("--list: no list \"{list}\" in the configuration")));
    }
    let columns = columns
        .iter()
        .map(|c| admin::import::parse_column(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::bad_usage)?;
    if let Some(format) = format.filter(|f| *f != ImportFormat::Csv && !columns.is_empty()) {
        return Err(Failure::bad_usage(format!("--column maps the columns of --format csv, not of {format}")));
    }
    let size = std::fs::metadata(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?.len();
    let options = admin::import::Options { file: file.to_path_buf(), list, format, columns, dry_run };
    let source = admin::import::open(&options)?;
    // A new instance may take its list in before its first `serve`: the
    // import creates the database and key as `serve` would. A dry run
    // creates nothing; it checks against an empty database then, and
    // signs nothing.
    let (conn, keys) = if dry_run {
        let conn = match Database::open(&config.database) {
            Err(_) if config.database.url.is_none() && !config.database.path.exists() => Database::temporary()?,
            opened => opened?,
        };
        let keys = match KeyRing::read(config.secrets.key.as_deref(), &config.secrets.key_file)? {
            Some((keys, _)) => keys,
            None => KeyRing::parse(&keys::new_entry(1)?)?,
        };
        (conn, keys)
    } else {
        let (conn, created) = Database::open_or_create(&config.database)?;
        if created {
            eprintln!("listgate: created the database {}", config.database.path.display());
        }
        (conn, crate::app::load_keys(config)?)
    };
    let bar = admin::progress_bar_bytes(size, "importing");
    let stdout = std::io::stdout();
    let mut report = BufWriter::new(stdout.lock());
    let summary =
        admin::import::run(&conn, config, &keys, source, clock.now(), &mut report, |byte| bar.set_position(byte));
    bar.finish_and_clear();
    let summary = summary?;
    let (verb, into) = if dry_run { ("would import", "(dry run: nothing written)") } else { ("imported", "") };
    let say = |report: &mut BufWriter<_>, text: String| writeln!(report, "{text}").map_err(|e| e.to_string());
    say(
        &mut report,
        format!(
            "{verb} {} of {} rows into {}: {} confirmed, {} unsubscribed; {} skipped, {} rejected {into}",
            summary.imported(),
            summary.rows,
            options.list,
            summary.confirmed,
            summary.unsubscribed,
            summary.skipped,
            summary.rejected
        )
        .trim_end()
        .to_string(),
    )?;
    if summary.past_retention > 0 {
        say(
            &mut report,
            format!(
                "{} unsubscribed rows left longer ago than retention.after_unsubscribe ({}): the next purge erases them",
                summary.past_retention, config.retention.after_unsubscribe
            ),
        )?;
    }
    report.flush().map_err(|e| e.to_string())?;
    Ok(ExitCode::from(u8::from(summary.rejected > 0)))
}

/// `listgate show EMAIL`: everything stored about the address, as text, as
/// JSON, or (`proof`) as one HTML document per subscription written to `dir`.
/// What `listgate show` prints.
pub enum ShowForm<'a> {
    Text,
    Json,
    /// One consent record per subscription (`--receipt`).
    Receipt,
    /// One HTML proof document per subscription, written into the folder.
    Proof(&'a Path),
}

pub fn show(config: &Config, clock: &dyn Clock, email: &str, form: ShowForm<'_>) -> Outcome {
    let key = admin::address_key(email).map_err(Failure::bad_usage)?;
    let conn = crate::store::Database::open(&config.database)?;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let report = admin::show::collect(&conn, &keys, &key, clock.now())?;
    if report.records.is_empty() && matches!(form, ShowForm::Proof(_) | ShowForm::Receipt) {
        return Err(format!("nothing stored for {email}").into());
    }
    match form {
        ShowForm::Proof(dir) => {
            for path in admin::show::write_proof_documents(config, &*conn, &keys, &report, dir, clock.now())? {
                println!("{}", path.display());
            }
        }
        ShowForm::Receipt => {
            let records = admin::show::receipts(config, &conn, &report)?;
            println!("{}", serde_json::to_string_pretty(&records).expect("json"));
        }
        ShowForm::Json => println!("{}", serde_json::to_string_pretty(&admin::show::to_json(&report)).expect("json")),
        ShowForm::Text => print!("{}", admin::show::to_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `listgate erase EMAIL`: erases the address on every list, after a typed
/// "yes" on a terminal; elsewhere only with `yes` (bad usage without), so a
/// script never erases by accident. `dry_run` only says what would go.
pub fn erase(config: &Config, email: &str, yes: bool, dry_run: bool) -> Outcome {
    let key = admin::address_key(email).map_err(Failure::bad_usage)?;
    let conn = crate::store::Database::open(&config.database)?;
    let count = admin::stored_subscriptions(&*conn, &key, None)?;
    if count == 0 {
        return Err(nothing_stored(email, None));
    }
    // Refused before asking: a hold is not something to type "yes" over.
    // `admin::erase::erase` checks again inside its transaction.
    let holds = conn.snapshot(|c| admin::hold::holds_of(c, &key)).map_err(|e| e.to_string())?;
    if !holds.is_empty() {
        return Err(admin::hold::refusal(email, &holds).into());
    }
    if dry_run {
        println!("would erase {count} subscription(s) of {email}");
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::bad_usage("erase: not on a terminal; add --yes to confirm"));
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
            "listgate: the database stayed busy; the erased data may stay in its WAL file until a later checkpoint (run listgate purge to try again)"
        );
    }
    // The target the binary logged this under before it moved here, so log
    // lines and filters stay as they were.
    tracing::info!(target: "listgate", email = %key.masked(), subscriptions = erased.subscriptions, "erased on request");
    Ok(ExitCode::SUCCESS)
}

/// `listgate purge`: erases what retention no longer allows to keep, as of
/// `clock`'s now, and prints the counts per list and state; `dry_run` only
/// counts.
pub fn purge(config: &Config, clock: &dyn Clock, dry_run: bool) -> Outcome {
    let conn = crate::store::Database::open(&config.database)?;
    let cutoffs = Cutoffs::at(&config.retention, clock.now());
    let plan = retention::plan(&*conn, &cutoffs).map_err(|e| e.to_string())?;
    let report = if dry_run {
        plan
    } else {
        let bar = admin::progress_bar(plan.total(), "purging");
        let report = retention::purge_all(&conn, &cutoffs, |n| bar.inc(n)).map_err(|e| e.to_string())?;
        bar.finish_and_clear();
        if !admin::erase::checkpoint(&conn) {
            eprintln!(
                "listgate: the database stayed busy; the erased data may stay in its WAL file until a later checkpoint (run listgate purge to try again)"
            );
        }
        report
    };
    println!("{}", if dry_run { "would erase (dry run):" } else { "erased:" });
    println!("list\tstate\tcount");
    for line in report.lines() {
        println!("{line}");
    }
    if report.held > 0 {
        eprintln!(
            "listgate: skipped {} subscription(s) past retention held by a legal hold; `listgate show EMAIL` lists a hold, `listgate release EMAIL` ends it",
            report.held
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `listgate correct EMAIL --name NAME`: sets the stored name (empty removes
/// it) on every list, or on `list` only; the proof log records the change.
pub fn correct(config: &Config, clock: &dyn Clock, email: &str, name: &str, list: Option<&str>) -> Outcome {
    let key = admin::address_key(email).map_err(Failure::bad_usage)?;
    let name =
        Name::parse(Some(name)).map_err(|e| Failure::bad_usage(format!("--name: {}", e.message(Language::En))))?;
    let conn = crate::store::Database::open(&config.database)?;
    if admin::stored_subscriptions(&*conn, &key, list)? == 0 {
        return Err(nothing_stored(email, list));
    }
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let changed = admin::correct::correct_name(&conn, &keys, &key, list, name.as_ref(), clock.now())?;
    if changed == 0 {
        println!("nothing changed (the name of {email} is already so)");
    } else {
        println!("corrected the name on {changed} subscription(s) of {email}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `listgate unsubscribe EMAIL`: unsubscribes the address (method `admin`)
/// from every list, or from `list` only, and prints the lists it left.
pub fn unsubscribe(config: &Config, clock: &dyn Clock, email: &str, list: Option<&str>) -> Outcome {
    let key = admin::address_key(email).map_err(Failure::bad_usage)?;
    let conn = crate::store::Database::open(&config.database)?;
    if admin::stored_subscriptions(&*conn, &key, list)? == 0 {
        return Err(nothing_stored(email, list));
    }
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let left = admin::unsubscribe::unsubscribe(&conn, config, &keys, &key, list, clock.now())?;
    if left.is_empty() {
        println!(
            "nothing changed ({email} is already unsubscribed{})",
            list.map(|l| format!(" from {l}")).unwrap_or_default()
        );
    } else {
        println!("unsubscribed {email} from: {}", left.join(", "));
    }
    // The target the binary logged this under before it moved here (see `erase`).
    tracing::info!(target: "listgate", email = %key.masked(), lists = left.len(), "unsubscribed by the operator");
    Ok(ExitCode::SUCCESS)
}

/// `listgate hold EMAIL --reason TEXT`: places a legal hold on the address's
/// subscriptions (on `list` only, if given), one proof event each. Exit 1
/// when nothing is stored, or when every subscription is held already (no
/// second hold, no second event); bad usage for a reason that is empty, too
/// long or not one line.
pub fn hold(config: &Config, clock: &dyn Clock, email: &str, reason: &str, list: Option<&str>) -> Outcome {
    let key = admin::address_key(email).map_err(Failure::bad_usage)?;
    let reason = HoldReason::parse(reason).map_err(|e| Failure::bad_usage(format!("--reason: {e}")))?;
    let conn = crate::store::Database::open(&config.database)?;
    if admin::stored_subscriptions(&*conn, &key, list)? == 0 {
        return Err(nothing_stored(email, list));
    }
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let placed = admin::hold::hold(&conn, &keys, &key, list, &reason, clock.now())?;
    if placed.held.is_empty() {
        let holds = admin::hold::describe(&placed.already);
        return Err(format!("{email} is under a legal hold already, {holds}; nothing changed").into());
    }
    if !placed.already.is_empty() {
        eprintln!("listgate: held already, left as they are: {}", admin::hold::describe(&placed.already));
    }
    let lists: Vec<&str> = placed.held.iter().map(|(list, _)| list.as_str()).collect();
    println!(
        "held {} subscription(s) of {email} ({}): purge and erase skip them until `listgate release {email}`",
        placed.held.len(),
        lists.join(", ")
    );
    tracing::info!(target: "listgate", email = %key.masked(), subscriptions = placed.held.len(), "legal hold placed");
    Ok(ExitCode::SUCCESS)
}

/// `listgate release EMAIL`: ends the legal hold on the address's
/// subscriptions (on `list` only, if given), one proof event each. Exit 1
/// when nothing is stored or nothing is held.
pub fn release(config: &Config, clock: &dyn Clock, email: &str, list: Option<&str>) -> Outcome {
    let key = admin::address_key(email).map_err(Failure::bad_usage)?;
    let conn = crate::store::Database::open(&config.database)?;
    if admin::stored_subscriptions(&*conn, &key, list)? == 0 {
        return Err(nothing_stored(email, list));
    }
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let released = admin::hold::release(&conn, &keys, &key, list, clock.now())?;
    if released.released.is_empty() {
        let on = list.map(|l| format!(" on {l}")).unwrap_or_default();
        return Err(format!("{email} is under no legal hold{on}; nothing changed").into());
    }
    let lists: Vec<&str> = released.released.iter().map(|(list, _)| list.as_str()).collect();
    println!(
        "released the legal hold on {} subscription(s) of {email} ({}): retention and erasure apply again",
        released.released.len(),
        lists.join(", ")
    );
    tracing::info!(target: "listgate", email = %key.masked(), subscriptions = released.released.len(), "legal hold released");
    Ok(ExitCode::SUCCESS)
}

/// The failure of a command that changes an address of which nothing is
/// stored: exit 1, so a script sees that nothing was changed.
fn nothing_stored(email: &str, list: Option<&str>) -> Failure {
    let on = list.map(|l| format!(" on {l}")).unwrap_or_default();
    format!("nothing stored for {email}{on}; nothing changed").into()
}

/// `listgate backup FILE`: an online, consistent copy of the database into a
/// new `file`, checked before it is reported.
pub fn backup(config: &Config, file: &Path) -> Outcome {
    let conn = crate::store::Database::open(&config.database)?;
    let bytes = admin::backup::backup(&conn, file)?;
    println!("backed up to {} ({bytes} bytes, integrity ok)", file.display());
    Ok(ExitCode::SUCCESS)
}

/// `listgate verify [--head "N HEX"]`: walks the proof chain, prints its
/// head and checks every stored anchor; exits 0 when every event verifies
/// (and the chain extends `head`, if given, and every anchor stamps it)
/// and 1 otherwise, so `verify && …` works in scripts.
pub fn verify(config: &Config, head: Option<&str>) -> Outcome {
    let head =
        head.map(crate::proof::Head::parse).transpose().map_err(|e| Failure::bad_usage(format!("--head: {e}")))?;
    let conn = crate::store::Database::open(&config.database)?;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let verified = admin::verify::verify(&conn, &keys, head.as_ref())?;
    let report = &verified.chain;
    let extends = head.as_ref().map(|head| admin::verify::extends(report, head));
    let mut failed = false;
    match &report.first_break {
        None => {
            println!("ok: {} proof events verified ({} erased, links kept)", report.events, report.erased);
            match (head, extends) {
                (Some(head), Some(Ok(()))) => println!("ok: the chain extends the head {head}"),
                (_, Some(Err(why))) => {
                    println!("broken: {why}");
                    failed = true;
                }
                _ => {}
            }
        }
        Some(b) => {
            println!(
                "broken: event {} does not verify: {} ({} events before it verified)",
                b.event_id, b.reason, report.events
            );
            failed = true;
        }
    }
    for why in verified.anchor_failures() {
        println!("broken: {why}");
        failed = true;
    }
    let checked = verified.anchors.len();
    let good = checked - verified.anchor_failures().count();
    match verified.anchors.last() {
        None => println!("anchors: none (set proof.tsa_url to have the head timestamped daily)"),
        Some((newest, _)) => println!(
            "anchors: {good} of {checked} checked against the chain (the newest: {} events, stamped {} by {})",
            newest.events, newest.gen_time, newest.tsa_url
        ),
    }
    let rows = &verified.rows;
    for why in &rows.mismatches {
        println!("broken: {why}");
    }
    if rows.failed > rows.mismatches.len() as u64 {
        println!("broken: {} more subscriptions differ from their events", rows.failed - rows.mismatches.len() as u64);
    }
    if rows.failed == 0 {
        println!("ok: {} subscription rows match their proof events", rows.subscriptions);
    } else {
        println!(
            "rows: {} found wrong checking {} subscription rows against their proof events",
            rows.failed, rows.subscriptions
        );
        failed = true;
    }
    // Last, so a log or a cron mail keeps it: the head to pass to --head later
    // (none for a broken chain, whose head is nothing to keep).
    match (&report.first_break, report.events) {
        (Some(_), _) => {}
        (None, 0) => println!("head: none yet (the chain has no events)"),
        (None, _) => println!("head: {}", report.head()),
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `listgate anchor`: asks `proof.tsa_url` for a timestamp token over the
/// chain's head now, checks it (status, nonce, imprint) and stores it.
/// Exit 2 without a tsa_url (a configuration to fix); 1 when the chain does
/// not verify or the TSA is unreachable or answers wrongly (nothing is
/// stored then); 0 when stored, and on an empty chain, which has nothing to
/// stamp yet (a cron job on a new instance is not failing).
pub fn anchor(config: &Config, clock: &dyn Clock) -> Outcome {
    let Some(url) = config.proof.tsa_url.clone() else {
        return Err(Failure::bad_usage("no proof.tsa_url is configured: set it to an RFC 3161 Time-Stamp Authority"));
    };
    let conn = crate::store::Database::open(&config.database)?;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let report = conn.snapshot(|db| crate::proof::verify_chain(db, &keys)).map_err(|e| e.to_string())?;
    if let Some(b) = report.first_break {
        return Err(crate::anchor::AnchorError::Broken(b).to_string().into());
    }
    let head = report.head();
    if head.events == 0 {
        println!("nothing to anchor: the proof chain has no events yet");
        return Ok(ExitCode::SUCCESS);
    }
    let tsa = crate::anchor::Tsa::new(url.clone());
    let requested_at = crate::clock::Timestamp::now(clock);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let granted = runtime.block_on(tsa.stamp(&head))?;
    conn.immediate(|db| crate::anchor::store(db, &head, &url, requested_at, &granted)).map_err(|e| e.to_string())?;
    println!("anchored: head {head}");
    println!("tsa: {url} stamped it at {} (serial {})", granted.info.gen_time, granted.info.serial_hex());
    Ok(ExitCode::SUCCESS)
}

/// `listgate migrate-store --to postgres://…`: moves this configuration's
/// SQLite database into an empty PostgreSQL database, ids, events, chain,
/// consent texts, renderings, outbox and webhook queues included (see
/// `store::postgres::copy`). The chain is verified before (a broken chain
/// is not moved) and after, on PostgreSQL, with the same result. Stop
/// `serve` first: what it writes after the copy's snapshot is not moved.
pub fn migrate_store(config: &Config, to: &str) -> Outcome {
    use crate::store::postgres;
    if config.database.url.is_some() {
        return Err("migrate-store moves the SQLite database at database.path, but this configuration \
                    already uses database.url; unset it to name the source"
            .into());
    }
    let target_name = postgres::summarize_url(to).map_err(|e| Failure { message: e.to_string(), usage: true })?.target;
    let keys = KeyRing::load_existing(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    let source = Database::open(&config.database)?;
    let checked = admin::verify::verify(&source, &keys, None)?;
    // Anchors are compared, not required to pass: a chain whose anchors no
    // longer match moves as it is, and verify on PostgreSQL says the same.
    let anchors_before = (checked.anchors.len(), checked.anchor_failures().count());
    let before = checked.chain;
    if let Some(broken) = before.first_break {
        return Err(format!(
            "the proof chain in {} does not verify (event {}: {}); nothing was moved",
            config.database.path.display(),
            broken.event_id,
            broken.reason
        )
        .into());
    }
    let Database::Sqlite(conn) = &source else { unreachable!("database.url is unset") };
    let target = postgres::open_session(to, config.database.ca_file.as_deref()).map_err(|e| e.to_string())?;
    target.migrate().map_err(|e| e.to_string())?;
    let copied =
        postgres::copy::copy_sqlite_into(conn, &target, |table, rows| eprintln!("copied {table}: {rows} rows"))
            .map_err(|e| format!("nothing was moved: {e}"))?;
    let checked = admin::verify::verify(&Database::Postgres(Box::new(target)), &keys, None)?;
    let anchors_differ = (checked.anchors.len(), checked.anchor_failures().count()) != anchors_before;
    let after = checked.chain;
    if after.first_break.is_some() || after.events != before.events || anchors_differ {
        return Err(format!(
            "the copy in PostgreSQL at {target_name} does not verify as the original did; run `listgate verify` on both"
        )
        .into());
    }
    let rows: u64 = copied.iter().map(|(_, n)| n).sum();
    println!(
        "moved {rows} rows into PostgreSQL at {target_name}; the proof chain verifies on both ({} events, {} erased)",
        after.events, after.erased
    );
    println!("next: set database.url (or LISTGATE_DATABASE__URL) to that URL and start listgate serve");
    Ok(ExitCode::SUCCESS)
}

/// `listgate stats`: subscriptions per list and state, and the daily counts
/// of the last `days` days up to `clock`'s today, as text or JSON.
pub fn stats(config: &Config, clock: &dyn Clock, days: u32, json: bool) -> Outcome {
    let conn = crate::store::Database::open(&config.database)?;
    let stats = admin::stats::collect(&conn, days, clock.now())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats).expect("json"));
    } else {
        print!("{}", admin::stats::to_text(&stats));
    }
    Ok(ExitCode::SUCCESS)
}

/// `listgate keygen`: a new key entry with the next free id, printed; with
/// `write`, added to the key file through [`KeyRing`], the file's one writer
/// (mode 0600, synced). Refuses to write when `secrets.key` is set: the key
/// file is not read then, and a key added to it would never sign.
pub fn keygen(config: &Config, write: bool) -> Outcome {
    let path = &config.secrets.key_file;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read key file {}: {e}", path.display()).into()),
    };
    let next_id = match config.secrets.key.as_deref().or(existing.as_deref()) {
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
        KeyRing::create_file(path, &entry)?;
    } else {
        KeyRing::append_to_file(path, &entry)?;
    }
    eprintln!("listgate: added key {next_id} to {}; restart the server to sign new links with it", path.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::Db;
    use clap::ValueEnum;

    #[test]
    fn export_status_values_are_the_stored_states_and_all() {
        // Every state, each under its stored name, and `all`.
        assert_eq!(StatusFilter::value_variants().len(), Status::ALL.len() + 1);
        for filter in StatusFilter::value_variants() {
            let name = filter.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(name, filter.status().map_or("all", Status::as_str));
        }
    }

    #[test]
    fn keygen_writes_the_first_key_file_privately_and_then_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.secrets.key_file = dir.path().join("listgate.key");
        assert!(keygen(&config, true).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&config.secrets.key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(keygen(&config, true).is_ok());
        let ring = KeyRing::load_existing(None, &config.secrets.key_file).unwrap();
        assert_eq!(ring.all().map(|(id, _)| id).collect::<Vec<_>>(), [1, 2]);

        config.secrets.key = Some(keys::new_entry(1).unwrap());
        let refused = keygen(&config, true).unwrap_err();
        assert!(!refused.usage && refused.message.starts_with("secrets.key is set"), "{}", refused.message);
    }

    #[test]
    fn purge_erases_an_unconfirmed_signup_only_once_the_clock_is_past_its_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.path = dir.path().join("listgate.db");
        let clock = crate::clock::ManualClock::new(time::macros::datetime!(2026-11-22 12:00 UTC));
        // No database yet: a command fails with exit 1 and creates none.
        assert_eq!(purge(&config, &clock, false).unwrap_err().exit_code(), ExitCode::from(1));
        assert!(!config.database.path.exists());

        let conn = crate::store::open_connection(&config.database.path).unwrap();
        crate::store::migrate(&conn).unwrap();
        conn.insert_consent_text("c", "text", crate::clock::Timestamp::now(&clock)).unwrap();
        let key = crate::domain::EmailKey::lenient("anna@example.org");
        let signup = crate::store::db::NewSubscription {
            list_id: "newsletter",
            email: "anna@example.org",
            email_key: &key,
            name: None,
            consent_sha256: "c",
            now: crate::clock::Timestamp::now(&clock),
            ip: "192.0.2.1",
            form_page_sha256: None,
        };
        conn.insert_subscription(&signup).unwrap();
        let stored = || admin::stored_subscriptions(&conn, &key, None).unwrap();

        let expires = config.retention.unconfirmed.after(clock.now());
        clock.set(expires - time::Duration::minutes(1));
        assert!(purge(&config, &clock, false).is_ok());
        assert_eq!(stored(), 1, "still within retention.unconfirmed");
        clock.set(expires + time::Duration::minutes(1));
        assert!(purge(&config, &clock, true).is_ok());
        assert_eq!(stored(), 1, "a dry run erases nothing");
        assert!(purge(&config, &clock, false).is_ok());
        assert_eq!(stored(), 0);
        assert!(stats(&config, &clock, 30, true).is_ok());
    }
}
