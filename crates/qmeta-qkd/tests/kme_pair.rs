//! ETSI GS QKD 014 over real HTTPS + mTLS on 127.0.0.1: client against the
//! simulated KME pair.

mod common;

use common::{fast_link, start, BE1, BE2, LB};
use qmeta_qkd::api::{self, KeyRequest};
use qmeta_qkd::kme::LinkConfig;
use qmeta_qkd::{ClientError, KmeClient, KmeClientConfig};
use std::time::Duration;

#[tokio::test]
async fn enc_at_a_dec_at_b_same_bytes_once() {
    let f = start(fast_link()).await;
    f.wait_for_keys(10).await;
    let lb = f.client(LB, false);
    let be1 = f.client(BE1, true);
    assert_eq!(lb.sae_id(), LB);
    let keys = lb.enc_keys(BE1, 3, 256).await.unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.bytes.len() == 32));
    let ids: Vec<_> = keys.iter().map(|k| k.id).collect();
    let got = be1.dec_keys(LB, &ids).await.unwrap();
    for (a, b) in keys.iter().zip(&got) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.bytes, b.bytes);
    }
    // Second delivery of the same ids: the spec's 400.
    let err = be1.dec_keys(LB, &ids[..1]).await.unwrap_err();
    match &err {
        ClientError::BadRequest { message, call, .. } => {
            assert_eq!(message, api::MSG_KEYS_NOT_FOUND);
            assert_eq!(*call, "dec_keys");
        }
        other => panic!("expected 400, got {other}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&format!("https://{}", f.pair.addr_b())), "{err}");
}

#[tokio::test]
async fn wrong_slave_gets_401_and_keys_stay_for_the_right_one() {
    let f = start(fast_link()).await;
    f.wait_for_keys(2).await;
    let keys = f.client(LB, false).enc_keys(BE1, 1, 256).await.unwrap();
    let err = f.client(BE2, true).dec_keys(LB, &[keys[0].id]).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
    assert_eq!(err.http_status(), Some(401));
    assert!(!err.is_retryable());
    // The 401 did not consume the key.
    let got = f.client(BE1, true).dec_keys(LB, &[keys[0].id]).await.unwrap();
    assert_eq!(got[0].bytes, keys[0].bytes);
    // An SAE not attached to a KME gets 401 for everything there.
    let err = f.client(BE1, false).status(LB).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
    let err = f.client("sae-stranger", true).dec_keys(LB, &[keys[0].id]).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
}

fn bad_request(err: ClientError) -> String {
    match err {
        ClientError::BadRequest { message, .. } => message,
        other => panic!("expected 400, got {other}"),
    }
}

#[tokio::test]
async fn request_checks_answer_400_with_spec_messages() {
    let f = start(fast_link()).await;
    f.wait_for_keys(2).await;
    let lb = f.client(LB, false);
    let raw = |number, size| KeyRequest { number: Some(number), size: Some(size), ..KeyRequest::default() };
    let m = bad_request(lb.request_keys(BE1, &raw(1, 260)).await.unwrap_err());
    assert_eq!(m, api::MSG_SIZE_MULTIPLE_OF_8);
    let m = bad_request(lb.request_keys(BE1, &raw(129, 256)).await.unwrap_err());
    assert!(m.contains("max_key_per_request 128"), "{m}");
    let m = bad_request(lb.enc_keys(BE1, 1, 2048).await.unwrap_err());
    assert!(m.contains("max_key_size"), "{m}");
    let ext = KeyRequest { extension_mandatory: Some(vec![serde_json::json!({"acme_route": "x"})]), ..raw(1, 256) };
    let m = bad_request(lb.request_keys(BE1, &ext).await.unwrap_err());
    assert_eq!(m, api::MSG_EXTENSION_MANDATORY);
    // Slave on the same KME as the master.
    let m = bad_request(lb.enc_keys(LB, 1, 256).await.unwrap_err());
    assert!(m.contains("not attached to the peer KME kme-b"), "{m}");
    // The client refuses sizes it could not validate before sending.
    let err = lb.enc_keys(BE1, 1, 260).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument { .. }), "{err}");
    // An empty body means one key of the default size.
    let c = lb.request_keys(BE1, &KeyRequest::default()).await.unwrap();
    assert_eq!(api::keys_from_enc(c, 1, 256).unwrap().len(), 1);
}

#[tokio::test]
async fn empty_pool_is_503_and_retryable() {
    let f = start(LinkConfig { key_rate: 0, ..fast_link() }).await;
    let lb = f.client(LB, false);
    let st = lb.status(BE1).await.unwrap();
    assert_eq!(st.stored_key_count, 0);
    let err = lb.enc_keys(BE1, 1, 256).await.unwrap_err();
    assert!(matches!(&err, ClientError::Unavailable { message, .. } if !message.is_empty()), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.http_status(), Some(503));
}

#[tokio::test]
async fn get_variants_and_status() {
    let f = start(fast_link()).await;
    f.wait_for_keys(4).await;
    let lb = f.client(LB, false);
    let st = lb.status(BE1).await.unwrap();
    assert_eq!(
        (st.source_kme_id.as_str(), st.target_kme_id.as_str(), st.master_sae_id.as_str(), st.slave_sae_id.as_str()),
        ("kme-a", "kme-b", LB, BE1)
    );
    assert_eq!((st.key_size, st.max_key_count, st.max_key_per_request), (256, 1000, 128));
    assert_eq!((st.min_key_size, st.max_key_size, st.max_sae_id_count), (64, 1024, 0));
    assert!(st.stored_key_count >= 4 && st.stored_key_count <= st.max_key_count);
    let ext = st.status_extension.expect("status_extension");
    assert!(ext.get("qmeta_pool_bytes").and_then(|v| v.as_u64()).is_some(), "{ext}");

    let keys = lb.enc_keys_get(BE1, 2, 128).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.bytes.len() == 16));
    let be1 = f.client(BE1, true);
    let k = be1.dec_key_get(LB, keys[1].id).await.unwrap();
    assert_eq!(k.bytes, keys[1].bytes);
    // Already delivered.
    assert_eq!(bad_request(be1.dec_key_get(LB, keys[1].id).await.unwrap_err()), api::MSG_KEYS_NOT_FOUND);
    // SAE ids are URL-encoded in the path: an id with reserved characters
    // reaches the KME intact (and is unknown there).
    let m = bad_request(lb.status("sae be/1?x").await.unwrap_err());
    assert!(m.contains("slave SAE ID is not attached"), "{m}");
}

#[tokio::test]
async fn client_checks_the_kme_identity() {
    let f = start(fast_link()).await;
    // kme-a's certificate is not valid for the name kme-b.
    let cfg = KmeClientConfig { kme_id: "kme-b".into(), ..f.client_config(LB, false) };
    let err = KmeClient::new(cfg).unwrap().status(BE1).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");
    assert!(!err.is_retryable(), "a certificate mismatch is permanent: {err}");
    // A client certificate from another CA is refused by the KME.
    let other = qmeta_pki::Ca::generate("other CA", qmeta_pki::KeyAlg::P256).unwrap();
    other.issue_client(LB).unwrap().write(f.dir.path(), "rogue").unwrap();
    let cfg = KmeClientConfig { cert: f.path("rogue.crt"), key: f.path("rogue.key"), ..f.client_config(LB, false) };
    let err = KmeClient::new(cfg).unwrap().status(BE1).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. } | ClientError::Http { .. }), "{err}");
    // Bad configuration is reported before any connection.
    let cfg = KmeClientConfig { url: "http://127.0.0.1:1".into(), ..f.client_config(LB, false) };
    assert!(matches!(KmeClient::new(cfg), Err(ClientError::InvalidConfig { .. })));
    let cfg = KmeClientConfig { cert: f.path("missing.crt"), ..f.client_config(LB, false) };
    let err = KmeClient::new(cfg).unwrap_err();
    assert!(err.to_string().contains("missing.crt"), "{err}");
}

#[tokio::test]
async fn timeout_and_refused_connections_are_retryable() {
    let f = start(fast_link()).await;
    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
        }
    });
    let cfg = KmeClientConfig {
        url: format!("https://{addr}"),
        timeout: Duration::from_millis(300),
        ..f.client_config(LB, false)
    };
    let err = KmeClient::new(cfg).unwrap().enc_keys(BE1, 1, 256).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    hold.abort();
    let addr_a = f.pair.addr_a();
    f.pair.shutdown().await;
    let cfg = KmeClientConfig {
        url: format!("https://{addr_a}"),
        kme_id: "kme-a".into(),
        ca: f.dir.path().join("ca.crt"),
        cert: f.dir.path().join(format!("{LB}.crt")),
        key: f.dir.path().join(format!("{LB}.key")),
        timeout: Duration::from_secs(2),
    };
    let err = KmeClient::new(cfg).unwrap().status(BE1).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
