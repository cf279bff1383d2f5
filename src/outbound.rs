//! Outbound HTTP: one HTTP/1.1 request on a fresh connection, over TLS for
//! `https://`, for the webhooks and the timestamp authority. Both are rare
//! (a call per confirmation, a timestamp a day), so no pool is kept.
//!
//! hyper's HTTP/1 client (already in the tree under warp) over tokio-rustls
//! with ring and the webpki roots (already in the tree under lettre),
//! rather than reqwest, whose TLS would bring aws-lc and the system
//! certificate store.

use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

/// An answer: its status, `Content-Type`, and as much body as was asked for.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Makes requests; holds the TLS configuration.
#[derive(Clone)]
pub struct HttpClient {
    tls: tokio_rustls::TlsConnector,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        HttpClient { tls: tls_connector() }
    }

    /// Sends `request` to `url`'s host and port. The answer's body is read
    /// only up to `read_up_to` bytes: 0 reads none (a webhook receiver
    /// cannot make listgate hold a large answer in memory); a longer body
    /// is an error, never a cut one taken for whole.
    pub async fn send(&self, url: &Url, request: Request<Full<Bytes>>, read_up_to: usize) -> Result<Answer, String> {
        let host = url.host_str().ok_or("the URL names no host")?.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().ok_or("the URL names no port")?;
        let tcp =
            TcpStream::connect((host, port)).await.map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if url.scheme() == "https" {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS with {host}: {e}"))?;
            exchange(tls, request, read_up_to).await
        } else {
            exchange(tcp, request, read_up_to).await
        }
    }
}

/// `Host`: the host, with the port when it is not the scheme's default.
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The origin form of `url` (`/path?query`), as browsers send it, with
/// the host in `Host`.
pub fn origin_form(url: &Url) -> &str {
    &url[url::Position::BeforePath..]
}

/// Sends `request` over `io` and reads the answer (its body up to
/// `read_up_to` bytes); the connection is closed after the call.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>, read_up_to: usize) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let answer = async {
        let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = if read_up_to == 0 { Vec::new() } else { read_body(response.into_body(), read_up_to).await? };
        Ok(Answer { status, content_type, body })
    }
    .await;
    drop(sender);
    driver.abort();
    answer
}

/// The body, frame by frame, refused as soon as it passes `limit` bytes.
async fn read_body(mut body: hyper::body::Incoming, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("HTTP body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err(format!("the answer is larger than {} KiB", limit / 1024));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// TLS: the public roots built into listgate (webpki-roots), as for the
/// mail server; never the system store.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
