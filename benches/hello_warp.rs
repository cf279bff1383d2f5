//! The HTTP limit of this machine: a warp server, built from the same crate
//! versions as listgate, that answers 200 to a POST after reading its small
//! body. Every listgate figure in BENCHMARKS.md is a ratio to this one.
//!
//!     cargo build --release --example hello_warp
//!     target/release/examples/hello_warp 127.0.0.1:18080

use warp::Filter;

#[tokio::main]
async fn main() {
    let addr: std::net::SocketAddr =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18080".into()).parse().expect("address");
    let route = warp::post()
        .and(warp::body::content_length_limit(16 * 1024))
        .and(warp::body::bytes())
        .map(|_body: bytes::Bytes| "ok");
    warp::serve(route).run(addr).await;
}
