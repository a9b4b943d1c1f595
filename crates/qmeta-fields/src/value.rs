use crate::{FieldId, FieldKind};
use std::fmt;
use std::net::IpAddr;

/// Largest encoded value accepted for a text or bytes field. Keeps every
/// certificate well under 16 KiB even with many fields included.
pub const MAX_VALUE_LEN: usize = 1024;

/// A typed field value. The canonical encoding is in `docs/FORMAT.md`.
///
/// `Debug` does not print the value: metadata values are secrets and must
/// not reach logs through a stray `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub enum FieldValue {
    Ip(IpAddr),
    U16(u16),
    U32(u32),
    U64(u64),
    TimestampMs(u64),
    Text(String),
    Bytes(Vec<u8>),
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldValue::{:?}(<redacted>)", self.kind())
    }
}

/// Why a value could not be decoded for a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("field {field}: expected {expected} bytes, got {got}")]
    Length { field: u16, expected: &'static str, got: usize },
    #[error("field {field}: value is not valid UTF-8")]
    Utf8 { field: u16 },
    #[error("field {field}: value longer than {MAX_VALUE_LEN} bytes")]
    TooLong { field: u16 },
}

impl FieldValue {
    pub fn kind(&self) -> FieldKind {
        match self {
            FieldValue::Ip(_) => FieldKind::Ip,
            FieldValue::U16(_) => FieldKind::U16,
            FieldValue::U32(_) => FieldKind::U32,
            FieldValue::U64(_) => FieldKind::U64,
            FieldValue::TimestampMs(_) => FieldKind::TimestampMs,
            FieldValue::Text(_) => FieldKind::Text,
            FieldValue::Bytes(_) => FieldKind::Bytes,
        }
    }

    /// Canonical bytes. Encoding cannot fail; text and bytes longer than
    /// [`MAX_VALUE_LEN`] are truncated (text on a character boundary).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FieldValue::Ip(IpAddr::V4(a)) => a.octets().to_vec(),
            FieldValue::Ip(IpAddr::V6(a)) => a.octets().to_vec(),
            FieldValue::U16(v) => v.to_be_bytes().to_vec(),
            FieldValue::U32(v) => v.to_be_bytes().to_vec(),
            FieldValue::U64(v) | FieldValue::TimestampMs(v) => v.to_be_bytes().to_vec(),
            FieldValue::Text(s) => {
                let mut end = s.len().min(MAX_VALUE_LEN);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.as_bytes()[..end].to_vec()
            }
            FieldValue::Bytes(b) => b[..b.len().min(MAX_VALUE_LEN)].to_vec(),
        }
    }

    /// Decodes the canonical bytes of `field`.
    pub fn decode(field: FieldId, bytes: &[u8]) -> Result<FieldValue, DecodeError> {
        let id = field.get();
        let len_err = |expected| DecodeError::Length { field: id, expected, got: bytes.len() };
        if bytes.len() > MAX_VALUE_LEN {
            return Err(DecodeError::TooLong { field: id });
        }
        Ok(match field.kind() {
            FieldKind::Ip => match bytes.len() {
                4 => FieldValue::Ip(IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default())),
                16 => FieldValue::Ip(IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default())),
                _ => return Err(len_err("4 or 16")),
            },
            FieldKind::U16 => FieldValue::U16(u16::from_be_bytes(bytes.try_into().map_err(|_| len_err("2"))?)),
            FieldKind::U32 => FieldValue::U32(u32::from_be_bytes(bytes.try_into().map_err(|_| len_err("4"))?)),
            FieldKind::U64 => FieldValue::U64(u64::from_be_bytes(bytes.try_into().map_err(|_| len_err("8"))?)),
            FieldKind::TimestampMs => {
                FieldValue::TimestampMs(u64::from_be_bytes(bytes.try_into().map_err(|_| len_err("8"))?))
            }
            FieldKind::Text => {
                FieldValue::Text(std::str::from_utf8(bytes).map_err(|_| DecodeError::Utf8 { field: id })?.to_string())
            }
            FieldKind::Bytes => FieldValue::Bytes(bytes.to_vec()),
        })
    }

    /// A JSON-friendly rendering of the value (for the sample backend and
    /// `qmeta cert inspect`): IPs and text as strings, numbers as numbers,
    /// bytes as lowercase hex, TLS versions and cipher suites as `0x0304`.
    pub fn to_display_string(&self) -> String {
        match self {
            FieldValue::Ip(a) => a.to_string(),
            FieldValue::U16(v) => v.to_string(),
            FieldValue::U32(v) => v.to_string(),
            FieldValue::U64(v) | FieldValue::TimestampMs(v) => v.to_string(),
            FieldValue::Text(s) => s.clone(),
            FieldValue::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let cases = [
            (FieldId::SRC_IP, FieldValue::Ip("192.0.2.7".parse().unwrap())),
            (FieldId::SRC_IP, FieldValue::Ip("2001:db8::1".parse().unwrap())),
            (FieldId::SRC_PORT, FieldValue::U16(54321)),
            (FieldId::TIMESTAMP, FieldValue::TimestampMs(1_700_000_000_123)),
            (FieldId::SNI, FieldValue::Text("example.com".into())),
            (FieldId::CONNECTION_ID, FieldValue::U64(42)),
            (FieldId::GEO_ASN, FieldValue::U32(64496)),
            (FieldId::CLIENT_CERT_FINGERPRINT, FieldValue::Bytes(vec![1, 2, 3])),
        ];
        for (f, v) in cases {
            assert_eq!(FieldValue::decode(f, &v.encode()).unwrap(), v, "{f}");
        }
    }

    #[test]
    fn encodings_are_canonical() {
        assert_eq!(FieldValue::U16(0x1234).encode(), vec![0x12, 0x34]);
        assert_eq!(FieldValue::Ip("10.0.0.1".parse().unwrap()).encode(), vec![10, 0, 0, 1]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert!(matches!(FieldValue::decode(FieldId::SRC_PORT, &[1]), Err(DecodeError::Length { .. })));
        assert!(matches!(FieldValue::decode(FieldId::SRC_IP, &[1, 2, 3]), Err(DecodeError::Length { .. })));
        assert!(matches!(FieldValue::decode(FieldId::SNI, &[0xff]), Err(DecodeError::Utf8 { .. })));
        assert!(matches!(
            FieldValue::decode(FieldId::SNI, &[b'a'; MAX_VALUE_LEN + 1]),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn debug_hides_value() {
        let s = format!("{:?}", FieldValue::Text("secret-host".into()));
        assert!(!s.contains("secret"), "{s}");
    }

    #[test]
    fn text_truncates_on_char_boundary() {
        let s = "é".repeat(MAX_VALUE_LEN);
        let enc = FieldValue::Text(s).encode();
        assert!(enc.len() <= MAX_VALUE_LEN);
        assert!(std::str::from_utf8(&enc).is_ok());
    }

    proptest! {
        #[test]
        fn decode_never_panics(raw in 0u16..2100, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(f) = FieldId::new(raw) {
                let _ = FieldValue::decode(f, &bytes);
            }
        }
    }
}
