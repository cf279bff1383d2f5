//! A mail server farther away than loopback, for `benches/load.sh --e2e
//! --smtp-latency MS`: a TCP proxy in front of Postfix's `smtp-sink` that
//! holds every chunk `MS` milliseconds in each direction, keeping their
//! order, so each SMTP round trip costs `2 × MS` as on a network link.
//! `smtp-sink`'s own delays (`-w`, `-W`) come only in whole seconds, and
//! the Python proxy `benches/delay_proxy.py` would take CPU from the server
//! under test at thousands of mails a second.
//!
//!     cargo build --release --example latency_proxy
//!     target/release/examples/latency_proxy 127.0.0.1:2526 127.0.0.1:2525 5

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, target, delay_ms] = args.as_slice() else {
        eprintln!("usage: latency_proxy LISTEN_ADDR TARGET_ADDR DELAY_MS");
        std::process::exit(2);
    };
    let delay = Duration::from_millis(delay_ms.parse().expect("DELAY_MS is a number"));
    let listener = TcpListener::bind(listen).await.expect("bind");
    loop {
        let (client, _) = listener.accept().await.expect("accept");
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&target).await else { return };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(pump(client_read, server_write, delay), pump(server_read, client_write, delay));
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it arrived.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((arrived, chunk)) = due.recv().await {
            tokio::time::sleep_until(arrived + delay).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            if chunks.send((Instant::now(), buffer[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    tokio::join!(reader, writer);
}
