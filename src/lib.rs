//! listgate: a self-hosted double opt-in service for newsletters, with proof.
//!
//! A signup form posts an address; listgate stores it as pending, mails a
//! signed confirmation link through an outbox, and only a click on that link
//! (and a press of the button behind it) makes the address a subscriber.
//! Every step is a proof event in an HMAC chain, so the operator can prove
//! years later who asked to be on the list, and when, and from where.
//!
//! # Layout
//! - [`config`]: typed settings from `listgate.toml` and `LISTGATE_*`.
//! - [`clock`]: injected time and the stored time format.
//! - [`domain`]: parsed input (`Email`, `Name`) and input errors.
//! - [`keys`]: the secret key ring and the keys derived from it.
//! - [`token`]: signing and verifying confirm, unsubscribe and form tokens.
//! - [`limits`]: signup rate limits per IP and per address (in memory).
//! - [`store`]: SQLite: connections, schema, the group-committing writer, every query.
//! - [`proof`]: proof events and their HMAC chain; verification.
//! - [`anchor`]: RFC 3161 timestamps over the chain's head, from a TSA outside the operator's control.
//! - [`subscriptions`]: signup, confirm, decline, unsubscribe: the domain operations.
//! - [`mail`]: rendering and composing confirmation mails; the outbox worker.
//! - [`http`]: routes, handlers, client IP, pages and security headers; [`http::serve`]
//!   serves them on hyper with header, body and idle timeouts and a connection cap.
//! - [`metrics`]: counters and latency for `GET /metrics` (Prometheus text).
//! - [`logging`]: the log subscriber, as text or JSON lines.
//! - [`outbound`]: one HTTP request out (webhooks, the TSA), over rustls.
//! - [`webhooks`]: signed calls to a list's `webhook_url` on confirm and unsubscribe.
//! - [`retention`]: the retention rules and the purge.
//! - [`worker`]: the claim-deliver-sleep loop the outbox and the webhook caller share.
//! - [`admin`]: the operator's commands (export, show, erase, …), callable from tests;
//!   [`admin::commands`] has one function per CLI subcommand, which `main.rs` calls.
//! - [`app`]: wiring it all into a running server.

pub mod admin;
pub mod anchor;
pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod files;
pub mod http;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod outbound;
pub mod proof;
pub mod retention;
pub mod store;
pub mod subscriptions;
pub mod token;
pub mod webhooks;
pub mod worker;

pub use app::Application;
