//! Errors. None of them carries key material or a metadata value: field
//! ids, lengths and fixed reasons only.

use qmeta_fields::{DecodeError, FieldId};

/// Why an issuer or leaf key could not be loaded, or a certificate minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The CA certificate input holds no PEM `CERTIFICATE` block.
    #[error("no PEM certificate found in the CA certificate input")]
    NoCaCert,
    /// The CA certificate is not well-formed X.509.
    #[error("CA certificate is not valid X.509: {0}")]
    CaCert(String),
    /// The CA key is not a PKCS#8 ECDSA P-256 or Ed25519 private key.
    #[error("CA key is not a PKCS#8 ECDSA P-256 or Ed25519 private key")]
    CaKey,
    /// The CA key does not belong to the CA certificate.
    #[error("CA key does not match the CA certificate's public key")]
    KeyMismatch,
    /// The crypto library could not generate a key pair.
    #[error("generating the leaf key pair failed")]
    KeyGeneration,
    /// The QKD key is shorter than [`crate::MIN_QKD_KEY_LEN`].
    #[error("QKD key is {got} bytes; at least {} are required", crate::MIN_QKD_KEY_LEN)]
    QkdKeyTooShort { got: usize },
    /// The subject common name is empty or longer than 64 bytes (X.520 bound).
    #[error("subject common name must be 1 to 64 bytes, got {len}")]
    SubjectCn { len: usize },
    /// The same field id appears twice in `MintRequest::fields`.
    #[error("field {0} appears more than once in the request")]
    DuplicateField(FieldId),
    /// A value's type is not the one the field id defines (a receiver could
    /// not decode it).
    #[error("field {field}: value type {got:?} does not match the field's type {expected:?}")]
    KindMismatch { field: FieldId, got: qmeta_fields::FieldKind, expected: qmeta_fields::FieldKind },
    /// `now + validity` is after 9999-12-31T23:59:59Z.
    #[error("certificate validity ends after the year 9999")]
    TimeOutOfRange,
    /// Even with every field dropped the certificate exceeds
    /// [`crate::MAX_CERT_LEN`] (an oversized CA subject name).
    #[error("certificate exceeds {} bytes even without fields", crate::MAX_CERT_LEN)]
    TooLarge,
    /// The crypto library failed to derive a key, seal or sign.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

/// Why a certificate is not a well-formed qmeta certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Larger than [`crate::MAX_PARSE_LEN`]; refused before parsing.
    #[error("certificate is {len} bytes; at most {} are accepted", crate::MAX_PARSE_LEN)]
    TooLarge { len: usize },
    /// The DER ends early (a truncated certificate).
    #[error("certificate DER is truncated")]
    Incomplete,
    /// Not a well-formed X.509 certificate.
    #[error("not a well-formed X.509 certificate: {0}")]
    X509(String),
    /// Bytes follow the certificate.
    #[error("trailing bytes after the certificate")]
    TrailingBytes,
    /// The serial is not 17 content octets `00 || 16 bytes with the top bit set`.
    #[error("serial number is not in the qmeta format")]
    BadSerial,
    /// A validity time is before 1970.
    #[error("validity time is before 1970")]
    BadValidity,
    /// No header extension: not a qmeta certificate.
    #[error("not a qmeta certificate (no header extension)")]
    NotQmeta,
    /// The header extension appears more than once.
    #[error("header extension appears more than once")]
    DuplicateHeader,
    /// The header's format version is not one this decoder knows.
    #[error("unsupported qmeta format version {0}")]
    UnsupportedVersion(u64),
    /// The header names an AEAD this decoder does not know.
    #[error("unsupported AEAD identifier {0}")]
    UnsupportedAead(u64),
    /// The header extension is not the DER the format defines.
    #[error("malformed header extension: {0}")]
    MalformedHeader(&'static str),
    /// An extension under the qmeta arc that format version 1 does not define.
    #[error("unknown extension under the qmeta arc")]
    UnknownExtension,
    /// A field extension `B.2.N` whose N is not a defined field id.
    #[error("field extension with undefined field id {0}")]
    UnknownField(u64),
    /// The same field extension appears twice.
    #[error("field {0} appears more than once")]
    DuplicateField(FieldId),
    /// A field extension is not the DER the format defines.
    #[error("field {field}: malformed extension: {reason}")]
    MalformedField { field: FieldId, reason: &'static str },
}

/// Why sealed values could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The QKD key is shorter than [`crate::MIN_QKD_KEY_LEN`].
    #[error("QKD key is {got} bytes; at least {} are required", crate::MIN_QKD_KEY_LEN)]
    QkdKeyTooShort { got: usize },
    /// A value failed authentication: wrong QKD key, or the certificate was
    /// altered (a value flipped, moved between fields or certificates).
    #[error("field {field}: value failed authentication (wrong key or altered certificate)")]
    Authentication { field: FieldId },
    /// A value authenticated but is not a valid encoding for its field
    /// (the sender encoded it wrongly).
    #[error("field {field}: decrypted value is not a valid encoding for the field")]
    Value { field: FieldId, source: DecodeError },
    /// The crypto library failed to derive the key.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}
