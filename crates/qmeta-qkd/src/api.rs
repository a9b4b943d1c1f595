//! The JSON data formats of ETSI GS QKD 014 V1.1.1 and the checks a client
//! runs on what a KME sends back.
//!
//! Field names follow the spec's spelling (`key_ID`, `master_SAE_ID`, ...).
//! A key container is accepted as `keys` or `Keys` (the spec's table and its
//! example disagree) and always emitted as `keys`. The base64 key text is
//! held in [`KeyText`], which is zeroized on drop and redacted in `Debug`.

use crate::Key;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Largest response body a client reads (keys are small; 128 × 1024-bit keys
/// in base64 are ~25 KiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest key a client accepts, in bits, whatever the KME claims.
pub const MAX_KEY_BITS: u32 = 65_536;
/// Largest number of keys a client asks for or accepts in one call.
pub const MAX_KEYS_PER_CALL: u32 = 4096;

/// Message the spec names for a size that is not a multiple of 8.
pub const MSG_SIZE_MULTIPLE_OF_8: &str = "size shall be a multiple of 8";
/// Message the spec names for an unsupported `extension_mandatory`.
pub const MSG_EXTENSION_MANDATORY: &str = "not all extension_mandatory parameters are supported";
/// Message the spec names for unknown / already delivered key ids.
pub const MSG_KEYS_NOT_FOUND: &str = "one or more keys specified are not found on KME";

/// `Status` data format (spec 6.1).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Status {
    #[serde(rename = "source_KME_ID")]
    pub source_kme_id: String,
    #[serde(rename = "target_KME_ID")]
    pub target_kme_id: String,
    #[serde(rename = "master_SAE_ID")]
    pub master_sae_id: String,
    #[serde(rename = "slave_SAE_ID")]
    pub slave_sae_id: String,
    /// Default key size, bits.
    pub key_size: u32,
    pub stored_key_count: u64,
    pub max_key_count: u64,
    pub max_key_per_request: u32,
    /// Bits.
    pub max_key_size: u32,
    /// Bits.
    pub min_key_size: u32,
    #[serde(rename = "max_SAE_ID_count")]
    pub max_sae_id_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_extension: Option<Value>,
}

/// `Key request` data format (spec 6.2). Every field is optional.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct KeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    /// Bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    #[serde(rename = "additional_slave_SAE_IDs", default, skip_serializing_if = "Option::is_none")]
    pub additional_slave_sae_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_mandatory: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_optional: Option<Vec<Value>>,
}

/// The base64 text of one key: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(pub Zeroizing<String>);

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} base64 chars redacted>", self.0.len())
    }
}

impl KeyText {
    /// Encodes key bytes as standard base64 (RFC 4648, with padding).
    pub fn encode(bytes: &[u8]) -> KeyText {
        let mut s = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
        base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut s);
        KeyText(s)
    }
}

impl Serialize for KeyText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(KeyText(Zeroizing::new(String::deserialize(d)?)))
    }
}

/// One entry of a key container.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KeyEntry {
    /// Kept as text so that a malformed id is reported by [`keys_from_enc`]
    /// rather than failing the whole JSON parse.
    #[serde(rename = "key_ID")]
    pub key_id: String,
    #[serde(rename = "key_ID_extension", default, skip_serializing_if = "Option::is_none")]
    pub key_id_extension: Option<Value>,
    pub key: KeyText,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_extension: Option<Value>,
}

/// `Key container` data format (spec 6.3).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KeyContainer {
    #[serde(alias = "Keys")]
    pub keys: Vec<KeyEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_container_extension: Option<Value>,
}

impl KeyContainer {
    /// The container a KME sends for these keys.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a Key>) -> KeyContainer {
        KeyContainer {
            keys: keys
                .into_iter()
                .map(|k| KeyEntry {
                    key_id: k.id.to_string(),
                    key_id_extension: None,
                    key: KeyText::encode(&k.bytes),
                    key_extension: None,
                })
                .collect(),
            key_container_extension: None,
        }
    }
}

/// One entry of a key-id list.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KeyIdEntry {
    #[serde(rename = "key_ID")]
    pub key_id: String,
    #[serde(rename = "key_ID_extension", default, skip_serializing_if = "Option::is_none")]
    pub key_id_extension: Option<Value>,
}

/// `Key IDs` data format (spec 6.4).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KeyIds {
    #[serde(rename = "key_IDs")]
    pub key_ids: Vec<KeyIdEntry>,
    #[serde(rename = "key_IDs_extension", default, skip_serializing_if = "Option::is_none")]
    pub key_ids_extension: Option<Value>,
}

impl KeyIds {
    pub fn from_ids(ids: &[Uuid]) -> KeyIds {
        KeyIds {
            key_ids: ids.iter().map(|id| KeyIdEntry { key_id: id.to_string(), key_id_extension: None }).collect(),
            key_ids_extension: None,
        }
    }
}

/// `Error` data format (spec 6.5).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ErrorBody {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Value>>,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> ErrorBody {
        ErrorBody { message: message.into(), details: None }
    }

    /// The message of an error body, tolerating KMEs that send
    /// `{"detail": ...}`; cut to 200 printable characters because it ends up
    /// in logs.
    pub fn message_of(body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let m = v.get("message").or_else(|| v.get("detail"))?;
        let text = match m {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some(text.chars().filter(|c| !c.is_control()).take(200).collect())
    }
}

/// Why keys a KME returned were refused. Never carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("expected {expected} keys, got {got}")]
    WrongCount { expected: usize, got: usize },
    #[error("key {index}: expected {expected} bytes, got {got}")]
    WrongSize { index: usize, expected: usize, got: usize },
    #[error("key {index}: empty or larger than {MAX_KEY_BITS} bits")]
    BadLength { index: usize },
    #[error("key {index}: key is not valid base64")]
    BadBase64 { index: usize },
    #[error("key {index}: key_ID is not a UUID")]
    BadKeyId { index: usize },
    #[error("key {index}: key_ID {id} appears twice")]
    DuplicateKeyId { index: usize, id: Uuid },
    #[error("key {index}: key_ID {id} was not asked for")]
    UnexpectedKeyId { index: usize, id: Uuid },
}

/// Checks an `enc_keys` answer: exactly `number` keys, each exactly
/// `size_bits / 8` bytes, with valid, distinct UUIDs.
pub fn keys_from_enc(container: KeyContainer, number: u32, size_bits: u32) -> Result<Vec<Key>, ValidationError> {
    if container.keys.len() != number as usize {
        return Err(ValidationError::WrongCount { expected: number as usize, got: container.keys.len() });
    }
    let want = (size_bits / 8) as usize;
    let keys = decode_all(&container)?;
    for (index, k) in keys.iter().enumerate() {
        if k.bytes.len() != want {
            return Err(ValidationError::WrongSize { index, expected: want, got: k.bytes.len() });
        }
    }
    Ok(keys)
}

/// Checks a `dec_keys` answer: exactly the ids asked for (any order), each
/// once; returns the keys in the order of `ids`.
pub fn keys_from_dec(container: KeyContainer, ids: &[Uuid]) -> Result<Vec<Key>, ValidationError> {
    if container.keys.len() != ids.len() {
        return Err(ValidationError::WrongCount { expected: ids.len(), got: container.keys.len() });
    }
    let mut keys = decode_all(&container)?;
    for (index, k) in keys.iter().enumerate() {
        if !ids.contains(&k.id) {
            return Err(ValidationError::UnexpectedKeyId { index, id: k.id });
        }
    }
    // Same length, all distinct, all asked for → exactly the set asked for.
    keys.sort_by_key(|k| ids.iter().position(|i| *i == k.id));
    Ok(keys)
}

fn decode_all(container: &KeyContainer) -> Result<Vec<Key>, ValidationError> {
    let max_b64 = (MAX_KEY_BITS as usize / 8).div_ceil(3) * 4;
    let mut seen = HashSet::with_capacity(container.keys.len());
    let mut out = Vec::with_capacity(container.keys.len());
    for (index, e) in container.keys.iter().enumerate() {
        let id = Uuid::try_parse(&e.key_id).map_err(|_| ValidationError::BadKeyId { index })?;
        if !seen.insert(id) {
            return Err(ValidationError::DuplicateKeyId { index, id });
        }
        // Bound before decoding allocates.
        if e.key.0.is_empty() || e.key.0.len() > max_b64 {
            return Err(ValidationError::BadLength { index });
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(e.key.0.len() / 4 * 3));
        base64::engine::general_purpose::STANDARD
            .decode_vec(e.key.0.as_bytes(), &mut bytes)
            .map_err(|_| ValidationError::BadBase64 { index })?;
        if bytes.is_empty() {
            return Err(ValidationError::BadLength { index });
        }
        out.push(Key { id, bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, bytes: &[u8]) -> KeyEntry {
        KeyEntry { key_id: id.into(), key_id_extension: None, key: KeyText::encode(bytes), key_extension: None }
    }

    fn container(entries: Vec<KeyEntry>) -> KeyContainer {
        KeyContainer { keys: entries, key_container_extension: None }
    }

    const ID1: &str = "bc490419-7d60-487f-adc1-4ddcc177c139";
    const ID2: &str = "0a782fb5-3434-48fe-aa4d-14f41d46cf92";

    #[test]
    fn accepts_both_spellings_and_emits_lowercase() {
        let upper = format!(r#"{{"Keys":[{{"key_ID":"{ID1}","key":"AAECAw=="}}]}}"#);
        let lower = format!(r#"{{"keys":[{{"key_ID":"{ID1}","key":"AAECAw=="}}]}}"#);
        let a: KeyContainer = serde_json::from_str(&upper).unwrap();
        let b: KeyContainer = serde_json::from_str(&lower).unwrap();
        assert_eq!(a, b);
        let out = serde_json::to_string(&a).unwrap();
        assert_eq!(out, lower);
        let keys = keys_from_enc(a, 1, 32).unwrap();
        assert_eq!(&keys[0].bytes[..], &[0, 1, 2, 3]);
        assert_eq!(keys[0].id.to_string(), ID1);
    }

    #[test]
    fn rejects_wrong_size_count_ids() {
        let c = container(vec![entry(ID1, &[0; 32])]);
        assert_eq!(keys_from_enc(c.clone(), 1, 256).unwrap().len(), 1);
        // Bits/bytes confusion: 8× too long.
        assert_eq!(
            keys_from_enc(container(vec![entry(ID1, &[0; 256])]), 1, 256).unwrap_err(),
            ValidationError::WrongSize { index: 0, expected: 32, got: 256 }
        );
        assert_eq!(keys_from_enc(c.clone(), 2, 256).unwrap_err(), ValidationError::WrongCount { expected: 2, got: 1 });
        let dup = container(vec![entry(ID1, &[0; 32]), entry(ID1, &[1; 32])]);
        assert!(matches!(keys_from_enc(dup, 2, 256), Err(ValidationError::DuplicateKeyId { index: 1, .. })));
        let bad = container(vec![entry("not-a-uuid", &[0; 32])]);
        assert_eq!(keys_from_enc(bad, 1, 256).unwrap_err(), ValidationError::BadKeyId { index: 0 });
        let mut b64 = container(vec![entry(ID1, &[0; 32])]);
        b64.keys[0].key = KeyText(Zeroizing::new("!!!!".into()));
        assert_eq!(keys_from_enc(b64, 1, 256).unwrap_err(), ValidationError::BadBase64 { index: 0 });
        let mut empty = container(vec![entry(ID1, &[0; 32])]);
        empty.keys[0].key = KeyText(Zeroizing::new(String::new()));
        assert_eq!(keys_from_enc(empty, 1, 256).unwrap_err(), ValidationError::BadLength { index: 0 });
    }

    #[test]
    fn dec_returns_exactly_the_ids_asked_in_order() {
        let id1 = Uuid::parse_str(ID1).unwrap();
        let id2 = Uuid::parse_str(ID2).unwrap();
        let c = container(vec![entry(ID2, &[2; 32]), entry(ID1, &[1; 32])]);
        let keys = keys_from_dec(c.clone(), &[id1, id2]).unwrap();
        assert_eq!((keys[0].id, keys[0].bytes[0]), (id1, 1));
        assert_eq!((keys[1].id, keys[1].bytes[0]), (id2, 2));
        let other = Uuid::from_u128(7);
        assert!(matches!(keys_from_dec(c.clone(), &[id1, other]), Err(ValidationError::UnexpectedKeyId { .. })));
        assert_eq!(keys_from_dec(c, &[id1]).unwrap_err(), ValidationError::WrongCount { expected: 1, got: 2 });
    }

    #[test]
    fn debug_and_errors_never_show_key_text() {
        let c = container(vec![entry(ID1, b"secret-key-bytes-secret-key-byte")]);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&*c.keys[0].key.0), "{dbg}");
        let err = keys_from_enc(c.clone(), 1, 8).unwrap_err().to_string();
        assert!(!err.contains(&*c.keys[0].key.0), "{err}");
    }

    #[test]
    fn status_and_error_shapes() {
        let s = Status {
            source_kme_id: "A".into(),
            target_kme_id: "B".into(),
            master_sae_id: "m".into(),
            slave_sae_id: "s".into(),
            key_size: 352,
            stored_key_count: 25000,
            max_key_count: 100000,
            max_key_per_request: 128,
            max_key_size: 1024,
            min_key_size: 64,
            max_sae_id_count: 0,
            status_extension: None,
        };
        let v: Value = serde_json::to_value(&s).unwrap();
        for k in ["source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID", "max_SAE_ID_count"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(ErrorBody::message_of(br#"{"detail":"nope"}"#).as_deref(), Some("nope"));
        assert_eq!(ErrorBody::message_of(br#"{"message":"a\nb"}"#).as_deref(), Some("ab"));
        assert_eq!(ErrorBody::message_of(b"garbage"), None);
        let req: KeyRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req, KeyRequest::default());
    }
}
