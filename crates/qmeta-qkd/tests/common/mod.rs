//! A KME pair on 127.0.0.1 with credentials generated in a tempdir.
#![allow(dead_code)]

use qmeta_pki::Ca;
use qmeta_qkd::kme::{start_pair_with, KmePair, KmePairConfig, KmeSiteConfig, LinkConfig, PairOptions};
use qmeta_qkd::{KmeClient, KmeClientConfig};
use std::path::PathBuf;
use std::time::Duration;

pub const LB: &str = "sae-lb";
pub const BE1: &str = "sae-be1";
pub const BE2: &str = "sae-be2";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub pair: KmePair,
}

fn site(dir: &std::path::Path, kme_id: &str, saes: &[&str]) -> KmeSiteConfig {
    KmeSiteConfig {
        kme_id: kme_id.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: dir.join(format!("{kme_id}.crt")),
        key: dir.join(format!("{kme_id}.key")),
        client_ca: dir.join("ca.crt"),
        saes: saes.iter().map(|s| s.to_string()).collect(),
    }
}

/// CA, KME server certs, SAE client certs; a pair with `link` and the
/// default options (BB84 link, no quirks).
pub async fn start(link: LinkConfig) -> Fixture {
    start_with(link, PairOptions::default()).await
}

/// Credentials for a CA, both KMEs and the test SAEs, in a tempdir.
pub fn credentials() -> tempfile::TempDir {
    qmeta_pki::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_generate(dir.path(), "ca", "test CA").unwrap();
    for kme in ["kme-a", "kme-b"] {
        ca.issue_server(kme, &[kme, "127.0.0.1"]).unwrap().write(dir.path(), kme).unwrap();
    }
    for sae in [LB, BE1, BE2, "sae-stranger"] {
        ca.issue_client(sae).unwrap().write(dir.path(), sae).unwrap();
    }
    dir
}

pub fn site_config(dir: &std::path::Path, kme_id: &str, saes: &[&str]) -> KmeSiteConfig {
    site(dir, kme_id, saes)
}

/// A pair with `link` and `options`.
pub async fn start_with(link: LinkConfig, options: PairOptions) -> Fixture {
    let dir = credentials();
    let cfg = KmePairConfig { a: site(dir.path(), "kme-a", &[LB]), b: site(dir.path(), "kme-b", &[BE1, BE2]), link };
    let pair = start_pair_with(cfg, options).await.unwrap();
    Fixture { dir, pair }
}

pub fn fast_link() -> LinkConfig {
    LinkConfig { key_rate: 100_000, max_key_count: 1000, seed: Some(7), ..LinkConfig::default() }
}

impl Fixture {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn client_config(&self, sae: &str, site_b: bool) -> KmeClientConfig {
        let (addr, kme_id) = if site_b { (self.pair.addr_b(), "kme-b") } else { (self.pair.addr_a(), "kme-a") };
        KmeClientConfig {
            url: format!("https://{addr}"),
            kme_id: kme_id.into(),
            ca: self.path("ca.crt"),
            cert: self.path(&format!("{sae}.crt")),
            key: self.path(&format!("{sae}.key")),
            timeout: Duration::from_secs(5),
        }
    }

    /// A client for `sae` at site A (`site_b` false) or B.
    pub fn client(&self, sae: &str, site_b: bool) -> KmeClient {
        KmeClient::new(self.client_config(sae, site_b)).unwrap()
    }

    /// Waits (bounded) until the pool holds at least `n` default-size keys.
    pub async fn wait_for_keys(&self, n: u64) {
        let lb = self.client(LB, false);
        // A BB84 block takes ~0.5 s in a debug build.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if lb.status(BE1).await.unwrap().stored_key_count >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("pool never reached {n} keys");
    }
}

/// A client for `sae` talking to the KME `kme_id` at `addr`, with the
/// credentials in `dir`.
pub fn client_at(dir: &std::path::Path, addr: std::net::SocketAddr, kme_id: &str, sae: &str) -> KmeClient {
    KmeClient::new(KmeClientConfig {
        url: format!("https://{addr}"),
        kme_id: kme_id.into(),
        ca: dir.join("ca.crt"),
        cert: dir.join(format!("{sae}.crt")),
        key: dir.join(format!("{sae}.key")),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

/// One raw HTTPS request as `sae` (for method rules the client never
/// breaks): status and body.
pub async fn raw(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    kme_id: &str,
    sae: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    let cert = dir.join(format!("{sae}.crt"));
    let key = dir.join(format!("{sae}.key"));
    let mut tls = qmeta_pki::client_config(&dir.join("ca.crt"), Some((&cert, &key))).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(kme_id.to_string()).unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let task = tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr.to_string());
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body.to_string()))).unwrap();
    let resp =
        tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await.expect("answer in time").unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    task.abort();
    (status, body)
}
