//! The form parser: any body under any of the content types listgate reads
//! must give fields or an error, never a panic; the fields then go through
//! the same checks a request's do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listgate::domain::{Email, Name};
use listgate::http::forms;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = ["application/x-www-form-urlencoded", "application/json", "", "multipart/form-data; boundary=b"]
        [usize::from(selector) % 4];
    let _ = forms::is_one_click(content_type, body);
    if let Ok(fields) = forms::parse_signup(content_type, body, "website") {
        if let Some(email) = &fields.email {
            let _ = Email::parse(email);
        }
        let _ = Name::parse(fields.name.as_deref());
    }
});
