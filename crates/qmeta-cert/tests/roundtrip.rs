//! mint → parse → open, and what must fail: tampering, wrong keys,
//! truncation, oversized field sets, bad requests.

mod common;

use common::*;
use qmeta_cert::{mint, parse, CertError, LeafAlg, OpenError, ParseError, MAX_CERT_LEN};
use qmeta_fields::{FieldId, FieldValue};
use qmeta_pki::KeyAlg;

fn sorted(mut v: Vec<(FieldId, FieldValue)>) -> Vec<(FieldId, FieldValue)> {
    v.sort_by_key(|(f, _)| *f);
    v
}

#[test]
fn round_trip_2_8_16_fields_ipv4_and_ipv6() {
    for (ca_alg, leaf_alg) in [(KeyAlg::P256, LeafAlg::P256), (KeyAlg::Ed25519, LeafAlg::Ed25519)] {
        let s = setup(ca_alg, leaf_alg);
        for n in [2, 8, 16] {
            for v6 in [false, true] {
                let fields = sample_fields(n, v6);
                let now = 1_700_000_000;
                let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now)).unwrap();
                assert_eq!(minted.included, fields.iter().map(|(f, _)| *f).collect::<Vec<_>>());
                assert!(minted.dropped.is_empty());
                // Top bit forced on the first serial byte (0x11 -> 0x91).
                assert_eq!(minted.serial_hex, "912233445566778899aabbccddeeff01");

                let env = parse(&minted.der).unwrap();
                assert_eq!(env.format_version, 1);
                assert_eq!(env.serial_hex, minted.serial_hex);
                assert_eq!(hex::encode(env.serial), minted.serial_hex);
                assert_eq!(env.key_id, KEY_ID);
                assert_eq!(env.state_version, 42);
                assert_eq!(env.not_before, now - 60);
                assert_eq!(env.not_after, now + 300);
                assert!(env.dropped.is_empty());
                assert_eq!(env.field_ids(), minted.included);

                let opened = env.open(&QKD_KEY).unwrap();
                assert_eq!(opened, sorted(fields.clone()), "n={n} v6={v6}");
                let ip = opened.iter().find(|(f, _)| *f == FieldId::SRC_IP).map(|(_, v)| v.clone());
                let expect_ip = if v6 { "2001:db8::1" } else { "192.0.2.1" };
                assert_eq!(ip, Some(FieldValue::Ip(expect_ip.parse().unwrap())));
            }
        }
    }
}

#[test]
fn fields_in_any_order_come_back_sorted() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let mut fields = sample_fields(6, false);
    fields.reverse();
    fields.push((FieldId::new(1500).unwrap(), FieldValue::Text("custom".into())));
    let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
    let env = parse(&minted.der).unwrap();
    let ids: Vec<u16> = env.field_ids().iter().map(|f| f.get()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 1500]);
    assert_eq!(env.open(&QKD_KEY).unwrap(), sorted(fields));
}

#[test]
fn empty_field_set_is_a_valid_certificate() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let minted = mint(&s.issuer, &s.leaf, &request(&[], &QKD_KEY, now())).unwrap();
    let env = parse(&minted.der).unwrap();
    assert!(env.field_ids().is_empty());
    assert_eq!(env.open(&QKD_KEY).unwrap(), vec![]);
}

#[test]
fn flipped_ciphertext_byte_fails_naming_the_field() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let fields = sample_fields(8, false);
    let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
    for (f, _) in &fields {
        let range = sealed_range(&minted.der, *f);
        for pos in [range.start, range.end - 1] {
            let mut der = minted.der.clone();
            der[pos] ^= 0x01;
            let err = parse(&der).unwrap().open(&QKD_KEY).unwrap_err();
            assert_eq!(err, OpenError::Authentication { field: *f });
            let msg = err.to_string();
            assert!(msg.contains(&f.name()), "{msg}");
        }
    }
}

#[test]
fn swapped_ciphertexts_fail() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    // Same kind, same length: a swap keeps the DER valid.
    let fields = vec![(FieldId::SRC_PORT, FieldValue::U16(1111)), (FieldId::DST_PORT, FieldValue::U16(443))];
    let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
    let (a, b) = (sealed_range(&minted.der, FieldId::SRC_PORT), sealed_range(&minted.der, FieldId::DST_PORT));
    assert_eq!(a.len(), b.len());
    let mut der = minted.der.clone();
    let (va, vb) = (minted.der[a.clone()].to_vec(), minted.der[b.clone()].to_vec());
    der[a].copy_from_slice(&vb);
    der[b].copy_from_slice(&va);
    let err = parse(&der).unwrap().open(&QKD_KEY).unwrap_err();
    assert_eq!(err, OpenError::Authentication { field: FieldId::SRC_PORT });
}

#[test]
fn values_do_not_move_between_certificates() {
    // Same QKD key, two serials: a value copied across fails.
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let fields = vec![(FieldId::SRC_PORT, FieldValue::U16(1111))];
    let one = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
    let mut req = request(&fields, &QKD_KEY, now());
    req.serial[15] ^= 0xff;
    let two = mint(&s.issuer, &s.leaf, &req).unwrap();
    assert_ne!(one.serial_hex, two.serial_hex);
    let (r1, r2) = (sealed_range(&one.der, FieldId::SRC_PORT), sealed_range(&two.der, FieldId::SRC_PORT));
    assert_ne!(one.der[r1.clone()], two.der[r2.clone()], "per-certificate keys differ");
    let mut der = two.der.clone();
    der[r2].copy_from_slice(&one.der[r1]);
    let err = parse(&der).unwrap().open(&QKD_KEY).unwrap_err();
    assert_eq!(err, OpenError::Authentication { field: FieldId::SRC_PORT });
}

#[test]
fn wrong_or_short_qkd_key_fails() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let fields = sample_fields(2, false);
    let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
    let env = parse(&minted.der).unwrap();
    let mut wrong = QKD_KEY;
    wrong[31] ^= 1;
    assert_eq!(env.open(&wrong), Err(OpenError::Authentication { field: FieldId::SRC_IP }));
    let mut longer = QKD_KEY.to_vec();
    longer.push(0);
    assert_eq!(env.open(&longer), Err(OpenError::Authentication { field: FieldId::SRC_IP }));
    assert_eq!(env.open(&QKD_KEY[..31]), Err(OpenError::QkdKeyTooShort { got: 31 }));
    let r = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY[..16], now()));
    assert!(matches!(r, Err(CertError::QkdKeyTooShort { got: 16 })));
}

#[test]
fn every_truncation_is_an_error() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let fields = sample_fields(4, true);
    let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
    // The outer SEQUENCE announces more bytes than any prefix holds.
    for len in 0..minted.der.len() {
        assert_eq!(parse(&minted.der[..len]), Err(ParseError::Incomplete), "prefix of {len} bytes");
    }
    assert!(parse(&minted.der).is_ok());
}

#[test]
fn oversized_field_set_drops_highest_ids() {
    for ca_alg in [KeyAlg::P256, KeyAlg::Ed25519] {
        let s = setup(ca_alg, LeafAlg::P256);
        let mut fields = sample_fields(23, false);
        for id in 1000..1016 {
            fields.push((FieldId::new(id).unwrap(), FieldValue::Text("x".repeat(1024))));
        }
        let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
        assert!(minted.der.len() <= MAX_CERT_LEN, "{} bytes", minted.der.len());
        assert!(!minted.dropped.is_empty());
        // Everything known fits; custom fields are cut from the top.
        let max_included = minted.included.iter().max().unwrap().get();
        assert!(minted.dropped.iter().all(|f| f.get() > max_included));
        assert_eq!(minted.included.len() + minted.dropped.len(), fields.len());
        let mut dropped_sorted = minted.dropped.clone();
        dropped_sorted.sort();
        assert_eq!(minted.dropped, dropped_sorted);
        assert_eq!(minted.dropped.last().unwrap().get(), 1015);
        // One more field would not have fit (the cut is tight).
        let extra = 1024 + 16 + 40;
        assert!(minted.der.len() + extra > MAX_CERT_LEN - 8, "{} bytes", minted.der.len());

        let env = parse(&minted.der).unwrap();
        assert_eq!(env.dropped, minted.dropped);
        assert_eq!(env.field_ids(), minted.included);
        let opened = env.open(&QKD_KEY).unwrap();
        let expected: Vec<_> = fields.into_iter().filter(|(f, _)| minted.included.contains(f)).collect();
        assert_eq!(opened, expected);
    }
}

#[test]
fn bad_requests_are_rejected() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let dup = vec![(FieldId::SNI, FieldValue::Text("a".into())), (FieldId::SNI, FieldValue::Text("b".into()))];
    assert!(matches!(
        mint(&s.issuer, &s.leaf, &request(&dup, &QKD_KEY, now())),
        Err(CertError::DuplicateField(f)) if f == FieldId::SNI
    ));
    let kind = vec![(FieldId::SRC_IP, FieldValue::U16(1))];
    assert!(matches!(
        mint(&s.issuer, &s.leaf, &request(&kind, &QKD_KEY, now())),
        Err(CertError::KindMismatch { field, .. }) if field == FieldId::SRC_IP
    ));
    let mut req = request(&[], &QKD_KEY, now());
    req.subject_cn = "";
    assert!(matches!(mint(&s.issuer, &s.leaf, &req), Err(CertError::SubjectCn { len: 0 })));
    let long = "a".repeat(65);
    req.subject_cn = &long;
    assert!(matches!(mint(&s.issuer, &s.leaf, &req), Err(CertError::SubjectCn { len: 65 })));
    let mut req = request(&[], &QKD_KEY, 253_402_300_000);
    req.validity_secs = 3600;
    assert!(matches!(mint(&s.issuer, &s.leaf, &req), Err(CertError::TimeOutOfRange)));
}

#[test]
fn times_after_2049_use_generalized_time() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let now = 2_524_608_000 - 100; // notAfter crosses into 2050
    let minted = mint(&s.issuer, &s.leaf, &request(&[], &QKD_KEY, now)).unwrap();
    let env = parse(&minted.der).unwrap();
    assert_eq!((env.not_before, env.not_after), (now - 60, now + 300));
    let (_, cert) = x509_parser::parse_x509_certificate(&minted.der).unwrap();
    assert!(cert.validity().not_after.to_datetime().year() == 2050);
}

#[test]
fn layout_matches_the_format() {
    use x509_parser::prelude::*;
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let fields = sample_fields(3, false);
    let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, 1_700_000_000)).unwrap();
    let (_, cert) = parse_x509_certificate(&minted.der).unwrap();
    let (_, ca) = parse_x509_certificate(s.issuer.ca_cert_der()).unwrap();
    assert_eq!(cert.version(), X509Version::V3);
    assert_eq!(cert.tbs_certificate.raw_serial().len(), 17);
    assert_eq!(cert.tbs_certificate.raw_serial()[0], 0);
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    assert_eq!(cert.subject().to_string(), "O=qmeta, CN=lb-node-1");
    assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), "1.2.840.10045.4.3.2");
    assert_eq!(cert.public_key().raw, s.leaf.spki_der());
    // x509-parser prints arcs beyond u64 as hex, so compare OID bytes.
    let exts: Vec<(String, bool)> =
        cert.extensions().iter().map(|e| (hex::encode(e.oid.as_bytes()), e.critical)).collect();
    let base = "6981bad796a399c8929097afb68bacc0d695b811";
    let expected = [
        ("551d13".to_string(), true),
        ("551d0f".to_string(), true),
        ("551d25".to_string(), false),
        ("551d23".to_string(), false),
        (format!("{base}01"), false),
        (format!("{base}0201"), false),
        (format!("{base}0202"), false),
        (format!("{base}0203"), false),
    ];
    assert_eq!(exts, expected);
    let b = qmeta_cert::OID_BASE;
    // AKI = the CA's subject key identifier.
    let ski = ca.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    });
    let aki = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    });
    assert!(ski.is_some());
    assert_eq!(aki, ski);
    assert_eq!(qmeta_cert::field_oid(FieldId::SNI), format!("{b}.2.6"));
    assert_eq!(qmeta_cert::header_oid(), format!("{b}.1"));
}

#[test]
fn debug_output_hides_values_and_keys() {
    let s = setup(KeyAlg::P256, LeafAlg::P256);
    let fields = vec![(FieldId::SNI, FieldValue::Text("secret-host.example".into()))];
    let req = request(&fields, &QKD_KEY, now());
    let minted = mint(&s.issuer, &s.leaf, &req).unwrap();
    let env = parse(&minted.der).unwrap();
    let sealed = hex::encode(&minted.der[sealed_range(&minted.der, FieldId::SNI)]);
    let key_hex = hex::encode(QKD_KEY);
    for text in [format!("{req:?}"), format!("{env:?}"), format!("{:?}", s.leaf), format!("{:?}", s.issuer)] {
        assert!(!text.contains("secret-host"), "{text}");
        assert!(!text.contains(&key_hex[..16]), "{text}");
        assert!(!text.contains(&sealed[..16]), "{text}");
        assert!(!text.contains("PRIVATE"), "{text}");
    }
}

#[test]
fn issuer_rejects_mismatched_or_foreign_keys() {
    let a = qmeta_pki::Ca::generate("a", KeyAlg::P256).unwrap();
    let b = qmeta_pki::Ca::generate("b", KeyAlg::P256).unwrap();
    let r = qmeta_cert::Issuer::from_pem(&a.credential.cert_pem, &b.credential.key_pem);
    assert!(matches!(r, Err(CertError::KeyMismatch)));
    let r = qmeta_cert::Issuer::from_pem("", &a.credential.key_pem);
    assert!(matches!(r, Err(CertError::NoCaCert)));
    let r = qmeta_cert::Issuer::from_pem(&a.credential.cert_pem, &a.credential.cert_pem);
    assert!(matches!(r, Err(CertError::CaKey)));
    let ed = qmeta_pki::Ca::generate("ed", KeyAlg::Ed25519).unwrap();
    let issuer = qmeta_cert::Issuer::from_pem(&ed.credential.cert_pem, &ed.credential.key_pem).unwrap();
    assert_eq!(issuer.alg(), LeafAlg::Ed25519);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn minted() -> &'static Vec<u8> {
        static DER: OnceLock<Vec<u8>> = OnceLock::new();
        DER.get_or_init(|| {
            let s = setup(KeyAlg::P256, LeafAlg::P256);
            let fields = sample_fields(5, false);
            mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, 1_700_000_000)).unwrap().der
        })
    }

    proptest! {
        #[test]
        fn mutated_certificates_never_panic(pos in 0usize..4096, xor in 1u8..=255, cut in 0usize..64) {
            let mut der = minted().clone();
            let pos = pos % der.len();
            der[pos] ^= xor;
            der.truncate(der.len() - cut.min(der.len()));
            if let Ok(env) = parse(&der) {
                let _ = env.open(&QKD_KEY);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }
    }
}
