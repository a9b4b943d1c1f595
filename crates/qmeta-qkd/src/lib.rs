//! QKD key layer of qmeta: an ETSI GS QKD 014 client, the caches and key
//! rotation built on it, and a simulated KME pair that speaks the same API.
//!
//! - [`client`]: [`client::KmeClient`], the SAE side of ETSI 014 (status,
//!   enc_keys, dec_keys) over HTTPS with mutual TLS; validates every key it
//!   receives (count, size, distinct UUIDs).
//! - [`api`]: the spec's JSON formats and the validation helpers.
//! - [`rotation`]: LB side — a [`rotation::KeyRing`] holding the current and
//!   previous key per backend, refreshed by [`rotation::spawn_rotation`].
//! - [`cache`]: backend side — [`cache::DecKeyCache`] fetches a key by id the
//!   first time it is seen, one `dec_keys` call per id.
//! - [`kme`]: the KMEs of the LB site and the backend site, in one process
//!   or in two, fed by a simulated BB84 link (`qmeta-bb84`) or a plain key
//!   generator; the strict reference implementation of the spec, with
//!   switchable quirk modes that imitate real KMEs (`docs/KME.md`).
//!
//! What it is not: the certificate format (`qmeta-cert`), DMCP
//! (`qmeta-dmcp`), or the QKD physics and post-processing (`qmeta-bb84`;
//! this crate drives it and moves its messages).
//!
//! Call order (LB side): `KmeClient::new` (optionally `with_retry`) →
//! `KeyRing::new` → `spawn_rotation` (fetches each next key at 80 % of the
//! interval) → `KeyRing::current(backend, now)` per connection, which only
//! reads the ring.
//! Backend side: `KmeClient::new` → `DecKeyCache::new` → `get(key_id)`.
//!
//! Key bytes never appear in `Debug`, logs or errors, and are zeroized on drop.
#![forbid(unsafe_code)]
use std::fmt;
use zeroize::Zeroizing;

pub mod api;
pub mod cache;
pub mod client;
pub mod kme;
pub mod rotation;

pub use client::{ClientError, KmeClient, KmeClientConfig, RetryPolicy};

/// One QKD key as delivered by a KME: its id and its bytes. `Debug` never
/// prints the bytes; the bytes are zeroized on drop.
#[derive(Clone)]
pub struct Key {
    pub id: uuid::Uuid,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {}, bytes: <{} bytes redacted> }}", self.id, self.bytes.len())
    }
}
