//! Signed tokens for confirmation and unsubscribe links.
//!
//! `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, unpadded.
//! The payload binds, in this byte order:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | layout version: 2 (1 in links mailed before it existed) |
//! | 1 | purpose: `c` confirm, `u` unsubscribe, `f` form |
//! | 2 | key id, big-endian |
//! | 8 | layout 2: the subscription's row id, concealed ([`conceal`]); layout 1: its row id in clear (form tokens: issue time, Unix milliseconds), big-endian |
//! | 8 | expiry, Unix seconds, big-endian; 0 = never |
//! | rest | list id, UTF-8 |
//!
//! Layout 2 exists because layout 1's sequential row id told anyone holding
//! two links how many people signed up between them. Layout 2 carries the
//! same row id through a keyed permutation of the 64-bit values (a
//! four-round Feistel network whose round function is SipHash-2-4 under a
//! key derived from the token's own key): without the key, two links' fields are unrelated
//! numbers; with it, the field turns back into the row id, so nothing new is
//! stored and no second index is written per signup. (A random public id
//! column with a unique index was tried first: its random B-tree insert cost
//! a third of the signup rate, BENCHMARKS.md.) Both layouts have the same
//! length and both verify, so every link already mailed (confirm and
//! unsubscribe, under every key id) keeps working; only layout 2 is signed
//! for subscriptions. Form tokens stay on layout 1: their field is an issue
//! time, which the page's reader knows anyway.
//!
//! The signature is checked (constant time, `ring::hmac::verify`) before any
//! field is believed. Decoding is strict (no padding, canonical trailing bits),
//! so a re-encoded token is a different, invalid token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use siphasher::sip::SipHasher24;
use time::OffsetDateTime;

use crate::keys::KeyRing;

/// Layout 1: the 8-byte field is a sequential id (or a form's issue time).
const SEQUENTIAL: u8 = 1;
/// Layout 2: the 8-byte field is a subscription's row id, concealed.
const PUBLIC: u8 = 2;
const HEADER: usize = 20;
/// Longer than any token listgate makes; longer input is refused unread.
pub const MAX_TOKEN_LEN: usize = 400;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Confirm,
    Unsubscribe,
    /// Carried by listgate's own signup page: shows the form was loaded
    /// from us, and when (bots post without loading, or too fast).
    Form,
}

impl Purpose {
    fn byte(self) -> u8 {
        match self {
            Purpose::Confirm => b'c',
            Purpose::Unsubscribe => b'u',
            Purpose::Form => b'f',
        }
    }
}

/// What a token's 8-byte id field names; the layout version says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Layout 2: a subscription's row id (`subscriptions.id`), which the
    /// token carries concealed, so it says nothing about how many signups
    /// came before it. Every confirm and unsubscribe token listgate signs today.
    Public(i64),
    /// Layout 1: a subscription's sequential row id (`subscriptions.id`), in
    /// links mailed before layout 2, still honoured; or a form
    /// token's issue time in Unix milliseconds.
    Sequential(i64),
}

impl Subject {
    fn layout(self) -> (u8, i64) {
        match self {
            Subject::Public(id) => (PUBLIC, id),
            Subject::Sequential(id) => (SEQUENTIAL, id),
        }
    }
}

/// A token whose signature, purpose and expiry have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub purpose: Purpose,
    pub subject: Subject,
    pub list_id: String,
    pub key_id: u16,
    /// Unix seconds; `None` for tokens that never expire.
    pub expires: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, tampered, unknown key, or made for another purpose.
    Invalid,
    /// Genuine, but its time is over; names the list so the page can offer a new signup.
    Expired { list_id: String },
}

/// Signs a token with the ring's current key. `expires` is `None` for
/// unsubscribe tokens, which must work in years-old mails. Subscriptions'
/// tokens name them by [`Subject::Public`]; signing a [`Subject::Sequential`]
/// one makes a layout 1 token as older versions did (form tokens, tests).
pub fn sign(
    keys: &KeyRing,
    purpose: Purpose,
    subject: Subject,
    list_id: &str,
    expires: Option<OffsetDateTime>,
) -> String {
    let mut token = String::with_capacity(96 + 2 * list_id.len());
    sign_into(keys, purpose, subject, list_id, expires, &mut token);
    token
}

/// As [`sign`], appending the token to `out` (an export signs a million
/// tokens and reuses one buffer).
pub fn sign_into(
    keys: &KeyRing,
    purpose: Purpose,
    subject: Subject,
    list_id: &str,
    expires: Option<OffsetDateTime>,
    out: &mut String,
) {
    let key_id = keys.current_id();
    let (layout, id) = subject.layout();
    let id = if layout == PUBLIC { conceal(&keys.current().conceal, id) } else { id };
    let mut payload = Vec::with_capacity(HEADER + list_id.len());
    payload.push(layout);
    payload.push(purpose.byte());
    payload.extend_from_slice(&key_id.to_be_bytes());
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&expires.map_or(0, |t| t.unix_timestamp().max(1)).to_be_bytes());
    payload.extend_from_slice(list_id.as_bytes());
    let tag = hmac::sign(&keys.current().token, &payload);
    URL_SAFE_NO_PAD.encode_string(&payload, out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), out);
}

/// Verifies a token for `purpose` at time `now`.
pub fn verify(keys: &KeyRing, token: &str, purpose: Purpose, now: OffsetDateTime) -> Result<VerifiedToken, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid);
    }
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Invalid)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Invalid)?;
    if payload.len() <= HEADER || !matches!(payload[0], SEQUENTIAL | PUBLIC) {
        return Err(TokenError::Invalid);
    }
    let key_id = u16::from_be_bytes([payload[2], payload[3]]);
    let key = keys.get(key_id).ok_or(TokenError::Invalid)?;
    hmac::verify(&key.token, &payload, &tag).map_err(|_| TokenError::Invalid)?;

    // Signed by us: the fields can be believed from here on.
    if payload[1] != purpose.byte() {
        return Err(TokenError::Invalid);
    }
    let id = i64::from_be_bytes(payload[4..12].try_into().expect("8 bytes"));
    let subject =
        if payload[0] == PUBLIC { Subject::Public(reveal(&key.conceal, id)) } else { Subject::Sequential(id) };
    let expires = i64::from_be_bytes(payload[12..20].try_into().expect("8 bytes"));
    let list_id = String::from_utf8(payload[HEADER..].to_vec()).map_err(|_| TokenError::Invalid)?;
    if expires != 0 && now.unix_timestamp() >= expires {
        return Err(TokenError::Expired { list_id });
    }
    Ok(VerifiedToken { purpose, subject, list_id, key_id, expires: (expires != 0).then_some(expires) })
}

/// Rounds of the Feistel network: four make a strong pseudorandom
/// permutation (Luby-Rackoff) when each round function is a PRF.
const ROUNDS: u8 = 4;

/// Round `round` of the permutation: 32 bits of SipHash-2-4 (a keyed PRF)
/// over the round number and the half.
fn round_function(key: &[u8; 16], round: u8, half: u32) -> u32 {
    let mut input = [0u8; 5];
    input[0] = round;
    input[1..].copy_from_slice(&half.to_be_bytes());
    SipHasher24::new_with_key(key).hash(&input) as u32
}

/// The keyed permutation of 64-bit ids that layout 2 carries: a bijection,
/// so [`reveal`] gives the row id back, and without the key consecutive ids
/// map to unrelated values.
fn conceal(key: &[u8; 16], id: i64) -> i64 {
    let (mut left, mut right) = ((id as u64 >> 32) as u32, id as u64 as u32);
    for round in 0..ROUNDS {
        (left, right) = (right, left ^ round_function(key, round, right));
    }
    ((u64::from(left) << 32) | u64::from(right)) as i64
}

/// The inverse of [`conceal`] under the same key.
fn reveal(key: &[u8; 16], concealed: i64) -> i64 {
    let (mut left, mut right) = ((concealed as u64 >> 32) as u32, concealed as u64 as u32);
    for round in (0..ROUNDS).rev() {
        (left, right) = (right ^ round_function(key, round, left), left);
    }
    ((u64::from(left) << 32) | u64::from(right)) as i64
}

/// A form token for `list_id`, issued at `issued`, valid until `issued + max_age`.
pub fn sign_form(keys: &KeyRing, list_id: &str, issued: OffsetDateTime, max_age: crate::config::Span) -> String {
    let issued_ms = i64::try_from(issued.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    sign(keys, Purpose::Form, Subject::Sequential(issued_ms), list_id, Some(max_age.after(issued)))
}

/// Whether a form token is genuine, for this list, not expired, and at
/// least `min_age` old (a person takes a moment to type an address).
pub fn check_form(
    keys: &KeyRing,
    token: &str,
    list_id: &str,
    now: OffsetDateTime,
    min_age: crate::config::Span,
) -> bool {
    match verify(keys, token, Purpose::Form, now) {
        Ok(VerifiedToken { subject: Subject::Sequential(issued_ms), list_id: form_list, .. }) => {
            let issued = OffsetDateTime::from_unix_timestamp_nanos(i128::from(issued_ms) * 1_000_000).unwrap_or(now);
            form_list == list_id && min_age.after(issued) <= now
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::new_entry;
    use time::macros::datetime;

    fn ring() -> KeyRing {
        KeyRing::parse(&new_entry(1).unwrap()).unwrap()
    }

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    #[test]
    fn a_signed_token_verifies_with_its_fields() {
        let keys = ring();
        let t = sign(&keys, Purpose::Confirm, Subject::Public(42), "news", Some(NOW + time::Duration::days(7)));
        let v = verify(&keys, &t, Purpose::Confirm, NOW).unwrap();
        let expires = Some((NOW + time::Duration::days(7)).unix_timestamp());
        assert_eq!(
            v,
            VerifiedToken {
                purpose: Purpose::Confirm,
                subject: Subject::Public(42),
                list_id: "news".into(),
                key_id: 1,
                expires
            }
        );
    }

    #[test]
    fn tampered_truncated_and_wrong_purpose_tokens_are_invalid() {
        let keys = ring();
        let t = sign(&keys, Purpose::Confirm, Subject::Public(42), "news", Some(NOW + time::Duration::days(7)));
        assert_eq!(verify(&keys, &t, Purpose::Unsubscribe, NOW), Err(TokenError::Invalid));
        assert_eq!(verify(&keys, &t[..t.len() - 1], Purpose::Confirm, NOW), Err(TokenError::Invalid));
        assert_eq!(verify(&keys, "", Purpose::Confirm, NOW), Err(TokenError::Invalid));
        assert_eq!(verify(&keys, ".", Purpose::Confirm, NOW), Err(TokenError::Invalid));
        assert_eq!(verify(&keys, &format!("{t}="), Purpose::Confirm, NOW), Err(TokenError::Invalid));
        // Flip one character of the payload: a different subscription id, same tag.
        let mut bytes = t.clone().into_bytes();
        bytes[8] = if bytes[8] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            verify(&keys, std::str::from_utf8(&bytes).unwrap(), Purpose::Confirm, NOW),
            Err(TokenError::Invalid)
        );
        // The layout byte is signed too: a layout 2 token relabelled as
        // layout 1 (its concealed id read as a row id) is refused.
        let (payload, tag) = t.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        raw[0] = 1;
        let relabelled = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(verify(&keys, &relabelled, Purpose::Confirm, NOW), Err(TokenError::Invalid));
        // Signed with a key we do not have.
        assert_eq!(verify(&ring(), &t, Purpose::Confirm, NOW), Err(TokenError::Invalid));
        assert_eq!(verify(&keys, &"A".repeat(MAX_TOKEN_LEN + 1), Purpose::Confirm, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn confirm_tokens_expire_and_unsubscribe_tokens_never_do() {
        let keys = ring();
        let t = sign(&keys, Purpose::Confirm, Subject::Public(1), "news", Some(NOW));
        assert_eq!(verify(&keys, &t, Purpose::Confirm, NOW), Err(TokenError::Expired { list_id: "news".into() }));
        let u = sign(&keys, Purpose::Unsubscribe, Subject::Public(1), "news", None);
        assert!(verify(&keys, &u, Purpose::Unsubscribe, datetime!(2099-01-01 0:00 UTC)).is_ok());
    }

    #[test]
    fn form_tokens_need_a_minimum_age_and_expire() {
        let keys = ring();
        let (min, max) = (crate::config::Span::seconds(2), crate::config::Span::seconds(3600));
        let t = sign_form(&keys, "news", NOW, max);
        assert!(!check_form(&keys, &t, "news", NOW, min), "submitted at once: a machine");
        assert!(check_form(&keys, &t, "news", NOW + time::Duration::seconds(2), min));
        assert!(!check_form(&keys, &t, "other", NOW + time::Duration::seconds(5), min), "another list's form");
        assert!(!check_form(&keys, &t, "news", NOW + time::Duration::seconds(3600), min), "stale page");
        let confirm = sign(
            &keys,
            Purpose::Confirm,
            Subject::Sequential(NOW.unix_timestamp() - 10),
            "news",
            Some(NOW + time::Duration::days(1)),
        );
        assert!(!check_form(&keys, &confirm, "news", NOW, min), "another purpose");
    }

    #[test]
    fn re_encoded_tokens_are_refused() {
        let keys = ring();
        let t = sign(&keys, Purpose::Unsubscribe, Subject::Public(7), "news", None);
        let (payload, tag) = t.split_once('.').unwrap();
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let raw_payload = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let raw_tag = URL_SAFE_NO_PAD.decode(tag).unwrap();
        for other in [
            format!("{}.{}", URL_SAFE.encode(&raw_payload), URL_SAFE.encode(&raw_tag)),
            format!("{}.{}", STANDARD.encode(&raw_payload), STANDARD.encode(&raw_tag)),
            format!("{payload}.{tag}="),
            format!("{payload}..{tag}"),
            format!(" {t}"),
        ] {
            if other != t {
                assert_eq!(verify(&keys, &other, Purpose::Unsubscribe, NOW), Err(TokenError::Invalid), "{other}");
            }
        }
    }

    #[test]
    fn old_tokens_keep_working_after_key_rotation() {
        let first = new_entry(1).unwrap();
        let old = KeyRing::parse(&first).unwrap();
        let t = sign(&old, Purpose::Unsubscribe, Subject::Sequential(5), "news", None);
        let rotated = KeyRing::parse(&format!("{first}\n{}", new_entry(2).unwrap())).unwrap();
        assert_eq!(verify(&rotated, &t, Purpose::Unsubscribe, NOW).unwrap().key_id, 1);
        let fresh = sign(&rotated, Purpose::Unsubscribe, Subject::Public(5), "news", None);
        assert_eq!(verify(&rotated, &fresh, Purpose::Unsubscribe, NOW).unwrap().key_id, 2);
    }

    /// A token as listgate signed it before layout 2, byte by byte from the
    /// old layout table (not through `sign`), so the test stands for the
    /// links in mails already sent.
    fn layout_1_token(keys: &KeyRing, purpose: u8, row_id: i64, expires: i64, list: &str) -> String {
        let mut payload = vec![1, purpose];
        payload.extend_from_slice(&keys.current_id().to_be_bytes());
        payload.extend_from_slice(&row_id.to_be_bytes());
        payload.extend_from_slice(&expires.to_be_bytes());
        payload.extend_from_slice(list.as_bytes());
        let tag = hmac::sign(&keys.current().token, &payload);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    #[test]
    fn layout_1_confirm_and_unsubscribe_tokens_still_verify_by_row_id() {
        let keys = ring();
        let expires = (NOW + time::Duration::days(7)).unix_timestamp();
        let confirm = verify(&keys, &layout_1_token(&keys, b'c', 41, expires, "news"), Purpose::Confirm, NOW).unwrap();
        assert_eq!(
            (confirm.subject, confirm.list_id.as_str(), confirm.expires),
            (Subject::Sequential(41), "news", Some(expires))
        );
        let unsubscribe =
            verify(&keys, &layout_1_token(&keys, b'u', 42, 0, "news"), Purpose::Unsubscribe, NOW).unwrap();
        assert_eq!((unsubscribe.subject, unsubscribe.expires), (Subject::Sequential(42), None));
        assert_eq!(
            sign(&keys, Purpose::Unsubscribe, Subject::Sequential(42), "news", None),
            layout_1_token(&keys, b'u', 42, 0, "news")
        );
    }

    #[test]
    fn a_new_token_carries_the_row_id_concealed_and_gives_it_back() {
        let keys = ring();
        let payload_id = |t: &str| {
            let payload = URL_SAFE_NO_PAD.decode(t.split_once('.').unwrap().0).unwrap();
            assert_eq!(payload[0], 2, "layout 2");
            i64::from_be_bytes(payload[4..12].try_into().unwrap())
        };
        let tokens: Vec<String> =
            (1..=3).map(|id| sign(&keys, Purpose::Unsubscribe, Subject::Public(id), "news", None)).collect();
        let fields: Vec<i64> = tokens.iter().map(|t| payload_id(t)).collect();
        for (field, id) in fields.iter().zip(1..=3_i64) {
            assert!(field.wrapping_sub(id).unsigned_abs() > 1 << 32, "field {field:#x} reveals row id {id}");
        }
        assert!(
            fields[1].wrapping_sub(fields[0]).unsigned_abs() > 1 << 32,
            "consecutive ids are unrelated: {fields:x?}"
        );
        for (t, id) in tokens.iter().zip(1..=3) {
            assert_eq!(verify(&keys, t, Purpose::Unsubscribe, NOW).unwrap().subject, Subject::Public(id));
        }
        assert_eq!(tokens[0].len(), layout_1_token(&keys, b'u', 1, 0, "news").len(), "no longer than before");
    }

    #[test]
    fn the_concealment_is_a_keyed_bijection() {
        let (a, b) = (ring(), ring());
        for id in [0, 1, 2, 41, i64::MAX, -1, i64::MIN, 0x1234_5678_9abc_def0] {
            let concealed = conceal(&a.current().conceal, id);
            assert_eq!(reveal(&a.current().conceal, concealed), id);
            assert_ne!(concealed, conceal(&b.current().conceal, id), "another key, another value");
        }
        let distinct: std::collections::HashSet<i64> =
            (0..10_000).map(|id| conceal(&a.current().conceal, id)).collect();
        assert_eq!(distinct.len(), 10_000);
    }
}
