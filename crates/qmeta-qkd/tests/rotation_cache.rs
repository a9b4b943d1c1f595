//! Key rotation (LB side) and the dec_keys cache (backend side) against a
//! real KME pair on 127.0.0.1.

mod common;

use common::{fast_link, start, BE1, BE2, LB};
use qmeta_qkd::cache::DecKeyCache;
use qmeta_qkd::rotation::{spawn_rotation, KeyRing, RotationEvent, RotationPolicy};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Events = Arc<Mutex<Vec<RotationEvent>>>;
type Sink = Arc<dyn Fn(RotationEvent) + Send + Sync>;

fn recorder() -> (Events, Sink) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, Arc::new(move |e| sink.lock().unwrap().push(e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_coalesces_concurrent_gets_into_one_dec_keys() {
    let f = start(fast_link()).await;
    f.wait_for_keys(2).await;
    let key = f.client(LB, false).enc_keys(BE1, 1, 256).await.unwrap().remove(0);
    let cache = DecKeyCache::new(f.client(BE1, true), LB.into(), 8);
    // The KME delivers a key once: a second dec_keys call would fail with
    // 400, so every get succeeding proves the calls were shared.
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (cache, barrier, id) = (cache.clone(), barrier.clone(), key.id);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cache.get(id).await
        }));
    }
    for t in tasks {
        let got = t.await.unwrap().expect("shared fetch");
        assert_eq!(got.id, key.id);
        assert_eq!(got.bytes, key.bytes);
    }
    // Later gets are served from the cache.
    assert_eq!(cache.get(key.id).await.unwrap().bytes, key.bytes);
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn cache_is_bounded_lru_and_forgets_failures() {
    let f = start(fast_link()).await;
    f.wait_for_keys(8).await;
    let keys = f.client(LB, false).enc_keys(BE1, 4, 256).await.unwrap();
    let cache = DecKeyCache::new(f.client(BE1, true), LB.into(), 2);
    cache.get(keys[0].id).await.unwrap();
    cache.get(keys[1].id).await.unwrap();
    cache.get(keys[0].id).await.unwrap(); // keys[0] is now most recent
    cache.get(keys[2].id).await.unwrap(); // evicts keys[1]
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(keys[0].id).await.unwrap().bytes, keys[0].bytes, "still cached");
    // keys[1] was evicted and the KME delivers once: fetching again fails.
    let err = cache.get(keys[1].id).await.unwrap_err();
    assert_eq!(err.http_status(), Some(400), "{err}");
    assert_eq!(cache.len(), 2, "failed fetch not kept");
    // Unknown id: error, not cached.
    assert!(cache.get(uuid::Uuid::from_u128(42)).await.is_err());
    assert_eq!(cache.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_produces_distinct_keys_the_backend_can_fetch() {
    let f = start(fast_link()).await;
    let policy = RotationPolicy { interval: Duration::from_secs(1), grace: Duration::from_secs(1), key_bits: 256 };
    let ring = KeyRing::new(policy);
    let (events, sink) = recorder();
    let backends = vec![("be1".to_string(), BE1.to_string()), ("be2".to_string(), BE2.to_string())];
    let task = spawn_rotation(ring.clone(), f.client(LB, false), backends, sink);
    let deadline = Instant::now() + Duration::from_secs(10);
    let rotated = |backend: &str| -> HashSet<uuid::Uuid> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                RotationEvent::Rotated { backend: b, key_id, .. } if b == backend => Some(*key_id),
                _ => None,
            })
            .collect()
    };
    while rotated("be1").len() < 2 || rotated("be2").len() < 2 {
        assert!(Instant::now() < deadline, "no two rotations within 10 s: {:?}", events.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let current = ring.current("be1", Instant::now()).expect("current key");
    assert!(rotated("be1").contains(&current.id));
    let ages = ring.ages(Instant::now());
    assert_eq!(ages.len(), 2);
    assert!(ages[0].previous.is_some(), "{ages:?}");
    // Each Rotated was preceded by a Fetched naming the backend's SAE.
    let be2_keys = rotated("be2");
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        RotationEvent::Fetched { backend, slave_sae, key_id }
            if backend == "be2" && slave_sae == BE2 && be2_keys.contains(key_id)
    )));
    // The backend obtains the same bytes from its own KME.
    let be1 = f.client(BE1, true);
    let got = be1.dec_keys(LB, &[current.id]).await.unwrap();
    assert_eq!(got[0].bytes, current.bytes);
    let ids: Vec<_> = rotated("be1").into_iter().collect();
    assert!(ids.iter().all(|id| !rotated("be2").contains(id)), "each backend has its own keys");
}

#[tokio::test]
async fn rotation_reports_failures_and_expires_once() {
    let f = start(fast_link()).await;
    let policy = RotationPolicy { interval: Duration::from_secs(1), grace: Duration::from_millis(200), key_bits: 256 };
    let ring = KeyRing::new(policy);
    let (events, sink) = recorder();
    let client = f.client(LB, false);
    let task = spawn_rotation(ring.clone(), client, vec![("be1".into(), BE1.into())], sink);
    let count = |pred: &dyn Fn(&RotationEvent) -> bool| events.lock().unwrap().iter().filter(|e| pred(e)).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&|e| matches!(e, RotationEvent::Rotated { .. })) < 1 {
        assert!(Instant::now() < deadline, "no first key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The KME goes away: fetches fail, the key expires, the LB fails closed.
    f.pair.shutdown().await;
    while count(&|e| matches!(e, RotationEvent::Expired { .. })) < 1 {
        assert!(Instant::now() < deadline, "never expired: {:?}", events.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ring.current("be1", Instant::now()).is_none(), "fail closed after expiry");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    task.abort();
    assert_eq!(count(&|e| matches!(e, RotationEvent::Expired { backend } if backend == "be1")), 1);
    let failed = count(&|e| matches!(e, RotationEvent::Failed { retryable: true, .. }));
    assert!(failed >= 2, "retries with backoff: {:?}", events.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_key_is_prefetched_while_the_current_one_is_in_use() {
    let f = start(fast_link()).await;
    let policy = RotationPolicy { interval: Duration::from_millis(1500), grace: Duration::from_secs(1), key_bits: 256 };
    assert_eq!(
        qmeta_qkd::rotation::prefetch_lead(policy.interval),
        Duration::from_millis(300),
        "fetched at 80 % of the interval"
    );
    let ring = KeyRing::new(policy);
    // On each Fetched: which key was current at that moment, and its age.
    type Seen = Vec<(uuid::Uuid, Option<uuid::Uuid>, Option<Duration>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (r, s) = (ring.clone(), seen.clone());
    let sink: Sink = Arc::new(move |e| {
        if let RotationEvent::Fetched { key_id, .. } = e {
            let now = Instant::now();
            let current = r.current("be1", now).map(|k| k.id);
            let age = r.ages(now).first().map(|a| a.age);
            s.lock().unwrap().push((key_id, current, age));
        }
    });
    let task = spawn_rotation(ring.clone(), f.client(LB, false), vec![("be1".into(), BE1.into())], sink);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "too few fetches");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].1, None, "the first key is fetched with nothing installed");
    for (i, (fetched, current, age)) in seen.iter().enumerate().skip(1) {
        let current = current.expect("a key is in use while the next is fetched");
        assert_ne!(current, *fetched, "fetch {i} happened before its rotation");
        assert_eq!(current, seen[i - 1].0, "the previous key is still the current one");
        // Fetched at 80 % of the interval: before the current key is due
        // for replacement (the call itself has the remaining 300 ms).
        let age = age.unwrap();
        assert!(age < policy.interval, "fetch {i} at age {age:?}: not ahead of the rotation");
    }
}
