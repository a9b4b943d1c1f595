//! Parsing: certificate DER in, [`Envelope`] out; then opening with the QKD key.
//!
//! Parsing does not verify the signature or the chain: the backend's TLS
//! stack (rustls, OpenSSL) already did, during the handshake.

use crate::der::{DerError, Reader, OCTET_STRING, SEQUENCE};
use crate::oid::{self, Class};
use crate::seal::{CertKey, MIN_QKD_KEY_LEN, TAG_LEN};
use crate::{OpenError, ParseError, AEAD_AES_256_GCM, FORMAT_VERSION, MAX_PARSE_LEN};
use qmeta_fields::{FieldId, FieldValue, MAX_VALUE_LEN};
use std::collections::BTreeMap;
use x509_parser::certificate::X509CertificateParser;
use x509_parser::nom::{self, Parser};

/// The qmeta contents of a certificate: header values in clear, field
/// values still sealed. `Debug` shows ids and lengths, never values.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Header `formatVersion` (always 1 for a parsed certificate).
    pub format_version: u64,
    /// The 16 serial bytes (without the DER 0x00 prefix): the HKDF salt.
    pub serial: [u8; 16],
    /// `serial` as lowercase hex.
    pub serial_hex: String,
    /// Id of the QKD key the values are sealed with.
    pub key_id: uuid::Uuid,
    /// DMCP state version that chose the fields.
    pub state_version: u64,
    /// `notBefore`, Unix seconds.
    pub not_before: u64,
    /// `notAfter`, Unix seconds.
    pub not_after: u64,
    /// Fields the LB left out for size, ascending id.
    pub dropped: Vec<FieldId>,
    /// Sealed values (`ciphertext || tag`), ascending id.
    sealed: Vec<(FieldId, Vec<u8>)>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sealed: Vec<(u16, usize)> = self.sealed.iter().map(|(id, v)| (id.get(), v.len())).collect();
        f.debug_struct("Envelope")
            .field("format_version", &self.format_version)
            .field("serial_hex", &self.serial_hex)
            .field("key_id", &self.key_id)
            .field("state_version", &self.state_version)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("dropped", &self.dropped)
            .field("sealed_lengths", &sealed)
            .finish()
    }
}

impl Envelope {
    /// Ids of the sealed fields, ascending.
    pub fn field_ids(&self) -> Vec<FieldId> {
        self.sealed.iter().map(|(id, _)| *id).collect()
    }

    /// Opens every field with the QKD key named by `key_id`. All or
    /// nothing: one value that fails authentication fails the whole call.
    pub fn open(&self, qkd_key: &[u8]) -> Result<Vec<(FieldId, FieldValue)>, OpenError> {
        if qkd_key.len() < MIN_QKD_KEY_LEN {
            return Err(OpenError::QkdKeyTooShort { got: qkd_key.len() });
        }
        let key = CertKey::derive(qkd_key, &self.serial).map_err(OpenError::Crypto)?;
        let mut out = Vec::with_capacity(self.sealed.len());
        for (field, sealed) in &self.sealed {
            let plain = key.open(*field, sealed).ok_or(OpenError::Authentication { field: *field })?;
            let value =
                FieldValue::decode(*field, &plain).map_err(|source| OpenError::Value { field: *field, source })?;
            out.push((*field, value));
        }
        Ok(out)
    }
}

/// Parses a qmeta certificate (DER). Checks structure only: it does NOT
/// verify the signature or chain — the TLS handshake that delivered the
/// certificate did that (see `docs/FORMAT.md`).
pub fn parse(cert_der: &[u8]) -> Result<Envelope, ParseError> {
    if cert_der.len() > MAX_PARSE_LEN {
        return Err(ParseError::TooLarge { len: cert_der.len() });
    }
    // The outer SEQUENCE's length says whether the input is truncated or
    // followed by other bytes; x509-parser reports both less precisely.
    let mut outer = Reader::new(cert_der);
    match outer.read(SEQUENCE) {
        Ok(_) => outer.finish().map_err(|_| ParseError::TrailingBytes)?,
        Err(DerError::Incomplete) => return Err(ParseError::Incomplete),
        Err(DerError::Invalid(reason)) => return Err(ParseError::X509(reason.to_string())),
    }
    // Deep parsing of standard extensions is skipped: only ours matter here.
    let (rest, cert) =
        X509CertificateParser::new().with_deep_parse_extensions(false).parse(cert_der).map_err(|e| match e {
            nom::Err::Incomplete(_) => ParseError::Incomplete,
            nom::Err::Error(e) | nom::Err::Failure(e) => ParseError::X509(e.to_string()),
        })?;
    if !rest.is_empty() {
        return Err(ParseError::TrailingBytes);
    }
    let serial = match cert.tbs_certificate.raw_serial() {
        [0, s @ ..] if s.len() == 16 && s[0] & 0x80 != 0 => {
            <[u8; 16]>::try_from(s).map_err(|_| ParseError::BadSerial)?
        }
        _ => return Err(ParseError::BadSerial),
    };
    let validity = cert.validity();
    let unix = |t: i64| u64::try_from(t).map_err(|_| ParseError::BadValidity);
    let not_before = unix(validity.not_before.timestamp())?;
    let not_after = unix(validity.not_after.timestamp())?;

    let mut header = None;
    let mut sealed = BTreeMap::new();
    for ext in cert.extensions() {
        match oid::classify(ext.oid.as_bytes()) {
            Class::Foreign => {}
            Class::Unknown => return Err(ParseError::UnknownExtension),
            Class::Header => {
                if header.is_some() {
                    return Err(ParseError::DuplicateHeader);
                }
                if ext.critical {
                    return Err(ParseError::MalformedHeader("marked critical"));
                }
                header = Some(parse_header(ext.value)?);
            }
            Class::Field(n) => {
                let field = u16::try_from(n).ok().and_then(FieldId::new).ok_or(ParseError::UnknownField(n))?;
                let malformed = |reason| ParseError::MalformedField { field, reason };
                if ext.critical {
                    return Err(malformed("marked critical"));
                }
                let value = parse_field_value(ext.value).map_err(malformed)?;
                if sealed.insert(field, value.to_vec()).is_some() {
                    return Err(ParseError::DuplicateField(field));
                }
            }
        }
    }
    let header = header.ok_or(ParseError::NotQmeta)?;
    if header.dropped.iter().any(|f| sealed.contains_key(f)) {
        return Err(ParseError::MalformedHeader("a dropped field is also present"));
    }
    Ok(Envelope {
        format_version: FORMAT_VERSION,
        serial,
        serial_hex: hex::encode(serial),
        key_id: header.key_id,
        state_version: header.state_version,
        not_before,
        not_after,
        dropped: header.dropped,
        sealed: sealed.into_iter().collect(),
    })
}

struct Header {
    key_id: uuid::Uuid,
    state_version: u64,
    dropped: Vec<FieldId>,
}

fn der_reason(e: DerError) -> &'static str {
    match e {
        DerError::Incomplete => "truncated",
        DerError::Invalid(reason) => reason,
    }
}

/// Parses the header extension's `extnValue` contents.
fn parse_header(value: &[u8]) -> Result<Header, ParseError> {
    let bad = |e: DerError| ParseError::MalformedHeader(der_reason(e));
    let mut outer = Reader::new(value);
    let mut r = Reader::new(outer.read(SEQUENCE).map_err(bad)?);
    outer.finish().map_err(bad)?;
    // The version comes first so a future layout is reported as such, not
    // as malformed.
    let version = r.read_uint().map_err(bad)?;
    if version != FORMAT_VERSION {
        return Err(ParseError::UnsupportedVersion(version));
    }
    let key_id = r.read(OCTET_STRING).map_err(bad)?;
    let key_id = uuid::Uuid::from_slice(key_id).map_err(|_| ParseError::MalformedHeader("keyId is not 16 bytes"))?;
    let state_version = r.read_uint().map_err(bad)?;
    let aead = r.read_uint().map_err(bad)?;
    if aead != AEAD_AES_256_GCM {
        return Err(ParseError::UnsupportedAead(aead));
    }
    let mut list = Reader::new(r.read(SEQUENCE).map_err(bad)?);
    r.finish().map_err(bad)?;
    let mut dropped: Vec<FieldId> = Vec::new();
    while !list.is_empty() {
        let raw = list.read_uint().map_err(bad)?;
        let f = u16::try_from(raw)
            .ok()
            .and_then(FieldId::new)
            .ok_or(ParseError::MalformedHeader("undefined field id in dropped"))?;
        if dropped.last().is_some_and(|last| *last >= f) {
            return Err(ParseError::MalformedHeader("dropped ids not strictly ascending"));
        }
        dropped.push(f);
    }
    Ok(Header { key_id, state_version, dropped })
}

/// Parses a field extension's `extnValue` contents: one OCTET STRING
/// holding `ciphertext || tag`.
fn parse_field_value(value: &[u8]) -> Result<&[u8], &'static str> {
    let mut r = Reader::new(value);
    let sealed = r.read(OCTET_STRING).map_err(der_reason)?;
    r.finish().map_err(der_reason)?;
    if sealed.len() < TAG_LEN {
        return Err("shorter than the AEAD tag");
    }
    if sealed.len() > MAX_VALUE_LEN + TAG_LEN {
        return Err("longer than the largest value");
    }
    Ok(sealed)
}
