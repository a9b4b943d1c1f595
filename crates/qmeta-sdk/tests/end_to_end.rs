//! The sample backend against a real in-process KME pair and real TLS over
//! 127.0.0.1: the LB side fetches a key with enc_keys at KME A, mints a
//! certificate with qmeta-cert, and connects presenting it; the backend
//! fetches the same key by id at KME B and answers with what it decrypted.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use qmeta_cert::{Issuer, LeafAlg, LeafKey, MintRequest};
use qmeta_fields::{FieldId, FieldValue};
use qmeta_pki::{Ca, KeyAlg};
use qmeta_qkd::client::{KmeClient, KmeClientConfig};
use qmeta_qkd::kme::{start_pair, KmePair, KmePairConfig, KmeSiteConfig, LinkConfig};
use qmeta_qkd::Key;
use qmeta_sdk::sample::{self, SampleBackend, SampleBackendConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

const LB_SAE: &str = "sae-lb";
const BACKEND_SAE: &str = "sae-backend-1";
const STEP: Duration = Duration::from_secs(10);

struct World {
    dir: TempDir,
    pair: KmePair,
    backend: SampleBackend,
    lb_kme: KmeClient,
    lb_ca: Ca,
    server_ca: PathBuf,
}

fn kme_client(dir: &Path, url: String, kme_id: &str, sae: &str) -> KmeClientConfig {
    KmeClientConfig {
        url,
        kme_id: kme_id.into(),
        ca: dir.join("kme-ca.crt"),
        cert: dir.join(format!("{sae}.crt")),
        key: dir.join(format!("{sae}.key")),
        timeout: Duration::from_secs(5),
    }
}

fn site(dir: &Path, kme_id: &str, sae: &str) -> KmeSiteConfig {
    KmeSiteConfig {
        kme_id: kme_id.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: dir.join(format!("{kme_id}.crt")),
        key: dir.join(format!("{kme_id}.key")),
        client_ca: dir.join("kme-ca.crt"),
        saes: vec![sae.into()],
    }
}

async fn setup() -> World {
    qmeta_pki::install_provider();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let kme_ca = Ca::generate("KME CA", KeyAlg::P256).unwrap();
    kme_ca.credential.write(dir, "kme-ca").unwrap();
    for kme in ["kme-a", "kme-b"] {
        kme_ca.issue_server(kme, &[kme, "127.0.0.1"]).unwrap().write(dir, kme).unwrap();
    }
    for sae in [LB_SAE, BACKEND_SAE] {
        kme_ca.issue_client(sae).unwrap().write(dir, sae).unwrap();
    }
    let link = LinkConfig {
        key_rate: 1000,
        max_key_count: 1000,
        key_size: 256,
        max_key_size: 1024,
        min_key_size: 64,
        max_key_per_request: 128,
        seed: Some(7),
    };
    let pair = start_pair(KmePairConfig { a: site(dir, "kme-a", LB_SAE), b: site(dir, "kme-b", BACKEND_SAE), link })
        .await
        .unwrap();

    let lb_ca = Ca::generate("qmeta LB CA", KeyAlg::P256).unwrap();
    lb_ca.credential.write(dir, "lb-ca").unwrap();
    let server_ca = Ca::generate("backend CA", KeyAlg::P256).unwrap();
    server_ca.credential.write(dir, "server-ca").unwrap();
    server_ca.issue_server("backend-1", &["backend-1", "127.0.0.1"]).unwrap().write(dir, "backend-1").unwrap();

    let backend = sample::start(SampleBackendConfig {
        name: "backend-1".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: dir.join("backend-1.crt"),
        key: dir.join("backend-1.key"),
        lb_ca: dir.join("lb-ca.crt"),
        kme: kme_client(dir, format!("https://{}", pair.addr_b()), "kme-b", BACKEND_SAE),
        lb_sae_id: LB_SAE.into(),
    })
    .await
    .unwrap();
    let lb_kme = KmeClient::new(kme_client(dir, format!("https://{}", pair.addr_a()), "kme-a", LB_SAE)).unwrap();
    World { server_ca: dir.join("server-ca.crt"), dir: tmp, pair, backend, lb_kme, lb_ca }
}

impl World {
    /// One key for the backend's SAE from KME A, as the LB's rotation does.
    /// The simulated link fills its pool over time: retry while it says so.
    async fn lb_key(&self) -> Key {
        for _ in 0..100 {
            match self.lb_kme.enc_keys(BACKEND_SAE, 1, 256).await {
                Ok(mut keys) => return keys.pop().expect("one key"),
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("enc_keys: {e}"),
            }
        }
        panic!("KME A delivered no key in 5 s");
    }

    async fn stop(self) {
        self.backend.shutdown().await;
        self.pair.shutdown().await;
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A client identity: the minted certificate and the leaf key's PKCS#8.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn mint(
    ca: &Ca,
    key_id: uuid::Uuid,
    qkd_key: &[u8],
    state_version: u64,
    fields: &[(FieldId, FieldValue)],
) -> (Identity, String) {
    let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).unwrap();
    let leaf = LeafKey::generate(LeafAlg::P256).unwrap();
    let req = MintRequest {
        serial: rand::random(),
        now_unix: now_unix(),
        validity_secs: 300,
        subject_cn: "qmeta-lb",
        key_id,
        qkd_key,
        state_version,
        fields,
    };
    let minted = qmeta_cert::mint(&issuer, &leaf, &req).unwrap();
    assert!(minted.dropped.is_empty());
    let key = PrivateKeyDer::try_from(leaf.pkcs8_der().to_vec()).unwrap();
    ((vec![CertificateDer::from(minted.der)], key), minted.serial_hex)
}

/// The full error chain, so assertions can look for the TLS alert.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Connects to the backend presenting `identity` and sends GET for each
/// path on one connection. Returns (status, JSON body) per request, or the
/// error chain if the connection or any request failed.
async fn get(w: &World, identity: Option<Identity>, paths: &[&str]) -> Result<Vec<(u16, Value)>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in qmeta_pki::load_certs(&w.server_ca).unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(qmeta_pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let addr = w.backend.addr();
    let run = async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| chain(&e))?;
        let tls = connector.connect(ServerName::try_from("backend-1").unwrap(), tcp).await.map_err(|e| chain(&e))?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| chain(&e))?;
        tokio::spawn(conn);
        let mut out = Vec::new();
        for path in paths {
            let req = hyper::Request::get(*path).header("host", "backend-1").body(Empty::<Bytes>::new()).unwrap();
            let resp = sender.send_request(req).await.map_err(|e| chain(&e))?;
            let status = resp.status().as_u16();
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body = resp.into_body().collect().await.map_err(|e| chain(&e))?.to_bytes();
            out.push((status, serde_json::from_slice(&body).unwrap()));
        }
        Ok(out)
    };
    tokio::time::timeout(STEP, run).await.expect("request timed out")
}

#[tokio::test]
async fn backend_answers_with_the_metadata_the_lb_minted() {
    let w = setup().await;
    let key = w.lb_key().await;
    let ts = now_unix() * 1000 + 123;
    let fields = vec![
        (FieldId::SRC_IP, FieldValue::Ip("127.0.0.1".parse().unwrap())),
        (FieldId::SRC_PORT, FieldValue::U16(54321)),
        (FieldId::DST_IP, FieldValue::Ip("2001:db8::7".parse().unwrap())),
        (FieldId::TIMESTAMP, FieldValue::TimestampMs(ts)),
        (FieldId::SNI, FieldValue::Text("shop.example".into())),
        (FieldId::CLIENT_CERT_FINGERPRINT, FieldValue::Bytes(vec![0xde, 0xad, 0x01])),
        (FieldId::new(1000).unwrap(), FieldValue::Text("tenant-7".into())),
    ];
    let (identity, serial) = mint(&w.lb_ca, key.id, &key.bytes, 7, &fields);
    let answers = get(&w, Some(identity), &["/hello", "/again?x=1"]).await.unwrap();
    assert_eq!(answers.len(), 2);
    let (status, body) = &answers[0];
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["backend"], json!("backend-1"));
    assert_eq!(body["path"], json!("/hello"));
    let m = &body["metadata"];
    assert_eq!(m["serial"], json!(serial));
    assert_eq!(m["key_id"], json!(key.id.to_string()));
    assert_eq!(m["state_version"], json!(7));
    assert_eq!(
        m["fields"],
        json!({
            "src_ip": "127.0.0.1",
            "src_port": 54321,
            "dst_ip": "2001:db8::7",
            "timestamp": ts,
            "sni": "shop.example",
            "client_cert_fingerprint": "dead01",
            "custom_1000": "tenant-7",
        })
    );
    assert_eq!(m["dropped"], json!([]));
    // Same connection, same metadata, the second request's path.
    assert_eq!(answers[1].0, 200);
    assert_eq!(answers[1].1["path"], json!("/again"));
    assert_eq!(answers[1].1["metadata"], *m);

    // A second certificate under the same key id: KME B delivers a key only
    // once, so this succeeds only because the backend cached it.
    let fields2 = [(FieldId::SRC_PORT, FieldValue::U16(40000))];
    let (identity2, serial2) = mint(&w.lb_ca, key.id, &key.bytes, 8, &fields2);
    let answers = get(&w, Some(identity2), &["/"]).await.unwrap();
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    let m = &answers[0].1["metadata"];
    assert_eq!(m["serial"], json!(serial2));
    assert_eq!(m["state_version"], json!(8));
    assert_eq!(m["fields"], json!({"src_port": 40000}));
    w.stop().await;
}

#[tokio::test]
async fn handshake_refused_without_an_lb_certificate() {
    let w = setup().await;
    let key = w.lb_key().await;
    let fields = [(FieldId::SRC_IP, FieldValue::Ip("127.0.0.1".parse().unwrap()))];

    // TLS 1.3: the client finishes its side before the server checks the
    // certificate, so the refusal arrives as an alert on the first read.
    let err = get(&w, None, &["/"]).await.unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");

    // Another CA: rustls does not find the issuer.
    let other_ca = Ca::generate("some other CA", KeyAlg::P256).unwrap();
    let (foreign, _) = mint(&other_ca, key.id, &key.bytes, 1, &fields);
    let err = get(&w, Some(foreign), &["/"]).await.unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");

    // A CA impersonating the LB CA's name: the signature check fails.
    let twin_ca = Ca::generate("qmeta LB CA", KeyAlg::P256).unwrap();
    let (forged, _) = mint(&twin_ca, key.id, &key.bytes, 1, &fields);
    let err = get(&w, Some(forged), &["/"]).await.unwrap_err();
    assert!(err.contains("DecryptError"), "{err}");

    // The backend still serves a proper LB certificate afterwards.
    let (good, _) = mint(&w.lb_ca, key.id, &key.bytes, 1, &fields);
    assert_eq!(get(&w, Some(good), &["/"]).await.unwrap()[0].0, 200);

    // After shutdown the port is closed.
    let addr = w.backend.addr();
    w.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
}

#[tokio::test]
async fn unreadable_metadata_gets_a_502_without_secrets() {
    let w = setup().await;
    let fields = [(FieldId::SNI, FieldValue::Text("secret-host.example".into()))];

    // Signed by the LB CA but not a qmeta certificate.
    let cred = w.lb_ca.issue_client("plain-client").unwrap();
    let certs = qmeta_pki::load_certs(&write_tmp(&w, "plain.crt", &cred.cert_pem)).unwrap();
    let key = qmeta_pki::load_key(&write_tmp(&w, "plain.key", &cred.key_pem)).unwrap();
    let (status, body) = get(&w, Some((certs, key)), &["/p"]).await.unwrap().remove(0);
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["backend"], json!("backend-1"));
    assert_eq!(body["path"], json!("/p"));
    assert!(body["error"].as_str().unwrap().starts_with("not a qmeta LB certificate"), "{body}");
    assert_eq!(body["retryable"], json!(false));

    // A key id KME B never issued.
    let unknown = uuid::Uuid::new_v4();
    let bogus = [0x42u8; 32];
    let (identity, _) = mint(&w.lb_ca, unknown, &bogus, 1, &fields);
    let (status, body) = get(&w, Some(identity), &["/"]).await.unwrap().remove(0);
    assert_eq!(status, 502, "{body}");
    let text = body.to_string();
    // Only a category reaches the client: no key id, no KME address.
    assert!(text.contains("could not be fetched from the KME"), "{text}");
    assert!(!text.contains(&unknown.to_string()) && !text.contains("https://"), "{text}");
    assert_eq!(body["retryable"], json!(false), "the KME does not know the key: retrying cannot help");
    assert!(!text.contains("secret-host") && !text.contains("4242424242"), "{text}");

    // A real key id, but the LB sealed with other bytes: authentication fails.
    let key = w.lb_key().await;
    let (identity, _) = mint(&w.lb_ca, key.id, &bogus, 1, &fields);
    let (status, body) = get(&w, Some(identity), &["/"]).await.unwrap().remove(0);
    assert_eq!(status, 502, "{body}");
    let text = body.to_string();
    assert!(text.contains("failed to authenticate"), "{text}");
    assert_eq!(body["retryable"], json!(false));
    assert!(!text.contains("secret-host") && !text.contains(&hex::encode(&key.bytes[..8])), "{text}");
    w.stop().await;
}

fn write_tmp(w: &World, name: &str, text: &str) -> PathBuf {
    let p = w.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}
