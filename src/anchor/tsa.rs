//! RFC 3161 on the wire: the `TimeStampReq` listgate sends, and the checks
//! of the `TimeStampResp` it gets back. Pure functions over bytes; the HTTP
//! exchange is `anchor::Tsa`'s.
//!
//! The request (69 bytes, as `openssl ts -query -sha256 -cert` writes it):
//!
//! ```text
//! TimeStampReq ::= SEQUENCE {
//!     version         INTEGER 1,
//!     messageImprint  SEQUENCE { SEQUENCE { OID sha256, NULL }, OCTET STRING (32 bytes) },
//!     nonce           INTEGER (64 random bits),
//!     certReq         BOOLEAN TRUE }      -- the TSA's certificate goes into the token
//! ```
//!
//! The reply, read down to what listgate checks:
//!
//! ```text
//! TimeStampResp ::= SEQUENCE {
//!     status          SEQUENCE { INTEGER (0 granted, 1 grantedWithMods, …), [statusString], [failInfo] },
//!     timeStampToken  ContentInfo OPTIONAL }       -- what is stored
//! ContentInfo ::= SEQUENCE { OID signedData, [0] EXPLICIT SignedData }
//! SignedData  ::= SEQUENCE { version, digestAlgorithms SET,
//!     encapContentInfo SEQUENCE { OID id-ct-TSTInfo, [0] EXPLICIT OCTET STRING (DER TSTInfo) },
//!     [0] certificates, [1] crls, signerInfos SET }
//! TSTInfo ::= SEQUENCE { version INTEGER 1, policy OID,
//!     messageImprint (as in the request), serialNumber INTEGER, genTime GeneralizedTime,
//!     [accuracy SEQUENCE], [ordering BOOLEAN], [nonce INTEGER], [0] tsa, [1] extensions }
//! ```
//!
//! listgate does not check the TSA's signature: the token keeps it, with the
//! TSA's certificate, for `openssl ts -verify` (or any RFC 3161 tool) and the
//! TSA's CA certificate, which is the check that needs no trust in listgate.

use time::{Date, Month, PrimitiveDateTime, Time};

use super::der::{self, Reader};
use crate::clock::Timestamp;

/// The largest reply read: a token with the TSA's certificate chain is a
/// few KiB; more is refused unread.
pub const MAX_REPLY: usize = 64 * 1024;
/// `Content-Type` of a request and of a reply (RFC 3161, section 3.4).
pub const QUERY_TYPE: &str = "application/timestamp-query";
pub const REPLY_TYPE: &str = "application/timestamp-reply";

/// 2.16.840.1.101.3.4.2.1, SHA-256.
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// 1.2.840.113549.1.7.2, CMS signed data.
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 1.2.840.113549.1.9.16.1.4, id-ct-TSTInfo.
const TST_INFO: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04];

/// The DER `TimeStampReq` for a SHA-256 `imprint` with `nonce`.
pub fn request(imprint: &[u8; 32], nonce: &[u8; 8]) -> Vec<u8> {
    let algorithm = der::tlv(der::SEQUENCE, &[der::tlv(der::OID, SHA256), der::tlv(der::NULL, &[])].concat());
    let message_imprint = der::tlv(der::SEQUENCE, &[algorithm, der::tlv(der::OCTET_STRING, imprint)].concat());
    let body = [
        der::tlv(der::INTEGER, &[1]),
        message_imprint,
        der::tlv(der::INTEGER, &der::unsigned_integer(nonce)),
        der::tlv(der::BOOLEAN, &[0xff]),
    ]
    .concat();
    der::tlv(der::SEQUENCE, &body)
}

/// What a token says, as far as listgate reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TstInfo {
    /// Whether the imprint's algorithm is SHA-256 (the only one listgate asks for).
    pub sha256: bool,
    pub imprint: Vec<u8>,
    /// `serialNumber`, without leading zero bytes.
    pub serial: Vec<u8>,
    pub gen_time: Timestamp,
    /// `nonce`, without leading zero bytes, if the TSA put one in.
    pub nonce: Option<Vec<u8>>,
}

impl TstInfo {
    /// The serial number as listgate stores and shows it: lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }
}

/// A granted reply that passed every check: the token to store and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The DER `TimeStampToken` (the `ContentInfo`), exactly as the TSA sent it.
    pub token: Vec<u8>,
    pub info: TstInfo,
}

/// Reads a `TimeStampResp` and checks it answers our request: status
/// granted (0) or grantedWithMods (1), a token, a SHA-256 imprint equal to
/// `imprint`, and our `nonce`. Every other reply is refused, with why.
pub fn read_reply(reply: &[u8], imprint: &[u8; 32], nonce: &[u8; 8]) -> Result<Granted, String> {
    let mut outer = Reader::new(reply);
    let response = outer.expect(der::SEQUENCE, "TimeStampResp")?;
    outer.finish("TimeStampResp")?;
    let mut fields = der::inside(&response);
    let status_info = fields.expect(der::SEQUENCE, "PKIStatusInfo")?;
    check_status(&status_info)?;
    let token = fields.expect(der::SEQUENCE, "timeStampToken").map_err(|e| format!("granted without a token: {e}"))?;
    fields.finish("TimeStampResp")?;
    let info = read_token(token.whole)?;
    if !info.sha256 {
        return Err("the token's imprint is not SHA-256, which listgate asked for".into());
    }
    if info.imprint != imprint {
        return Err(format!(
            "the token's imprint {} is not the head's {}: it stamps something else",
            hex::encode(&info.imprint),
            hex::encode(imprint)
        ));
    }
    let ours = der::integer_magnitude(&der::unsigned_integer(nonce), "nonce")?;
    match &info.nonce {
        Some(theirs) if *theirs == ours => {}
        Some(theirs) => {
            return Err(format!(
                "the token's nonce {} is not ours {}: a replayed or foreign reply",
                hex::encode(theirs),
                hex::encode(&ours)
            ));
        }
        None => return Err("the token carries no nonce, though ours was sent".into()),
    }
    Ok(Granted { token: token.whole.to_vec(), info })
}

/// PKIStatus 0 or 1; any other is refused, with the TSA's own words.
fn check_status(status_info: &der::Tlv<'_>) -> Result<(), String> {
    let mut fields = der::inside(status_info);
    let status = der::small_integer(fields.expect(der::INTEGER, "PKIStatus")?.content, "PKIStatus")?;
    if status <= 1 {
        return Ok(());
    }
    let name = match status {
        2 => "rejection",
        3 => "waiting",
        4 => "revocationWarning",
        5 => "revocationNotification",
        _ => "an unknown status",
    };
    let mut said = String::new();
    if let Ok(Some(texts)) = fields.optional(der::SEQUENCE, "statusString") {
        let mut texts = der::inside(&texts);
        while let Ok(text) = texts.expect(der::UTF8_STRING, "statusString") {
            said.push_str(&String::from_utf8_lossy(text.content));
        }
    }
    // The TSA's words reach the operator's terminal: printable, and short.
    let said: String =
        said.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect::<String>().trim().to_string();
    Err(if said.is_empty() {
        format!("the TSA refused: status {status} ({name})")
    } else {
        format!("the TSA refused: status {status} ({name}): {said}")
    })
}

/// Reads a stored `TimeStampToken` (a `ContentInfo`) down to its `TSTInfo`.
pub fn read_token(token: &[u8]) -> Result<TstInfo, String> {
    let mut outer = Reader::new(token);
    let content_info = outer.expect(der::SEQUENCE, "ContentInfo")?;
    outer.finish("ContentInfo")?;
    let mut fields = der::inside(&content_info);
    if fields.expect(der::OID, "contentType")?.content != SIGNED_DATA {
        return Err("the token is not CMS signed data".into());
    }
    let explicit = fields.expect(der::CONTEXT_0, "content")?;
    let signed_data = der::inside(&explicit).expect(der::SEQUENCE, "SignedData")?;
    let mut signed = der::inside(&signed_data);
    signed.expect(der::INTEGER, "SignedData version")?;
    signed.expect(der::SET, "digestAlgorithms")?;
    let encapsulated = signed.expect(der::SEQUENCE, "encapContentInfo")?;
    let mut encapsulated = der::inside(&encapsulated);
    if encapsulated.expect(der::OID, "eContentType")?.content != TST_INFO {
        return Err("the signed content is not a TSTInfo".into());
    }
    let explicit = encapsulated.expect(der::CONTEXT_0, "eContent")?;
    let octets = der::inside(&explicit).expect(der::OCTET_STRING, "eContent")?;
    read_tst_info(octets.content)
}

fn read_tst_info(bytes: &[u8]) -> Result<TstInfo, String> {
    let mut outer = Reader::new(bytes);
    let info = outer.expect(der::SEQUENCE, "TSTInfo")?;
    let mut fields = der::inside(&info);
    let version = der::small_integer(fields.expect(der::INTEGER, "TSTInfo version")?.content, "TSTInfo version")?;
    if version != 1 {
        return Err(format!("TSTInfo version {version}, not 1"));
    }
    fields.expect(der::OID, "policy")?;
    let imprint = fields.expect(der::SEQUENCE, "messageImprint")?;
    let mut imprint = der::inside(&imprint);
    let algorithm = imprint.expect(der::SEQUENCE, "hashAlgorithm")?;
    let sha256 = der::inside(&algorithm).expect(der::OID, "hashAlgorithm")?.content == SHA256;
    let hashed = imprint.expect(der::OCTET_STRING, "hashedMessage")?.content.to_vec();
    let serial = der::integer_magnitude(fields.expect(der::INTEGER, "serialNumber")?.content, "serialNumber")?;
    let gen_time = generalized_time(fields.expect(der::GENERALIZED_TIME, "genTime")?.content)?;
    fields.optional(der::SEQUENCE, "accuracy")?;
    fields.optional(der::BOOLEAN, "ordering")?;
    let nonce =
        fields.optional(der::INTEGER, "nonce")?.map(|n| der::integer_magnitude(n.content, "nonce")).transpose()?;
    Ok(TstInfo { sha256, imprint: hashed, serial, gen_time, nonce })
}

/// `YYYYMMDDHHMMSS[.f…]Z`, as RFC 3161 requires genTime (UTC, `Z`), to
/// the millisecond (finer digits are cut, as listgate's times are).
fn generalized_time(content: &[u8]) -> Result<Timestamp, String> {
    let bad = || format!("genTime {:?} is not YYYYMMDDHHMMSS[.fff]Z", String::from_utf8_lossy(content));
    let text = std::str::from_utf8(content).map_err(|_| bad())?;
    let body = text.strip_suffix('Z').ok_or_else(bad)?;
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let n = |range: std::ops::Range<usize>| whole[range].parse::<u16>().map_err(|_| bad());
    let month = Month::try_from(n(4..6)? as u8).map_err(|_| bad())?;
    let date = Date::from_calendar_date(i32::from(n(0..4)?), month, n(6..8)? as u8).map_err(|_| bad())?;
    let millis: u16 = format!("{fraction:0<3}")[..3].parse().map_err(|_| bad())?;
    let time = Time::from_hms_milli(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8, millis).map_err(|_| bad())?;
    Ok(Timestamp::from(PrimitiveDateTime::new(date, time).assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by OpenSSL 3.0 (`openssl ts -query -data head.txt -sha256 -cert`
    /// and `openssl ts -reply` with a throwaway CA, as tests/api/anchors.rs
    /// does), for `head.txt` = `3 aaaa…` (64 `a`): the query, the granted
    /// reply and a rejection (a SHA-1 query to a TSA that takes only SHA-256).
    const QUERY: &[u8] = include_bytes!("../../tests/fixtures/tsa/query.tsq");
    const GRANTED: &[u8] = include_bytes!("../../tests/fixtures/tsa/granted.tsr");
    const REJECTED: &[u8] = include_bytes!("../../tests/fixtures/tsa/rejected.tsr");
    const NONCE: [u8; 8] = [0x56, 0x1f, 0x37, 0x1d, 0x49, 0x5f, 0xba, 0x45];

    fn imprint() -> [u8; 32] {
        super::super::message_digest(&crate::proof::Head { events: 3, link: "a".repeat(64) })
    }

    #[test]
    fn the_request_is_byte_for_byte_what_openssl_writes() {
        assert_eq!(request(&imprint(), &NONCE), QUERY);
        // A nonce with its top bit set stays positive.
        let high = request(&imprint(), &[0x80, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(high.len(), QUERY.len() + 1);
        assert!(high.windows(11).any(|w| w == [0x02, 0x09, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn openssls_granted_reply_is_read_and_its_token_kept_whole() {
        let granted = read_reply(GRANTED, &imprint(), &NONCE).unwrap();
        assert_eq!(granted.info.serial_hex(), "02");
        assert_eq!(granted.info.gen_time.to_string(), "2026-12-01T10:44:49.000Z");
        assert!(granted.info.sha256);
        // The token is the reply's second element, byte for byte.
        assert!(GRANTED.ends_with(&granted.token));
        assert_eq!(read_token(&granted.token).unwrap(), granted.info);
    }

    #[test]
    fn a_reply_with_another_nonce_or_imprint_is_refused() {
        let mut other_nonce = NONCE;
        other_nonce[7] ^= 1;
        let e = read_reply(GRANTED, &imprint(), &other_nonce).unwrap_err();
        assert!(e.contains("nonce 561f371d495fba45 is not ours 561f371d495fba44"), "{e}");
        let mut other_imprint = imprint();
        other_imprint[0] ^= 1;
        let e = read_reply(GRANTED, &other_imprint, &NONCE).unwrap_err();
        assert!(e.contains("it stamps something else"), "{e}");
    }

    #[test]
    fn a_rejection_is_refused_with_the_tsas_words() {
        let e = read_reply(REJECTED, &imprint(), &NONCE).unwrap_err();
        assert_eq!(e, "the TSA refused: status 2 (rejection): Message digest algorithm is not supported.");
        // Status 3 (waiting) without words.
        let waiting = der::tlv(der::SEQUENCE, &der::tlv(der::SEQUENCE, &der::tlv(der::INTEGER, &[3])));
        assert_eq!(read_reply(&waiting, &imprint(), &NONCE).unwrap_err(), "the TSA refused: status 3 (waiting)");
        // Granted, but no token.
        let empty = der::tlv(der::SEQUENCE, &der::tlv(der::SEQUENCE, &der::tlv(der::INTEGER, &[0])));
        assert!(read_reply(&empty, &imprint(), &NONCE).unwrap_err().starts_with("granted without a token"));
    }

    #[test]
    fn garbage_truncations_and_trailing_bytes_are_refused_without_a_panic() {
        for garbage in [&b""[..], b"<html>502 Bad Gateway</html>", &[0x30, 0x03, 0x02, 0x01], &[0xff; 64]] {
            assert!(read_reply(garbage, &imprint(), &NONCE).is_err(), "{garbage:02x?}");
        }
        for cut in 0..GRANTED.len() {
            assert!(read_reply(&GRANTED[..cut], &imprint(), &NONCE).is_err(), "cut at {cut}");
        }
        let mut trailing = GRANTED.to_vec();
        trailing.push(0);
        assert!(read_reply(&trailing, &imprint(), &NONCE).unwrap_err().contains("after its end"));
        // Every single flipped byte is refused or read without a panic;
        // none passes as another nonce's or imprint's reply.
        for i in 0..GRANTED.len() {
            let mut flipped = GRANTED.to_vec();
            flipped[i] ^= 0x55;
            if let Ok(granted) = read_reply(&flipped, &imprint(), &NONCE) {
                assert_eq!(granted.info.imprint, imprint());
            }
        }
    }

    #[test]
    fn gen_times_are_utc_to_the_millisecond() {
        let t = |s: &str| generalized_time(s.as_bytes()).map(|t| t.to_string());
        assert_eq!(t("20261201104449Z").unwrap(), "2026-12-01T10:44:49.000Z");
        assert_eq!(t("20261201104449.5Z").unwrap(), "2026-12-01T10:44:49.500Z");
        assert_eq!(t("20261201104449.123456Z").unwrap(), "2026-12-01T10:44:49.123Z");
        for bad in ["20261201104449", "2026120110444Z", "20261301104449Z", "20261201104449+0100", "2026-12-01T10Z"] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }
}
