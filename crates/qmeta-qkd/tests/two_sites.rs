//! Two single-site KMEs (as two `qmeta kme` processes would run them),
//! linked over real TCP + mTLS on 127.0.0.1: BB84 between them, keys issued
//! at one site collected at the other.

mod common;

use common::{client_at, credentials, site_config, BE1, BE2, LB};
use qmeta_qkd::api;
use qmeta_qkd::kme::{start_site, Bb84Config, KmeSite, LinkConfig, PeerChannel, PeerSite, SingleSiteConfig, Site};
use qmeta_qkd::ClientError;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

fn link() -> LinkConfig {
    LinkConfig { key_rate: 100_000, max_key_count: 1000, seed: Some(11), ..LinkConfig::default() }
}

fn bb84(psk: &[u8]) -> Bb84Config {
    Bb84Config { psk: Some(Zeroizing::new(psk.to_vec())), ..Bb84Config::default() }
}

fn config(dir: &Path, site: Site, channel: PeerChannel, psk: &[u8]) -> SingleSiteConfig {
    let (local, peer) = match site {
        Site::A => {
            (site_config(dir, "kme-a", &[LB]), PeerSite { kme_id: "kme-b".into(), saes: vec![BE1.into(), BE2.into()] })
        }
        Site::B => (site_config(dir, "kme-b", &[BE1, BE2]), PeerSite { kme_id: "kme-a".into(), saes: vec![LB.into()] }),
    };
    SingleSiteConfig {
        site,
        local,
        peer,
        channel,
        link: link(),
        bb84: bb84(psk),
        quirks: Default::default(),
        max_sae_id_count: 0,
    }
}

async fn pair(dir: &Path) -> (KmeSite, KmeSite) {
    let psk = [7u8; 32];
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let b = start_site(config(dir, Site::B, PeerChannel::Listen(any), &psk)).await.unwrap();
    let link_addr = b.link_addr().expect("B listens for the link");
    let a = start_site(config(dir, Site::A, PeerChannel::Connect(link_addr), &psk)).await.unwrap();
    (a, b)
}

async fn wait_for_keys(dir: &Path, a: &KmeSite, b: &KmeSite, n: u64) {
    let lb = client_at(dir, a.addr(), "kme-a", LB);
    let be1 = client_at(dir, b.addr(), "kme-b", BE1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sa = lb.status(BE1).await.unwrap().stored_key_count;
        let sb = be1.status(LB).await.unwrap().stored_key_count;
        if a.peer_connected() && b.peer_connected() && sa >= n && sb >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no keys: A {sa}, B {sb}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enc_at_a_dec_at_b_and_back() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = credentials();
    let d = dir.path();
    let (a, b) = pair(d).await;
    wait_for_keys(d, &a, &b, 4).await;
    let lb = client_at(d, a.addr(), "kme-a", LB);
    let be1 = client_at(d, b.addr(), "kme-b", BE1);
    let be2 = client_at(d, b.addr(), "kme-b", BE2);
    // LB is master at A; BE1 collects at B: the same bytes, once.
    let keys = lb.enc_keys(BE1, 3, 256).await.unwrap();
    let ids: Vec<_> = keys.iter().map(|k| k.id).collect();
    assert_eq!(be2.dec_keys(LB, &ids).await.unwrap_err().http_status(), Some(401));
    let got = be1.dec_keys(LB, &ids).await.unwrap();
    for (k, g) in keys.iter().zip(&got) {
        assert_eq!((k.id, &k.bytes), (g.id, &g.bytes));
    }
    let err = be1.dec_keys(LB, &ids[..1]).await.unwrap_err();
    assert!(matches!(&err, ClientError::BadRequest { message, .. } if message == api::MSG_KEYS_NOT_FOUND), "{err}");
    // The other direction at the same time: BE1 master at B, LB collects at A.
    let (k1, k2) = tokio::join!(be1.enc_keys(LB, 2, 256), lb.enc_keys(BE2, 2, 256));
    let (k1, k2) = (k1.unwrap(), k2.unwrap());
    let back = lb.dec_keys(BE1, &[k1[0].id, k1[1].id]).await.unwrap();
    assert_eq!(back[1].bytes, k1[1].bytes);
    let fwd = be2.dec_keys(LB, &[k2[0].id, k2[1].id]).await.unwrap();
    assert_eq!(fwd[0].bytes, k2[0].bytes);
    // Keys issued concurrently at both sites never share material.
    for x in k1.iter().chain(&keys) {
        assert!(k2.iter().all(|y| y.bytes != x.bytes));
    }
    let st = lb.status(BE1).await.unwrap();
    let ext = st.status_extension.unwrap();
    assert_eq!(ext["qmeta_link_kind"], "bb84");
    assert_eq!(ext["qmeta_peer_connected"], true);
    assert!(ext["qmeta_qber"].as_f64().is_some(), "{ext}");
    assert!(st.stored_key_count <= st.max_key_count);

    // The peer goes away: A cannot relay, so it refuses with 503.
    b.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.peer_connected() {
        assert!(Instant::now() < deadline, "A never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = lb.enc_keys(BE1, 1, 256).await.unwrap_err();
    assert_eq!(err.http_status(), Some(503), "{err}");
    a.shutdown().await;
}

#[tokio::test]
async fn a_peer_with_the_wrong_identity_is_refused() {
    let dir = credentials();
    let d = dir.path();
    let psk = [9u8; 32];
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let b = start_site(config(d, Site::B, PeerChannel::Listen(any), &psk)).await.unwrap();
    // Site A expecting its peer to be "kme-a": B's certificate says kme-b.
    let mut cfg = config(d, Site::A, PeerChannel::Connect(b.link_addr().unwrap()), &psk);
    cfg.peer.kme_id = "kme-x".into();
    let a = start_site(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!a.peer_connected() && !b.peer_connected());
    a.shutdown().await;
    b.shutdown().await;
}

#[test]
fn single_site_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kme-a.toml");
    let text = r#"
        site = "a"
        [link]
        peer = "127.0.0.1:9440"
        psk = "0001020304050607080900010203040506070809000102030405060708090001"
        eve_fraction = 0.5
        cascade = "original"
        [a]
        kme_id = "kme-a"
        listen = "127.0.0.1:8441"
        cert = "a.crt"
        key = "a.key"
        client_ca = "ca.crt"
        saes = ["sae-lb"]
        quirks = ["slow"]
        [b]
        kme_id = "kme-b"
        saes = ["sae-be1"]
    "#;
    std::fs::write(&path, text).unwrap();
    let cfg = match qmeta_qkd::kme::load(&path).unwrap() {
        qmeta_qkd::kme::KmeConfig::Site(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(cfg.site, Site::A);
    assert_eq!(cfg.channel, PeerChannel::Connect("127.0.0.1:9440".parse().unwrap()));
    assert_eq!(cfg.peer.saes, vec!["sae-be1".to_string()]);
    assert_eq!(cfg.bb84.eve_fraction, 0.5);
    assert_eq!(cfg.bb84.psk.as_ref().unwrap().len(), 32);
    assert!(cfg.quirks.has(qmeta_qkd::kme::Quirk::Slow));
    assert!(!format!("{cfg:?}").contains("0001020304"), "psk never printed");
    // The pair loader refuses it with a pointer to the right function.
    let err = qmeta_qkd::kme::load_config(&path).unwrap_err();
    assert!(err.mentions("site"), "{err}");
    // Missing psk and channel, generator kind: each reported.
    std::fs::write(
        &path,
        text.replace("peer = \"127.0.0.1:9440\"", "kind = \"generator\"")
            .replace("psk = \"0001020304050607080900010203040506070809000102030405060708090001\"", "eve_fraction2 = 1"),
    )
    .unwrap();
    let err = qmeta_qkd::kme::load(&path).unwrap_err();
    for key in ["link.kind", "link.psk", "link.listen", "link.eve_fraction2"] {
        assert!(err.mentions(key), "missing {key} in:\n{err}");
    }
    assert!(!err.to_string().contains("0001020304"));
}
