//! `verify`'s second half: every subscription row checked against its
//! chained events.
//!
//! The chain proves the events; the proof document, `show` and the export
//! read the `subscriptions` row. Someone with write access to the file but
//! not the key could set a row to `confirmed`, or change its IP, and the
//! chain would still verify. So `verify` replays each subscription's events
//! (the state they imply) and compares the row with it, field by field:
//!
//! | event              | what it sets                                                  |
//! |--------------------|---------------------------------------------------------------|
//! | `signup`           | list, email, name, consent, form page; pending; signup time, IP |
//! | `imported`         | all of the row as the import stored it (its detail)           |
//! | `signup_repeated`  | nothing (only while pending)                                  |
//! | `confirm`          | pending → confirmed; confirmation time and IP                 |
//! | `unsubscribe`      | pending or confirmed → unsubscribed; time, IP, method         |
//! | `name_corrected`   | the name (its SHA-256, old and new)                           |
//! | `legal_hold`       | a `legal_holds` row: its time and reason                      |
//! | `legal_hold_released` | no `legal_holds` row                                       |
//! | `mail_sent`, `mail_failed` | nothing in the row                                    |
//!
//! A row with no events, events whose row is gone (deleted, not erased), and
//! an event the state does not allow (a confirmation after an unsubscribe)
//! or a kind listgate never writes fail too; so do a hold deleted by hand (purge and erasure would then
//! destroy what it kept) and a hold made up (erasure refused without one). Erased events carry no subscription and are skipped: their
//! rows were erased with them.
//!
//! Memory stays constant: subscriptions are read a page at a time by id, and
//! the events of each page's id range in one query, in the same read
//! transaction as the chain walk.

use serde_json::Value;

use crate::clock::Timestamp;
use crate::domain::{Status, UnsubscribeMethod};
use crate::mail::sha256_hex;
use crate::proof::EventKind;
use crate::store::Result;
use crate::store::db::{Db, LegalHoldRow, ProofEventRow, SubscriptionRow};

/// At most this many mismatches are described; the rest are counted.
const DESCRIBED: usize = 20;

/// What the check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowReport {
    pub subscriptions: u64,
    /// One line per mismatch (the first [`DESCRIBED`]), each naming the subscription.
    pub mismatches: Vec<String>,
    /// All mismatches, described or not.
    pub failed: u64,
}

impl RowReport {
    fn fail(&mut self, line: String) {
        self.failed += 1;
        if self.mismatches.len() < DESCRIBED {
            self.mismatches.push(line);
        }
    }
}

/// Checks every subscription row against its events, `page` rows at a time,
/// telling `progress` how many rows each page held.
pub fn check_rows(conn: &dyn Db, page: i64, mut progress: impl FnMut(u64)) -> Result<RowReport> {
    let mut report = RowReport::default();
    let mut after = 0;
    loop {
        let rows = conn.select_subscriptions_page(after, page)?;
        // The last page's range is open-ended, so events of rows past the
        // last one (deleted rows) are found too.
        let up_to = if (rows.len() as i64) < page { i64::MAX } else { rows.last().map_or(i64::MAX, |r| r.id) };
        let events = conn.select_proof_events_of_range(after, up_to)?;
        let mut events = events.as_slice();
        let mut holds = conn.select_legal_holds_of_range(after, up_to)?.into_iter().peekable();
        for row in &rows {
            // A hold's row is deleted with its subscription (ON DELETE CASCADE).
            let hold = holds.next_if(|(id, _)| *id == row.id).map(|(_, hold)| hold);
            let (before, rest) = split_while(events, |e| e.subscription_id < Some(row.id));
            orphaned_events(before, &mut report);
            let (own, rest) = split_while(rest, |e| e.subscription_id == Some(row.id));
            events = rest;
            report.subscriptions += 1;
            if let Err(why) = replay(own).and_then(|expected| compare(row, hold.as_ref(), &expected)) {
                report.fail(format!("subscription {} (list {}): {why}", row.id, row.list_id));
            }
        }
        orphaned_events(events, &mut report);
        progress(rows.len() as u64);
        match rows.last() {
            Some(last) if up_to != i64::MAX => after = last.id,
            _ => return Ok(report),
        }
    }
}

fn split_while(
    events: &[ProofEventRow],
    keep: impl Fn(&ProofEventRow) -> bool,
) -> (&[ProofEventRow], &[ProofEventRow]) {
    events.split_at(events.iter().position(|e| !keep(e)).unwrap_or(events.len()))
}

/// Events not yet erased whose subscription row is gone: the row was
/// deleted by hand (erasure and purge blank the events they delete).
fn orphaned_events(events: &[ProofEventRow], report: &mut RowReport) {
    let mut ids: Vec<i64> = events.iter().filter_map(|e| e.subscription_id).collect();
    ids.dedup();
    for id in ids {
        report.fail(format!("subscription {id}: it has proof events but no row (the row was deleted, not erased)"));
    }
}

/// A subscription as its events say it must be stored.
#[derive(Debug, Default)]
struct Expected {
    list_id: String,
    email: String,
    name_sha256: Option<String>,
    status: Option<Status>,
    consent_sha256: String,
    signup_at: Option<Timestamp>,
    signup_ip: String,
    confirmed_at: Option<Timestamp>,
    confirmed_ip: Option<String>,
    unsubscribed_at: Option<Timestamp>,
    unsubscribed_ip: Option<String>,
    unsubscribe_method: Option<UnsubscribeMethod>,
    form_page_sha256: Option<String>,
    /// The standing legal hold: when it was placed, and why.
    hold: Option<(Timestamp, String)>,
}

/// The state one subscription's events (in chain order) lead to.
fn replay(events: &[ProofEventRow]) -> Result<Expected, String> {
    let mut state = Expected::default();
    if events.is_empty() {
        return Err("the row has no proof events (none records its signup or import)".into());
    }
    for (i, event) in events.iter().enumerate() {
        let stored = event.kind.as_deref().unwrap_or("");
        let kind = EventKind::from_stored(stored).ok_or(format!("event {} has an unknown kind", event.id))?;
        let detail: Value = serde_json::from_str(event.detail.as_deref().unwrap_or("null"))
            .map_err(|_| format!("event {} has a detail that is not JSON", event.id))?;
        let at =
            || event.at.as_deref().and_then(Timestamp::from_stored).ok_or(format!("event {} has no time", event.id));
        let starts = matches!(kind, EventKind::Signup | EventKind::Imported);
        if starts != (i == 0) {
            return Err(format!("event {} ({stored}) is not where a {stored} can be", event.id));
        }
        match kind {
            EventKind::Signup => {
                state = Expected {
                    list_id: text(&detail, "list"),
                    email: text(&detail, "email"),
                    name_sha256: optional_text(&detail, "name").map(|n| sha256_hex(n.as_bytes())),
                    status: Some(Status::Pending),
                    consent_sha256: text(&detail, "consent_sha256"),
                    signup_at: Some(at()?),
                    signup_ip: event.ip.clone().unwrap_or_default(),
                    form_page_sha256: optional_text(&detail, "form_page"),
                    ..Expected::default()
                }
            }
            EventKind::Imported => {
                state = imported(&detail).ok_or(format!("event {} has an unreadable import", event.id))?
            }
            EventKind::SignupRepeated if state.status == Some(Status::Pending) => {}
            EventKind::Confirm if state.status == Some(Status::Pending) => {
                state.status = Some(Status::Confirmed);
                state.confirmed_at = Some(at()?);
                state.confirmed_ip = event.ip.clone();
            }
            EventKind::Unsubscribe if matches!(state.status, Some(Status::Pending | Status::Confirmed)) => {
                state.status = Some(Status::Unsubscribed);
                state.unsubscribed_at = Some(at()?);
                // The row stores "" where no IP was known (an operator's unsubscribe).
                state.unsubscribed_ip = Some(event.ip.clone().unwrap_or_default());
                state.unsubscribe_method = optional_text(&detail, "method")
                    .and_then(|m| UnsubscribeMethod::from_stored(&m))
                    .map(Some)
                    .ok_or(format!("event {} names no unsubscribe method", event.id))?;
            }
            EventKind::NameCorrected => {
                if optional_text(&detail, "old_name_sha256") != state.name_sha256 {
                    return Err(format!("event {} corrects a name the subscription did not have", event.id));
                }
                state.name_sha256 = optional_text(&detail, "new_name_sha256");
            }
            EventKind::Hold if state.hold.is_none() => state.hold = Some((at()?, text(&detail, "reason"))),
            EventKind::Release if state.hold.is_some() => state.hold = None,
            EventKind::SignupRepeated
            | EventKind::Confirm
            | EventKind::Unsubscribe
            | EventKind::Hold
            | EventKind::Release => {
                let status = state.status.map_or("none", Status::as_str);
                let hold = if state.hold.is_some() { ", under a legal hold" } else { "" };
                return Err(format!("event {} ({stored}) cannot follow the status {status}{hold}", event.id));
            }
            // The mail's fate changes nothing in the row.
            EventKind::MailSent | EventKind::MailFailed => {}
        }
    }
    Ok(state)
}

/// The row an `imported` event's detail describes, as the import stored it.
fn imported(detail: &Value) -> Option<Expected> {
    let time = |field: &str| match detail.get(field) {
        None | Some(Value::Null) => Some(None),
        Some(value) => value.as_str().and_then(Timestamp::from_stored).map(Some),
    };
    let confirmed_at = time("confirmed_at")??;
    Some(Expected {
        list_id: text(detail, "list"),
        email: text(detail, "email"),
        name_sha256: optional_text(detail, "name").map(|n| sha256_hex(n.as_bytes())),
        status: Some(Status::from_stored(detail.get("status")?.as_str()?)?),
        consent_sha256: text(detail, "consent_sha256"),
        signup_at: Some(time("signup_at")?.unwrap_or(confirmed_at)),
        signup_ip: optional_text(detail, "signup_ip").unwrap_or_default(),
        confirmed_at: Some(confirmed_at),
        confirmed_ip: optional_text(detail, "confirmed_ip"),
        unsubscribed_at: time("unsubscribed_at")?,
        ..Expected::default()
    })
}

fn optional_text(detail: &Value, field: &str) -> Option<String> {
    detail.get(field).and_then(Value::as_str).map(str::to_string)
}

fn text(detail: &Value, field: &str) -> String {
    optional_text(detail, field).unwrap_or_default()
}

/// The first field in which the row differs from its events, as one line.
/// Status, times, list and method are shown; personal values (address,
/// name, IPs) and hashes are only named, so the output can go to a log.
fn compare(row: &SubscriptionRow, hold: Option<&LegalHoldRow>, expected: &Expected) -> Result<(), String> {
    fn show<T: std::fmt::Display>(value: Option<T>) -> String {
        value.map_or("none".into(), |v| format!("\"{v}\""))
    }
    let name_sha256 = row.name.as_deref().map(|n| sha256_hex(n.as_bytes()));
    let shown: [(&str, String, String); 6] = [
        ("status", show(Some(row.status)), show(expected.status)),
        ("list", show(Some(&row.list_id)), show(Some(&expected.list_id))),
        ("signup time", show(Some(row.signup_at)), show(expected.signup_at)),
        ("confirmation time", show(row.confirmed_at), show(expected.confirmed_at)),
        ("unsubscribe time", show(row.unsubscribed_at), show(expected.unsubscribed_at)),
        ("unsubscribe method", show(row.unsubscribe_method), show(expected.unsubscribe_method)),
    ];
    if let Some((field, stored, replayed)) = shown.into_iter().find(|(_, stored, replayed)| stored != replayed) {
        return Err(format!("its {field} is {stored}, but its proof events say {replayed}: the row was edited"));
    }
    match (hold, &expected.hold) {
        (None, Some((at, _))) => {
            return Err(format!(
                "its legal hold of {at} is gone, but no proof event released it: the hold was deleted"
            ));
        }
        (Some(hold), None) => {
            return Err(format!("it has a legal hold of {}, but no proof event placed it", hold.held_at));
        }
        (Some(hold), Some((at, reason))) if hold.held_at != *at || hold.reason != *reason => {
            return Err(format!("its legal hold differs from the one its proof event placed at {at}"));
        }
        _ => {}
    }
    let named = [
        ("address", row.email == expected.email),
        ("name", name_sha256 == expected.name_sha256),
        ("consent text", row.consent_sha256 == expected.consent_sha256),
        ("signup IP", row.signup_ip == expected.signup_ip),
        ("confirmation IP", row.confirmed_ip == expected.confirmed_ip),
        ("unsubscribe IP", row.unsubscribed_ip == expected.unsubscribed_ip),
        ("form page", row.form_page_sha256 == expected.form_page_sha256),
    ];
    match named.into_iter().find(|(_, same)| !same) {
        None => Ok(()),
        Some((field, _)) => Err(format!("its {field} differs from what its proof events say: the row was edited")),
    }
}
