//! The real `listgate` binary as a new user runs it: no config file, defaults.
//! The default store is a SQLite file, so these run on SQLite whatever
//! `LISTGATE_TEST_STORE` says, and `./test`'s PostgreSQL pass leaves them out.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_listgate");

/// Reads stderr lines until one matches, returning it (with a deadline);
/// every line read is kept in `seen`.
fn wait_for_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    needle: &str,
    seen: &mut Vec<String>,
) -> String {
    let start = Instant::now();
    for line in lines.by_ref() {
        let line = line.expect("read stderr");
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no log line with {needle:?}");
    }
    panic!("listgate exited before logging {needle:?}");
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line.find(&format!("{name}=")).expect("field present") + name.len() + 1;
    line[start..].split_whitespace().next().expect("value")
}

/// `listgate serve` in `dir` with no config file, on a free loopback port,
/// with `env` set; returns the process and its stderr lines.
fn spawn_serve(dir: &Path, env: &[(&str, &str)]) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env("LISTGATE_SERVER__BIND", "127.0.0.1:0")
        .envs(env.iter().copied())
        .env_remove("LISTGATE_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_without_config_uses_the_defaults_and_the_file_transport() {
    let dir = tempfile::tempdir().unwrap();
    // The default bind is 127.0.0.1:8080; tests must not collide, so only the port changes.
    let (mut child, mut lines) = spawn_serve(dir.path(), &[]);
    let mut seen = Vec::new();
    wait_for_line(&mut lines, "generated a new one (mode 0600)", &mut seen);
    let serving = wait_for_line(&mut lines, "listgate is serving", &mut seen);
    let addr = field(&serving, "address").to_string();
    assert!(addr.starts_with("127.0.0.1:"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("listgate.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("listgate.db").exists());

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response =
        client.post(format!("http://{addr}/subscribe")).form(&[("email", "first@example.org")]).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // The mail lands in ./mail/ and its link is in the log.
    let logged = wait_for_line(&mut lines, "confirmation mail written", &mut seen);
    // Privacy: the info-level log names the signup and the delivery with a masked address only.
    wait_for_line(&mut lines, "mail delivered", &mut seen);
    let log = seen.join("\n");
    assert!(log.contains("f***@e***.org"), "{log}");
    assert!(!log.contains("first@example.org"), "a full address in the log: {log}");
    assert!(!log.contains("example.org"), "the domain is masked too: {log}");
    let link = field(&logged, "link").to_string();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("mail")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].extension().is_some_and(|e| e == "eml"));
    let token = crate::helpers::confirm_token(&std::fs::read(&files[0]).unwrap());
    assert!(link.ends_with(&token), "{link}");
    // The link names the default base_url; the request goes to the port actually bound.
    assert!(link.starts_with("http://127.0.0.1:8080/confirm?token="));
    let confirmed = client.post(format!("http://{addr}/confirm")).form(&[("token", &token)]).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);

    // SIGTERM: a graceful stop with exit code 0.
    unsafe_kill_term(child.id());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status:?}");
}

fn unsafe_kill_term(pid: u32) {
    let ok = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(ok.success());
}

#[test]
fn a_bad_config_fails_at_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("listgate.toml");
    std::fs::write(&config, "[[lists]]\nid = \"news\"\nname = \"News\"\nlanguage = \"fr\"\nconsent_text = \"ok\"\n")
        .unwrap();
    let output = Command::new(BIN).arg("--config").arg(&config).arg("serve").current_dir(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("listgate: config: lists[0].language:"), "{stderr}");

    let output = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("LISTGATE_MAIL__URL", "ftp://nope")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap().trim(),
        "listgate: config: mail.url: must start with file://, smtp:// or smtps://"
    );

    let output = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "bad usage exits 2");
}

#[test]
fn keygen_adds_a_key_and_old_tokens_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| Command::new(BIN).args(args).current_dir(dir.path()).output().unwrap();
    let printed = run(&["keygen"]);
    assert!(printed.status.success());
    assert!(String::from_utf8(printed.stdout).unwrap().starts_with("1:"));
    assert!(run(&["keygen", "--write"]).status.success());
    let first =
        listgate::keys::KeyRing::parse(&std::fs::read_to_string(dir.path().join("listgate.key")).unwrap()).unwrap();
    let old = listgate::token::sign(
        &first,
        listgate::token::Purpose::Unsubscribe,
        listgate::token::Subject::Public(9),
        "newsletter",
        None,
    );
    assert!(run(&["keygen", "--write"]).status.success());
    let ring =
        listgate::keys::KeyRing::parse(&std::fs::read_to_string(dir.path().join("listgate.key")).unwrap()).unwrap();
    assert_eq!(ring.current_id(), 2);
    let now = time::OffsetDateTime::now_utc();
    assert!(listgate::token::verify(&ring, &old, listgate::token::Purpose::Unsubscribe, now).is_ok());
}

#[test]
fn a_world_readable_key_file_gets_a_warning_and_no_secret_is_ever_logged() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new(BIN).args(["keygen", "--write"]).current_dir(dir.path()).output().unwrap().status.success());
    let key_file = dir.path().join("listgate.key");
    let secret =
        std::fs::read_to_string(&key_file).unwrap().lines().find(|l| l.starts_with("1:")).unwrap()[2..].to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (mut child, lines) = spawn_serve(dir.path(), &[("LISTGATE_LOG", "trace")]);
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let done = line.contains("listgate is serving");
        seen.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = seen.join("\n");
    assert!(log.contains("the key file is readable by other users; run: chmod 600"), "{log}");
    assert!(!log.contains(&secret), "the secret key appears in the log");
}

/// Reads JSON log lines until one has `message`, returning it; every line
/// read is kept in `seen` as text.
fn wait_for_json(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    message: &str,
    seen: &mut Vec<String>,
) -> serde_json::Value {
    let start = Instant::now();
    for line in lines.by_ref() {
        let line = line.expect("read stderr");
        seen.push(line.clone());
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if event["message"] == message {
            return event;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no log line with message {message:?}");
    }
    panic!("listgate exited before logging {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_mask_the_address_and_the_ip() {
    let dir = tempfile::tempdir().unwrap();
    let (email, client_ip) = ("json.logger@example.org", "203.0.113.77");
    // The test client is a trusted proxy, so the signup's IP is the forwarded one:
    // an address that appears nowhere else in the log (unlike 127.0.0.1, the bind address).
    let (mut child, mut lines) = spawn_serve(
        dir.path(),
        &[
            ("LISTGATE_LOG_FORMAT", "json"),
            ("LISTGATE_LOG", "info"),
            ("LISTGATE_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
        ],
    );
    let mut seen = Vec::new();
    let serving = wait_for_json(&mut lines, "listgate is serving", &mut seen);
    let addr = serving["address"].as_str().expect("address field").to_string();

    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{addr}/subscribe"))
        .header("X-Forwarded-For", client_ip)
        .form(&[("email", email)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let signup = wait_for_json(&mut lines, "signup received", &mut seen);
    assert_eq!(signup["level"], "INFO");
    assert_eq!(signup["email"], "j***@e***.org");
    let delivered = wait_for_json(&mut lines, "mail delivered", &mut seen);
    assert_eq!(delivered["to"], "j***@e***.org");

    unsafe_kill_term(child.id());
    for line in lines {
        seen.push(line.unwrap());
    }
    assert!(child.wait().unwrap().success());
    for line in &seen {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["timestamp"].is_string() && event["level"].is_string(), "{line}");
    }
    assert_eq!(
        seen.last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()).unwrap()["message"],
        "stopped"
    );
    let log = seen.join("\n");
    assert!(!log.contains(email), "the full address in the log: {log}");
    assert!(!log.contains(client_ip), "the client IP in the log: {log}");
    // The check means something: the server did see that IP, and stored it as proof.
    let db = listgate::store::open_connection(&dir.path().join("listgate.db")).unwrap();
    let stored: String = db.query_row("SELECT signup_ip FROM subscriptions", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, client_ip);
}

#[test]
fn an_unknown_log_format_stops_listgate_before_it_does_anything() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["xml", "JSON", ""] {
        let output = Command::new(BIN)
            .arg("serve")
            .current_dir(dir.path())
            .env("LISTGATE_LOG_FORMAT", bad)
            .env_remove("LISTGATE_CONFIG")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "bad usage");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            stderr,
            format!("listgate: LISTGATE_LOG_FORMAT: \"{bad}\" is not a log format (use text or json)\n")
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no database, key or mail folder");
}

#[test]
fn version_prints_the_package_version() {
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), format!("listgate {}\n", env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_reply_that_quotes_the_recipient_is_logged_masked_and_stored_exactly() {
    let smtp = crate::helpers::SmtpServer::start("reject");
    let dir = tempfile::tempdir().unwrap();
    let email = "Quoted.Recipient@example.org";
    let (mut child, mut lines) =
        spawn_serve(dir.path(), &[("LISTGATE_MAIL__URL", &smtp.url()), ("LISTGATE_LOG", "info")]);
    let mut seen = Vec::new();
    let serving = wait_for_line(&mut lines, "listgate is serving", &mut seen);
    let addr = field(&serving, "address").to_string();
    let response =
        reqwest::Client::new().post(format!("http://{addr}/subscribe")).form(&[("email", email)]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let failed = wait_for_line(&mut lines, "mail delivery failed permanently", &mut seen);
    unsafe_kill_term(child.id());
    assert!(child.wait().unwrap().success());

    assert!(failed.contains("<Q***@e***.org>: Recipient address rejected"), "{failed}");
    let log = seen.join("\n").to_ascii_lowercase();
    assert!(!log.contains(&email.to_ascii_lowercase()), "the full address in the log: {log}");
    // The proof keeps the server's reply as it was.
    let db = listgate::store::open_connection(&dir.path().join("listgate.db")).unwrap();
    let stored: String = db.query_row("SELECT last_error FROM outbox", [], |r| r.get(0)).unwrap();
    assert!(stored.contains(&format!("<{email}>: Recipient address rejected")), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_given_up_is_logged_as_failed_not_as_retried() {
    let smtp = crate::helpers::SmtpServer::start("tempfail:1000");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("LISTGATE_MAIL__URL", smtp.url()),
        ("LISTGATE_MAIL__RETRY_BASE", "1s".into()),
        ("LISTGATE_MAIL__GIVE_UP_AFTER", "2s".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut child, mut lines) = spawn_serve(dir.path(), &env);
    let mut seen = Vec::new();
    let serving = wait_for_line(&mut lines, "listgate is serving", &mut seen);
    let addr = field(&serving, "address").to_string();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/subscribe"))
        .form(&[("email", "late@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let failed = wait_for_line(&mut lines, "mail delivery failed permanently", &mut seen);
    unsafe_kill_term(child.id());
    assert!(child.wait().unwrap().success());
    assert!(failed.contains("gave up after"), "{failed}");
    let retries = seen.iter().filter(|l| l.contains("will retry")).count();
    let attempts: i64 = listgate::store::open_connection(&dir.path().join("listgate.db"))
        .unwrap()
        .query_row("SELECT attempts FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(retries as i64, attempts - 1, "every attempt but the last is logged as a retry:\n{}", seen.join("\n"));
}

/// A config that sends an SMTP password and subscribers' data in clear text.
const CLEARTEXT_CONFIG: &str = r#"
[server]
bind = "127.0.0.1:0"

[mail]
url = "smtp://mailer:s3cret-pw@mail.example.invalid:587"

[[lists]]
id = "newsletter"
name = "Newsletter"
consent_text = "Yes, send me the newsletter."
webhook_url = "http://crm.example.invalid/hook"
webhook_secret = "the webhook's own secret"
imprint = "Example GmbH, Street 1, 12345 Berlin"
privacy_url = "https://www.example.invalid/privacy"
"#;

#[test]
fn cleartext_smtp_passwords_and_webhooks_are_warned_of_by_check_config_and_at_serve_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("listgate.toml"), CLEARTEXT_CONFIG).unwrap();
    let smtp_warning =
        "mail.url: the SMTP password for mail.example.invalid may be sent unencrypted (smtp:// without ?tls=required)";
    let webhook_warning =
        "lists[0].webhook_url: subscribers' addresses go to crm.example.invalid unencrypted (http://); use https://";
    let run = |args: &[&str]| {
        Command::new(BIN).args(["--config", "listgate.toml"]).args(args).current_dir(dir.path()).output().unwrap()
    };

    let checked = run(&["check-config"]);
    assert!(checked.status.success(), "{checked:?}");
    let text = String::from_utf8(checked.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with(&format!("warning: {smtp_warning}"))), "{text}");
    assert!(text.lines().any(|l| l == format!("warning: {webhook_warning}")), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");

    let mut child = Command::new(BIN)
        .args(["--config", "listgate.toml", "serve"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    wait_for_line(&mut lines, "listgate is serving", &mut seen);
    unsafe_kill_term(child.id());
    assert!(child.wait().unwrap().success());
    let log = seen.join("\n");
    for warning in [smtp_warning, webhook_warning] {
        assert!(seen.iter().any(|l| l.contains("WARN") && l.contains(warning)), "no warning {warning:?} in:\n{log}");
    }
    assert!(!log.contains("s3cret-pw"), "{log}");

    // Encrypted settings are not warned of.
    let quiet = CLEARTEXT_CONFIG.replace(":587\"", ":587?tls=required\"").replace("http://crm", "https://crm");
    std::fs::write(dir.path().join("listgate.toml"), quiet).unwrap();
    let text = String::from_utf8(run(&["check-config"]).stdout).unwrap();
    assert!(!text.contains("warning:"), "{text}");

    // A list without an imprint is valid, but warned of.
    let unsigned = CLEARTEXT_CONFIG.replace("imprint = \"Example GmbH, Street 1, 12345 Berlin\"\n", "");
    std::fs::write(dir.path().join("listgate.toml"), unsigned).unwrap();
    let text = String::from_utf8(run(&["check-config"]).stdout).unwrap();
    let warned =
        "warning: lists[0].imprint: list \"newsletter\" has no imprint; its mails and pages do not say who sends them";
    assert!(text.lines().any(|l| l == warned), "{text}");
    assert!(!text.contains("privacy_url: list"), "{text}");
}
