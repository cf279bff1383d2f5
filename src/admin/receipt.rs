//! `listgate show EMAIL --receipt`: one consent record per subscription, as
//! JSON, with the fields of the Kantara Initiative's Consent Receipt
//! Specification 1.1 and the record of ISO/IEC TS 27560 (consent record
//! information structure): who is the controller, for which purpose, under
//! which notice, given when and how, in which state now, and what anchors
//! the proof.
//!
//! The Kantara names are kept as the specification spells them
//! (`piiControllers`, `consentTimestamp`, ...), so a tool that reads
//! receipts finds them; what 27560 adds and Kantara lacks (the notice's
//! hash, the state, the events, the proof) sits beside them in snake case.
//! Every value comes from what `show` reads: nothing here is stored.

use serde_json::{Value, json};

use crate::config::{Config, ListConfig};
use crate::domain::Status;
use crate::proof::Head;

use super::show::Record;

/// The Kantara Consent Receipt version whose fields this follows.
const KANTARA_VERSION: &str = "KI-CR-v1.1.0";

/// The record of one subscription. `head` is the chain's head when the
/// receipt was made; the record's anchor, the first RFC 3161 timestamp
/// covering the subscription's events, if any, travels with its token and
/// the `openssl` commands that check it without listgate.
pub fn consent_record(config: &Config, record: &Record, head: &Head) -> Value {
    let s = &record.subscription;
    let list = config.list(&s.list_id);
    let imported = record.import.is_some();
    let (state, consent_at) = match s.status {
        Status::Pending => ("pending", None),
        Status::Confirmed => ("given", s.confirmed_at),
        Status::Unsubscribed if s.confirmed_at.is_some() => ("withdrawn", s.confirmed_at),
        Status::Unsubscribed => ("never given", None),
    };
    let method = if imported {
        "imported: collected by another system, whose evidence listgate keeps but cannot vouch for"
    } else {
        "double opt-in: web form, then a confirmation link mailed to the address and a button pressed"
    };
    json!({
        "version": KANTARA_VERSION,
        "schema": "ISO/IEC TS 27560 consent record, with the Kantara Consent Receipt 1.1 fields",
        "consentReceiptID": format!("urn:listgate:{}:{}:{}", config.server.base_url.host_str().unwrap_or(""), s.list_id, s.id),
        "jurisdiction": null,
        "consentTimestamp": consent_at.map(|t| t.to_offset_date_time().unix_timestamp()),
        "collectionMethod": method,
        "language": list.map(|l| l.language.code()),
        "piiPrincipalId": s.email,
        "piiControllers": list.map(controller).into_iter().collect::<Vec<_>>(),
        "policyUrl": list.and_then(|l| l.privacy_url.as_ref()).map(url::Url::as_str),
        "services": [{
            "service": list.map_or(s.list_id.as_str(), |l| l.name.as_str()),
            "purposes": [{
                "purpose": record.consent_text,
                "purposeCategory": ["newsletter by email"],
                "consentType": "EXPLICIT",
                "piiCategory": if s.name.is_some() { vec!["email address", "name"] } else { vec!["email address"] },
                "primaryPurpose": true,
                "termination": "withdrawn at any time by the unsubscribe link in every mail",
                "thirdPartyDisclosure": false,
            }],
        }],
        "sensitive": false,
        "spiCat": [],
        "notice": {"text": record.consent_text, "sha256": s.consent_sha256},
        "state": state,
        "list": s.list_id,
        "subscription": s.id,
        "events": {
            "signed_up": {"at": s.signup_at, "ip": s.signup_ip, "form_page": record.form_page},
            "confirmed": s.confirmed_at.map(|at| json!({"at": at, "ip": s.confirmed_ip})),
            "withdrawn": s.unsubscribed_at.map(|at| json!({
                "at": at,
                "ip": s.unsubscribed_ip,
                "method": s.unsubscribe_method.map(|m| m.as_str()),
            })),
        },
        "legal_hold": record.hold.as_ref().map(|h| json!({"since": h.held_at, "reason": h.reason})),
        "imported": record.import.as_ref().map(|i| json!({
            "at": i.imported_at,
            "format": i.format,
            "evidence": i.evidence,
            "source_sha256": i.source_sha256,
        })),
        "proof": {
            "events": record.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            "chain_head": {"events": head.events, "link": head.link},
            "anchor": record.anchor.as_ref().map(|a| json!({
                "head": {"events": a.events, "link": a.link},
                "tsa_url": a.tsa_url,
                "gen_time": a.gen_time,
                "serial": a.serial,
                "token": crate::anchor::token_base64(a),
                "check": crate::anchor::openssl_commands(a),
            })),
        },
    })
}

/// Kantara's PII controller from the list's imprint: its first line (or,
/// for a one-line imprint, the text before the first comma) names the
/// controller, the rest is the address; the imprint as written beside.
fn controller(list: &ListConfig) -> Value {
    let (name, address) = match list.imprint_lines().as_slice() {
        [] => (None, None),
        [one] => match one.split_once(',') {
            Some((name, rest)) => (Some(name.trim().to_string()), Some(rest.trim().to_string())),
            None => (Some(one.to_string()), None),
        },
        [first, rest @ ..] => (Some(first.to_string()), Some(rest.join(", "))),
    };
    json!({"piiController": name, "address": address, "imprint": list.imprint.as_deref().map(str::trim)})
}
