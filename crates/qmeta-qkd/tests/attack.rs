//! A full intercept-resend attack on the BB84 link: QBER ≈ 25 %, every
//! block aborts, no key reaches the pool, and the KME answers 503 with an
//! Error body.

mod common;

use common::{fast_link, raw, start_with, BE1, LB};
use qmeta_qkd::api::ErrorBody;
use qmeta_qkd::kme::{Bb84Config, LinkKind, PairOptions};
use qmeta_qkd::ClientError;
use std::time::{Duration, Instant};

#[tokio::test]
async fn eve_everywhere_drains_the_pool_and_the_kme_answers_503() {
    let options = PairOptions {
        kind: LinkKind::Bb84(Bb84Config { intrinsic_qber: 0.0, eve_fraction: 1.0, ..Bb84Config::default() }),
        ..PairOptions::default()
    };
    let f = start_with(fast_link(), options).await;
    let lb = f.client(LB, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ext = loop {
        let st = lb.status(BE1).await.unwrap();
        assert_eq!(st.stored_key_count, 0, "no key under attack");
        let ext = st.status_extension.unwrap();
        if ext["qmeta_blocks_aborted"].as_u64().unwrap() >= 3 {
            break ext;
        }
        assert!(Instant::now() < deadline, "no block finished: {ext}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ext["qmeta_blocks_ok"], 0, "{ext}");
    let qber = ext["qmeta_qber"].as_f64().unwrap();
    assert!((0.18..0.32).contains(&qber), "QBER {qber}");
    assert_eq!(ext["qmeta_key_rate_bps"].as_f64().unwrap(), 0.0);
    // 503 with an Error body (checked raw), retryable for the client.
    let (status, body) =
        raw(f.dir.path(), f.pair.addr_a(), "kme-a", LB, "POST", &format!("/api/v1/keys/{BE1}/enc_keys"), "").await;
    assert_eq!(status, 503);
    let e: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert!(e.message.contains("not enough key material"), "{}", e.message);
    let err = lb.enc_keys(BE1, 1, 256).await.unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
}
