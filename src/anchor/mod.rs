//! Anchors: RFC 3161 timestamps over the proof chain's head, from a
//! Time-Stamp Authority outside the operator's control (`[proof] tsa_url`).
//!
//! Whoever holds the key can rebuild the whole HMAC chain; a kept head
//! (`verify --head`) helps only if it was kept somewhere the operator
//! cannot edit. A timestamp token is such a place: the TSA signs, with its
//! own key and clock, that a given SHA-256 existed at `genTime`. When that
//! SHA-256 is the chain's head, the token shows the chain with that head
//! existed then; a chain rewritten later no longer has that head at that
//! position, and `verify` says so. It shows nothing about whether the
//! events are true: only that they were recorded no later than then.
//!
//! **The anchored message** is the head's text exactly as `verify` prints
//! it, `N HEX` (the number of events, one space, the last link in lowercase
//! hex; ASCII, no newline), and the imprint is its SHA-256. Why the text and
//! not the raw link bytes: it binds the position N as well as the link, it
//! is what operators already keep and courts already see in the proof
//! document, and anyone can rebuild the data with `printf` and check the
//! token with `openssl ts -verify -data` alone ([`openssl_commands`]).
//!
//! - [`tsa`]: the request and the checks of the reply (status, nonce,
//!   imprint), on bytes; [`der`]: the little DER they need.
//! - [`Tsa`]: the HTTP exchange (POST `application/timestamp-query`).
//! - [`anchor_if_changed`]: the server's daily anchor; `listgate anchor`
//!   anchors on demand (`admin::commands::anchor`).
//! - [`check`]: what `verify` asks of each stored token.
//! - [`covering_event`]: the first anchor that covers an event, for the
//!   proof document (and a consent receipt).

pub mod der;
pub mod tsa;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::Full;
use hyper::body::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use url::Url;

use crate::clock::{SharedClock, Timestamp};
use crate::keys::KeyRing;
use crate::outbound::{self, HttpClient};
use crate::proof::{self, Head};
use crate::store::db::{AnchorRow, Db, NewAnchor};
use crate::store::{Store, StoreError};

/// How long one request to the TSA may take, connect to the last byte.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The anchored message for `head`: its text, `N HEX`, as `verify` prints it.
pub fn message(head: &Head) -> String {
    head.to_string()
}

/// The imprint sent to the TSA: SHA-256 of [`message`].
pub fn message_digest(head: &Head) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, message(head).as_bytes());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// A Time-Stamp Authority, reached over HTTP(S).
#[derive(Clone)]
pub struct Tsa {
    url: Url,
    http: HttpClient,
}

impl Tsa {
    pub fn new(url: Url) -> Tsa {
        Tsa { url, http: HttpClient::new() }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Asks the TSA to stamp `head`: a DER request with a fresh random
    /// nonce, POSTed; the reply is checked ([`tsa::read_reply`]) before
    /// anything is believed. Errors are one line, naming the TSA.
    pub async fn stamp(&self, head: &Head) -> Result<tsa::Granted, String> {
        let mut nonce = [0u8; 8];
        SystemRandom::new().fill(&mut nonce).map_err(|_| "no random bytes for the nonce".to_string())?;
        let imprint = message_digest(head);
        let request = hyper::Request::post(outbound::origin_form(&self.url))
            .header(hyper::header::HOST, outbound::host_header(&self.url))
            .header(hyper::header::CONTENT_TYPE, tsa::QUERY_TYPE)
            .header(hyper::header::ACCEPT, tsa::REPLY_TYPE)
            .header(hyper::header::USER_AGENT, concat!("listgate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(tsa::request(&imprint, &nonce))))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let host = self.url.host_str().unwrap_or("the TSA");
        let answer = match tokio::time::timeout(TIMEOUT, self.http.send(&self.url, request, tsa::MAX_REPLY)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(format!("TSA {host}: {e}")),
            Err(_) => return Err(format!("TSA {host}: no answer within {TIMEOUT:?}")),
        };
        if !(200..300).contains(&answer.status) {
            return Err(format!("TSA {host}: HTTP {} instead of a timestamp reply", answer.status));
        }
        tsa::read_reply(&answer.body, &imprint, &nonce).map_err(|e| format!("TSA {host}: {e}"))
    }
}

/// Stores `granted`, the TSA's checked token over `head`.
pub fn store(
    db: &dyn Db,
    head: &Head,
    tsa_url: &Url,
    requested_at: Timestamp,
    granted: &tsa::Granted,
) -> Result<(), StoreError> {
    db.insert_anchor(&NewAnchor {
        events: head.events,
        link: &head.link,
        tsa_url: tsa_url.as_str(),
        requested_at,
        gen_time: granted.info.gen_time,
        serial: &granted.info.serial_hex(),
        token: &granted.token,
    })
}

/// What an anchoring run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchoring {
    /// The head was stamped and stored.
    Anchored { head: Head, gen_time: Timestamp, serial: String },
    /// The newest anchor is of this head already: nothing asked.
    Unchanged(Head),
    /// The chain has no events: nothing to stamp.
    EmptyChain,
}

/// Why an anchoring run failed.
#[derive(Debug)]
pub enum AnchorError {
    /// The chain does not verify: a broken chain is never anchored.
    Broken(proof::Break),
    Store(StoreError),
    /// The TSA could not be reached, or answered wrongly: worth trying again.
    Tsa(String),
}

impl std::fmt::Display for AnchorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnchorError::Broken(b) => {
                write!(
                    f,
                    "the proof chain breaks at event {} ({}); a broken chain is not anchored",
                    b.event_id, b.reason
                )
            }
            AnchorError::Store(e) => e.fmt(f),
            AnchorError::Tsa(e) => f.write_str(e),
        }
    }
}

impl From<StoreError> for AnchorError {
    fn from(e: StoreError) -> Self {
        AnchorError::Store(e)
    }
}

/// The server's anchoring: walks the chain on a reader, and unless the
/// newest anchor is of this head already, asks the TSA and stores the
/// token through the writer. Nothing here holds a transaction while it
/// waits for the TSA, so signups never wait for it.
pub async fn anchor_if_changed(
    store: &Store,
    keys: Arc<KeyRing>,
    tsa: &Tsa,
    clock: &SharedClock,
) -> Result<Anchoring, AnchorError> {
    let (report, latest) = store
        .read(move |db| {
            let report = proof::verify_chain(db, &keys)?;
            Ok((report, db.latest_anchor()?))
        })
        .await?;
    if let Some(b) = report.first_break {
        return Err(AnchorError::Broken(b));
    }
    let head = report.head();
    if head.events == 0 {
        return Ok(Anchoring::EmptyChain);
    }
    if latest.is_some_and(|a| a.events == head.events && a.link == head.link) {
        return Ok(Anchoring::Unchanged(head));
    }
    let requested_at = Timestamp::now(clock.as_ref());
    let granted = tsa.stamp(&head).await.map_err(AnchorError::Tsa)?;
    let (stored_head, url, stored) = (head.clone(), tsa.url().clone(), granted.clone());
    store.write(move |db| self::store(db, &stored_head, &url, requested_at, &stored)).await?;
    Ok(Anchoring::Anchored { head, gen_time: granted.info.gen_time, serial: granted.info.serial_hex() })
}

/// Whether `anchor`'s token stamps the chain as it is: its imprint must be
/// the SHA-256 of the head the chain has at `anchor.events`, whose link a
/// walk pinned as `chain_link` (`None`: the chain, as far as it verifies,
/// is shorter). `chain_events` is how far the chain verified. The reason
/// names the anchor, in one line.
pub fn check(anchor: &AnchorRow, chain_link: Option<&str>, chain_events: u64) -> Result<(), String> {
    let name = format!("anchor {} (head of {} events, stamped {})", anchor.id, anchor.events, anchor.gen_time);
    let info = tsa::read_token(&anchor.token).map_err(|e| format!("{name}: its token does not read: {e}"))?;
    if !info.sha256 {
        return Err(format!("{name}: its token's imprint is not SHA-256"));
    }
    let stored = Head { events: anchor.events, link: anchor.link.clone() };
    if info.imprint != message_digest(&stored) {
        return Err(format!("{name}: its stored head was edited: the token stamps another"));
    }
    let Some(link) = chain_link else {
        return Err(format!(
            "{name}: the chain verifies only {chain_events} events, fewer than the stamped head's: events were cut off or broken"
        ));
    };
    if info.imprint != message_digest(&Head { events: anchor.events, link: link.to_string() }) {
        return Err(format!(
            "{name}: the chain's event {} has the link {link}, not the stamped one: the chain was rewritten after {}",
            anchor.events, anchor.gen_time
        ));
    }
    Ok(())
}

/// The first anchor that covers event `event_id` (its head includes the
/// event), if any: what the proof document shows, and what a consent
/// receipt can carry.
pub fn covering_event(db: &dyn Db, event_id: i64) -> Result<Option<AnchorRow>, StoreError> {
    let position = db.proof_event_position(event_id)?;
    if position == 0 {
        return Ok(None);
    }
    db.first_anchor_covering(position)
}

/// The token in base64 (standard alphabet, padded), as `base64 -d` reads it.
pub fn token_base64(anchor: &AnchorRow) -> String {
    base64::engine::general_purpose::STANDARD.encode(&anchor.token)
}

/// The shell commands that check `anchor` with OpenSSL alone: write the
/// anchored message, decode the token, and verify the TSA's signature
/// over the message's SHA-256 against the TSA's CA certificate (which the
/// TSA publishes; `TSA-CA.pem` stands for it).
pub fn openssl_commands(anchor: &AnchorRow) -> String {
    let message = message(&Head { events: anchor.events, link: anchor.link.clone() });
    let wrapped: Vec<String> =
        token_base64(anchor).as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    format!(
        "printf '%s' '{message}' > head.txt\n\
         base64 -d > token.tst <<'EOF'\n{}\nEOF\n\
         openssl ts -verify -token_in -in token.tst -data head.txt -CAfile TSA-CA.pem",
        wrapped.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(token: &[u8], events: u64, link: &str) -> AnchorRow {
        AnchorRow {
            id: 7,
            events,
            link: link.into(),
            tsa_url: "http://127.0.0.1:1/".into(),
            requested_at: Timestamp::from(time::macros::datetime!(2026-12-01 10:44 UTC)),
            gen_time: Timestamp::from(time::macros::datetime!(2026-12-01 10:44:49 UTC)),
            serial: "02".into(),
            token: token.to_vec(),
        }
    }

    /// The token of tests/fixtures/tsa/granted.tsr, over `3 aaaa…`.
    fn fixture_token() -> Vec<u8> {
        let reply = include_bytes!("../../tests/fixtures/tsa/granted.tsr");
        let head = Head { events: 3, link: "a".repeat(64) };
        let nonce = [0x56, 0x1f, 0x37, 0x1d, 0x49, 0x5f, 0xba, 0x45];
        tsa::read_reply(reply, &message_digest(&head), &nonce).unwrap().token
    }

    #[test]
    fn the_message_is_the_head_as_verify_prints_it() {
        let head = Head { events: 3, link: "a".repeat(64) };
        assert_eq!(message(&head), format!("3 {}", "a".repeat(64)));
        assert_eq!(
            hex::encode(message_digest(&head)),
            "72449cffd53465f4245e2c7e15c88470d6314bb6273aed44dc016722f436118f",
            "openssl ts -query -data head.txt printed this imprint"
        );
    }

    #[test]
    fn a_token_checks_against_the_chain_it_stamped_and_no_other() {
        let token = fixture_token();
        let a = "a".repeat(64);
        assert_eq!(check(&anchor(&token, 3, &a), Some(&a), 5), Ok(()));
        let rewritten = check(&anchor(&token, 3, &a), Some(&"b".repeat(64)), 5).unwrap_err();
        assert!(rewritten.starts_with("anchor 7 (head of 3 events") && rewritten.contains("rewritten"), "{rewritten}");
        let cut = check(&anchor(&token, 3, &a), None, 2).unwrap_err();
        assert!(cut.contains("only 2 events"), "{cut}");
        let edited = check(&anchor(&token, 4, &a), Some(&a), 5).unwrap_err();
        assert!(edited.contains("stored head was edited"), "{edited}");
        let garbage = check(&anchor(b"\x30\x00", 3, &a), Some(&a), 5).unwrap_err();
        assert!(garbage.contains("does not read"), "{garbage}");
    }

    #[test]
    fn the_openssl_commands_carry_the_message_and_the_whole_token() {
        let token = fixture_token();
        let text = openssl_commands(&anchor(&token, 3, &"a".repeat(64)));
        assert!(text.starts_with(&format!("printf '%s' '3 {}' > head.txt\n", "a".repeat(64))), "{text}");
        let encoded: String = text.split("<<'EOF'\n").nth(1).unwrap().split("\nEOF").next().unwrap().replace('\n', "");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap(), token);
        assert!(text.ends_with("openssl ts -verify -token_in -in token.tst -data head.txt -CAfile TSA-CA.pem"));
    }
}
