//! Proof events and their HMAC chain.
//!
//! Each event stores `digest = HMAC(chain key, canonical content)` and
//! `link = HMAC(chain key, previous link || digest)`. Without the key nobody
//! can edit an event (its digest no longer matches), delete or insert one (the
//! next link no longer matches) or forge a replacement chain. Erasure blanks
//! the content but keeps `digest` and `link`, so the chain still verifies and
//! nothing personal remains. The first event chains to the empty string.

use std::collections::{BTreeMap, BTreeSet};

use ring::hmac;
use serde::Serialize;

use crate::clock::Timestamp;
use crate::keys::KeyRing;
use crate::store::Result;
use crate::store::db::{Db, NewProofEvent, ProofEventRow};

/// What happened to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The form was submitted; detail: list, email, name, consent hash.
    Signup,
    /// The form was submitted again while pending and a new mail was queued.
    SignupRepeated,
    /// The confirmation mail was handed to the mail server; detail: Message-ID, SHA-256, reply.
    MailSent,
    /// The mail could not be delivered; detail: Message-ID, error.
    MailFailed,
    /// The link was clicked and the button pressed.
    Confirm,
    /// Unsubscribed; detail: method.
    Unsubscribe,
    /// The operator rectified the name; detail: SHA-256 of the old and new name.
    NameCorrected,
    /// `listgate import` took the subscription in, with evidence another
    /// system collected; detail: the subscription as stored, the format,
    /// the file's SHA-256, the line and the row's original values.
    Imported,
    /// The operator placed a legal hold (`listgate hold`): purge and erasure
    /// stop for the subscription; detail: the reason.
    Hold,
    /// The operator released the legal hold (`listgate release`); detail:
    /// when the hold was placed.
    Release,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Signup,
        EventKind::SignupRepeated,
        EventKind::MailSent,
        EventKind::MailFailed,
        EventKind::Confirm,
        EventKind::Unsubscribe,
        EventKind::NameCorrected,
        EventKind::Imported,
        EventKind::Hold,
        EventKind::Release,
    ];

    /// The kind stored as `text`; `None` for text listgate never writes.
    pub fn from_stored(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Signup => "signup",
            EventKind::SignupRepeated => "signup_repeated",
            EventKind::MailSent => "mail_sent",
            EventKind::MailFailed => "mail_failed",
            EventKind::Confirm => "confirm",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::NameCorrected => "name_corrected",
            EventKind::Imported => "imported",
            EventKind::Hold => "legal_hold",
            EventKind::Release => "legal_hold_released",
        }
    }
}

/// The exact bytes the digest covers: a JSON array, unambiguous by construction.
fn canonical(subscription_id: i64, at: &str, kind: &str, ip: Option<&str>, detail: &str) -> Vec<u8> {
    serde_json::to_vec(&(subscription_id, at, kind, ip, detail)).expect("plain values serialize")
}

fn mac_hex(key: &hmac::Key, parts: &[&[u8]]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(part);
    }
    hex::encode(ctx.sign().as_ref())
}

/// Appends an event to the chain, inside the caller's write transaction
/// (which serialises appends, so the previous link is the true last one).
/// `at` is written once, as text: the digest covers those exact bytes and
/// the row stores them.
pub fn append(
    conn: &dyn Db,
    keys: &KeyRing,
    subscription_id: i64,
    at: Timestamp,
    kind: EventKind,
    ip: Option<&str>,
    detail: &impl Serialize,
) -> Result<()> {
    let at = &at.to_string();
    let detail = serde_json::to_string(detail).expect("plain values serialize");
    let key = &keys.current().chain;
    let digest = mac_hex(key, &[&canonical(subscription_id, at, kind.as_str(), ip, &detail)]);
    let previous = conn.last_proof_link()?.unwrap_or_default();
    let link = mac_hex(key, &[previous.as_bytes(), b"|", digest.as_bytes()]);
    conn.insert_proof_event(&NewProofEvent {
        subscription_id,
        at,
        kind: kind.as_str(),
        ip,
        detail: &detail,
        key_id: keys.current_id(),
        digest: &digest,
        link: &link,
    })
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first event that does not verify.
    pub event_id: i64,
    pub reason: &'static str,
}

/// What a full walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub events: u64,
    pub erased: u64,
    pub first_break: Option<Break>,
    /// The link of the last event verified (empty for an empty chain):
    /// with `events`, the chain's [`Head`].
    pub last_link: String,
    /// The links of the events at the positions a walk was asked to pin
    /// (`verify --head`, each anchor's head), by position; a position the
    /// chain, as far as it verifies, does not reach is missing.
    pub pinned: BTreeMap<u64, String>,
}

impl ChainReport {
    /// The head of the chain as far as it verified.
    pub fn head(&self) -> Head {
        Head { events: self.events, link: self.last_link.clone() }
    }

    /// The link the walk pinned at position `events`, if it got there.
    pub fn link_at(&self, events: u64) -> Option<&str> {
        self.pinned.get(&events).map(String::as_str)
    }
}

/// A chain head: the number of events and the last one's link, in hex,
/// written `N HEX`. `verify` prints it; an operator who keeps it outside
/// the database (a log archive, a timestamp authority) can later show that
/// the chain still extends it, so no event was cut off its end or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub events: u64,
    pub link: String,
}

impl Head {
    /// `N HEX`, as [`Head`]'s `Display` writes it.
    pub fn parse(text: &str) -> Result<Head, String> {
        let mut parts = text.split_whitespace();
        let (Some(events), Some(link), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("\"{text}\" is not a head: write it as verify prints it, \"N HEX\""));
        };
        let events = events
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("\"{events}\" is not a number of events (1 or more), in the head \"{text}\""))?;
        let link = link.to_ascii_lowercase();
        if link.len() != 64 || !link.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("\"{link}\" is not a link (64 hex digits), in the head \"{text}\""));
        }
        Ok(Head { events, link })
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.events, self.link)
    }
}

/// Checks one event against the link before it; returns why it fails.
pub fn check_event(keys: &KeyRing, previous_link: &str, event: &ProofEventRow) -> Result<(), &'static str> {
    let key = u16::try_from(event.key_id).ok().and_then(|id| keys.get(id)).ok_or("signed with an unknown key")?;
    if !event.erased {
        let (Some(sub), Some(at), Some(kind), Some(detail)) =
            (event.subscription_id, &event.at, &event.kind, &event.detail)
        else {
            return Err("content missing but not marked erased");
        };
        let digest = mac_hex(&key.chain, &[&canonical(sub, at, kind, event.ip.as_deref(), detail)]);
        if digest != event.digest {
            return Err("content was changed");
        }
    }
    let link = mac_hex(&key.chain, &[previous_link.as_bytes(), b"|", event.digest.as_bytes()]);
    if link != event.link {
        return Err("chain link does not match the event before it (an event was deleted, inserted or reordered)");
    }
    Ok(())
}

/// Walks the whole chain in pages (constant memory) and reports the first break.
pub fn verify_chain(conn: &dyn Db, keys: &KeyRing) -> Result<ChainReport> {
    verify_chain_with_progress(conn, keys, &[], |_| {})
}

/// As [`verify_chain`], also keeping the links of the events at the
/// positions `pins` (counted from 1: a head's N), in the same one walk,
/// and telling `progress` how many events each page held.
pub fn verify_chain_with_progress(
    conn: &dyn Db,
    keys: &KeyRing,
    pins: &[u64],
    mut progress: impl FnMut(u64),
) -> Result<ChainReport> {
    let pins: BTreeSet<u64> = pins.iter().copied().collect();
    let mut report =
        ChainReport { events: 0, erased: 0, first_break: None, last_link: String::new(), pinned: BTreeMap::new() };
    let mut previous = String::new();
    let mut after = 0;
    loop {
        let page = conn.select_proof_events(after, 1000)?;
        let Some(last) = page.last() else {
            report.last_link = previous;
            return Ok(report);
        };
        after = last.id;
        progress(page.len() as u64);
        for event in &page {
            if let Err(reason) = check_event(keys, &previous, event) {
                report.first_break = Some(Break { event_id: event.id, reason });
                report.last_link = previous;
                return Ok(report);
            }
            report.events += 1;
            report.erased += u64::from(event.erased);
            if pins.contains(&report.events) {
                report.pinned.insert(report.events, event.link.clone());
            }
            previous.clone_from(&event.link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::new_entry;

    fn setup() -> (tempfile::TempDir, rusqlite::Connection, KeyRing) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("t.db")).unwrap();
        crate::store::migrate(&conn).unwrap();
        (dir, conn, KeyRing::parse(&new_entry(1).unwrap()).unwrap())
    }

    fn add_three(conn: &dyn Db, keys: &KeyRing) {
        for (i, kind) in [EventKind::Signup, EventKind::MailSent, EventKind::Confirm].into_iter().enumerate() {
            append(
                conn,
                keys,
                1,
                Timestamp::from(time::macros::datetime!(2026-11-22 10:00 UTC)) + time::Duration::seconds(i as i64),
                kind,
                Some("192.0.2.1"),
                &serde_json::json!({"n": i}),
            )
            .unwrap();
        }
    }

    #[test]
    fn every_event_kind_reads_back_as_stored_and_no_other_text_does() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_stored(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::from_stored("Signup"), None);
        assert_eq!(EventKind::from_stored(""), None);
    }

    #[test]
    fn an_untouched_chain_verifies_also_after_erasure() {
        let (_dir, conn, keys) = setup();
        add_three(&conn, &keys);
        let before = verify_chain(&conn, &keys).unwrap();
        assert_eq!((before.events, before.erased, &before.first_break), (3, 0, &None));
        conn.erase_proof_events(1).unwrap();
        let after = verify_chain(&conn, &keys).unwrap();
        assert_eq!((after.events, after.erased, &after.first_break), (3, 3, &None));
        assert_eq!(after.head(), before.head(), "erasure keeps the links, so the head stays");
        assert_eq!(after.last_link.len(), 64);
    }

    #[test]
    fn an_edited_deleted_or_inserted_event_is_found() {
        let (_dir, conn, keys) = setup();
        add_three(&conn, &keys);
        conn.execute_batch("DROP TRIGGER proof_events_erase_only; DROP TRIGGER proof_events_no_delete").unwrap();

        conn.execute("UPDATE proof_events SET ip = '203.0.113.9' WHERE id = 2", []).unwrap();
        let found = verify_chain(&conn, &keys).unwrap().first_break.unwrap();
        assert_eq!((found.event_id, found.reason), (2, "content was changed"));
        conn.execute("UPDATE proof_events SET ip = '192.0.2.1' WHERE id = 2", []).unwrap();
        assert_eq!(verify_chain(&conn, &keys).unwrap().first_break, None);

        conn.execute("DELETE FROM proof_events WHERE id = 2", []).unwrap();
        assert_eq!(verify_chain(&conn, &keys).unwrap().first_break.unwrap().event_id, 3);
    }

    #[test]
    fn a_walk_pins_the_link_at_a_position_and_heads_read_back_as_printed() {
        let (_dir, conn, keys) = setup();
        add_three(&conn, &keys);
        let two = verify_chain_with_progress(&conn, &keys, &[2, 1, 4], |_| {}).unwrap();
        let links: Vec<String> = conn.select_proof_events(0, 10).unwrap().into_iter().map(|e| e.link).collect();
        assert_eq!(two.link_at(2), Some(links[1].as_str()));
        assert_eq!(two.link_at(1), Some(links[0].as_str()), "several positions in one walk");
        assert_eq!(two.link_at(3), None, "not asked for");
        assert_eq!(two.link_at(4), None, "beyond the chain");

        let head = two.head();
        assert_eq!(Head::parse(&head.to_string()).unwrap(), head);
        assert_eq!(Head::parse(&format!("  3   {}  ", head.link.to_uppercase())).unwrap(), head);
        for bad in ["", "3", "x abc", "0 ab", &format!("3 {}", &head.link[1..]), &format!("3 {} 4", head.link), "3 zz"]
        {
            assert!(Head::parse(bad).is_err(), "{bad:?}");
        }
        let empty = setup();
        assert_eq!(verify_chain(&empty.1, &empty.2).unwrap().last_link, "");
    }

    #[test]
    fn an_inserted_event_breaks_the_chain_after_it() {
        let (_dir, conn, keys) = setup();
        add_three(&conn, &keys);
        // A forger copies event 1's fields into a new row between 2 and 3.
        conn.execute(
            "INSERT INTO proof_events (id, subscription_id, at, kind, ip, detail, key_id, digest, link)
             SELECT 25, subscription_id, at, kind, ip, detail, key_id, digest, link FROM proof_events WHERE id = 1",
            [],
        )
        .unwrap();
        conn.execute("UPDATE sqlite_sequence SET seq = 2 WHERE name = 'proof_events'", []).ok();
        conn.execute_batch("DROP TRIGGER proof_events_erase_only").unwrap();
        conn.execute("UPDATE proof_events SET id = 30 WHERE id = 3", []).unwrap();
        assert_eq!(verify_chain(&conn, &keys).unwrap().first_break.unwrap().event_id, 25);
    }
}
