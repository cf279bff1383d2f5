//! A real RFC 3161 Time-Stamp Authority for the anchor tests: OpenSSL's
//! `openssl ts -reply`, which nobody here wrote, behind a small HTTP handler
//! on a loopback port. Each request's body is written to a file and
//! answered with what `openssl ts -reply -queryfile … -config …` makes of
//! it, as `application/timestamp-reply`.
//!
//! The TSA's keys are a throwaway CA and a TSA certificate it signed (with
//! `extendedKeyUsage = critical,timeStamping`, as RFC 3161 requires), made
//! in the TSA's own temporary folder. A test can switch the TSA into a
//! [`Mode`] that answers wrongly, each wrong answer still made by OpenSSL
//! where there is one to make.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::tools::Tool;

/// How the TSA answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// OpenSSL's reply to the request.
    Granted,
    /// OpenSSL's reply to another request for the same imprint, with
    /// OpenSSL's own nonce: a replayed or foreign reply.
    WrongNonce,
    /// OpenSSL's reply to the request with one byte of its imprint changed.
    WrongImprint,
    /// OpenSSL's rejection (a SHA-1 request, which this TSA does not take).
    Rejection,
    /// 200 with bytes that are not DER.
    Garbage,
    /// 500, as a TSA behind a failing proxy.
    ServerError,
    /// 200 with 100 KiB, more than any token.
    Huge,
    /// Waits `seconds` before answering 500: a TSA that hangs.
    Slow { seconds: u64 },
}

pub struct TestTsa {
    pub url: String,
    dir: tempfile::TempDir,
    mode: Arc<Mutex<Mode>>,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl TestTsa {
    /// Makes the CA and TSA certificates and starts serving on 127.0.0.1:0.
    pub async fn start() -> TestTsa {
        let openssl = Tool::Openssl.path();
        let dir = tempfile::tempdir().expect("temp dir");
        make_keys(&openssl, dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let mode = Arc::new(Mutex::new(Mode::Granted));
        let requests = Arc::new(AtomicUsize::new(0));
        let handler =
            Handler { openssl, dir: dir.path().to_path_buf(), mode: mode.clone(), requests: requests.clone() };
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let handler = handler.clone();
                        async move { Ok::<_, std::convert::Infallible>(handler.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestTsa { url: format!("http://{addr}/tsr"), dir, mode, requests, server }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The CA certificate that signed the TSA's: what `openssl ts -verify` trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TestTsa {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A throwaway CA, a TSA key and certificate it signed, and the `openssl
/// ts` configuration, in `dir`.
fn make_keys(openssl: &Path, dir: &Path) {
    let config = format!(
        "[ req ]\ndistinguished_name = dn\nprompt = no\n[ dn ]\nCN = listgate test TSA\n\
         [ tsa_ext ]\nbasicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = critical,timeStamping\n\
         [ tsa ]\ndefault_tsa = tsa_config\n\
         [ tsa_config ]\ndir = {dir}\nserial = {dir}/serial\ncrypto_device = builtin\n\
         signer_cert = {dir}/tsa.pem\ncerts = {dir}/ca.pem\nsigner_key = {dir}/tsa.key\nsigner_digest = sha256\n\
         default_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\nordering = no\ntsa_name = no\n\
         ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("tsa.cnf"), config).unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(openssl).args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "3650",
        "-subj",
        "/CN=listgate test CA",
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "tsa.key",
        "-out",
        "tsa.csr",
        "-subj",
        "/CN=listgate test TSA",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "tsa.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tsa.pem",
        "-days",
        "3650",
        "-extfile",
        "tsa.cnf",
        "-extensions",
        "tsa_ext",
    ]);
}

#[derive(Clone)]
struct Handler {
    openssl: PathBuf,
    dir: PathBuf,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
}

impl Handler {
    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let content_type_ok =
            request.headers().get(hyper::header::CONTENT_TYPE).is_some_and(|v| v == "application/timestamp-query");
        let query = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
        if !content_type_ok {
            return reply(400, b"expected Content-Type: application/timestamp-query".to_vec());
        }
        let mode = *self.mode.lock().unwrap();
        let handler = self.clone();
        match mode {
            Mode::Garbage => reply(200, b"this is not DER".to_vec()),
            Mode::ServerError => reply(500, b"internal error".to_vec()),
            Mode::Huge => reply(200, vec![0x30; 100 * 1024]),
            Mode::Slow { seconds } => {
                tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
                reply(500, b"too slow".to_vec())
            }
            _ => tokio::task::spawn_blocking(move || reply(200, handler.openssl_reply(n, mode, query)))
                .await
                .expect("openssl task"),
        }
    }

    /// What `openssl ts -reply` answers to the query `mode` makes of `query`.
    fn openssl_reply(&self, n: usize, mode: Mode, mut query: Vec<u8>) -> Vec<u8> {
        // listgate's request has one OCTET STRING of 32 bytes: the imprint.
        let at = query.windows(2).position(|w| w == [0x04, 0x20]).expect("a SHA-256 imprint") + 2;
        let imprint: String = query[at..at + 32].iter().map(|b| format!("{b:02x}")).collect();
        let query_file = self.dir.join(format!("query-{n}.tsq"));
        match mode {
            Mode::WrongImprint => {
                query[at] ^= 0x01;
                std::fs::write(&query_file, &query).unwrap();
            }
            Mode::WrongNonce => {
                self.openssl(&["ts", "-query", "-digest", &imprint, "-sha256", "-cert", "-out"], &query_file)
            }
            Mode::Rejection => {
                self.openssl(&["ts", "-query", "-digest", &imprint[..40], "-sha1", "-cert", "-out"], &query_file)
            }
            _ => std::fs::write(&query_file, &query).unwrap(),
        }
        let reply_file = self.dir.join(format!("reply-{n}.tsr"));
        let config = self.dir.join("tsa.cnf");
        let out = Command::new(&self.openssl)
            .args(["ts", "-reply", "-config"])
            .arg(&config)
            .arg("-queryfile")
            .arg(&query_file)
            .arg("-out")
            .arg(&reply_file)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl ts -reply");
        assert!(out.status.success(), "openssl ts -reply: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(&reply_file).expect("the reply")
    }

    /// `openssl ARGS… FILE`.
    fn openssl(&self, args: &[&str], file: &Path) {
        let out = Command::new(&self.openssl).args(args).arg(file).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn reply(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/timestamp-reply")
        .body(Full::new(Bytes::from(body)))
        .expect("a response")
}
