//! SMTP delivery over sockets we open ourselves, with lettre speaking SMTP.
//!
//! Why not lettre's pooled `AsyncSmtpTransport`: lettre 0.11.23 opens its
//! sockets without `TCP_NODELAY` and writes a message's body and its
//! `\r\n.\r\n` terminator as two writes, so with Nagle's algorithm every mail
//! waits for the server's delayed ACK: about 40 ms per mail, which capped the
//! outbox near 400 mails/s whatever the server (lettre/lettre#1159 fixes it
//! upstream, in no release yet). Here the socket is ours, with `TCP_NODELAY`,
//! and lettre's `AsyncSmtpConnection` runs the SMTP dialogue on it (greeting,
//! EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA). Idle connections wait on a stack
//! for the next mail.
//!
//! When the server offers PIPELINING (RFC 2920; Postfix does), a mail takes
//! two round trips instead of four: MAIL, RCPT and DATA go out as one
//! group and their replies are read in order, then the message and its
//! terminator go out in one write. lettre neither pipelines nor keeps the
//! PIPELINING keyword (it drops EHLO keywords it does not know), so the
//! connection asks once more with EHLO after STARTTLS and the group is
//! written through lettre's public `command`, whose text is ours. Together
//! with 32 sessions and outcomes recorded in groups (`outbox`), it took the
//! outbox draining into `smtp-sink` on loopback from about 6,500 mails/s at
//! about 115 µs of CPU each to about 16,000 mails/s at 54 µs each
//! (`benches/load.sh --e2e`; BENCHMARKS.md, "End to end").
//!
//! The URL forms are lettre's `from_url` forms: `smtp://host[:25]` plain,
//! `?tls=required` (STARTTLS, port 587) or `?tls=opportunistic`,
//! `smtps://host[:465]` implicit TLS, `user:password@` for AUTH PLAIN/LOGIN,
//! and a path naming the EHLO host (`smtp://host/mail.example.org`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Idle connections kept for reuse; more concurrent mails open more.
const MAX_IDLE: usize = 32;
/// An idle connection older than this is checked with NOOP before use, so a
/// server that closed it meanwhile costs a reconnect, not a failed mail.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);
/// An idle connection older than this is closed rather than reused (Postfix
/// drops idle clients after 300 s).
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://`: plain text.
    Plain,
    /// `smtp://…?tls=required`: STARTTLS or fail; `opportunistic`: STARTTLS when offered.
    StartTls { required: bool },
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// A mail server parsed from `mail.url`.
pub struct SmtpServer {
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
}

impl fmt::Debug for SmtpServer {
    /// Never prints the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("auth", &self.credentials.is_some())
            .finish()
    }
}

impl SmtpServer {
    /// Parses an `smtp://` or `smtps://` URL; `ca_file` adds a PEM root
    /// certificate (a private relay's own CA) to the public roots.
    pub fn from_url(url: &str, ca_file: Option<&Path>) -> Result<SmtpServer, String> {
        let url = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the URL names no host")?;
        // `[::1]` in a URL is `::1` on the socket and in the certificate.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let tls_mode = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let (security, default_port) = match (url.scheme(), tls_mode.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::StartTls { required: true }, 587),
            ("smtp", Some("opportunistic")) => (Security::StartTls { required: false }, 587),
            ("smtps", _) => (Security::Implicit, 465),
            ("smtp", Some(other)) => {
                return Err(format!("tls={other} is not known (use tls=required or tls=opportunistic)"));
            }
            (scheme, _) => return Err(format!("{scheme}:// is not smtp:// or smtps://")),
        };
        let tls = match security {
            Security::Plain => None,
            _ => Some(tls_parameters(&host, ca_file)?),
        };
        let credentials = match url.password() {
            Some(password) => {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| "the user name or password is not valid UTF-8 once percent-decoded".to_string())
                };
                Some(Credentials::new(decode(url.username())?, decode(password)?))
            }
            None if !url.username().is_empty() => {
                return Err("a user name needs a password (user:password@host)".into());
            }
            None => None,
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        Ok(SmtpServer { port: url.port().unwrap_or(default_port), host, security, tls, credentials, hello })
    }

    /// One line for `listgate check-config`: host, port, how the connection
    /// is secured and whether AUTH is used. Never the user name or password.
    pub fn describe(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let security = match self.security {
            Security::Plain => "plain SMTP, not encrypted",
            Security::StartTls { required: true } => "STARTTLS, required",
            Security::StartTls { required: false } => "STARTTLS when the server offers it (opportunistic)",
            Security::Implicit => "implicit TLS (smtps)",
        };
        let auth = if self.credentials.is_some() { "AUTH with the URL's credentials" } else { "no AUTH" };
        format!("smtp {host}:{}, {security}, {auth}", self.port)
    }
}

fn tls_parameters(host: &str, ca_file: Option<&Path>) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read mail.ca_file {}: {e}", path.display()))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| format!("mail.ca_file {} is not a PEM certificate: {e}", path.display()))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| format!("TLS setup for {host}: {e}"))
}

/// Why a send failed. `permanent` is a 5xx reply: do not try again.
#[derive(Debug)]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    fn temporary(message: String) -> SendError {
        SendError { permanent: false, message }
    }
}

impl From<lettre::transport::smtp::Error> for SendError {
    fn from(e: lettre::transport::smtp::Error) -> SendError {
        SendError { permanent: e.is_permanent(), message: e.to_string() }
    }
}

/// An open connection, and whether its server takes pipelined commands.
struct Session {
    connection: AsyncSmtpConnection,
    pipelining: bool,
}

/// Connections to one mail server. Cheap to share; each `send` takes an idle
/// connection or opens one, and gives it back if it is still good.
pub struct SmtpClient {
    server: SmtpServer,
    idle: Mutex<Vec<(Instant, Session)>>,
}

impl SmtpClient {
    pub fn new(server: SmtpServer) -> SmtpClient {
        SmtpClient { server, idle: Mutex::new(Vec::new()) }
    }

    /// Sends `data` (the message without its final CRLF: the terminator
    /// `\r\n.\r\n` supplies it) and returns the server's final reply.
    pub async fn send(&self, envelope: &Envelope, data: &[u8]) -> Result<Response, SendError> {
        let mut session = match self.take_idle().await {
            Some(session) => session,
            None => self.connect().await?,
        };
        let reply = if session.pipelining {
            send_pipelined(&mut session.connection, envelope, data).await
        } else {
            session.connection.send(envelope, data).await.map_err(SendError::from)
        };
        match reply {
            Ok(reply) => {
                self.give_back(session);
                Ok(reply)
            }
            Err(e) => {
                // Replies of a pipelined group may still be on their way:
                // the connection is closed rather than read in step again
                // (lettre's own `send` closes it on any error too).
                session.connection.abort().await;
                Err(e)
            }
        }
    }

    /// The most recently used idle connection that still answers, if any.
    async fn take_idle(&self) -> Option<Session> {
        loop {
            let (since, mut session) = self.idle.lock().expect("idle connections").pop()?;
            let idle_for = since.elapsed();
            if idle_for > MAX_IDLE_AGE {
                // Older ones sit below it on the stack: close them all.
                let stale: Vec<_> = std::mem::take(&mut *self.idle.lock().expect("idle connections"));
                for (_, mut old) in stale.into_iter().chain([(since, session)]) {
                    old.connection.abort().await;
                }
                return None;
            }
            if idle_for < CHECK_AFTER_IDLE || session.connection.test_connected().await {
                return Some(session);
            }
            session.connection.abort().await;
        }
    }

    fn give_back(&self, session: Session) {
        if session.connection.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().expect("idle connections");
        if idle.len() < MAX_IDLE {
            idle.push((Instant::now(), session));
        }
    }

    /// Opens a TCP connection with `TCP_NODELAY`, then TLS, EHLO, STARTTLS
    /// and AUTH as the URL asks, and learns whether the server pipelines.
    async fn connect(&self) -> Result<Session, SendError> {
        let server = &self.server;
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| SendError::temporary(format!("cannot connect to {}:{}: {e}", server.host, server.port)))?;
        tcp.set_nodelay(true).map_err(|e| SendError::temporary(format!("cannot set TCP_NODELAY: {e}")))?;
        let stream: Box<dyn AsyncTokioStream> = match (&server.security, &server.tls) {
            (Security::Implicit, Some(tls)) => Box::new(ImplicitTls::handshake(tcp, tls.clone()).await?),
            _ => Box::new(tcp),
        };
        let mut connection = AsyncSmtpConnection::connect_with_transport(stream, &server.hello).await?;
        if let (Security::StartTls { required }, Some(tls)) = (server.security, &server.tls) {
            if connection.can_starttls() {
                connection.starttls(tls.clone(), &server.hello).await?;
            } else if required {
                connection.abort().await;
                return Err(SendError::temporary(format!(
                    "{} does not offer STARTTLS, which tls=required demands",
                    server.host
                )));
            }
        }
        // Before AUTH: a later EHLO would reset the session (RFC 5321 4.1.4).
        let offered = connection.command(Ehlo::new(server.hello.clone())).await?;
        let pipelining = offered.message().any(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"));
        if let Some(credentials) = &server.credentials {
            connection.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await?;
        }
        Ok(Session { connection, pipelining })
    }
}

/// One mail in two round trips (RFC 2920): MAIL, RCPT and DATA written as
/// one group, their replies read in order; then the dot-stuffed message
/// and its terminator in one write. The MAIL parameters are lettre's: a
/// message that needs SMTPUTF8 or 8BITMIME from a server without them goes
/// through lettre's `send`, which refuses it with its own error.
async fn send_pipelined(
    connection: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    data: &[u8],
) -> Result<Response, SendError> {
    let info = connection.server_info();
    let (utf8, eight_bit) =
        (info.supports_feature(Extension::SmtpUtfEight), info.supports_feature(Extension::EightBitMime));
    let mut parameters = Vec::new();
    if envelope.from().into_iter().chain(envelope.to()).any(|address| !AsRef::<str>::as_ref(address).is_ascii()) {
        if !utf8 {
            return Ok(connection.send(envelope, data).await?);
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    let text = match std::str::from_utf8(data) {
        Ok(text) if eight_bit || text.is_ascii() => text,
        _ => return Ok(connection.send(envelope, data).await?),
    };
    if !text.is_ascii() {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mut group = Mail::new(envelope.from().cloned(), parameters).to_string();
    for to in envelope.to() {
        group.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
    }
    group.push_str(&Data.to_string());
    // Each reply that is not positive ends the mail here with its error.
    connection.command(group).await?;
    for _ in envelope.to() {
        connection.read_response().await?;
    }
    connection.read_response().await?;
    Ok(connection.command(DotStuffed(text)).await?)
}

/// A message as it travels after DATA: a `.` that begins a line doubled
/// (RFC 5321 4.5.2, as lettre's codec does it), then `\r\n.\r\n`.
struct DotStuffed<'a>(&'a str);

impl fmt::Display for DotStuffed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.0.split("\r\n").enumerate() {
            if i > 0 {
                f.write_str("\r\n")?;
            }
            if line.starts_with('.') {
                f.write_str(".")?;
            }
            f.write_str(line)?;
        }
        f.write_str("\r\n.\r\n")
    }
}

/// An implicit-TLS (`smtps://`) stream: lettre's TLS upgrade of our own
/// socket, seen through tokio's I/O traits so `AsyncSmtpConnection` can take it.
///
/// lettre marks `AsyncNetworkStream` deprecated ("not meant to be public"),
/// but it is the only way to reuse lettre's TLS setup (rustls, roots, the
/// `ca_file`) on a socket we opened; STARTTLS needs none of this.
#[allow(deprecated)]
#[derive(Debug)]
struct ImplicitTls(lettre::transport::smtp::client::AsyncNetworkStream);

#[allow(deprecated)]
impl ImplicitTls {
    async fn handshake(tcp: TcpStream, tls: TlsParameters) -> Result<ImplicitTls, SendError> {
        use lettre::transport::smtp::client::AsyncNetworkStream;
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        stream.upgrade_tls(tls).await?;
        Ok(ImplicitTls(stream))
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let read = futures_util::AsyncRead::poll_read(Pin::new(&mut self.0), cx, buf.initialize_unfilled());
        read.map_ok(|n| buf.advance(n))
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        futures_util::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_util::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_util::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_like_lettre_from_url() {
        let s = SmtpServer::from_url("smtp://127.0.0.1:2525", None).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.security), ("127.0.0.1", 2525, Security::Plain));
        assert!(s.credentials.is_none() && s.tls.is_none());

        let s = SmtpServer::from_url("smtp://u%40x:p%3Aw@mail.example.org?tls=required", None).unwrap();
        assert_eq!((s.port, s.security), (587, Security::StartTls { required: true }));
        assert!(s.credentials.is_some());
        assert!(!format!("{s:?}").contains("p:w"), "Debug never shows the password");

        let s = SmtpServer::from_url("smtps://mail.example.org/client.example.org", None).unwrap();
        assert_eq!((s.port, s.security), (465, Security::Implicit));
        assert_eq!(s.hello, ClientId::Domain("client.example.org".into()));

        let s = SmtpServer::from_url("smtp://[::1]:25?tls=opportunistic", None).unwrap();
        assert_eq!((s.host.as_str(), s.security), ("::1", Security::StartTls { required: false }));
    }

    #[test]
    fn dot_stuffing_doubles_a_dot_that_begins_a_line_and_ends_with_the_terminator() {
        let stuffed = |text: &str| DotStuffed(text).to_string();
        assert_eq!(stuffed("a\r\n.b\r\n..c\r\nd.e"), "a\r\n..b\r\n...c\r\nd.e\r\n.\r\n");
        assert_eq!(stuffed(".first"), "..first\r\n.\r\n");
        assert_eq!(stuffed("bare\n.lf\r.cr\r\r\n.x"), "bare\n.lf\r.cr\r\r\n..x\r\n.\r\n", "only CRLF ends a line");
        assert_eq!(stuffed(""), "\r\n.\r\n");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let error = |url: &str| SmtpServer::from_url(url, None).unwrap_err();
        assert!(error("smtp://host?tls=maybe").contains("tls=maybe"));
        assert!(error("imap://host").contains("imap"));
        assert!(error("smtp://user@host").contains("password"));
        assert!(error("smtp://").contains("host"));
        assert!(
            SmtpServer::from_url("smtps://host", Some(Path::new("/nonexistent/ca.pem")))
                .unwrap_err()
                .contains("ca_file")
        );
    }
}
