//! LB-side key rotation: one current and one previous QKD key per backend.
//!
//! [`KeyRing`] is a plain value changed by [`KeyRing::install`] and read by
//! [`KeyRing::current`] with the caller's `now`, so expiry and grace are
//! tested with simulated `Instant`s. [`spawn_rotation`] is the I/O part: it
//! fetches a key per backend (enc_keys, master = the LB's SAE, slave = the
//! backend's SAE) at once, installs it, and then rotates every `interval`.
//! Prefetch: the next key is fetched at 80 % of the interval
//! ([`prefetch_lead`]) and held until the rotation instant, so a slow KME
//! (up to a fifth of the interval, plus `grace` after that) never delays a
//! rotation, and the LB's connection path only ever reads the ring.
//! Failed fetches are retried with bounded exponential backoff.
//!
//! Fail closed: once the current key is older than `interval + grace`
//! without replacement, `current` returns `None` and the LB must refuse to
//! mint certificates for that backend.

use crate::client::KmeClient;
use crate::Key;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Longest allowed rotation interval (the design's "at least every 60 s").
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// First retry delay after a failed fetch.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);

/// How often keys are replaced and how long an old one stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Time between fetches; must be ≤ [`MAX_INTERVAL`].
    pub interval: Duration,
    /// How long past `interval` a key stays usable when no replacement
    /// arrives, and how long the previous key stays usable after a rotation.
    pub grace: Duration,
    /// Key size in bits (256).
    pub key_bits: u32,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy { interval: Duration::from_secs(30), grace: Duration::from_secs(30), key_bits: 256 }
    }
}

impl RotationPolicy {
    /// Checks the policy; for config loaders that report instead of clamping.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() || self.interval > MAX_INTERVAL {
            return Err(format!("interval {:?} must be within 1ms..=60s", self.interval));
        }
        if self.key_bits < 128 || self.key_bits % 8 != 0 || self.key_bits > crate::api::MAX_KEY_BITS {
            return Err(format!("key_bits {} must be a multiple of 8, at least 128", self.key_bits));
        }
        Ok(())
    }

    /// The age past which a current key is no longer used.
    pub fn lifetime(&self) -> Duration {
        self.interval + self.grace
    }
}

/// Ages of one backend's keys, for the admin API: ids and ages only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAge {
    pub backend: String,
    pub key_id: Uuid,
    pub age: Duration,
    pub previous: Option<Uuid>,
}

struct Slot {
    current: Arc<Key>,
    installed: Instant,
    previous: Option<Arc<Key>>,
}

/// The LB's keys: current + previous per backend.
pub struct KeyRing {
    policy: RotationPolicy,
    slots: RwLock<HashMap<String, Slot>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// An empty ring. An interval above 60 s is clamped to 60 s (use
    /// [`RotationPolicy::validate`] to report it instead).
    pub fn new(mut policy: RotationPolicy) -> Arc<KeyRing> {
        policy.interval = policy.interval.min(MAX_INTERVAL);
        Arc::new(KeyRing { policy, slots: RwLock::new(HashMap::new()) })
    }

    pub fn policy(&self) -> RotationPolicy {
        self.policy
    }

    /// The key to seal with now, or `None` (no key yet, or the current key
    /// is older than `interval + grace`: fail closed). Read lock + Arc clone.
    pub fn current(&self, backend: &str, now: Instant) -> Option<Arc<Key>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get(backend)?;
        (now.saturating_duration_since(slot.installed) <= self.policy.lifetime()).then(|| slot.current.clone())
    }

    /// The key with this id if it is still usable: the current key (within
    /// its lifetime) or the previous one within `grace` of the rotation.
    pub fn get(&self, backend: &str, id: Uuid, now: Instant) -> Option<Arc<Key>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get(backend)?;
        let age = now.saturating_duration_since(slot.installed);
        if slot.current.id == id && age <= self.policy.lifetime() {
            return Some(slot.current.clone());
        }
        match &slot.previous {
            Some(p) if p.id == id && age <= self.policy.grace => Some(p.clone()),
            _ => None,
        }
    }

    /// Makes `key` current for `backend`; the old current becomes previous.
    /// Returns the previous key's id.
    pub fn install(&self, backend: &str, key: Key, now: Instant) -> Option<Uuid> {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let key = Arc::new(key);
        match slots.get_mut(backend) {
            Some(slot) => {
                let old = std::mem::replace(&mut slot.current, key);
                let id = old.id;
                slot.previous = Some(old);
                slot.installed = now;
                Some(id)
            }
            None => {
                slots.insert(backend.to_string(), Slot { current: key, installed: now, previous: None });
                None
            }
        }
    }

    /// True when `backend` had a key and it is now past its lifetime.
    pub fn is_expired(&self, backend: &str, now: Instant) -> bool {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(backend).is_some_and(|s| now.saturating_duration_since(s.installed) > self.policy.lifetime())
    }

    /// When the current key of `backend` stops being usable.
    fn expires_at(&self, backend: &str) -> Option<Instant> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(backend).map(|s| s.installed + self.policy.lifetime())
    }

    /// Ids and ages of every backend's keys, sorted by backend name.
    pub fn ages(&self, now: Instant) -> Vec<KeyAge> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<KeyAge> = slots
            .iter()
            .map(|(backend, s)| KeyAge {
                backend: backend.clone(),
                key_id: s.current.id,
                age: now.saturating_duration_since(s.installed),
                previous: s.previous.as_ref().map(|p| p.id),
            })
            .collect();
        out.sort_by(|a, b| a.backend.cmp(&b.backend));
        out
    }
}

/// What the rotation task did, for logs, metrics and the audit log. Carries
/// ids only, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationEvent {
    /// A key was obtained from the KME.
    Fetched { backend: String, slave_sae: String, key_id: Uuid },
    /// It was installed as current; `previous` stays usable for `grace`.
    Rotated { backend: String, key_id: Uuid, previous: Option<Uuid> },
    /// A fetch failed; it will be retried with backoff.
    Failed { backend: String, error: String, retryable: bool },
    /// The backend's key passed `interval + grace` with no replacement: the
    /// LB now fails closed for it. Emitted once per expiry.
    Expired { backend: String },
}

/// Starts rotating keys for each `(backend name, backend SAE id)`. Abort
/// the handle to stop every backend's loop.
pub fn spawn_rotation(
    ring: Arc<KeyRing>,
    client: KmeClient,
    backends: Vec<(String, String)>,
    on_event: Arc<dyn Fn(RotationEvent) + Send + Sync>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Dropping the JoinSet (when this task is aborted) aborts every loop.
        let mut set = tokio::task::JoinSet::new();
        for (backend, slave) in backends {
            set.spawn(rotate_one(ring.clone(), client.clone(), backend, slave, on_event.clone()));
        }
        while set.join_next().await.is_some() {}
    })
}

/// Backoff after `failures` consecutive failures: 250 ms doubling, at most
/// interval/4 (but never below 250 ms).
pub fn backoff(failures: u32, interval: Duration) -> Duration {
    let cap = (interval / 4).max(MIN_BACKOFF);
    MIN_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(cap)
}

/// How long before a rotation the next key is fetched: a fifth of the
/// interval (the fetch happens at 80 % of the interval).
pub fn prefetch_lead(interval: Duration) -> Duration {
    interval / 5
}

async fn rotate_one(
    ring: Arc<KeyRing>,
    client: KmeClient,
    backend: String,
    slave: String,
    on_event: Arc<dyn Fn(RotationEvent) + Send + Sync>,
) {
    let policy = ring.policy();
    let lead = prefetch_lead(policy.interval);
    let mut failures = 0u32;
    let mut expired_reported = false;
    // When the next key becomes current (None: as soon as it arrives).
    let mut due: Option<Instant> = None;
    loop {
        let next_fetch = match client.enc_keys(&slave, 1, policy.key_bits).await {
            Ok(mut keys) => {
                let key = keys.pop().expect("validated: exactly one key");
                let key_id = key.id;
                on_event(RotationEvent::Fetched { backend: backend.clone(), slave_sae: slave.clone(), key_id });
                failures = 0;
                // Prefetched: hold it until the rotation instant, so keys
                // still change every `interval` and the connection path
                // never waits for the KME.
                if let Some(at) = due {
                    if at > Instant::now() {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    }
                }
                let now = Instant::now();
                let previous = ring.install(&backend, key, now);
                tracing::info!(backend = %backend, key_id = %key_id, "QKD key rotated");
                on_event(RotationEvent::Rotated { backend: backend.clone(), key_id, previous });
                expired_reported = false;
                due = Some(now + policy.interval);
                now + policy.interval - lead
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let retryable = e.is_retryable();
                tracing::warn!(backend = %backend, error = %e, retryable, "QKD key fetch failed");
                on_event(RotationEvent::Failed { backend: backend.clone(), error: e.to_string(), retryable });
                let mut wait = backoff(failures, policy.interval);
                if !retryable {
                    // A permanent error needs an operator; don't hammer the KME.
                    wait = (policy.interval / 4).max(MIN_BACKOFF);
                }
                Instant::now() + wait
            }
        };
        // Sleep, but wake at the expiry instant so Expired is reported on time.
        if !expired_reported {
            if let Some(exp) = ring.expires_at(&backend) {
                if exp < next_fetch {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(exp)).await;
                }
            }
        }
        let now = Instant::now();
        if !expired_reported && ring.is_expired(&backend, now) {
            tracing::error!(backend = %backend, "QKD key expired without replacement; failing closed");
            on_event(RotationEvent::Expired { backend: backend.clone() });
            expired_reported = true;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(next_fetch)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn key(n: u128) -> Key {
        Key { id: Uuid::from_u128(n), bytes: Zeroizing::new(vec![n as u8; 32]) }
    }

    fn policy() -> RotationPolicy {
        RotationPolicy { interval: Duration::from_secs(10), grace: Duration::from_secs(5), key_bits: 256 }
    }

    #[test]
    fn current_previous_grace_expiry() {
        let ring = KeyRing::new(policy());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert!(ring.current("b1", t0).is_none(), "no key yet");
        assert_eq!(ring.install("b1", key(1), t0), None);
        assert_eq!(ring.current("b1", t0 + s(3)).unwrap().id, Uuid::from_u128(1));
        // Rotation at t0+10: previous is key 1, usable for grace (5 s).
        assert_eq!(ring.install("b1", key(2), t0 + s(10)), Some(Uuid::from_u128(1)));
        assert_eq!(ring.current("b1", t0 + s(10)).unwrap().id, Uuid::from_u128(2));
        assert_eq!(ring.get("b1", Uuid::from_u128(1), t0 + s(15)).unwrap().id, Uuid::from_u128(1));
        assert!(ring.get("b1", Uuid::from_u128(1), t0 + s(16)).is_none(), "previous past grace");
        assert!(ring.get("b1", Uuid::from_u128(9), t0 + s(11)).is_none());
        // Current usable up to interval + grace = 15 s after install, then None.
        assert!(ring.current("b1", t0 + s(25)).is_some());
        assert!(!ring.is_expired("b1", t0 + s(25)));
        assert!(ring.current("b1", t0 + s(26)).is_none(), "fail closed");
        assert!(ring.is_expired("b1", t0 + s(26)));
        assert!(ring.get("b1", Uuid::from_u128(2), t0 + s(26)).is_none());
        // A new key revives it.
        assert_eq!(ring.install("b1", key(3), t0 + s(30)), Some(Uuid::from_u128(2)));
        assert_eq!(ring.current("b1", t0 + s(30)).unwrap().id, Uuid::from_u128(3));
        // Other backends are independent.
        assert!(ring.current("b2", t0 + s(30)).is_none());
    }

    #[test]
    fn ages_report_ids_only() {
        let ring = KeyRing::new(policy());
        let t0 = Instant::now();
        ring.install("zeta", key(1), t0);
        ring.install("alpha", key(2), t0);
        ring.install("alpha", key(3), t0 + Duration::from_secs(4));
        let ages = ring.ages(t0 + Duration::from_secs(6));
        assert_eq!(
            ages,
            vec![
                KeyAge {
                    backend: "alpha".into(),
                    key_id: Uuid::from_u128(3),
                    age: Duration::from_secs(2),
                    previous: Some(Uuid::from_u128(2))
                },
                KeyAge {
                    backend: "zeta".into(),
                    key_id: Uuid::from_u128(1),
                    age: Duration::from_secs(6),
                    previous: None
                },
            ]
        );
    }

    #[test]
    fn policy_limits_and_backoff() {
        assert!(policy().validate().is_ok());
        let long = RotationPolicy { interval: Duration::from_secs(61), ..policy() };
        assert!(long.validate().is_err());
        assert_eq!(KeyRing::new(long).policy().interval, MAX_INTERVAL);
        assert!(RotationPolicy { key_bits: 100, ..policy() }.validate().is_err());
        let i = Duration::from_secs(8);
        assert_eq!(backoff(1, i), Duration::from_millis(250));
        assert_eq!(backoff(2, i), Duration::from_millis(500));
        assert_eq!(backoff(4, i), Duration::from_secs(2));
        assert_eq!(backoff(40, i), Duration::from_secs(2), "capped at interval/4");
        assert_eq!(backoff(3, Duration::from_millis(100)), MIN_BACKOFF);
    }
}
