//! `listgate hold EMAIL --reason TEXT` and `listgate release EMAIL`: the
//! legal hold (GDPR Art. 17(3)(e)). Once a dispute starts (a warning letter,
//! a complaint), the record that proves consent must stay until it ends: a
//! sender who erased it after an Abmahnung lost (AG Düsseldorf 23 C 3876/13).
//!
//! A hold covers every subscription of the address (or those on one list),
//! is a row in `legal_holds` and a proof event `legal_hold` with the reason;
//! releasing it deletes the row and appends `legal_hold_released`, both in
//! one write transaction. While it stands, purge skips the subscription
//! (and reports how many it skipped) and erasure refuses it.

use serde_json::json;
use time::OffsetDateTime;

use crate::clock::Timestamp;
use crate::domain::{EmailKey, HoldReason};
use crate::keys::KeyRing;
use crate::proof::{self, EventKind};
use crate::store::db::{Db, LegalHoldRow, SubscriptionRow};
use crate::store::{Database, Result};

/// What `hold` did, per subscription of the address.
#[derive(Debug, Default)]
pub struct Placed {
    /// Subscriptions held now: (list, subscription id).
    pub held: Vec<(String, i64)>,
    /// Subscriptions that were held already, with their hold (unchanged).
    pub already: Vec<(SubscriptionRow, LegalHoldRow)>,
}

/// What `release` did.
#[derive(Debug, Default)]
pub struct Released {
    /// Subscriptions released: (list, subscription id).
    pub released: Vec<(String, i64)>,
}

/// Places a hold with `reason` on each of the address's subscriptions (on
/// `list` only, if given) that has none yet, each with its proof event. A
/// subscription held already keeps its first hold and gets no second event.
pub fn hold(
    conn: &Database,
    keys: &KeyRing,
    email_key: &EmailKey,
    list: Option<&str>,
    reason: &HoldReason,
    now: OffsetDateTime,
) -> Result<Placed, String> {
    conn.immediate(|c| {
        let at = Timestamp::from(now);
        let mut placed = Placed::default();
        for s in subscriptions_on(c, email_key, list)? {
            if let Some(existing) = c.select_legal_hold(s.id)? {
                placed.already.push((s, existing));
                continue;
            }
            c.insert_legal_hold(s.id, reason.as_str(), at)?;
            proof::append(c, keys, s.id, at, EventKind::Hold, None, &json!({"reason": reason.as_str()}))?;
            placed.held.push((s.list_id, s.id));
        }
        Ok(placed)
    })
    .map_err(|e| e.to_string())
}

/// Releases the holds on the address's subscriptions (on `list` only, if
/// given), each with its proof event; subscriptions not held are left alone.
pub fn release(
    conn: &Database,
    keys: &KeyRing,
    email_key: &EmailKey,
    list: Option<&str>,
    now: OffsetDateTime,
) -> Result<Released, String> {
    conn.immediate(|c| {
        let at = Timestamp::from(now);
        let mut released = Released::default();
        for s in subscriptions_on(c, email_key, list)? {
            let Some(existing) = c.select_legal_hold(s.id)? else { continue };
            c.delete_legal_hold(s.id)?;
            let detail = json!({"held_at": existing.held_at.to_string()});
            proof::append(c, keys, s.id, at, EventKind::Release, None, &detail)?;
            released.released.push((s.list_id, s.id));
        }
        Ok(released)
    })
    .map_err(|e| e.to_string())
}

/// The address's subscriptions, on `list` only if given.
fn subscriptions_on(c: &dyn Db, email_key: &EmailKey, list: Option<&str>) -> Result<Vec<SubscriptionRow>> {
    let mut subscriptions = c.subscriptions_of_address(email_key)?;
    subscriptions.retain(|s| list.is_none_or(|l| l == s.list_id));
    Ok(subscriptions)
}

/// The holds on the address's subscriptions, inside the caller's transaction.
pub fn holds_of(conn: &dyn Db, email_key: &EmailKey) -> Result<Vec<(SubscriptionRow, LegalHoldRow)>> {
    let mut holds = Vec::new();
    for s in conn.subscriptions_of_address(email_key)? {
        if let Some(hold) = conn.select_legal_hold(s.id)? {
            holds.push((s, hold));
        }
    }
    Ok(holds)
}

/// Each hold with its list, time and reason: "on L since T (reason: R), …".
pub fn describe(holds: &[(SubscriptionRow, LegalHoldRow)]) -> String {
    let each: Vec<String> =
        holds.iter().map(|(s, h)| format!("on {} since {} (reason: {})", s.list_id, h.held_at, h.reason)).collect();
    each.join(", ")
}

/// The one line that says why an address cannot be erased.
pub fn refusal(email: &str, holds: &[(SubscriptionRow, LegalHoldRow)]) -> String {
    format!(
        "{email} is under a legal hold {}; nothing erased (release it with `listgate release {email}` once the dispute is over)",
        describe(holds)
    )
}
