//! The qmeta load-balancer certificate: a short-lived X.509 v3 client
//! certificate, signed by the LB's CA, whose non-critical extensions carry
//! facts about the client sealed with AES-256-GCM under a per-certificate
//! key derived (HKDF-SHA256) from a QKD key and the certificate's serial.
//! The byte layout is specified in `docs/FORMAT.md`.
//!
//! What it is: a sans-IO encoder and decoder. Bytes, keys and time go in,
//! DER comes out, and the reverse. It reads no clock and no files, and
//! takes serials from the caller's RNG.
//!
//! What it is not: a certificate verifier. [`parse`] checks structure only
//! and does NOT verify the signature or the chain: the backend's TLS stack
//! (rustls, OpenSSL) verifies those during the handshake that delivered the
//! certificate. It does not fetch QKD keys either (`qmeta-qkd` does).
//!
//! Call order, LB side: [`Issuer::from_pem`] once per CA, [`LeafKey::generate`]
//! per worker (rotate as the LB sees fit), then [`mint`] per backend
//! connection and present [`Minted::der`] with [`LeafKey::pkcs8_der`].
//! Backend side: [`parse`] the peer certificate, fetch the QKD key named by
//! [`Envelope::key_id`], then [`Envelope::open`].
#![forbid(unsafe_code)]

mod der;
mod error;
mod keys;
mod mint;
mod oid;
mod parse;
mod seal;
mod time;

#[cfg(test)]
mod tests;

pub use error::{CertError, OpenError, ParseError};
pub use keys::{Issuer, LeafAlg, LeafKey};
pub use mint::{mint, MintRequest, Minted, BACKDATE_SECS, MAX_CN_LEN};
pub use oid::OID_BASE;
pub use parse::{parse, Envelope};
pub use seal::{aad_bytes, nonce_bytes, AAD_LABEL, KEY_INFO, MIN_QKD_KEY_LEN, TAG_LEN};

/// Header `formatVersion` written and accepted by this crate.
pub const FORMAT_VERSION: u64 = 1;
/// Header `aead` value for AES-256-GCM.
pub const AEAD_AES_256_GCM: u64 = 1;
/// Largest certificate [`mint`] produces; fields are dropped to stay within it.
pub const MAX_CERT_LEN: usize = 12_288;
/// Largest input [`parse`] accepts (refused before any parsing).
pub const MAX_PARSE_LEN: usize = 16_384;

/// The header extension's OID, dotted: `OID_BASE.1`.
pub fn header_oid() -> String {
    format!("{OID_BASE}.1")
}

/// Field `f`'s extension OID, dotted: `OID_BASE.2.<id>`.
pub fn field_oid(f: qmeta_fields::FieldId) -> String {
    format!("{OID_BASE}.2.{}", f.get())
}
