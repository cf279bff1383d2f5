//! `listgate unsubscribe EMAIL`: the operator ends a subscription, for an
//! unsubscribe that reached them another way (a reply, a letter, the sending
//! tool's own unsubscribe page). Recorded like any unsubscribe, with method
//! `admin` and no IP, and the list's webhook hears of it; the record is kept as proof for
//! `retention.after_unsubscribe`, and the address is no longer exported as
//! confirmed.

use crate::store::Database;
use time::OffsetDateTime;

use crate::config::Config;
use crate::domain::EmailKey;
use crate::keys::KeyRing;
use crate::subscriptions::{self, UnsubscribeMethod, UnsubscribeOutcome};

/// Unsubscribes the address's live subscriptions (on `list` only, if given);
/// returns the lists it left.
pub fn unsubscribe(
    conn: &Database,
    config: &Config,
    keys: &KeyRing,
    email_key: &EmailKey,
    list: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<String>, String> {
    conn.immediate(|c| {
        let mut left = Vec::new();
        for s in c.subscriptions_of_address(email_key)? {
            if list.is_some_and(|l| l != s.list_id) {
                continue;
            }
            let webhook = config.has_webhook(&s.list_id);
            let outcome = subscriptions::unsubscribe_subscription(
                c,
                keys,
                s.id,
                &s.list_id,
                None,
                UnsubscribeMethod::Admin,
                webhook,
                now,
            )?;
            if outcome == UnsubscribeOutcome::Unsubscribed {
                left.push(s.list_id);
            }
        }
        Ok(left)
    })
    .map_err(|e| e.to_string())
}
