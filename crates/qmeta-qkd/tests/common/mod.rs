//! A KME pair on 127.0.0.1 with credentials generated in a tempdir.
#![allow(dead_code)]

use qmeta_pki::Ca;
use qmeta_qkd::kme::{start_pair, KmePair, KmePairConfig, KmeSiteConfig, LinkConfig};
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

/// CA, KME server certs, SAE client certs; a pair with `link`.
pub async fn start(link: LinkConfig) -> Fixture {
    qmeta_pki::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_generate(dir.path(), "ca", "test CA").unwrap();
    for kme in ["kme-a", "kme-b"] {
        ca.issue_server(kme, &[kme, "127.0.0.1"])
            .unwrap()
            .write(dir.path(), kme)
            .unwrap();
    }
    for sae in [LB, BE1, BE2, "sae-stranger"] {
        ca.issue_client(sae)
            .unwrap()
            .write(dir.path(), sae)
            .unwrap();
    }
    let cfg = KmePairConfig {
        a: site(dir.path(), "kme-a", &[LB]),
        b: site(dir.path(), "kme-b", &[BE1, BE2]),
        link,
    };
    let pair = start_pair(cfg).await.unwrap();
    Fixture { dir, pair }
}

pub fn fast_link() -> LinkConfig {
    LinkConfig {
        key_rate: 100_000,
        max_key_count: 1000,
        seed: Some(7),
        ..LinkConfig::default()
    }
}

impl Fixture {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn client_config(&self, sae: &str, site_b: bool) -> KmeClientConfig {
        let (addr, kme_id) = if site_b {
            (self.pair.addr_b(), "kme-b")
        } else {
            (self.pair.addr_a(), "kme-a")
        };
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
        for _ in 0..200 {
            if lb.status(BE1).await.unwrap().stored_key_count >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("pool never reached {n} keys");
    }
}
