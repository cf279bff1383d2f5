//! Slow and idle connections against the real binary: header, body and
//! shutdown deadlines, the connection cap, and a flood of idle sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::TestStore;

const BIN: &str = env!("CARGO_BIN_EXE_listgate");

/// The soft descriptor limit systemd gives a service (`LimitNOFILE=1024:524288`).
const SERVICE_SOFT_LIMIT: libc::rlim_t = 1024;

/// `listgate serve` as a service manager starts it: a soft descriptor limit of
/// 1,024 under a higher hard one, a fresh directory, `env` set.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    drained: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    _store: TestStore,
}

impl Server {
    fn start(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = TestStore::new(dir.path());
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .current_dir(dir.path())
            .envs(store.env())
            .env("LISTGATE_SERVER__BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .env_remove("LISTGATE_CONFIG")
            .stderr(Stdio::piped());
        // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = limit.rlim_max.min(SERVICE_SOFT_LIMIT);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = lines.next().expect("listgate exited before serving").unwrap();
            log.lock().unwrap().push(line.clone());
            if line.contains("listgate is serving") {
                let start = line.find("address=").unwrap() + "address=".len();
                break line[start..].split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let sink = log.clone();
        let drained =
            std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| sink.lock().unwrap().push(line)));
        Server { child, addr, log, drained: Some(drained), _dir: dir, _store: store }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .expect("the server accepts (or queues) the connection");
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The whole log, once the process has exited and closed its stderr.
    fn final_log(&mut self) -> String {
        if let Some(drained) = self.drained.take() {
            drained.join().unwrap();
        }
        self.log()
    }

    fn terminate(&self) {
        assert!(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test process holds thousands of sockets itself.
fn raise_own_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain calls with a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Reads until the server closes the connection (or the read timeout of
/// [`Server::connect`] runs out); returns when that happened and what came.
fn wait_for_close(stream: &mut TcpStream) -> (Instant, Result<Vec<u8>, std::io::Error>) {
    let mut received = Vec::new();
    let result = stream.read_to_end(&mut received).map(|_| received);
    let result = match result {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Vec::new()),
        other => other,
    };
    (Instant::now(), result)
}

async fn signup(client: &reqwest::Client, server: &Server, email: &str) -> reqwest::StatusCode {
    client.post(server.url("/subscribe")).form(&[("email", email)]).send().await.unwrap().status()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_and_half_sent_connections_do_not_delay_a_signup() {
    raise_own_fd_limit();
    let server = Server::start(&[]);
    let held: Vec<TcpStream> = (0..2_000)
        .map(|i| {
            let mut stream = server.connect();
            if i % 2 == 0 {
                stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            }
            stream
        })
        .collect();
    let client = client();
    let started = Instant::now();
    let status = signup(&client, &server, "flood@example.org").await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "a signup took {took:?} beside 2,000 idle connections");
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(server.log().contains("file-descriptor limit"), "{}", server.log());
    drop(held);
}

/// Closed by a 2 s timeout: not before it (allowing for timer slack), and
/// well before the test's own read timeout.
fn assert_closed_after_the_2s_timeout(held: Duration) {
    assert!(held >= Duration::from_millis(1_800), "closed too early, after {held:?}");
    assert!(held < Duration::from_secs(5), "closed only after {held:?}");
}

#[test]
fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let server = Server::start(&[("LISTGATE_SERVER__HEADER_TIMEOUT", "2s")]);
    let mut stream = server.connect();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let sent = Instant::now();
    let (closed, result) = wait_for_close(&mut stream);
    result.expect("the server closes the connection, not the test's read timeout");
    let held = closed - sent;
    assert_closed_after_the_2s_timeout(held);
}

#[test]
fn a_connection_on_which_nothing_moves_is_closed_after_the_idle_timeout() {
    // The header timeout is long here, so only the idle timeout can close it.
    let server = Server::start(&[("LISTGATE_SERVER__IDLE_TIMEOUT", "2s"), ("LISTGATE_SERVER__HEADER_TIMEOUT", "60s")]);
    let mut quiet = server.connect();
    let opened = Instant::now();
    let (closed, result) = wait_for_close(&mut quiet);
    result.expect("the server closes the connection, not the test's read timeout");
    let held = closed - opened;
    assert_closed_after_the_2s_timeout(held);
}

#[test]
fn a_request_body_that_trickles_is_cut_off_after_the_body_timeout() {
    let server = Server::start(&[("LISTGATE_SERVER__BODY_TIMEOUT", "2s")]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 200\r\n\r\nemail=slow",
        )
        .unwrap();
    let sent = Instant::now();
    let (closed, result) = wait_for_close(&mut stream);
    let answer = String::from_utf8_lossy(&result.expect("the server closes the connection")).to_string();
    let held = closed - sent;
    assert_closed_after_the_2s_timeout(held);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!server.log().contains("slow@"), "nothing stored or logged for the cut-off body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_new_connections_wait_and_are_served_once_others_close() {
    let mut server =
        Server::start(&[("LISTGATE_SERVER__MAX_CONNECTIONS", "8"), ("LISTGATE_SERVER__HEADER_TIMEOUT", "60s")]);
    let held: Vec<TcpStream> = (0..8).map(|_| server.connect()).collect();
    // The ninth connects (the kernel queues it) but is not served while the eight are open.
    let mut ninth = server.connect();
    ninth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    ninth.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut first = [0u8; 1];
    let early = ninth.read(&mut first);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "served beyond the cap: {early:?}"
    );
    drop(held);
    ninth.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    ninth.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    let client = client();
    assert_eq!(signup(&client, &server, "after-the-cap@example.org").await, 200);
    assert!(server.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_within_the_deadline_while_a_slow_client_holds_a_request_open() {
    let mut server = Server::start(&[
        ("LISTGATE_SERVER__SHUTDOWN_TIMEOUT", "2s"),
        ("LISTGATE_SERVER__BODY_TIMEOUT", "60s"),
        ("LISTGATE_SERVER__IDLE_TIMEOUT", "60s"),
    ]);
    let mut slow = server.connect();
    slow.write_all(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nemail=").unwrap();
    // The request is in flight once the server has read its headers; a real signup proves it is serving.
    assert_eq!(signup(&client(), &server, "before-stop@example.org").await, 200);
    let asked = Instant::now();
    server.terminate();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(asked.elapsed() < Duration::from_secs(8), "still running {:?} after SIGTERM", asked.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= Duration::from_millis(1_800), "the in-flight request got no grace: {took:?}");
    let log = server.final_log();
    assert!(log.contains("server.shutdown_timeout"), "{log}");
    assert!(log.contains("stopped"), "the database was not closed: {log}");
}
