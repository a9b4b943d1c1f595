//! Certificate minting (2, 8, 16 fields; P-256 and Ed25519), opening the
//! sealed values, and the backend side: chain verification + parse + open.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use qmeta_cert::{Issuer, LeafAlg, LeafKey, MintRequest};
use qmeta_fields::{FieldId, FieldKind, FieldValue};
use qmeta_pki::{Ca, KeyAlg};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::hint::black_box;
use std::time::Duration;

const NOW: u64 = 1_900_000_000;
const QKD_KEY: [u8; 32] = [7; 32];

/// The first `n` known fields with plausible values.
fn fields(n: usize) -> Vec<(FieldId, FieldValue)> {
    FieldId::known()
        .take(n)
        .map(|f| {
            let v = match f.kind() {
                FieldKind::Ip => FieldValue::Ip("203.0.113.77".parse().unwrap()),
                FieldKind::U16 => FieldValue::U16(44_321),
                FieldKind::U32 => FieldValue::U32(64_512),
                FieldKind::U64 => FieldValue::U64(1 << 40),
                FieldKind::TimestampMs => FieldValue::TimestampMs(NOW * 1000),
                FieldKind::Text => FieldValue::Text("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
                FieldKind::Bytes => FieldValue::Bytes(vec![0xab; 32]),
            };
            (f, v)
        })
        .collect()
}

struct Setup {
    issuer: Issuer,
    leaf: LeafKey,
    ca_der: Vec<u8>,
}

fn setup(alg: LeafAlg) -> Setup {
    let key_alg = match alg {
        LeafAlg::P256 => KeyAlg::P256,
        LeafAlg::Ed25519 => KeyAlg::Ed25519,
    };
    let ca = Ca::generate("bench CA", key_alg).unwrap();
    let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).unwrap();
    let ca_der = issuer.ca_cert_der().to_vec();
    Setup { issuer, leaf: LeafKey::generate(alg).unwrap(), ca_der }
}

fn request<'a>(fields: &'a [(FieldId, FieldValue)]) -> MintRequest<'a> {
    MintRequest {
        serial: [0x5a; 16],
        now_unix: NOW,
        validity_secs: 300,
        subject_cn: "qmeta lb-1",
        key_id: uuid::Uuid::from_u128(0x1234),
        qkd_key: &QKD_KEY,
        state_version: 3,
        fields,
    }
}

fn alg_name(alg: LeafAlg) -> &'static str {
    match alg {
        LeafAlg::P256 => "p256",
        LeafAlg::Ed25519 => "ed25519",
    }
}

fn mint(c: &mut Criterion) {
    let mut g = c.benchmark_group("cert/mint");
    for alg in [LeafAlg::P256, LeafAlg::Ed25519] {
        let s = setup(alg);
        for n in [2, 8, 16] {
            let f = fields(n);
            let req = request(&f);
            let minted = qmeta_cert::mint(&s.issuer, &s.leaf, &req).unwrap();
            assert_eq!(minted.included.len(), n);
            g.bench_with_input(BenchmarkId::new(alg_name(alg), n), &req, |b, req| {
                b.iter(|| qmeta_cert::mint(&s.issuer, &s.leaf, black_box(req)).unwrap())
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("cert/leaf_key_generate");
    for alg in [LeafAlg::P256, LeafAlg::Ed25519] {
        g.bench_function(alg_name(alg), |b| b.iter(|| LeafKey::generate(alg).unwrap()));
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let s = setup(LeafAlg::P256);
    let mut g = c.benchmark_group("cert/parse_open");
    for n in [2, 8, 16] {
        let f = fields(n);
        let der = qmeta_cert::mint(&s.issuer, &s.leaf, &request(&f)).unwrap().der;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("parse", n), &der, |b, der| {
            b.iter(|| qmeta_cert::parse(black_box(der)).unwrap())
        });
        let env = qmeta_cert::parse(&der).unwrap();
        assert_eq!(env.open(&QKD_KEY).unwrap(), f);
        g.bench_with_input(BenchmarkId::new("open", n), &env, |b, env| {
            b.iter(|| env.open(black_box(&QKD_KEY)).unwrap())
        });
    }
    g.finish();
}

/// What a backend does per connection: webpki verifies the chain for
/// client auth (rustls does this in the handshake), then parse + open.
fn backend_side(c: &mut Criterion) {
    let mut g = c.benchmark_group("cert/backend_verify_parse_open");
    for alg in [LeafAlg::P256, LeafAlg::Ed25519] {
        let s = setup(alg);
        let anchor_der = CertificateDer::from(s.ca_der.clone());
        let anchors = [webpki::anchor_from_trusted_cert(&anchor_der).unwrap()];
        let algs = [webpki::aws_lc_rs::ECDSA_P256_SHA256, webpki::aws_lc_rs::ED25519];
        for n in [2, 16] {
            let f = fields(n);
            let der = CertificateDer::from(qmeta_cert::mint(&s.issuer, &s.leaf, &request(&f)).unwrap().der);
            let now = UnixTime::since_unix_epoch(Duration::from_secs(NOW + 10));
            let run = || {
                let ee = webpki::EndEntityCert::try_from(&der).unwrap();
                ee.verify_for_usage(&algs, &anchors, &[], now, webpki::KeyUsage::client_auth(), None, None).unwrap();
                qmeta_cert::parse(&der).unwrap().open(&QKD_KEY).unwrap()
            };
            assert_eq!(run(), f);
            g.bench_function(BenchmarkId::new(alg_name(alg), n), |b| b.iter(run));
        }
    }
    g.finish();
}

criterion_group!(benches, mint, open, backend_side);
criterion_main!(benches);
