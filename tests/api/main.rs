//! Integration tests: the real server on a loopback port, a real SQLite
//! file or PostgreSQL database (`LISTGATE_TEST_STORE`, `store.rs`), and a
//! real SMTP server (aiosmtpd) that listgate's outbox delivers to.

mod anchors;
mod binary;
mod browser;
mod cli;
mod client_ip;
mod confirm;
mod connections;
mod early_answers;
mod erasure;
mod faults;
mod file_modes;
mod helpers;
mod hold;
mod html;
mod import;
mod imprint;
mod journey;
mod mail_delivery;
mod metrics;
mod migrate_store;
mod pg;
mod postgres_nodes;
mod postgres_store;
mod retention;
mod rows;
mod security;
mod spam;
mod store;
mod store_parity;
mod subscribe;
mod tokens;
mod tools;
mod tsa;
mod unsubscribe;
mod webhooks;
