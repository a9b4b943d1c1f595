//! Shared test setup: CAs from qmeta-pki, sample fields, DER locators.
#![allow(dead_code)]

use qmeta_cert::{Issuer, LeafAlg, LeafKey, MintRequest};
use qmeta_fields::{FieldId, FieldKind, FieldValue};
use std::ops::Range;

pub const QKD_KEY: [u8; 32] = [
    0x3c, 0x91, 0x0e, 0x57, 0xa2, 0x44, 0x6b, 0xd8, 0x10, 0x7f, 0xe3, 0x29, 0x5a, 0xc6, 0x81, 0x0b, 0x92, 0x33, 0xfe,
    0x4d, 0x67, 0x18, 0xaa, 0x05, 0xbc, 0x71, 0x2e, 0x9f, 0xd0, 0x46, 0x13, 0xe8,
];
pub const KEY_ID: uuid::Uuid = uuid::Uuid::from_u128(0x9f1c_2b7e_4d3a_4c5b_8e6f_7a8b_9c0d_1e2f);

pub struct Setup {
    pub ca: qmeta_pki::Ca,
    pub issuer: Issuer,
    pub leaf: LeafKey,
}

pub fn setup(ca_alg: qmeta_pki::KeyAlg, leaf_alg: LeafAlg) -> Setup {
    let ca = qmeta_pki::Ca::generate("qmeta test lb ca", ca_alg).expect("CA");
    let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).expect("issuer");
    let leaf = LeafKey::generate(leaf_alg).expect("leaf key");
    Setup { ca, issuer, leaf }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A value of the right kind for `f`; `v6` picks IPv6 for IP fields.
pub fn value_for(f: FieldId, v6: bool) -> FieldValue {
    let n = u64::from(f.get());
    match f.kind() {
        FieldKind::Ip if v6 => FieldValue::Ip(format!("2001:db8::{n:x}").parse().unwrap()),
        FieldKind::Ip => FieldValue::Ip(format!("192.0.2.{n}").parse().unwrap()),
        FieldKind::U16 => FieldValue::U16(40_000 + n as u16),
        FieldKind::U32 => FieldValue::U32(64_496 + n as u32),
        FieldKind::U64 => FieldValue::U64(1 << 40 | n),
        FieldKind::TimestampMs => FieldValue::TimestampMs(1_700_000_000_000 + n),
        FieldKind::Text => FieldValue::Text(format!("value-of-{}", f.name())),
        FieldKind::Bytes => FieldValue::Bytes((0..32).map(|i| i as u8 ^ n as u8).collect()),
    }
}

/// The first `n` known fields (then custom ones), with sample values.
pub fn sample_fields(n: usize, v6: bool) -> Vec<(FieldId, FieldValue)> {
    FieldId::known()
        .chain((1000..).map(|id| FieldId::new(id).unwrap()))
        .take(n)
        .map(|f| (f, value_for(f, v6)))
        .collect()
}

pub fn request<'a>(fields: &'a [(FieldId, FieldValue)], key: &'a [u8], now: u64) -> MintRequest<'a> {
    MintRequest {
        serial: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01],
        now_unix: now,
        validity_secs: 300,
        subject_cn: "lb-node-1",
        key_id: KEY_ID,
        qkd_key: key,
        state_version: 42,
        fields,
    }
}

/// Reads a DER length at `der[i..]`; returns (length, bytes used).
fn der_len(der: &[u8], i: usize) -> (usize, usize) {
    let first = der[i];
    if first < 0x80 {
        return (usize::from(first), 1);
    }
    let n = usize::from(first & 0x7f);
    let len = der[i + 1..i + 1 + n].iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
    (len, 1 + n)
}

/// Byte range of field `f`'s `ciphertext || tag` inside a minted certificate:
/// after the OID `B.2.N` come extnValue OCTET STRING and the inner OCTET STRING.
pub fn sealed_range(der: &[u8], f: FieldId) -> Range<usize> {
    let mut oid = vec![0x06, 0x00];
    oid.extend_from_slice(&hex::decode("6981bad796a399c8929097afb68bacc0d695b811").unwrap());
    oid.push(2);
    let id = f.get();
    if id >= 0x80 {
        oid.push(0x80 | (id >> 7) as u8);
    }
    oid.push((id & 0x7f) as u8);
    oid[1] = (oid.len() - 2) as u8;
    let at = der.windows(oid.len()).position(|w| w == oid.as_slice()).expect("field OID present");
    let mut i = at + oid.len();
    assert_eq!(der[i], 0x04, "extnValue OCTET STRING");
    let (_, used) = der_len(der, i + 1);
    i += 1 + used;
    assert_eq!(der[i], 0x04, "sealed value OCTET STRING");
    let (len, used) = der_len(der, i + 1);
    let start = i + 1 + used;
    start..start + len
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
