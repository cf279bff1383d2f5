//! The address parser: never panics, and what it accepts is consistent:
//! within the length limit, free of control characters, deliverable in
//! ASCII, and parsing its ASCII form gives the same person. The operator's
//! lenient key agrees with it for every spelling: as entered, in ASCII, in
//! ASCII upper case.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listgate::domain::{Email, EmailKey, MAX_EMAIL_CHARS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(email) = Email::parse(text) {
        assert!(email.as_str().chars().count() <= MAX_EMAIL_CHARS);
        assert!(!email.as_str().chars().any(char::is_control));
        assert!(email.ascii().is_ascii());
        let key = email.key();
        assert_eq!(key.as_str(), key.as_str().to_lowercase());
        let again = Email::parse(email.ascii()).expect("the ASCII form of an accepted address is accepted");
        assert_eq!(again.key(), key);
        for spelling in [email.as_str().to_string(), email.ascii().to_string(), email.ascii().to_ascii_uppercase()] {
            assert_eq!(&EmailKey::lenient(&spelling), key, "{spelling}");
        }
    }
});
