//! A timestamp authority's reply, and a stored token: any bytes are read
//! or refused, never a panic, and never read past what came. A reply that
//! passes is granted for the imprint and nonce asked for, and its token
//! reads back alone to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listgate::anchor::tsa;

/// The imprint and nonce of the corpus's seed (tests/fixtures/tsa/).
const IMPRINT: [u8; 32] = [
    0x72, 0x44, 0x9c, 0xff, 0xd5, 0x34, 0x65, 0xf4, 0x24, 0x5e, 0x2c, 0x7e, 0x15, 0xc8, 0x84, 0x70, 0xd6, 0x31, 0x4b,
    0xb6, 0x27, 0x3a, 0xed, 0x44, 0xdc, 0x01, 0x67, 0x22, 0xf4, 0x36, 0x11, 0x8f,
];
const NONCE: [u8; 8] = [0x56, 0x1f, 0x37, 0x1d, 0x49, 0x5f, 0xba, 0x45];

fuzz_target!(|data: &[u8]| {
    let _ = tsa::read_token(data);
    if let Ok(granted) = tsa::read_reply(data, &IMPRINT, &NONCE) {
        assert!(granted.info.sha256);
        assert_eq!(granted.info.imprint, IMPRINT);
        assert!(data.ends_with(&granted.token));
        assert_eq!(tsa::read_token(&granted.token).expect("a granted token reads alone"), granted.info);
    }
});
