//! Rough cost of minting and opening (not a test; no assertions):
//!
//! ```text
//! cargo run --release -p qmeta-cert --example mint_timing
//! ```

use qmeta_cert::{mint, parse, Issuer, LeafAlg, LeafKey, MintRequest};
use qmeta_fields::{FieldId, FieldValue};
use std::time::Instant;

fn main() {
    let qkd_key = [7u8; 32];
    let fields = vec![
        (FieldId::SRC_IP, FieldValue::Ip("198.51.100.23".parse().unwrap())),
        (FieldId::TIMESTAMP, FieldValue::TimestampMs(1_767_225_600_123)),
        (FieldId::SNI, FieldValue::Text("api.example.com".into())),
    ];
    for (ca_alg, leaf_alg) in [(qmeta_pki::KeyAlg::P256, LeafAlg::P256), (qmeta_pki::KeyAlg::Ed25519, LeafAlg::Ed25519)]
    {
        let ca = qmeta_pki::Ca::generate("timing ca", ca_alg).unwrap();
        let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).unwrap();
        let leaf = LeafKey::generate(leaf_alg).unwrap();
        let n: u32 = 2000;
        let start = Instant::now();
        let mut der = Vec::new();
        for i in 0..n {
            let mut serial = [0x5au8; 16];
            serial[..4].copy_from_slice(&i.to_be_bytes());
            let req = MintRequest {
                serial,
                now_unix: 1_767_225_600,
                validity_secs: 300,
                subject_cn: "timing",
                key_id: uuid::Uuid::nil(),
                qkd_key: &qkd_key,
                state_version: 1,
                fields: &fields,
            };
            der = mint(&issuer, &leaf, &req).unwrap().der;
        }
        let mint_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        let start = Instant::now();
        for _ in 0..n {
            let env = parse(&der).unwrap();
            std::hint::black_box(env.open(&qkd_key).unwrap());
        }
        let open_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!("{ca_alg:?} CA: mint {mint_us:.1} µs, parse+open {open_us:.1} µs ({} bytes, 3 fields)", der.len());
    }
}
