//! Serving a warp filter on hyper ourselves, with the timeouts warp leaves out.
//!
//! `warp::serve` builds hyper's connection without a timer, so hyper's
//! header-read timeout never runs, and nothing bounds a body, an idle
//! kept-alive socket, the number of open connections or a graceful stop.
//! A client that sends half a request line and waits holds a socket (a file
//! descriptor) forever; a few thousand of them leave SQLite none to open.
//!
//! Here each accepted connection gets:
//! - hyper's header-read timeout (`server.header_timeout`), which also bounds
//!   the wait for the next request on a kept-alive connection;
//! - an inactivity timeout on the socket itself (`server.idle_timeout`): no
//!   byte read or written for that long closes it, also a client that stops
//!   reading its response;
//! - a deadline for the request body (`server.body_timeout`);
//! - a permit from a semaphore of `server.max_connections`: without one the
//!   server does not accept, so excess connections wait in the kernel queue;
//! - the TCP peer as a request extension ([`peer`]), which `warp::addr::remote()`
//!   cannot see outside `warp::serve`.
//!
//! On shutdown the listener closes, idle connections end, in-flight requests
//! finish, and whatever is still open after `server.shutdown_timeout` is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use warp::Filter;
use warp::reply::Response;

use crate::config::ServerConfig;

/// Descriptors kept free for everything that is not a client connection:
/// SQLite's database, WAL and read connections, SMTP and webhook sockets,
/// the log, the key file, a backup in progress.
pub const RESERVED_FDS: u64 = 256;

/// Connections the metrics listener serves at once: it has one scraper.
pub const METRICS_CONNECTIONS: usize = 16;

/// The TCP peer of a request, put into its extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The TCP peer of the request (None only under `warp::test`, which has no socket).
pub fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::addr::remote())
        .map(|ours: Option<PeerAddr>, warps: Option<SocketAddr>| ours.map(|PeerAddr(a)| a).or(warps))
}

/// The connection settings of `[server]`, as durations.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// From the config, with the connection cap lowered to fit `fd_limit`
    /// (the process's soft `RLIMIT_NOFILE`, if known).
    pub fn from_config(server: &ServerConfig, fd_limit: Option<u64>) -> Limits {
        Limits {
            header_timeout: server.header_timeout.approx(),
            idle_timeout: server.idle_timeout.approx(),
            body_timeout: server.body_timeout.approx(),
            max_connections: connection_cap(server.max_connections, fd_limit),
            shutdown_timeout: server.shutdown_timeout.approx(),
        }
    }
}

/// `configured`, or less where the descriptor limit leaves no room for it:
/// each connection is one descriptor, and [`RESERVED_FDS`] (which also
/// cover the metrics listener's [`METRICS_CONNECTIONS`]) stay free.
pub fn connection_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else { return configured };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX).max(16);
    configured.min(room)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit now in force. Many systems start services with a soft limit of
/// 1,024 under a much higher hard one; every held connection costs one, so
/// the low figure would be the first thing a flood of sockets exhausts.
#[cfg(unix)]
pub fn raise_fd_limit() -> io::Result<u64> {
    let (soft, hard) = fd_limits()?;
    let target = reachable(hard);
    if soft >= target {
        return Ok(soft);
    }
    let raised = libc::rlimit { rlim_cur: target as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

/// The soft limit [`raise_fd_limit`] would set: the hard one, or 2^20
/// (Linux's usual `nr_open`) where the hard one is "unlimited", which
/// Linux refuses as a soft limit for descriptors.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every unix
fn reachable(hard: u64) -> u64 {
    if hard == libc::RLIM_INFINITY as u64 { 1 << 20 } else { hard }
}

/// The soft limit in force now, if it can be read.
#[cfg(unix)]
pub fn fd_limit() -> Option<u64> {
    fd_limits().ok().map(|(soft, _)| soft)
}

/// The soft limit `serve` will run with (for `check-config`).
#[cfg(unix)]
pub fn fd_limit_when_serving() -> Option<u64> {
    fd_limits().ok().map(|(soft, hard)| soft.max(reachable(hard)))
}

/// `(soft, hard)` `RLIMIT_NOFILE`.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every unix
fn fd_limits() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> io::Result<u64> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no RLIMIT_NOFILE here"))
}

#[cfg(not(unix))]
pub fn fd_limit() -> Option<u64> {
    None
}

#[cfg(not(unix))]
pub fn fd_limit_when_serving() -> Option<u64> {
    None
}

/// What [`serve`] hands a request to: `warp::service(routes)`.
pub trait RequestService:
    tower_service::Service<hyper::Request<Deadline<Incoming>>, Response = Response, Error = Infallible>
    + Clone
    + Send
    + 'static
{
}

impl<S> RequestService for S
where
    S: tower_service::Service<hyper::Request<Deadline<Incoming>>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
}

/// Serves `service` (`warp::service(routes)`) on `listener` until `shutdown`
/// resolves, then stops as the module doc says. Returns once every
/// connection is closed or dropped.
pub async fn serve<S>(listener: TcpListener, service: S, limits: Limits, shutdown: impl Future<Output = ()>)
where
    S: RequestService,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let (drop_all, dropped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((stream, peer, permit)) = accepted else { continue };
        let (service, watcher, mut dropped) = (service.clone(), graceful.watcher(), dropped.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                let request = request.map(|body| Deadline::new(body, limits.body_timeout));
                tower_service::Service::call(&mut service.clone(), request)
            });
            let builder = connection_builder(limits);
            let connection = watcher.watch(builder.serve_connection_with_upgrades(io, service));
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        // Timeouts and resets are the client's business, not the operator's.
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = dropped.wait_for(|drop| *drop) => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            seconds = limits.shutdown_timeout.as_secs_f64(),
            "connections still open at the shutdown deadline (server.shutdown_timeout): dropping them"
        );
        let _ = drop_all.send(true);
        // Each connection task sees the signal at its next poll; wait until
        // all have given their permits back, so no socket outlives the server.
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(1), permits.acquire_many(all)).await;
    }
}

/// HTTP/1.1 (and HTTP/2 with prior knowledge, as `warp::serve` offered) with
/// the timer that makes hyper's header-read timeout run at all.
fn connection_builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Waits for a free permit, then for a connection. `None` after an accept
/// error, which is logged and, when descriptors ran out, waited out briefly.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
    match listener.accept().await {
        Ok((stream, peer)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, peer, permit))
        }
        Err(e) if is_per_connection(&e) => None,
        Err(e) => {
            // EMFILE/ENFILE and the like: accepting again at once would spin.
            tracing::error!(error = %e, "cannot accept a connection; pausing 100 ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Errors that concern one connection (the client went away before the
/// accept), not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// A socket that fails with `TimedOut` once no byte has moved either way for
/// `timeout` while someone waits on it.
struct IdleTimeout {
    stream: TcpStream,
    timeout: Duration,
    /// When a byte last moved. Reads and writes only note the time; the
    /// timer is moved on when it fires, not on every read, which keeps the
    /// timer wheel out of the hot path.
    last_moved: Instant,
    timer: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(stream: TcpStream, timeout: Duration) -> IdleTimeout {
        let now = Instant::now();
        IdleTimeout { stream, timeout, last_moved: now, timer: Box::pin(tokio::time::sleep_until(now + timeout)) }
    }

    /// Progress: the clock starts again.
    fn moved(&mut self) {
        self.last_moved = Instant::now();
    }

    /// What a read or write of the stream came to: bytes moved (or an
    /// error) restart the idle clock; waiting is checked against it.
    fn progress<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.moved();
                Poll::Ready(result)
            }
            Poll::Pending => self.stalled(cx),
        }
    }

    /// No progress: an error once the time is up, else wait (the timer wakes us).
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let deadline = self.last_moved + self.timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle")));
            }
            self.timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.progress(cx, poll)
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progress(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A request body that fails once `timeout` has passed since its headers
/// arrived: a client trickling a body byte by byte cannot hold a request
/// (and its handler) open past it.
pub struct Deadline<B> {
    body: B,
    timer: Pin<Box<Sleep>>,
}

impl<B> Deadline<B> {
    fn new(body: B, timeout: Duration) -> Deadline<B> {
        Deadline { body, timer: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err("request body not received in time (server.body_timeout)".into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_idle_timeout_counts_from_the_last_byte_not_from_the_start() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let timeout = Duration::from_millis(600);
        let mut server = IdleTimeout::new(server, timeout);
        let started = Instant::now();
        let mut byte = [0u8; 1];
        // A byte every 300 ms keeps it open well past one timeout...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut byte).await.expect("still open while bytes move");
        }
        let last_byte = Instant::now();
        assert!(last_byte - started > 2 * timeout);
        // ...and silence closes it one timeout after the last byte.
        let error = server.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let quiet = last_byte.elapsed();
        assert!(quiet >= timeout && quiet < timeout * 3, "{quiet:?}");
    }

    #[test]
    fn the_connection_cap_leaves_descriptors_for_the_database_and_mail() {
        assert_eq!(connection_cap(4096, Some(20_000)), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 1024 - RESERVED_FDS as usize);
        assert_eq!(connection_cap(4096, None), 4096);
        // A tiny limit still serves someone rather than nobody.
        assert_eq!(connection_cap(4096, Some(100)), 16);
    }
}
