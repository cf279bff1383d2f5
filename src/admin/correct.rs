//! `listgate correct EMAIL --name NAME`: rectification (GDPR Art. 16). The
//! stored name changes; a proof event records the SHA-256 of the old and the
//! new value, so the log shows that (and when) it changed without repeating it.

use crate::store::Database;
use serde_json::json;
use time::OffsetDateTime;

use crate::clock::Timestamp;
use crate::domain::EmailKey;
use crate::domain::Name;
use crate::keys::KeyRing;
use crate::mail::sha256_hex;
use crate::proof::{self, EventKind};

/// Sets the name on the address's subscriptions (on `list` only, if given);
/// returns how many changed.
pub fn correct_name(
    conn: &Database,
    keys: &KeyRing,
    email_key: &EmailKey,
    list: Option<&str>,
    name: Option<&Name>,
    now: OffsetDateTime,
) -> Result<usize, String> {
    let new = name.map(Name::as_str);
    conn.immediate(|c| {
        let at = Timestamp::from(now);
        let mut changed = 0;
        for s in c.subscriptions_of_address(email_key)? {
            if list.is_some_and(|l| l != s.list_id) || s.name.as_deref() == new {
                continue;
            }
            c.update_name(s.id, new)?;
            let hash = |v: Option<&str>| v.map(|v| sha256_hex(v.as_bytes()));
            let detail = json!({"old_name_sha256": hash(s.name.as_deref()), "new_name_sha256": hash(new)});
            proof::append(c, keys, s.id, at, EventKind::NameCorrected, None, &detail)?;
            changed += 1;
        }
        Ok(changed)
    })
    .map_err(|e| e.to_string())
}
