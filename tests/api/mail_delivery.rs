//! The outbox against a real SMTP server that misbehaves.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{SmtpServer, sha256_hex, spawn_app_with, spawn_app_with_smtp, spawn_app_without_smtp};
use crate::store::Value;
use crate::tools::{Tool, require};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_retried_and_the_mail_arrives_after_the_server_recovers() {
    let app = spawn_app_with("tempfail:1", |_| {}).await;
    assert_eq!(app.subscribe("retry@example.org").await.status(), 200);
    let mails = app.smtp().wait_for_messages(1).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;
    let (attempts, sha, error): (i64, String, Option<String>) =
        app.db().value("SELECT attempts, message_sha256, last_error FROM outbox", &[]);
    assert_eq!(attempts, 2, "one 451, then delivered");
    assert_eq!(sha, sha256_hex(&mails[0]));
    assert_eq!(error, None);
    let sent_events: i64 = app.db().value("SELECT count(*) FROM proof_events WHERE kind = 'mail_sent'", &[]);
    assert_eq!(sent_events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_550_is_recorded_as_failed_and_not_retried() {
    let app = spawn_app_with("reject", |_| {}).await;
    assert_eq!(app.subscribe("rejected@example.org").await.status(), 200);
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'failed'", 1).await;
    // Several retry intervals later (retry_base is 1s in tests) it is still one attempt.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (attempts, error): (i64, String) = app.db().value("SELECT attempts, last_error FROM outbox", &[]);
    assert_eq!(attempts, 1);
    assert!(error.contains("550"), "{error}");
    let detail: String = app.db().value("SELECT detail FROM proof_events WHERE kind = 'mail_failed'", &[]);
    assert!(detail.contains("550"), "{detail}");
    assert!(app.smtp().messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_recipient_in_a_pipelined_group_is_recorded_as_failed_and_not_retried() {
    let app = spawn_app_with("reject-rcpt", |_| {}).await;
    assert_eq!(app.subscribe("nobody+tag@example.org").await.status(), 200);
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'failed'", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (attempts, error): (i64, String) = app.db().value("SELECT attempts, last_error FROM outbox", &[]);
    assert_eq!(attempts, 1, "a 550 to RCPT is permanent, whatever the replies after it said");
    assert!(error.contains("550") && error.contains("Recipient address rejected"), "{error}");
    assert!(app.smtp().messages().is_empty());
    // The connection with the group's unread replies was closed, not reused:
    // a second mail gets its own RCPT reply, not the first one's DATA reply.
    assert_eq!(app.subscribe("second@example.org").await.status(), 200);
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'failed'", 2).await;
    let error: String = app.db().value("SELECT last_error FROM outbox WHERE to_email = 'second@example.org'", &[]);
    assert!(error.contains("550") && error.contains("second@example.org"), "{error}");
}

/// RFC 2920: to a server that offers PIPELINING, MAIL, RCPT and DATA go out
/// as one group; to one that does not, one at a time. Either way the server
/// receives exactly the bytes whose SHA-256 is recorded, a line that begins
/// with a dot (dot-stuffed on the wire) included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_out_pipelined_when_offered_and_step_by_step_when_not_byte_for_byte_either_way() {
    for (options, pipelined) in [(&[][..], true), (&["--no-pipelining"][..], false)] {
        let smtp = SmtpServer::start_with(tempfile::tempdir().unwrap(), "ok", 0, options);
        let app = spawn_app_with_smtp(smtp, |c| {
            c.lists[0].imprint = Some("Example GmbH\n.A line that begins with a dot\nStreet 1, Berlin".into());
        })
        .await;
        let addresses = ["Anna+News@Bücher.example", "bob@example.ORG", &format!("{}@example.org", "long".repeat(16))];
        for address in addresses {
            assert_eq!(app.subscribe(address).await.status(), 200);
        }
        let mails = app.smtp().wait_for_messages(addresses.len()).await;
        app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", addresses.len() as i64).await;
        let mut received: Vec<String> = mails.iter().map(|m| sha256_hex(m)).collect();
        let mut recorded: Vec<String> = (1..=addresses.len() as i64)
            .map(|id| app.db().value("SELECT message_sha256 FROM outbox WHERE id = ?1", &[Value::from(id)]))
            .collect();
        received.sort();
        recorded.sort();
        assert_eq!(received, recorded, "pipelined: {pipelined}");
        assert!(
            mails.iter().all(|m| m.windows(3).any(|w| w == b"\r\n.")),
            "each mail has a line that begins with a dot"
        );
        for envelope in app.smtp().envelopes() {
            assert_eq!(envelope["pipelined"], pipelined, "{envelope}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_keeps_the_mail_queued_and_the_signup_answered() {
    // Nothing listens on this port: connection refused, a temporary failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_without_smtp(|c| c.mail.url = format!("smtp://127.0.0.1:{closed}")).await;
    assert_eq!(app.subscribe("outage@example.org").await.status(), 200);
    app.wait_for_value(
        "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts >= 1 AND last_error IS NOT NULL",
        1,
    )
    .await;
    assert_eq!(app.row_counts()[0], 1, "the signup is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_sends_from_its_own_address_with_reply_to() {
    let app = spawn_app_with("ok", |c| {
        c.lists[0].from = Some("Büro Müller <news@example.org>".into());
        c.lists[0].reply_to = Some("hello@example.org".into());
    })
    .await;
    assert_eq!(app.subscribe("from@example.org").await.status(), 200);
    let mails = app.smtp().wait_for_messages(1).await;
    let from = crate::helpers::header(&mails[0], "From").unwrap();
    assert!(from.starts_with("=?utf-8?b?") && from.ends_with("<news@example.org>"), "{from}");
    assert_eq!(crate::helpers::header(&mails[0], "Reply-To").as_deref(), Some("hello@example.org"));
    assert!(crate::helpers::header(&mails[0], "Message-ID").unwrap().ends_with("@example.org>"));
    let envelope = std::fs::read_to_string(app.smtp().folder.path().join("00001.json")).unwrap();
    assert!(envelope.contains("\"mail_from\": \"news@example.org\""), "{envelope}");
}

/// A private CA and a certificate for 127.0.0.1 signed by it, made with the
/// `openssl` command: `(dir, ca.pem, server.pem, server.key)`. The
/// PostgreSQL TLS test uses it too.
pub fn private_ca() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=listgate test CA"],
        ]
        .concat(),
        [&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for args in steps {
        let out = Command::new(Tool::Openssl.path()).args(&args).current_dir(dir.path()).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (ca, cert, key) = (path("ca.pem"), path("server.pem"), path("server.key"));
    (dir, ca, cert, key)
}

fn tls_server(cert: &Path, key: &Path, extra: &[&str]) -> SmtpServer {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    SmtpServer::start_with(tempfile::tempdir().unwrap(), "ok", 0, &[&["--tls", cert, key][..], extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_private_ca_and_auth_delivers_encrypted_and_logged_in() {
    require(&[Tool::Openssl, Tool::Aiosmtpd]);
    let (_ca_dir, ca, cert, key) = private_ca();
    let smtp = tls_server(&cert, &key, &["--auth", "news:pa:ss%w"]);
    let url = format!("smtp://news:pa%3Ass%25w@127.0.0.1:{}?tls=required", smtp.port);
    let app = spawn_app_with_smtp(smtp, |c| {
        c.mail.url = url;
        c.mail.ca_file = Some(ca);
    })
    .await;
    for i in 0..3 {
        assert_eq!(app.subscribe(&format!("tls{i}@example.org")).await.status(), 200);
    }
    let mails = app.smtp().wait_for_messages(3).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 3).await;
    for envelope in app.smtp().envelopes() {
        assert_eq!(envelope["tls"], true, "{envelope}");
        assert_eq!(envelope["user"], "news", "{envelope}");
    }
    let hashes: Vec<String> = app.db().rows("SELECT message_sha256 FROM outbox ORDER BY id", &[]);
    let mut received: Vec<String> = mails.iter().map(|m| sha256_hex(m)).collect();
    let mut recorded = hashes.clone();
    received.sort();
    recorded.sort();
    assert_eq!(received, recorded, "the server received exactly the bytes whose hashes are the proof");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtps_with_a_private_ca_delivers_over_tls_from_the_first_byte() {
    require(&[Tool::Openssl, Tool::Aiosmtpd]);
    let (_ca_dir, ca, cert, key) = private_ca();
    let smtp = tls_server(&cert, &key, &["--implicit-tls", "--auth", "news:secret"]);
    let url = format!("smtps://news:secret@127.0.0.1:{}", smtp.port);
    let app = spawn_app_with_smtp(smtp, |c| {
        c.mail.url = url;
        c.mail.ca_file = Some(ca);
    })
    .await;
    assert_eq!(app.subscribe("smtps@example.org").await.status(), 200);
    app.smtp().wait_for_messages(1).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;
    assert_eq!(app.smtp().envelopes()[0]["tls"], true);
    assert_eq!(app.smtp().envelopes()[0]["user"], "news");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_temporary_failure_and_nothing_is_sent() {
    require(&[Tool::Openssl, Tool::Aiosmtpd]);
    let (_ca_dir, _ca, cert, key) = private_ca();
    let smtp = tls_server(&cert, &key, &[]);
    let url = format!("smtp://127.0.0.1:{}?tls=required", smtp.port);
    // No ca_file: the private CA is not trusted.
    let app = spawn_app_with_smtp(smtp, |c| c.mail.url = url).await;
    assert_eq!(app.subscribe("untrusted@example.org").await.status(), 200);
    app.wait_for_value(
        "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts >= 1 AND last_error IS NOT NULL",
        1,
    )
    .await;
    let error: String = app.db().value("SELECT last_error FROM outbox", &[]);
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(app.smtp().messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_against_a_server_without_starttls_sends_nothing_in_clear() {
    let app = spawn_app_with("ok", |c| c.mail.url = c.mail.url.clone() + "?tls=required").await;
    assert_eq!(app.subscribe("cleartext@example.org").await.status(), 200);
    app.wait_for_value(
        "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts >= 1 AND last_error LIKE '%STARTTLS%'",
        1,
    )
    .await;
    assert!(app.smtp().messages().is_empty());
}

/// A client that posts its signup and hangs up while the signup waits for
/// the writer still gets its mail at once: the signup is committed either
/// way, and the outbox's wake-up must not be lost with the dropped request
/// (the outbox then slept until its next look, up to 30 s). The test holds
/// the database's write lock so the request is surely waiting on the writer
/// when the client goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_whose_client_hung_up_before_the_answer_is_mailed_at_once() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with("ok", |_| {}).await;
    // Let the outbox go to sleep with nothing queued.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let lock = app.db();
    lock.batch(if lock.is_postgres() { "BEGIN; LOCK TABLE outbox IN SHARE MODE" } else { "BEGIN IMMEDIATE" });
    let body = "email=hung-up%40example.org";
    let request = format!(
        "POST /subscribe HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        app.addr,
        body.len()
    );
    let mut client = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    client.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.batch("COMMIT");
    let released = std::time::Instant::now();
    app.wait_for_value("SELECT count(*) FROM subscriptions", 1).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;
    assert!(released.elapsed() < std::time::Duration::from_secs(5), "mailed after {:?}", released.elapsed());
}
