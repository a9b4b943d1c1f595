//! The Python decoder docs/SDK.md shows (tests/decode.py) must agree with
//! the Rust SDK on certificates minted by qmeta-cert: proof that a
//! non-Rust backend can follow the documented steps.
//!
//! Needs `python3` with the `cryptography` package; fails loudly without.

use qmeta_cert::{Issuer, LeafAlg, LeafKey, MintRequest};
use qmeta_fields::{FieldId, FieldValue};
use qmeta_pki::{Ca, KeyAlg};
use qmeta_sdk::Metadata;
use std::path::Path;
use std::process::Command;

fn python_decode(cert_pem: &Path, qkd_key: &[u8]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/decode.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(cert_pem)
        .arg(hex::encode(qkd_key))
        .output()
        .expect("python3 is required for this test: install python3 and its `cryptography` package");
    assert!(
        out.status.success(),
        "decode.py failed (python3 needs the `cryptography` package: apt-get install python3-cryptography \
         or pip install cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("decode.py printed JSON")
}

fn check(alg: KeyAlg, fields: &[(FieldId, FieldValue)]) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("qmeta LB CA", alg).unwrap();
    let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).unwrap();
    let leaf = LeafKey::generate(LeafAlg::P256).unwrap();
    let qkd_key: [u8; 32] = rand::random();
    let req = MintRequest {
        serial: rand::random(),
        now_unix: 1_750_000_000,
        validity_secs: 300,
        subject_cn: "qmeta-lb",
        key_id: uuid::Uuid::new_v4(),
        qkd_key: &qkd_key,
        state_version: 12,
        fields,
    };
    let minted = qmeta_cert::mint(&issuer, &leaf, &req).unwrap();
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", base64_lines(&minted.der));
    let path = dir.path().join("lb.pem");
    std::fs::write(&path, pem).unwrap();

    let env = qmeta_cert::parse(&minted.der).unwrap();
    let mut opened = env.open(&qkd_key).unwrap();
    opened.sort_by_key(|(f, _)| *f);
    let expected = Metadata {
        serial_hex: env.serial_hex.clone(),
        key_id: env.key_id,
        state_version: env.state_version,
        fields: opened,
        dropped: env.dropped.clone(),
    }
    .to_json();
    assert_eq!(expected["fields"].as_object().unwrap().len(), fields.len());
    assert_eq!(python_decode(&path, &qkd_key), expected);
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect::<Vec<_>>().join("\n")
}

#[test]
fn python_decoder_agrees_with_the_sdk() {
    let fields = vec![
        (FieldId::SRC_IP, FieldValue::Ip("198.51.100.23".parse().unwrap())),
        (FieldId::SRC_PORT, FieldValue::U16(54321)),
        (FieldId::DST_IP, FieldValue::Ip("2001:db8::1".parse().unwrap())),
        (FieldId::TIMESTAMP, FieldValue::TimestampMs(1_750_000_000_456)),
        (FieldId::SNI, FieldValue::Text("shop.example".into())),
        (FieldId::TLS_VERSION, FieldValue::U16(0x0304)),
        (FieldId::GEO_ASN, FieldValue::U32(64496)),
        (FieldId::CLIENT_CERT_FINGERPRINT, FieldValue::Bytes((0..32).collect())),
        (FieldId::HTTP_USER_AGENT, FieldValue::Text("curl/8 ünïcode".into())),
        (FieldId::CONNECTION_ID, FieldValue::U64(1 << 40)),
        (FieldId::new(1000).unwrap(), FieldValue::Text("tenant-7".into())),
    ];
    check(KeyAlg::P256, &fields);
    check(KeyAlg::Ed25519, &fields[..2]);
}
