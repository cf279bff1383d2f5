//! The little DER that RFC 3161 needs: writing one fixed request, reading
//! the few fields of a reply that listgate checks. Hand-rolled because the
//! structures are fixed and small (the request is 69 bytes; the reply is
//! read down to six fields), and a minimal reader that refuses everything
//! it does not expect is easier to trust than a general ASN.1 stack.
//!
//! One element is a TLV, `tag length content`:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | tag: class (2 bits), constructed (1 bit), number (5 bits, below 31: the high-tag form is refused) |
//! | 1 | length below 128; or `0x80 + n` and then n (1 to 4) bytes of length, big-endian, the shortest form (DER) |
//! | length | content: for a constructed tag, more TLVs |
//!
//! The indefinite length (`0x80` alone, BER) is refused, as are lengths
//! that run past their enclosing element: a reply is read only within the
//! bytes it came in, whatever it claims.

/// Universal tags listgate reads or writes.
pub const BOOLEAN: u8 = 0x01;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const UTF8_STRING: u8 = 0x0c;
pub const GENERALIZED_TIME: u8 = 0x18;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
/// `[0]` and `[1]`, context-specific and constructed (EXPLICIT tags, and
/// IMPLICIT ones over SEQUENCE or SET).
pub const CONTEXT_0: u8 = 0xa0;
pub const CONTEXT_1: u8 = 0xa1;

/// One element read: its tag, its content, and all of its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    /// Tag, length and content: the element as it came.
    pub whole: &'a [u8],
}

/// Reads elements one after another out of a slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The next element's tag, without reading it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.bytes.first().copied()
    }

    /// The next element (not an `Iterator`: each read can fail, and a failure ends the reply).
    pub fn read(&mut self) -> Result<Tlv<'a>, String> {
        let (&tag, rest) = self.bytes.split_first().ok_or("ends where an element was expected")?;
        if tag & 0x1f == 0x1f {
            return Err(format!("tag {tag:#04x} uses the high-tag form, which no RFC 3161 field does"));
        }
        let (&first, rest) = rest.split_first().ok_or("ends inside an element's length")?;
        let (length, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x80 => return Err("an indefinite length (BER), which DER forbids".into()),
            0x81..=0x84 => {
                let n = usize::from(first - 0x80);
                if rest.len() < n {
                    return Err("ends inside an element's length".into());
                }
                let (digits, rest) = rest.split_at(n);
                let length = digits.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                if digits[0] == 0 || length < 0x80 {
                    return Err("a length not in its shortest form, which DER forbids".into());
                }
                (length, rest)
            }
            _ => return Err("an element longer than any reply listgate accepts".into()),
        };
        if rest.len() < length {
            return Err(format!("an element of {length} bytes where only {} are left", rest.len()));
        }
        let header = self.bytes.len() - rest.len();
        let whole = &self.bytes[..header + length];
        let content = &rest[..length];
        self.bytes = &rest[length..];
        Ok(Tlv { tag, content, whole })
    }

    /// The next element, which must have `tag`; `what` names it in the error.
    pub fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, String> {
        let tlv = self.read().map_err(|e| format!("{what}: {e}"))?;
        if tlv.tag != tag {
            return Err(format!("{what}: expected tag {tag:#04x}, found {:#04x}", tlv.tag));
        }
        Ok(tlv)
    }

    /// The next element if it has `tag`; otherwise nothing is read.
    pub fn optional(&mut self, tag: u8, what: &str) -> Result<Option<Tlv<'a>>, String> {
        if self.peek_tag() == Some(tag) { self.expect(tag, what).map(Some) } else { Ok(None) }
    }

    /// Fails unless every byte was read: trailing bytes are not DER.
    pub fn finish(&self, what: &str) -> Result<(), String> {
        if self.bytes.is_empty() { Ok(()) } else { Err(format!("{what}: {} bytes after its end", self.bytes.len())) }
    }
}

/// The reader over an element's content (for a constructed element).
pub fn inside<'a>(tlv: &Tlv<'a>) -> Reader<'a> {
    Reader::new(tlv.content)
}

/// One element: `tag`, the shortest length, `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let digits: Vec<u8> = length.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 + digits.len() as u8);
        out.extend_from_slice(&digits);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER's content for the big-endian `magnitude`: the
/// shortest two's complement form (a leading 0x00 when the top bit is set).
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match magnitude.iter().position(|&b| b != 0) {
        Some(first) => &magnitude[first..],
        None => &[0],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    content
}

/// An INTEGER's content as a magnitude, without leading zero bytes; refuses
/// a negative number (serial numbers and nonces are positive).
pub fn integer_magnitude(content: &[u8], what: &str) -> Result<Vec<u8>, String> {
    match content.first() {
        None => Err(format!("{what}: an empty INTEGER")),
        Some(b) if b & 0x80 != 0 => Err(format!("{what}: a negative INTEGER")),
        Some(_) => {
            let first = content.iter().position(|&b| b != 0).unwrap_or(content.len() - 1);
            Ok(content[first..].to_vec())
        }
    }
}

/// A small INTEGER (a version, a status) as a number.
pub fn small_integer(content: &[u8], what: &str) -> Result<u64, String> {
    let magnitude = integer_magnitude(content, what)?;
    if magnitude.len() > 8 {
        return Err(format!("{what}: an INTEGER too large"));
    }
    Ok(magnitude.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_written_in_their_shortest_form_and_read_back() {
        for length in [0, 1, 127, 128, 255, 256, 65_535, 65_536] {
            let element = tlv(OCTET_STRING, &vec![7; length]);
            let mut reader = Reader::new(&element);
            let read = reader.read().unwrap();
            assert_eq!((read.tag, read.content.len(), read.whole.len()), (OCTET_STRING, length, element.len()));
            assert!(reader.is_empty());
        }
        assert_eq!(tlv(SEQUENCE, &[0; 200])[..3], [0x30, 0x81, 200]);
    }

    #[test]
    fn malformed_elements_are_refused_not_read_past() {
        for (bytes, why) in [
            (&[][..], "ends where"),
            (&[0x30][..], "length"),
            (&[0x30, 0x80, 0, 0][..], "indefinite"),
            (&[0x30, 0x81, 0x05, 1, 2, 3, 4, 5][..], "shortest"),
            (&[0x30, 0x82, 0x00, 0x90][..], "shortest"),
            (&[0x04, 0x05, 1, 2][..], "only 2 are left"),
            (&[0x04, 0x84, 0x7f, 0xff, 0xff, 0xff, 0][..], "only 1 are left"),
            (&[0x04, 0x85, 1, 1, 1, 1, 1][..], "longer than"),
            (&[0x1f, 0x81, 0x00, 0x00][..], "high-tag"),
        ] {
            let e = Reader::new(bytes).read().unwrap_err();
            assert!(e.contains(why), "{bytes:02x?}: {e}");
        }
    }

    #[test]
    fn integers_are_unsigned_and_shortest() {
        assert_eq!(unsigned_integer(&[0x00, 0x00, 0x7f]), [0x7f]);
        assert_eq!(unsigned_integer(&[0x80, 0x01]), [0x00, 0x80, 0x01]);
        assert_eq!(unsigned_integer(&[0, 0]), [0]);
        assert_eq!(integer_magnitude(&[0x00, 0x80, 0x01], "n").unwrap(), [0x80, 0x01]);
        assert_eq!(integer_magnitude(&[0x00], "n").unwrap(), [0x00]);
        assert!(integer_magnitude(&[0xff], "n").unwrap_err().contains("negative"));
        assert!(integer_magnitude(&[], "n").is_err());
        assert_eq!(small_integer(&[0x02], "status").unwrap(), 2);
        assert!(small_integer(&[1; 9], "status").is_err());
    }
}
