//! The limit: CPU cost of the proxy's two TLS handshakes alone, measured
//! in-process over memory buffers, counting only the proxy's side of each:
//!
//! - client-facing: the server side (rustls, the LB's listener config,
//!   P-256 certificate, X25519; session tickets included as rustls sends
//!   them), against the load generator's client config;
//! - upstream: the client side with mutual TLS (verifying the backend's
//!   chain, signing with the leaf key), resumption disabled, against a
//!   rustls server that, like nginx on OpenSSL 3.0, offers X25519 only.
//!
//! `upstream_with_mint` adds what qmeta does besides the handshake for that
//! leg: minting the certificate and building the per-connection config.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use qmeta_cert::{Issuer, LeafAlg, LeafKey, MintRequest};
use qmeta_fields::{FieldId, FieldValue};
use qmeta_pki::{Ca, KeyAlg};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::aws_lc_rs::kx_group;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Timed {
    Client,
    Server,
}

/// Runs one handshake to completion (tickets delivered), returning the CPU
/// time spent inside the timed side's calls.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection, timed: Timed) -> Duration {
    let mut spent = Duration::ZERO;
    let mut buf = Vec::with_capacity(8192);
    for _ in 0..16 {
        let mut moved = false;
        // client → server
        buf.clear();
        let t = Instant::now();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if timed == Timed::Client {
            spent += t.elapsed();
        }
        if !buf.is_empty() {
            moved = true;
            let t = Instant::now();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().unwrap();
            }
            if timed == Timed::Server {
                spent += t.elapsed();
            }
        }
        // server → client
        buf.clear();
        let t = Instant::now();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if timed == Timed::Server {
            spent += t.elapsed();
        }
        if !buf.is_empty() {
            moved = true;
            let t = Instant::now();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
            if timed == Timed::Client {
                spent += t.elapsed();
            }
        }
        if !moved && !client.is_handshaking() && !server.is_handshaking() {
            return spent;
        }
    }
    panic!("handshake did not finish");
}

struct Pki {
    _dir: tempfile::TempDir,
    frontend_server: Arc<ServerConfig>,
    loadgen_client: Arc<ClientConfig>,
    backend_server: Arc<ServerConfig>,
    backend_roots: Arc<rustls::RootCertStore>,
}

fn provider_with(groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>) -> Arc<CryptoProvider> {
    let mut p = (*qmeta_pki::provider()).clone();
    p.kx_groups = groups;
    Arc::new(p)
}

fn pki(lb_ca: &Ca) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let front = Ca::generate("front CA", KeyAlg::P256).unwrap();
    front.credential.write(d, "frontend-ca").unwrap();
    front.issue_server("frontend", &["localhost"]).unwrap().write(d, "frontend").unwrap();
    let back = Ca::generate("back CA", KeyAlg::P256).unwrap();
    back.credential.write(d, "backend-ca").unwrap();
    back.issue_server("app-a", &["app-a"]).unwrap().write(d, "app-a").unwrap();
    lb_ca.credential.write(d, "lb-ca").unwrap();
    let p = |s: &str| d.join(s);
    let frontend_server = Arc::new(
        qmeta_pki::server_config(&p("frontend.crt"), &p("frontend.key"), qmeta_pki::ClientAuth::None, &[b"http/1.1"])
            .unwrap(),
    );
    let loadgen_client =
        qmeta_bench::client::tls_config(&p("frontend-ca.crt"), qmeta_bench::client::Kx::X25519).unwrap();
    // nginx on OpenSSL 3.0 has no ML-KEM: the stand-in offers X25519 only.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(qmeta_pki::root_store(&p("lb-ca.crt")).unwrap()),
        qmeta_pki::provider(),
    )
    .build()
    .unwrap();
    let backend_server = Arc::new(
        ServerConfig::builder_with_provider(provider_with(vec![kx_group::X25519]))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                qmeta_pki::load_certs(&p("app-a.crt")).unwrap(),
                qmeta_pki::load_key(&p("app-a.key")).unwrap(),
            )
            .unwrap(),
    );
    let backend_roots = Arc::new(qmeta_pki::root_store(&p("backend-ca.crt")).unwrap());
    Pki { frontend_server, loadgen_client, backend_server, backend_roots, _dir: dir }
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// qmeta's upstream base config (as in `qmeta-lb`'s minter).
fn upstream_base(pki: &Pki, hybrid: bool) -> ClientConfig {
    let groups = if hybrid { vec![kx_group::X25519MLKEM768, kx_group::X25519] } else { vec![kx_group::X25519] };
    let mut c = ClientConfig::builder_with_provider(provider_with(groups))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.backend_roots.clone())
        .with_client_cert_resolver(Arc::new(OneCert(Arc::new(CertifiedKey::new(
            vec![],
            signer(&LeafKey::generate(LeafAlg::P256).unwrap()),
        )))));
    c.resumption = Resumption::disabled();
    c
}

fn signer(leaf: &LeafKey) -> Arc<dyn rustls::sign::SigningKey> {
    qmeta_pki::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.pkcs8_der().to_vec())))
        .unwrap()
}

fn fields() -> Vec<(FieldId, FieldValue)> {
    vec![
        (FieldId::SRC_IP, FieldValue::Ip("127.0.0.1".parse().unwrap())),
        (FieldId::TIMESTAMP, FieldValue::TimestampMs(1_900_000_000_000)),
    ]
}

fn mint_cert(issuer: &Issuer, leaf: &LeafKey, serial: u128) -> Vec<u8> {
    let f = fields();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    qmeta_cert::mint(
        issuer,
        leaf,
        &MintRequest {
            serial: serial.to_be_bytes(),
            now_unix: now,
            validity_secs: 300,
            subject_cn: "qmeta lb-bench",
            key_id: uuid::Uuid::from_u128(1),
            qkd_key: &[3; 32],
            state_version: 1,
            fields: &f,
        },
    )
    .unwrap()
    .der
}

fn handshakes(c: &mut Criterion) {
    qmeta_pki::install_provider();
    let mut g = c.benchmark_group("handshake");
    g.sample_size(50);

    let lb_ca = Ca::generate("lb CA", KeyAlg::P256).unwrap();
    let front = pki(&lb_ca);
    let name = ServerName::try_from("localhost").unwrap();
    g.bench_function("client_facing_server_side", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut client = ClientConnection::new(front.loadgen_client.clone(), name.clone()).unwrap();
                let t = Instant::now();
                let mut server = ServerConnection::new(front.frontend_server.clone()).unwrap();
                total += t.elapsed();
                total += handshake(&mut client, &mut server, Timed::Server);
            }
            total
        })
    });

    let backend = ServerName::try_from("app-a").unwrap();
    for (ca_alg, leaf_alg) in [(KeyAlg::P256, LeafAlg::P256), (KeyAlg::Ed25519, LeafAlg::Ed25519)] {
        let ca = Ca::generate("lb CA", ca_alg).unwrap();
        let pki = pki(&ca);
        let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).unwrap();
        let leaf = LeafKey::generate(leaf_alg).unwrap();
        let leaf_signer = signer(&leaf);
        let alg = if leaf_alg == LeafAlg::P256 { "p256" } else { "ed25519" };
        // A certificate minted once: the handshake alone, as with a static cert.
        let static_cert = CertificateDer::from(mint_cert(&issuer, &leaf, 1 << 127));
        for hybrid in [false, true] {
            let kx = if hybrid { "x25519mlkem768" } else { "x25519" };
            let base = upstream_base(&pki, hybrid);
            let certified = Arc::new(CertifiedKey::new(vec![static_cert.clone()], leaf_signer.clone()));
            let mut cfg = base.clone();
            cfg.client_auth_cert_resolver = Arc::new(OneCert(certified));
            let cfg = Arc::new(cfg);
            g.bench_function(BenchmarkId::new("upstream_client_side", format!("{alg}-{kx}")), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut server = ServerConnection::new(pki.backend_server.clone()).unwrap();
                        let t = Instant::now();
                        let mut client = ClientConnection::new(cfg.clone(), backend.clone()).unwrap();
                        total += t.elapsed();
                        total += handshake(&mut client, &mut server, Timed::Client);
                    }
                    total
                })
            });
            // Mint + per-connection config + handshake, as qmeta does it.
            let mut serial = 1u128 << 127;
            g.bench_function(BenchmarkId::new("upstream_with_mint", format!("{alg}-{kx}")), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        serial += 1;
                        let mut server = ServerConnection::new(pki.backend_server.clone()).unwrap();
                        let t = Instant::now();
                        let der = mint_cert(&issuer, &leaf, serial);
                        let certified = CertifiedKey::new(vec![CertificateDer::from(der)], leaf_signer.clone());
                        let mut cfg = base.clone();
                        cfg.client_auth_cert_resolver = Arc::new(OneCert(Arc::new(certified)));
                        let mut client = ClientConnection::new(Arc::new(cfg), backend.clone()).unwrap();
                        total += t.elapsed();
                        total += handshake(&mut client, &mut server, Timed::Client);
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
