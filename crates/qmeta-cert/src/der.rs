//! A minimal DER writer and a bounded DER reader: just the types this format
//! uses (SEQUENCE, SET, INTEGER, OCTET STRING, BIT STRING, OID, BOOLEAN,
//! strings, times). Definite lengths only, as DER requires.

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const BOOLEAN: u8 = 0x01;
pub(crate) const UTF8_STRING: u8 = 0x0c;
pub(crate) const UTC_TIME: u8 = 0x17;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
/// `[0]` constructed, context-specific (TBSCertificate version).
pub(crate) const CTX0_CONSTRUCTED: u8 = 0xa0;
/// `[3]` constructed, context-specific (TBSCertificate extensions).
pub(crate) const CTX3_CONSTRUCTED: u8 = 0xa3;
/// `[0]` primitive, context-specific (AKI keyIdentifier, IMPLICIT).
pub(crate) const CTX0_PRIMITIVE: u8 = 0x80;

/// Bytes taken by a DER length field for `len` content bytes.
pub(crate) fn len_len(len: usize) -> usize {
    match len {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xff_ffff => 4,
        _ => 5,
    }
}

/// Total size of a TLV with `len` content bytes (one-byte tag).
pub(crate) fn tlv_len(len: usize) -> usize {
    1 + len_len(len) + len
}

/// Writes a tag and a DER length.
pub(crate) fn header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    let n = len_len(len);
    if n == 1 {
        out.push(len as u8);
    } else {
        out.push(0x80 | (n - 1) as u8);
        for i in (0..n - 1).rev() {
            out.push((len >> (8 * i)) as u8);
        }
    }
}

/// Writes a complete TLV.
pub(crate) fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    header(out, tag, content.len());
    out.extend_from_slice(content);
}

/// Content length of a non-negative INTEGER holding `v` (minimal encoding).
pub(crate) fn uint_content_len(v: u64) -> usize {
    let bytes = (64 - v.leading_zeros() as usize).div_ceil(8).max(1);
    // A set top bit needs a 0x00 prefix to stay positive.
    if (v >> (8 * bytes - 1)) & 1 == 1 {
        bytes + 1
    } else {
        bytes
    }
}

/// Writes a non-negative INTEGER.
pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    let n = uint_content_len(v);
    header(out, INTEGER, n);
    for i in (0..n).rev() {
        // Shifting by 64 (the prefix byte) yields 0 via checked_shr.
        out.push(v.checked_shr(8 * i as u32).unwrap_or(0) as u8);
    }
}

/// Appends one OID arc in base-128.
pub(crate) fn oid_arc(out: &mut Vec<u8>, mut arc: u128) {
    let mut tmp = [0u8; 19];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (arc & 0x7f) as u8 | if i == tmp.len() - 1 { 0 } else { 0x80 };
        arc >>= 7;
        if arc == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Why a DER read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerError {
    /// The input ends inside a TLV.
    Incomplete,
    /// The bytes are not the expected DER.
    Invalid(&'static str),
}

/// A bounded reader over one DER buffer. Never allocates, never panics.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads one TLV with tag `tag`; returns its contents.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (&t, rest) = self.buf.split_first().ok_or(DerError::Incomplete)?;
        if t != tag {
            return Err(DerError::Invalid("unexpected tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Incomplete)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            // Lengths of this format fit in 3 bytes; 0x80 (indefinite) is not DER.
            if n == 0 || n > 3 {
                return Err(DerError::Invalid("unsupported length encoding"));
            }
            if rest.len() < n {
                return Err(DerError::Incomplete);
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if bytes[0] == 0 || len < 0x80 {
                return Err(DerError::Invalid("non-minimal length"));
            }
            len
        };
        if rest.len() < len {
            return Err(DerError::Incomplete);
        }
        let (content, rest) = rest.split_at(len);
        self.buf = rest;
        Ok(content)
    }

    /// Reads a non-negative INTEGER that fits in a u64.
    pub(crate) fn read_uint(&mut self) -> Result<u64, DerError> {
        let c = self.read(INTEGER)?;
        match c {
            [] => Err(DerError::Invalid("empty INTEGER")),
            [b, ..] if b & 0x80 != 0 => Err(DerError::Invalid("negative INTEGER")),
            [0, b, ..] if b & 0x80 == 0 => Err(DerError::Invalid("non-minimal INTEGER")),
            [0, rest @ ..] if rest.len() <= 8 => Ok(be_u64(rest)),
            _ if c.len() <= 8 => Ok(be_u64(c)),
            _ => Err(DerError::Invalid("INTEGER too large")),
        }
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DerError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DerError::Invalid("trailing bytes"))
        }
    }
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
}

/// Parses one minimally encoded base-128 OID arc that fills `bytes` exactly.
/// `None` when malformed or larger than `u64`.
pub(crate) fn parse_arc(bytes: &[u8]) -> Option<u64> {
    let (last, init) = bytes.split_last()?;
    if last & 0x80 != 0 || bytes[0] == 0x80 || init.iter().any(|b| b & 0x80 == 0) {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, b| {
        if acc >> 57 != 0 {
            return None;
        }
        Some((acc << 7) | u64::from(b & 0x7f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc_uint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        uint(&mut out, v);
        out
    }

    #[test]
    fn integers_are_minimal() {
        assert_eq!(enc_uint(0), [2, 1, 0]);
        assert_eq!(enc_uint(1), [2, 1, 1]);
        assert_eq!(enc_uint(0x7f), [2, 1, 0x7f]);
        assert_eq!(enc_uint(0x80), [2, 2, 0, 0x80]);
        assert_eq!(enc_uint(0x1234), [2, 2, 0x12, 0x34]);
        assert_eq!(enc_uint(u64::MAX), [2, 9, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        for v in [0, 1, 0x7f, 0x80, 0xff, 0x100, 1 << 40, u64::MAX - 1, u64::MAX] {
            let e = enc_uint(v);
            let mut r = Reader::new(&e);
            assert_eq!(r.read_uint(), Ok(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0x3000, 0xffff, 0x1_0000] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            tlv(&mut out, OCTET_STRING, &content);
            assert_eq!(out.len(), tlv_len(len));
            let mut r = Reader::new(&out);
            assert_eq!(r.read(OCTET_STRING).unwrap().len(), len);
            assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn reader_rejects_bad_der() {
        assert_eq!(Reader::new(&[]).read(SEQUENCE), Err(DerError::Incomplete));
        assert_eq!(Reader::new(&[0x30]).read(SEQUENCE), Err(DerError::Incomplete));
        assert_eq!(Reader::new(&[0x30, 2, 0]).read(SEQUENCE), Err(DerError::Incomplete));
        assert!(matches!(Reader::new(&[0x31, 0]).read(SEQUENCE), Err(DerError::Invalid(_))));
        assert!(matches!(Reader::new(&[0x30, 0x80]).read(SEQUENCE), Err(DerError::Invalid(_))));
        assert!(matches!(Reader::new(&[0x30, 0x81, 0x05]).read(SEQUENCE), Err(DerError::Invalid(_))));
        assert!(matches!(Reader::new(&[2, 2, 0, 1]).read_uint(), Err(DerError::Invalid(_))));
        assert!(matches!(Reader::new(&[2, 1, 0x80]).read_uint(), Err(DerError::Invalid(_))));
        assert!(matches!(Reader::new(&[2, 0]).read_uint(), Err(DerError::Invalid(_))));
    }

    #[test]
    fn arcs_round_trip() {
        for v in [0u64, 1, 0x7f, 0x80, 1000, 1999, u64::MAX] {
            let mut out = Vec::new();
            oid_arc(&mut out, u128::from(v));
            assert_eq!(parse_arc(&out), Some(v), "{v}");
        }
        assert_eq!(parse_arc(&[0x80, 0x01]), None, "leading 0x80 is not minimal");
        assert_eq!(parse_arc(&[0x81]), None, "unterminated");
        assert_eq!(parse_arc(&[]), None);
        assert_eq!(parse_arc(&[0x01, 0x01]), None, "two arcs");
    }
}
