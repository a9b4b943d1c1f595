//! The client against every quirk mode of the KME: what it tolerates and
//! what it must refuse.

mod common;

use common::{fast_link, raw, start_with, Fixture, BE1, LB};
use qmeta_qkd::api;
use qmeta_qkd::client::RetryPolicy;
use qmeta_qkd::kme::{LinkKind, PairOptions, Quirk, Quirks};
use qmeta_qkd::ClientError;
use std::time::{Duration, Instant};

/// A pair whose two sites both imitate `quirks`.
async fn quirky(quirks: &[Quirk]) -> Fixture {
    let q = Quirks::new(quirks.iter().copied());
    let options = PairOptions { kind: LinkKind::Generator, quirks_a: q.clone(), quirks_b: q, ..PairOptions::default() };
    start_with(fast_link(), options).await
}

/// Waits for keys without going through the quirks' status answers.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn capital_keys_are_accepted() {
    let f = quirky(&[Quirk::CapitalKeys]).await;
    settle().await;
    let (s, body) =
        raw(f.dir.path(), f.pair.addr_a(), "kme-a", LB, "POST", &format!("/api/v1/keys/{BE1}/enc_keys"), "").await;
    assert_eq!(s, 200);
    assert!(body.starts_with(b"{\"Keys\":"), "{}", String::from_utf8_lossy(&body[..10]));
    let keys = f.client(LB, false).enc_keys(BE1, 2, 256).await.unwrap();
    let got = f.client(BE1, true).dec_keys(LB, &[keys[1].id]).await.unwrap();
    assert_eq!(got[0].bytes, keys[1].bytes);
}

#[tokio::test]
async fn not_found_404_and_detail_errors_are_understood_and_permanent() {
    let f = quirky(&[Quirk::NotFound404, Quirk::DetailErrors]).await;
    settle().await;
    let keys = f.client(LB, false).enc_keys(BE1, 1, 256).await.unwrap();
    let be1 = f.client(BE1, true);
    be1.dec_keys(LB, &[keys[0].id]).await.unwrap();
    let err = be1.dec_keys(LB, &[keys[0].id]).await.unwrap_err();
    match &err {
        ClientError::UnexpectedStatus { status, message, .. } => {
            assert_eq!(*status, 404);
            assert_eq!(message, api::MSG_KEYS_NOT_FOUND, "read from `detail`");
        }
        other => panic!("expected 404, got {other}"),
    }
    assert!(!err.is_retryable(), "never retried");
    // A 400 with a `detail` body: the message is still read.
    let err = f.client(LB, false).enc_keys(BE1, 1, 2048).await.unwrap_err();
    match err {
        ClientError::BadRequest { message, .. } => assert!(message.contains("max_key_size"), "{message}"),
        other => panic!("expected 400, got {other}"),
    }
}

#[tokio::test]
async fn burst_503_is_ridden_through_by_retries() {
    let f = quirky(&[Quirk::Burst503]).await;
    settle().await;
    // Two refusals, then an answer: the default budget of 3 attempts wins.
    let lb = f.client(LB, false);
    let keys = lb.enc_keys(BE1, 1, 256).await.unwrap();
    let got = f.client(BE1, true).dec_keys(LB, &[keys[0].id]).await.unwrap();
    assert_eq!(got[0].bytes, keys[0].bytes);
    // Without retries the burst shows, as a retryable 503 with its message.
    let once = f.client(LB, false).with_retry(RetryPolicy::none());
    let err = once.status(BE1).await.unwrap_err();
    assert!(matches!(&err, ClientError::Unavailable { message, .. } if message.contains("burst")), "{err}");
    assert!(err.is_retryable());
    // A budget smaller than the burst fails after exactly its attempts.
    let two = f.client(LB, false).with_retry(RetryPolicy {
        attempts: 2,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    });
    // Align with the start of a burst: the next two requests are refused.
    let mut aligned = false;
    for _ in 0..3 {
        if once.status(BE1).await.is_ok() {
            aligned = true;
            break;
        }
    }
    assert!(aligned);
    assert_eq!(two.status(BE1).await.unwrap_err().http_status(), Some(503));
}

#[tokio::test]
async fn slow_answers_within_the_timeout_and_time_out_below_it() {
    let f = quirky(&[Quirk::Slow]).await;
    settle().await;
    let keys = f.client(LB, false).enc_keys(BE1, 1, 256).await.unwrap();
    assert_eq!(keys[0].bytes.len(), 32);
    let mut cfg = f.client_config(LB, false);
    cfg.timeout = Duration::from_millis(100);
    let impatient = qmeta_qkd::KmeClient::new(cfg).unwrap().with_retry(RetryPolicy {
        attempts: 2,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    });
    let t = Instant::now();
    let err = impatient.enc_keys(BE1, 1, 256).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(t.elapsed() >= Duration::from_millis(200), "two attempts: {:?}", t.elapsed());
    // dec_keys is not retried after a timeout (the key may be delivered):
    // see the client's unit test `dec_keys_retries_only_unambiguous_failures`.
    let mut cfg = f.client_config(BE1, true);
    cfg.timeout = Duration::from_millis(100);
    let be1 = qmeta_qkd::KmeClient::new(cfg).unwrap();
    let err = be1.dec_keys(LB, &[keys[0].id]).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn bits_as_bytes_keys_are_refused() {
    let f = quirky(&[Quirk::BitsAsBytes]).await;
    settle().await;
    let err = f.client(LB, false).enc_keys(BE1, 1, 128).await.unwrap_err();
    match err {
        ClientError::Validation { source, .. } => {
            assert_eq!(source, api::ValidationError::WrongSize { index: 0, expected: 16, got: 128 })
        }
        other => panic!("expected a validation error, got {other}"),
    }
}
