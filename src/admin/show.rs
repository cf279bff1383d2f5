//! `listgate show EMAIL`: everything stored about one address (GDPR Art. 15),
//! as text, as JSON, or as one printable HTML proof document per
//! subscription (what German courts ask for: each consent documented in full).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use askama::Template;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::anchor;
use crate::clock::Timestamp;
use crate::config::{Config, Language};
use crate::domain::EmailKey;
use crate::keys::KeyRing;
use crate::mail;
use crate::proof;
use crate::store::Database;
use crate::store::db::{AnchorRow, Db, ImportRow, LegalHoldRow, MailRow, ProofEventRow, SubscriptionRow};
use crate::subscriptions;

/// One subscription with everything hanging off it.
#[derive(Debug, Serialize)]
pub struct Record {
    pub subscription: SubscriptionRow,
    pub consent_text: Option<String>,
    /// The page the form was on, when the browser named it.
    pub form_page: Option<String>,
    /// Where its evidence came from, when `listgate import` took it in.
    pub import: Option<ImportRow>,
    /// The legal hold that keeps it from purge and erasure, if one stands.
    pub hold: Option<LegalHoldRow>,
    pub mails: Vec<MailRow>,
    pub events: Vec<ProofEventRow>,
    /// The first RFC 3161 anchor whose head covers the subscription's last
    /// event (`anchor::covering_event`), if any; its token is base64 in JSON.
    pub anchor: Option<AnchorRow>,
}

/// All that is stored about an address.
#[derive(Debug, Serialize)]
pub struct AddressReport {
    pub email: String,
    pub records: Vec<Record>,
    /// Whether "I did not sign up" currently blocks confirmation mails.
    pub declined: bool,
}

pub fn collect(
    conn: &Database,
    keys: &KeyRing,
    email_key: &EmailKey,
    now: OffsetDateTime,
) -> Result<AddressReport, String> {
    conn.snapshot(|conn| {
        let mut records = Vec::new();
        for subscription in conn.subscriptions_of_address(email_key)? {
            let events = conn.select_proof_events_of(subscription.id)?;
            let anchor = match events.last() {
                Some(last) => anchor::covering_event(conn, last.id)?,
                None => None,
            };
            records.push(Record {
                consent_text: conn.select_consent_text(&subscription.consent_sha256)?,
                form_page: match &subscription.form_page_sha256 {
                    Some(sha256) => conn.select_form_page(sha256)?,
                    None => None,
                },
                import: conn.select_import(subscription.id)?,
                hold: conn.select_legal_hold(subscription.id)?,
                mails: conn.mails_of_subscription(subscription.id)?,
                events,
                anchor,
                subscription,
            });
        }
        let declined = subscriptions::is_declined(conn, keys, email_key, Timestamp::from(now))?;
        Ok(AddressReport { email: email_key.as_str().to_string(), records, declined })
    })
    .map_err(|e| e.to_string())
}

/// The report as JSON (for machines).
pub fn to_json(report: &AddressReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).expect("plain data serializes");
    // Event details are JSON text in the database; show them as JSON.
    if let Some(records) = value["records"].as_array_mut() {
        for record in records {
            if let Some(events) = record["events"].as_array_mut() {
                for event in events {
                    if let Some(detail) =
                        event["detail"].as_str().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                    {
                        event["detail"] = detail;
                    }
                }
            }
        }
    }
    value
}

/// The report as text (for people).
pub fn to_text(report: &AddressReport) -> String {
    let mut t = String::new();
    if report.records.is_empty() {
        let _ = writeln!(t, "nothing stored for {}", report.email);
    }
    for r in &report.records {
        let s = &r.subscription;
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let _ = writeln!(t, "{} on list {} (subscription {}): {}", s.email, s.list_id, s.id, s.status);
        if let Some(i) = &r.import {
            let _ = writeln!(
                t,
                "  imported:      {} from a {} file (line {}, sha256 {}); evidence: {}",
                i.imported_at, i.format, i.line, i.source_sha256, i.evidence
            );
            let _ = writeln!(
                t,
                "                 collected by another system: listgate cannot vouch for the times and IPs below"
            );
        }
        if let Some(h) = &r.hold {
            let _ = writeln!(
                t,
                "  legal hold:    since {} (reason: {}); purge and erase skip it until `listgate release`",
                h.held_at, h.reason
            );
        }
        let _ = writeln!(t, "  name:          {}", dash(&s.name));
        let _ = writeln!(t, "  signed up:     {} from {}", s.signup_at, s.signup_ip);
        let _ = writeln!(
            t,
            "  form page:     {}",
            r.form_page
                .as_deref()
                .map_or("- (the browser named none)".into(), |p| format!("{p} (as the browser named it)"))
        );
        let _ = writeln!(
            t,
            "  consent:       {} (sha256 {})",
            r.consent_text.as_deref().unwrap_or("(missing)"),
            s.consent_sha256
        );
        let _ = writeln!(
            t,
            "  confirmed:     {}",
            s.confirmed_at.as_ref().map_or("-".into(), |at| format!("{at} from {}", dash(&s.confirmed_ip)))
        );
        let _ = writeln!(
            t,
            "  unsubscribed:  {}",
            s.unsubscribed_at.as_ref().map_or("-".into(), |at| format!(
                "{at} from {} ({})",
                dash(&s.unsubscribed_ip),
                s.unsubscribe_method.map_or("-", |m| m.as_str())
            ))
        );
        for m in &r.mails {
            let _ = writeln!(
                t,
                "  mail {}:        {} {}, Message-ID {}, reply {}, sha256 {}",
                m.id,
                m.state,
                m.sent_at.unwrap_or(m.created_at),
                m.message_id,
                m.smtp_reply.as_deref().or(m.last_error.as_deref()).unwrap_or("-"),
                m.message_sha256.as_deref().unwrap_or("-")
            );
        }
        match &r.anchor {
            Some(a) => {
                let _ = writeln!(
                    t,
                    "  anchored:      {} by {} (serial {}), head of {} events (anchor {}; show --proof has the token)",
                    a.gen_time, a.tsa_url, a.serial, a.events, a.id
                );
            }
            None => {
                let _ = writeln!(t, "  anchored:      not yet (no timestamp covers the last event)");
            }
        }
        let _ = writeln!(t, "  proof events:");
        for e in &r.events {
            let _ = writeln!(
                t,
                "    #{} {} {} {} {}",
                e.id,
                e.at.as_deref().unwrap_or("-"),
                e.kind.as_deref().unwrap_or("-"),
                e.ip.as_deref().unwrap_or("-"),
                e.detail.as_deref().unwrap_or("")
            );
        }
    }
    if report.declined {
        let _ = writeln!(
            t,
            "{} said \"I did not sign up\": no confirmation mails for now (only a keyed hash is stored)",
            report.email
        );
    }
    t
}

struct EventView {
    id: i64,
    at: String,
    kind: String,
    ip: String,
    detail: String,
    verified: bool,
    problem: String,
}

struct MailView {
    id: i64,
    state: String,
    message_id: String,
    sent_at: String,
    reply: String,
    recorded_sha256: String,
    rebuilt_sha256: String,
    matches: bool,
    source: String,
}

/// An anchor as the proof document shows it.
struct AnchorView {
    id: i64,
    tsa_url: String,
    gen_time: String,
    serial: String,
    head: String,
    events: u64,
    last_event: i64,
    token_base64: String,
    commands: String,
    verified: bool,
    problem: String,
}

#[derive(Template)]
#[template(path = "proof.html")]
struct ProofDocument<'a> {
    /// In the list's language (German or English; English for a list no
    /// longer configured).
    de: bool,
    generated_at: Timestamp,
    s: &'a SubscriptionRow,
    name: String,
    consent_text: String,
    form_page: Option<&'a str>,
    events: Vec<EventView>,
    mails: Vec<MailView>,
    chain_ok: bool,
    chain_summary: String,
    import: Option<&'a ImportRow>,
    hold: Option<&'a LegalHoldRow>,
    anchor: Option<AnchorView>,
}

/// Writes `proof-LIST-ID.html` per subscription into `dir`; returns the paths.
pub fn write_proof_documents(
    config: &Config,
    conn: &dyn Db,
    keys: &KeyRing,
    report: &AddressReport,
    dir: &Path,
    now: OffsetDateTime,
) -> Result<Vec<PathBuf>, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    // One walk, pinning every shown anchor's head to check it.
    let pins: Vec<u64> = report.records.iter().filter_map(|r| r.anchor.as_ref().map(|a| a.events)).collect();
    let chain = proof::verify_chain_with_progress(conn, keys, &pins, |_| {}).map_err(err)?;
    let chain_ok = chain.first_break.is_none();
    let chain_summary = |de: bool| match (&chain.first_break, de) {
        (None, false) => format!(
            "The whole proof log verifies: {} events, each chained to the one before by HMAC-SHA256.",
            chain.events
        ),
        (None, true) => format!(
            "Das ganze Nachweisprotokoll ist geprüft: {} Ereignisse, jedes mit HMAC-SHA256 an das vorige gekettet.",
            chain.events
        ),
        (Some(b), false) => format!("The proof log is BROKEN at event {}: {}.", b.event_id, b.reason),
        (Some(b), true) => format!("Das Nachweisprotokoll ist bei Ereignis {} GEBROCHEN: {}.", b.event_id, b.reason),
    };
    let mut written = Vec::new();
    for r in &report.records {
        let de = config.list(&r.subscription.list_id).is_some_and(|l| l.language == Language::De);
        let mut events = Vec::new();
        for e in &r.events {
            let previous = conn.previous_proof_link(e.id).map_err(err)?;
            let check = proof::check_event(keys, &previous, e);
            events.push(EventView {
                id: e.id,
                at: e.at.clone().unwrap_or_default(),
                kind: e.kind.clone().unwrap_or_default(),
                ip: e.ip.clone().unwrap_or_else(|| "-".into()),
                detail: e.detail.clone().unwrap_or_default(),
                verified: check.is_ok(),
                problem: check.err().unwrap_or("").to_string(),
            });
        }
        let mut mails = Vec::new();
        for m in &r.mails {
            let bytes = mail::rebuild(conn, m.id).map_err(err)?.unwrap_or_default();
            let rebuilt_sha256 = mail::sha256_hex(&bytes);
            let recorded_sha256 = m.message_sha256.clone().unwrap_or_default();
            mails.push(MailView {
                id: m.id,
                state: m.state.clone(),
                message_id: m.message_id.clone(),
                sent_at: m.sent_at.map_or_else(|| "-".into(), |t| t.to_string()),
                reply: m.smtp_reply.clone().or_else(|| m.last_error.clone()).unwrap_or_else(|| "-".into()),
                matches: !recorded_sha256.is_empty() && recorded_sha256 == rebuilt_sha256,
                recorded_sha256,
                rebuilt_sha256,
                source: String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
            });
        }
        let document = ProofDocument {
            de,
            generated_at: Timestamp::from(now),
            s: &r.subscription,
            name: r.subscription.name.clone().unwrap_or_else(|| "-".into()),
            consent_text: r.consent_text.clone().unwrap_or_default(),
            form_page: r.form_page.as_deref(),
            events,
            mails,
            chain_ok,
            chain_summary: chain_summary(de),
            import: r.import.as_ref(),
            hold: r.hold.as_ref(),
            anchor: r.anchor.as_ref().map(|a| {
                let check = anchor::check(a, chain.link_at(a.events), chain.events);
                AnchorView {
                    id: a.id,
                    tsa_url: a.tsa_url.clone(),
                    gen_time: a.gen_time.to_string(),
                    serial: a.serial.clone(),
                    head: anchor::message(&proof::Head { events: a.events, link: a.link.clone() }),
                    events: a.events,
                    last_event: r.events.last().map_or(0, |e| e.id),
                    token_base64: anchor::token_base64(a),
                    commands: anchor::openssl_commands(a),
                    verified: check.is_ok(),
                    problem: check.err().unwrap_or_default(),
                }
            }),
        };
        let html = document.render().map_err(|e| format!("proof template: {e}"))?;
        let path = dir.join(format!("proof-{}-{}.html", r.subscription.list_id, r.subscription.id));
        crate::files::write_private(&path, html.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// One consent record per subscription (`show --receipt`), each naming
/// the chain's head as it is now.
pub fn receipts(config: &Config, conn: &Database, report: &AddressReport) -> Result<Vec<serde_json::Value>, String> {
    let head = conn
        .snapshot(|conn| {
            Ok(proof::Head { events: conn.count_proof_events()?, link: conn.last_proof_link()?.unwrap_or_default() })
        })
        .map_err(|e| e.to_string())?;
    Ok(report.records.iter().map(|r| super::receipt::consent_record(config, r, &head)).collect())
}

/// `{"email": …, "records": [], "declined": false}` for an address with nothing stored.
pub fn empty_json(email: &str) -> serde_json::Value {
    json!({"email": email, "records": [], "declined": false})
}
