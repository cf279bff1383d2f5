//! The token parser: any string, verified for every purpose, must not panic,
//! and a token that verifies must be exactly the one listgate would sign for
//! its fields, in its own layout (no second encoding of the same token is
//! accepted).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use listgate::keys::KeyRing;
use listgate::token::{self, Purpose};

static KEYS: LazyLock<KeyRing> =
    LazyLock::new(|| KeyRing::parse("1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").expect("test key"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
    for purpose in [Purpose::Confirm, Purpose::Unsubscribe, Purpose::Form] {
        if let Ok(v) = token::verify(&KEYS, text, purpose, now) {
            let expires = v.expires.map(|e| time::OffsetDateTime::from_unix_timestamp(e).expect("time"));
            assert_eq!(token::sign(&KEYS, purpose, v.subject, &v.list_id, expires), text);
        }
    }
});
