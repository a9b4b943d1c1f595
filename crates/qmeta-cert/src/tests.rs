//! Rejection tests on hand-built certificates: each defect maps to its own
//! `ParseError` variant. Built from the minting internals so that exactly
//! one thing is wrong in each.

use crate::der::{self, tlv, OCTET_STRING, SEQUENCE};
use crate::keys::extension;
use crate::mint::{assemble, header_extension, tbs_prefix};
use crate::{oid, parse, Issuer, LeafAlg, LeafKey, ParseError};
use qmeta_fields::FieldId;

const KEY_ID: uuid::Uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

struct Fixture {
    issuer: Issuer,
    leaf: LeafKey,
}

fn fixture() -> Fixture {
    let ca = qmeta_pki::Ca::generate("unit ca", qmeta_pki::KeyAlg::P256).unwrap();
    let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).unwrap();
    Fixture { issuer, leaf: LeafKey::generate(LeafAlg::P256).unwrap() }
}

impl Fixture {
    fn cert_with_serial(&self, serial: [u8; 16], exts: &[&[u8]]) -> Vec<u8> {
        let prefix = tbs_prefix(&self.issuer, &self.leaf, "unit", &serial, 1_700_000_000, 1_700_000_300);
        let mut all: Vec<&[u8]> = vec![&self.issuer.fixed_exts];
        all.extend_from_slice(exts);
        assemble(&self.issuer, &prefix, &all).unwrap()
    }

    fn cert(&self, exts: &[&[u8]]) -> Vec<u8> {
        self.cert_with_serial([0x80; 16], exts)
    }
}

fn good_header() -> Vec<u8> {
    header_extension(KEY_ID, 7, &[])
}

/// A header extension with `content` as the SEQUENCE contents.
fn raw_header(content: &[u8], critical: bool) -> Vec<u8> {
    let mut value = Vec::new();
    tlv(&mut value, SEQUENCE, content);
    let mut out = Vec::new();
    extension(&mut out, &oid::header(), critical, &value);
    out
}

/// Header SEQUENCE contents with the given pieces.
fn header_content(version: u64, key_id: &[u8], aead: u64, dropped: &[u64]) -> Vec<u8> {
    let mut c = Vec::new();
    der::uint(&mut c, version);
    tlv(&mut c, OCTET_STRING, key_id);
    der::uint(&mut c, 7);
    der::uint(&mut c, aead);
    let mut d = Vec::new();
    for x in dropped {
        der::uint(&mut d, *x);
    }
    tlv(&mut c, SEQUENCE, &d);
    c
}

/// A field extension under `B.2.<arc>` whose extnValue is `value`.
fn raw_field(arc: u128, value: &[u8], critical: bool) -> Vec<u8> {
    let mut o = oid::BASE.to_vec();
    o.push(oid::FIELDS_ARC);
    der::oid_arc(&mut o, arc);
    let mut out = Vec::new();
    extension(&mut out, &o, critical, value);
    out
}

/// A well-formed sealed value of `len` bytes (content is irrelevant to parsing).
fn sealed_value(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    tlv(&mut v, OCTET_STRING, &vec![0xab; len]);
    v
}

#[test]
fn baseline_parses() {
    let fx = fixture();
    let f = raw_field(1, &sealed_value(20), false);
    let env = parse(&fx.cert(&[&good_header(), &f])).unwrap();
    assert_eq!(env.key_id, KEY_ID);
    assert_eq!(env.state_version, 7);
    assert_eq!(env.field_ids(), vec![FieldId::SRC_IP]);
    assert_eq!(env.not_before, 1_700_000_000);
    assert_eq!(env.not_after, 1_700_000_300);
}

#[test]
fn header_defects() {
    let fx = fixture();
    let kid = KEY_ID.as_bytes();
    let case = |ext: Vec<u8>| parse(&fx.cert(&[&ext]));
    assert_eq!(parse(&fx.cert(&[])), Err(ParseError::NotQmeta));
    assert_eq!(case(raw_header(&header_content(2, kid, 1, &[]), false)), Err(ParseError::UnsupportedVersion(2)));
    assert_eq!(case(raw_header(&header_content(1, kid, 2, &[]), false)), Err(ParseError::UnsupportedAead(2)));
    assert!(matches!(
        case(raw_header(&header_content(1, &kid[..15], 1, &[]), false)),
        Err(ParseError::MalformedHeader(_))
    ));
    assert!(matches!(case(raw_header(&header_content(1, kid, 1, &[]), true)), Err(ParseError::MalformedHeader(_))));
    assert!(matches!(case(raw_header(&header_content(1, kid, 1, &[24]), false)), Err(ParseError::MalformedHeader(_))));
    assert!(matches!(
        case(raw_header(&header_content(1, kid, 1, &[3, 2]), false)),
        Err(ParseError::MalformedHeader(_))
    ));
    let mut trailing = header_content(1, kid, 1, &[]);
    trailing.extend_from_slice(&[2, 1, 0]);
    assert!(matches!(case(raw_header(&trailing, false)), Err(ParseError::MalformedHeader(_))));
    let mut truncated = header_content(1, kid, 1, &[]);
    truncated.pop();
    assert!(matches!(case(raw_header(&truncated, false)), Err(ParseError::MalformedHeader(_))));
    assert_eq!(parse(&fx.cert(&[&good_header(), &good_header()])), Err(ParseError::DuplicateHeader));
    // Dropped and present at once contradicts itself.
    let h = raw_header(&header_content(1, kid, 1, &[1]), false);
    let f = raw_field(1, &sealed_value(20), false);
    assert!(matches!(parse(&fx.cert(&[&h, &f])), Err(ParseError::MalformedHeader(_))));
}

#[test]
fn field_defects() {
    let fx = fixture();
    let h = good_header();
    let case = |ext: Vec<u8>| parse(&fx.cert(&[&h, &ext]));
    assert_eq!(case(raw_field(24, &sealed_value(20), false)), Err(ParseError::UnknownField(24)));
    assert_eq!(case(raw_field(999, &sealed_value(20), false)), Err(ParseError::UnknownField(999)));
    assert_eq!(case(raw_field(70_000, &sealed_value(20), false)), Err(ParseError::UnknownField(70_000)));
    let malformed = |r: Result<_, ParseError>| matches!(r, Err(ParseError::MalformedField { field, .. }) if field == FieldId::SRC_IP);
    assert!(malformed(case(raw_field(1, &sealed_value(20), true))));
    assert!(malformed(case(raw_field(1, &sealed_value(15), false))));
    assert!(malformed(case(raw_field(1, &sealed_value(1024 + 17), false))));
    assert!(malformed(case(raw_field(1, &[0x05, 0x00], false))));
    let mut trailing = sealed_value(20);
    trailing.push(0);
    assert!(malformed(case(raw_field(1, &trailing, false))));
    let f = raw_field(6, &sealed_value(20), false);
    assert_eq!(parse(&fx.cert(&[&h, &f, &f])), Err(ParseError::DuplicateField(FieldId::SNI)));
    // Under the base arc but neither B.1 nor B.2.N.
    let mut b3 = oid::BASE.to_vec();
    b3.push(3);
    let mut ext = Vec::new();
    extension(&mut ext, &b3, false, &sealed_value(20));
    assert_eq!(case(ext), Err(ParseError::UnknownExtension));
}

#[test]
fn envelope_defects() {
    let fx = fixture();
    let h = good_header();
    let ok = fx.cert(&[&h]);
    let mut trailing = ok.clone();
    trailing.push(0);
    assert_eq!(parse(&trailing), Err(ParseError::TrailingBytes));
    assert!(matches!(parse(&vec![0u8; crate::MAX_PARSE_LEN + 1]), Err(ParseError::TooLarge { .. })));
    // Top bit clear: a different (non-qmeta) serial layout.
    let r = parse(&fx.cert_with_serial([0x01; 16], &[&h]));
    assert!(matches!(r, Err(ParseError::BadSerial)), "{r:?}");
    assert!(matches!(parse(&ok[..ok.len() / 2]), Err(ParseError::Incomplete | ParseError::X509(_))));
    assert!(matches!(parse(b"not a certificate"), Err(ParseError::X509(_) | ParseError::Incomplete)));
}

#[test]
fn fixed_extensions_are_byte_exact() {
    let fx = fixture();
    let fixed = &fx.issuer.fixed_exts;
    // basicConstraints critical, cA FALSE (empty SEQUENCE).
    assert_eq!(&fixed[..14], [0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00]);
    // keyUsage critical, digitalSignature.
    assert_eq!(
        &fixed[14..30],
        [0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80]
    );
    // extKeyUsage clientAuth, non-critical.
    assert_eq!(
        &fixed[30..51],
        [
            0x30, 0x13, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05,
            0x07, 0x03, 0x02
        ]
    );
    // authorityKeyIdentifier, non-critical: SEQUENCE { [0] 20-byte keyIdentifier }.
    assert_eq!(&fixed[51..64], [0x30, 0x1f, 0x06, 0x03, 0x55, 0x1d, 0x23, 0x04, 0x18, 0x30, 0x16, 0x80, 0x14]);
    assert_eq!(fixed.len(), 84);
}
