//! Regenerates the test vector in `tests/vectors/v1/`:
//!
//! ```text
//! cargo run -p qmeta-cert --example gen_vector
//! ```
//!
//! The QKD key, serial, key id, time and field values are fixed, so the
//! sealed values and the worked example in `docs/FORMAT.md` stay the same;
//! only the CA, the leaf key and the signature change on each run.

use hkdf::Hkdf;
use qmeta_cert::{aad_bytes, mint, nonce_bytes, LeafAlg, LeafKey, MintRequest, KEY_INFO};
use qmeta_fields::{FieldId, FieldValue};
use serde_json::json;
use sha2::Sha256;
use std::path::Path;

/// Fixed inputs, shared with the test that checks the vector.
const QKD_KEY_HEX: &str = "6a1f3c9e05b2d8477e90c1a35f28e6b40d9c7a12e35f8b6049d1c2e7a8b3f051";
const SERIAL: [u8; 16] =
    [0x4e, 0x2a, 0x91, 0x07, 0xc3, 0x5d, 0x18, 0xf6, 0xa0, 0x3b, 0x72, 0xee, 0x09, 0x64, 0xd5, 0x8c];
const KEY_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const VALIDITY: u32 = 300;
const STATE_VERSION: u64 = 7;

fn fields() -> Vec<(FieldId, FieldValue)> {
    vec![
        (FieldId::SRC_IP, FieldValue::Ip("198.51.100.23".parse().unwrap())),
        (FieldId::SRC_PORT, FieldValue::U16(51514)),
        (FieldId::DST_IP, FieldValue::Ip("2001:db8::443".parse().unwrap())),
        (FieldId::DST_PORT, FieldValue::U16(443)),
        (FieldId::TIMESTAMP, FieldValue::TimestampMs(1_767_225_600_123)),
        (FieldId::SNI, FieldValue::Text("api.example.com".into())),
        (FieldId::ALPN, FieldValue::Text("h2".into())),
        (FieldId::TLS_VERSION, FieldValue::U16(0x0304)),
        (FieldId::CIPHER_SUITE, FieldValue::U16(0x1301)),
        (FieldId::JA4, FieldValue::Text("t13d1516h2_8daaf6152771_e5627efa2ab1".into())),
        (FieldId::GEO_ASN, FieldValue::U32(64496)),
        (FieldId::CLIENT_CERT_FINGERPRINT, FieldValue::Bytes((0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a).collect())),
        (FieldId::CONNECTION_ID, FieldValue::U64(9_007_199_254_740_993)),
        (FieldId::new(1000).unwrap(), FieldValue::Text("tenant-42".into())),
    ]
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v1");
    std::fs::create_dir_all(&dir).unwrap();
    let qkd_key = hex::decode(QKD_KEY_HEX).unwrap();
    let (ca_pem, ca_key_pem) = vector_ca();
    let issuer = qmeta_cert::Issuer::from_pem(&ca_pem, &ca_key_pem).unwrap();
    let leaf = LeafKey::generate(LeafAlg::P256).unwrap();
    let fields = fields();
    let req = MintRequest {
        serial: SERIAL,
        now_unix: NOW,
        validity_secs: VALIDITY,
        subject_cn: "lb-vector",
        key_id: uuid::Uuid::parse_str(KEY_ID).unwrap(),
        qkd_key: &qkd_key,
        state_version: STATE_VERSION,
        fields: &fields,
    };
    let minted = mint(&issuer, &leaf, &req).unwrap();
    let env = qmeta_cert::parse(&minted.der).unwrap();

    // Worked example for field 1 (src_ip), computed from the spec's inputs.
    let serial = env.serial;
    let mut value_key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&serial), &qkd_key).expand(KEY_INFO, &mut value_key).unwrap();
    let sealed = sealed_of(&minted.der, FieldId::SRC_IP);
    let worked = json!({
        "field_id": 1,
        "field_name": "src_ip",
        "hkdf_ikm_hex": QKD_KEY_HEX,
        "hkdf_salt_hex": hex::encode(serial),
        "hkdf_info_hex": hex::encode(KEY_INFO),
        "value_key_hex": hex::encode(value_key),
        "nonce_hex": hex::encode(nonce_bytes(FieldId::SRC_IP)),
        "aad_hex": hex::encode(aad_bytes(FieldId::SRC_IP)),
        "sealed_hex": hex::encode(&sealed),
        "plaintext_hex": hex::encode(fields[0].1.encode()),
    });
    let expected = json!({
        "format_version": env.format_version,
        "serial_hex": env.serial_hex,
        "key_id": env.key_id.to_string(),
        "state_version": env.state_version,
        "not_before": env.not_before,
        "not_after": env.not_after,
        "dropped": env.dropped.iter().map(|f| f.get()).collect::<Vec<_>>(),
        "fields": fields.iter().map(|(f, v)| json!({
            "id": f.get(),
            "name": f.name(),
            "value": v.to_display_string(),
            "sealed_hex": hex::encode(sealed_of(&minted.der, *f)),
        })).collect::<Vec<_>>(),
        "worked_example": worked,
    });
    std::fs::write(dir.join("qkd_key.hex"), format!("{QKD_KEY_HEX}\n")).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), pem("CERTIFICATE", &minted.der)).unwrap();
    let mut text = serde_json::to_string_pretty(&expected).unwrap();
    text.push('\n');
    std::fs::write(dir.join("expected.json"), text).unwrap();
    println!("wrote {} ({} bytes of certificate DER)", dir.display(), minted.der.len());
}

/// A P-256 CA like `qmeta_pki::Ca::generate` makes, but valid 2025..2099 so
/// that the vector's fixed time lies inside it whenever it is regenerated
/// (`openssl verify -attime` checks the CA's validity too).
fn vector_ca() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "qmeta");
    params.distinguished_name.push(DnType::CommonName, "qmeta test vector ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `ciphertext || tag` of field `f`, read with x509-parser.
fn sealed_of(der: &[u8], f: FieldId) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let oid = format!("{}.2.{}", qmeta_cert::OID_BASE, f.get());
    let want = oid_bytes(&oid);
    let ext = cert.extensions().iter().find(|e| e.oid.as_bytes() == want.as_slice()).unwrap();
    // extnValue contents = OCTET STRING (sealed); short or 0x81/0x82 lengths.
    let v = ext.value;
    let (start, len) = match v[1] {
        l if l < 0x80 => (2, usize::from(l)),
        0x81 => (3, usize::from(v[2])),
        _ => (4, usize::from(v[2]) << 8 | usize::from(v[3])),
    };
    v[start..start + len].to_vec()
}

/// DER content bytes of a dotted OID (arcs up to 128 bits).
fn oid_bytes(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u128> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut out = Vec::new();
    let mut push = |mut v: u128| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        tmp.reverse();
        out.extend(tmp);
    };
    push(arcs[0] * 40 + arcs[1]);
    for a in &arcs[2..] {
        push(*a);
    }
    out
}
