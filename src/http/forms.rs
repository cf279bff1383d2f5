//! Reading request bodies into fields: pure functions of bytes, so the
//! fuzzer and property tests reach them without HTTP.

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormError {
    /// Not valid urlencoded/JSON, not UTF-8, or fields of the wrong type.
    Unreadable,
    /// Neither `application/x-www-form-urlencoded` nor `application/json`.
    UnsupportedType,
}

/// The fields of a signup, from a form or JSON, not yet checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SignupFields {
    pub email: Option<String>,
    pub list: Option<String>,
    pub name: Option<String>,
    /// The honeypot field's value (its name is configured).
    pub honeypot: Option<String>,
    pub form_token: Option<String>,
}

/// The media type of a `Content-Type` value, lowercase, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Pairs from a urlencoded body or query string. Strict where browsers'
/// parsers are lenient: a value that is not UTF-8 once decoded is an error,
/// not silently replaced by U+FFFD.
pub fn pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    bytes
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
    let spaced: Vec<u8> = raw.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
    percent_encoding::percent_decode(&spaced).decode_utf8().map(|s| s.into_owned()).map_err(|_| FormError::Unreadable)
}

/// The first value of `key`: with repeated keys the first wins, as in most frameworks.
pub fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Reads a signup body; a missing Content-Type is read as a form.
pub fn parse_signup(content_type: &str, body: &[u8], honeypot: &str) -> Result<SignupFields, FormError> {
    match media_type(content_type).as_str() {
        "application/json" => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| FormError::Unreadable)?;
            let object = value.as_object().ok_or(FormError::Unreadable)?;
            let field = |key: &str| -> Result<Option<String>, FormError> {
                match object.get(key) {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(FormError::Unreadable),
                }
            };
            Ok(SignupFields {
                email: field("email")?,
                list: field("list")?,
                name: field("name")?,
                honeypot: field(honeypot)?,
                form_token: field("form_token")?,
            })
        }
        "application/x-www-form-urlencoded" | "" => {
            let pairs = pairs(body)?;
            let get = |key: &str| first(&pairs, key).map(str::to_string);
            Ok(SignupFields {
                email: get("email"),
                list: get("list"),
                name: get("name"),
                honeypot: get(honeypot),
                form_token: get("form_token"),
            })
        }
        _ => Err(FormError::UnsupportedType),
    }
}

/// Whether a body is the RFC 8058 one-click request, urlencoded or multipart.
/// (Only the recorded method depends on it: any POST with a valid token unsubscribes.)
pub fn is_one_click(content_type: &str, body: &[u8]) -> bool {
    if media_type(content_type) == "multipart/form-data" {
        let text = String::from_utf8_lossy(body);
        return text.contains("name=\"List-Unsubscribe\"") && text.contains("One-Click");
    }
    pairs(body).is_ok_and(|pairs| first(&pairs, "List-Unsubscribe") == Some("One-Click"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_json_give_the_same_fields() {
        let form = parse_signup(
            "application/x-www-form-urlencoded; charset=utf-8",
            b"email=a%40b.org&name=J%C3%BCrgen&website=&email=second",
            "website",
        )
        .unwrap();
        let json =
            parse_signup("application/json", br#"{"email":"a@b.org","name":"J\u00fcrgen","website":""}"#, "website")
                .unwrap();
        assert_eq!(form, json);
        assert_eq!(form.email.as_deref(), Some("a@b.org"), "first of repeated keys");
    }

    #[test]
    fn unreadable_bodies_are_errors_not_panics() {
        assert_eq!(parse_signup("application/json", b"{\"email\": 1}", "w"), Err(FormError::Unreadable));
        assert_eq!(parse_signup("application/json", b"\xff", "w"), Err(FormError::Unreadable));
        assert_eq!(parse_signup("", b"email=%FF", "w"), Err(FormError::Unreadable));
        assert_eq!(parse_signup("", b"name=\xc3", "w"), Err(FormError::Unreadable));
        assert_eq!(
            pairs(b"a=1+2%2B3&&b&=x").unwrap(),
            vec![("a".into(), "1 2+3".into()), ("b".into(), "".into()), ("".into(), "x".into())]
        );
        assert_eq!(parse_signup("text/plain", b"email=a", "w"), Err(FormError::UnsupportedType));
    }

    #[test]
    fn one_click_is_recognised_in_both_encodings() {
        assert!(is_one_click("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click"));
        assert!(is_one_click("", b"List-Unsubscribe=One-Click"));
        let multipart =
            b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n";
        assert!(is_one_click("multipart/form-data; boundary=b", multipart));
        assert!(!is_one_click("application/x-www-form-urlencoded", b""));
    }
}
