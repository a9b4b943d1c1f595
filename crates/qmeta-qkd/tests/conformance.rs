//! Conformance of the KME to the rules not covered in `kme_pair.rs`, over
//! real HTTPS + mTLS on 127.0.0.1: method rules, multicast keys
//! (`additional_slave_SAE_IDs`), `status_extension` with live link figures.

mod common;

use common::{fast_link, raw, start, start_with, BE1, BE2, LB};
use qmeta_qkd::api::{self, ErrorBody, KeyRequest};
use qmeta_qkd::kme::{LinkKind, PairOptions};
use qmeta_qkd::ClientError;

fn message(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not an Error body ({e}): {}", String::from_utf8_lossy(body)))
        .message
}

#[tokio::test]
async fn method_rules() {
    let f = start(fast_link()).await;
    f.wait_for_keys(4).await;
    let d = f.dir.path();
    let a = f.pair.addr_a();
    let b = f.pair.addr_b();
    let enc = format!("/api/v1/keys/{BE1}/enc_keys");
    // PUT / DELETE / PATCH are not in the spec: 405.
    for m in ["PUT", "DELETE", "PATCH"] {
        let (s, _) = raw(d, a, "kme-a", LB, m, &enc, "{}").await;
        assert_eq!(s, 405, "{m} enc_keys");
        let (s, _) = raw(d, b, "kme-b", BE1, m, &format!("/api/v1/keys/{LB}/dec_keys"), "").await;
        assert_eq!(s, 405, "{m} dec_keys");
    }
    // Status is GET only.
    let (s, _) = raw(d, a, "kme-a", LB, "POST", &format!("/api/v1/keys/{BE1}/status"), "{}").await;
    assert_eq!(s, 405);
    // GET enc_keys: only number and size, as query parameters, no body.
    let (s, body) = raw(d, a, "kme-a", LB, "GET", &format!("{enc}?number=1&extension_mandatory=x"), "").await;
    assert_eq!(s, 400);
    assert!(message(&body).contains("only the number and size"), "{}", message(&body));
    let (s, body) = raw(d, a, "kme-a", LB, "GET", &format!("{enc}?additional_slave_SAE_IDs={BE2}"), "").await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    let (s, body) = raw(d, a, "kme-a", LB, "GET", &enc, r#"{"number":1}"#).await;
    assert_eq!(s, 400);
    assert!(message(&body).contains("no body"), "{}", message(&body));
    let (s, body) = raw(d, a, "kme-a", LB, "GET", &format!("{enc}?number=1&number=2"), "").await;
    assert_eq!((s, message(&body).contains("twice")), (400, true));
    let (s, body) = raw(d, a, "kme-a", LB, "GET", &format!("{enc}?number=2&size=128"), "").await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let keys: api::KeyContainer = serde_json::from_slice(&body).unwrap();
    assert_eq!(api::keys_from_enc(keys.clone(), 2, 128).unwrap().len(), 2);
    assert_eq!(&body[..8], b"{\"keys\":", "the reference KME emits `keys`");
    // GET dec_keys: exactly one key_ID, no body.
    let id = &keys.keys[0].key_id;
    let dec = format!("/api/v1/keys/{LB}/dec_keys");
    let (s, _) = raw(d, b, "kme-b", BE1, "GET", &format!("{dec}?key_ID={id}&key_ID={id}"), "").await;
    assert_eq!(s, 400);
    let (s, _) = raw(d, b, "kme-b", BE1, "GET", &format!("{dec}?key_ID={id}"), r#"{"key_IDs":[]}"#).await;
    assert_eq!(s, 400);
    let (s, _) = raw(d, b, "kme-b", BE1, "GET", &format!("{dec}?key_ID={id}"), "").await;
    assert_eq!(s, 200, "the refusals above did not consume the key");
    // POST bodies must be valid JSON of the right shape.
    let (s, body) = raw(d, a, "kme-a", LB, "POST", &enc, r#"{"number":"two"}"#).await;
    assert_eq!(s, 400);
    assert!(!message(&body).is_empty());
    let (s, _) = raw(d, b, "kme-b", BE1, "POST", &dec, "not json").await;
    assert_eq!(s, 400);
    // 401 has no body.
    let (s, body) = raw(d, a, "kme-a", BE1, "POST", &enc, "").await;
    assert_eq!((s, body.len()), (401, 0));
    // Unknown extension_mandatory: the spec's message.
    let (s, body) = raw(d, a, "kme-a", LB, "POST", &enc, r#"{"extension_mandatory":[{"abc_route":1}]}"#).await;
    assert_eq!((s, message(&body)), (400, api::MSG_EXTENSION_MANDATORY.to_string()));
    // extension_optional may be ignored: 200.
    let (s, _) = raw(d, a, "kme-a", LB, "POST", &enc, r#"{"extension_optional":[{"abc_route":1}]}"#).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn additional_slaves_get_each_key_once() {
    let options = PairOptions { max_sae_id_count: 1, ..PairOptions::default() };
    let f = start_with(fast_link(), options).await;
    f.wait_for_keys(8).await;
    let lb = f.client(LB, false);
    assert_eq!(lb.status(BE1).await.unwrap().max_sae_id_count, 1);
    let req = KeyRequest {
        number: Some(2),
        size: Some(256),
        additional_slave_sae_ids: Some(vec![BE2.into()]),
        ..KeyRequest::default()
    };
    let keys = api::keys_from_enc(lb.request_keys(BE1, &req).await.unwrap(), 2, 256).unwrap();
    let ids: Vec<_> = keys.iter().map(|k| k.id).collect();
    let be1 = f.client(BE1, true);
    let be2 = f.client(BE2, true);
    let got1 = be1.dec_keys(LB, &ids).await.unwrap();
    let got2 = be2.dec_keys(LB, &ids).await.unwrap();
    for i in 0..2 {
        assert_eq!(got1[i].bytes, keys[i].bytes);
        assert_eq!(got2[i].bytes, keys[i].bytes);
    }
    // Once per slave.
    for c in [&be1, &be2] {
        let err = c.dec_keys(LB, &ids[..1]).await.unwrap_err();
        assert!(matches!(&err, ClientError::BadRequest { message, .. } if message == api::MSG_KEYS_NOT_FOUND), "{err}");
    }
    // More additional slaves than max_SAE_ID_count, a duplicate, or a slave
    // of the wrong KME: 400.
    for extra in [vec![BE2, "sae-stranger"], vec![BE1], vec![LB]] {
        let req = KeyRequest {
            additional_slave_sae_ids: Some(extra.iter().map(|s| s.to_string()).collect()),
            ..KeyRequest::default()
        };
        let err = lb.request_keys(BE1, &req).await.unwrap_err();
        assert_eq!(err.http_status(), Some(400), "{extra:?}: {err}");
    }
    // A key for BE1 only stays out of BE2's reach (401), and BE2's attempt
    // does not consume it.
    let solo = lb.enc_keys(BE1, 1, 256).await.unwrap();
    let err = be2.dec_keys(LB, &[solo[0].id]).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert_eq!(be1.dec_keys(LB, &[solo[0].id]).await.unwrap()[0].bytes, solo[0].bytes);
}

#[tokio::test]
async fn no_multicast_when_max_sae_id_count_is_zero() {
    let f = start(fast_link()).await;
    f.wait_for_keys(2).await;
    let req = KeyRequest { additional_slave_sae_ids: Some(vec![BE2.into()]), ..KeyRequest::default() };
    let err = f.client(LB, false).request_keys(BE1, &req).await.unwrap_err();
    match err {
        ClientError::BadRequest { message, .. } => assert!(message.contains("max_SAE_ID_count"), "{message}"),
        other => panic!("expected 400, got {other}"),
    }
}

#[tokio::test]
async fn status_extension_carries_live_link_figures() {
    let f = start(fast_link()).await;
    f.wait_for_keys(20).await;
    let lb = f.client(LB, false);
    let st = lb.status(BE1).await.unwrap();
    let ext = st.status_extension.expect("status_extension");
    assert_eq!(ext["qmeta_link_kind"], "bb84", "{ext}");
    let qber = ext["qmeta_qber"].as_f64().expect("measured QBER");
    assert!((0.0..0.08).contains(&qber), "intrinsic 2 %: {qber}");
    assert!(ext["qmeta_key_rate_bps"].as_f64().unwrap() > 0.0, "{ext}");
    assert!(ext["qmeta_blocks_ok"].as_u64().unwrap() >= 1, "{ext}");
    let level = ext["qmeta_pool_level"].as_f64().unwrap();
    assert!(level > 0.0 && level <= 1.0, "{ext}");
    assert_eq!(ext["qmeta_pool_bytes"].as_u64().unwrap() / 32, st.stored_key_count, "{ext}");
    // Every vendor extension name carries the vendor prefix.
    for k in ext.as_object().unwrap().keys() {
        assert!(k.starts_with("qmeta_"), "{k}");
    }
}

#[tokio::test]
async fn generator_kind_still_available() {
    let options = PairOptions { kind: LinkKind::Generator, ..PairOptions::default() };
    let f = start_with(fast_link(), options).await;
    f.wait_for_keys(2).await;
    let st = f.client(LB, false).status(BE1).await.unwrap();
    assert_eq!(st.status_extension.unwrap()["qmeta_link_kind"], "generator");
    assert!(st.stored_key_count <= st.max_key_count);
}
