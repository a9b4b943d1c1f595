//! Wegman–Carter authentication of the classical channel.
//!
//! tag = (h_k(seq ‖ body) + r) mod p, with p = 2^61 − 1, h_k the polynomial
//! evaluation hash keyed by a reusable secret k (ε ≤ (L+1)/p for L 7-byte
//! chunks) and r a fresh one-time pad: 64 bits taken from the key pool per
//! tag (reduced mod p; the bias is < 2^-58). The pool is bootstrapped from the
//! pre-shared secret and refilled from the key the link produces, so both
//! ends consume it in the same order: the order messages are sent.

use std::fmt;
use zeroize::Zeroizing;

/// The Mersenne prime 2^61 − 1: the field of the polynomial hashes.
pub const P61: u64 = (1 << 61) - 1;

/// Pool bits consumed by one tag.
pub const TAG_POOL_BITS: usize = 64;

#[inline]
fn reduce(x: u128) -> u64 {
    let lo = (x as u64) & P61;
    let hi = (x >> 61) as u64;
    let mut r = lo + (hi & P61) + (hi >> 61);
    while r >= P61 {
        r -= P61;
    }
    r
}

#[inline]
fn mulmod(a: u64, b: u64) -> u64 {
    reduce(u128::from(a) * u128::from(b))
}

#[inline]
fn addmod(a: u64, b: u64) -> u64 {
    let s = a + b;
    if s >= P61 {
        s - P61
    } else {
        s
    }
}

/// Polynomial evaluation hash of `parts` (concatenated) under `key` (any u64;
/// reduced mod p). The total length is the last coefficient, so messages of
/// different lengths never collide trivially.
pub fn poly_hash(key: u64, parts: &[&[u8]]) -> u64 {
    let k = key % P61;
    let mut acc = 0u64;
    let mut total = 0u64;
    let mut chunk = [0u8; 8];
    let mut fill = 0usize;
    for part in parts {
        total += part.len() as u64;
        let mut rest: &[u8] = part;
        // Fast path: whole 7-byte chunks straight from the slice.
        if fill == 0 {
            let mut it = rest.chunks_exact(7);
            for c in &mut it {
                let mut b = [0u8; 8];
                b[..7].copy_from_slice(c);
                acc = mulmod(addmod(acc, u64::from_le_bytes(b)), k);
            }
            rest = it.remainder();
        }
        for &byte in rest {
            chunk[fill] = byte;
            fill += 1;
            if fill == 7 {
                acc = mulmod(addmod(acc, u64::from_le_bytes(chunk)), k);
                chunk = [0u8; 8];
                fill = 0;
            }
        }
    }
    if fill > 0 {
        acc = mulmod(addmod(acc, u64::from_le_bytes(chunk)), k);
    }
    mulmod(addmod(acc, total % P61), k)
}

/// One-time key material for authentication tags, consumed front to back.
///
/// Its bytes are zeroized on drop and never printed.
pub struct KeyPool {
    buf: Zeroizing<Vec<u8>>,
    start: usize,
    consumed_bits: u64,
    added_bits: u64,
}

impl fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPool")
            .field("bits", &self.bits())
            .field("consumed_bits", &self.consumed_bits)
            .field("added_bits", &self.added_bits)
            .finish()
    }
}

impl Clone for KeyPool {
    fn clone(&self) -> Self {
        Self {
            buf: Zeroizing::new(self.buf[self.start..].to_vec()),
            start: 0,
            consumed_bits: self.consumed_bits,
            added_bits: self.added_bits,
        }
    }
}

impl KeyPool {
    /// A pool holding `initial`.
    pub fn new(initial: &[u8]) -> Self {
        Self { buf: Zeroizing::new(initial.to_vec()), start: 0, consumed_bits: 0, added_bits: 0 }
    }

    /// Bits available.
    pub fn bits(&self) -> usize {
        (self.buf.len() - self.start) * 8
    }

    /// Bits consumed since creation.
    pub fn consumed_bits(&self) -> u64 {
        self.consumed_bits
    }

    /// Bits added by [`KeyPool::refill`] since creation.
    pub fn added_bits(&self) -> u64 {
        self.added_bits
    }

    /// Takes the next 64 bits, or `None` when fewer are left.
    pub fn take_u64(&mut self) -> Option<u64> {
        let end = self.start + 8;
        let bytes: [u8; 8] = self.buf.get(self.start..end)?.try_into().ok()?;
        self.buf[self.start..end].fill(0);
        self.start = end;
        self.consumed_bits += 64;
        // Compact once the consumed prefix dominates, so the buffer stays small.
        if self.start > 4096 && self.start * 2 > self.buf.len() {
            let rest = self.buf[self.start..].to_vec();
            self.buf.fill(0);
            *self.buf = rest;
            self.start = 0;
        }
        Some(u64::from_le_bytes(bytes))
    }

    /// Appends fresh key material.
    pub fn refill(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.added_bits += bytes.len() as u64 * 8;
    }
}

/// Why a tag could not be produced or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Fewer than [`TAG_POOL_BITS`] bits left in the pool.
    PoolExhausted,
    /// The tag does not match (forged or altered message).
    BadTag,
}

/// One end's authenticator: the reusable hash key and the one-time pool.
#[derive(Clone)]
pub struct Authenticator {
    hash_key: u64,
    pool: KeyPool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").field("hash_key", &"<redacted>").field("pool", &self.pool).finish()
    }
}

impl Authenticator {
    /// Bootstraps from the pre-shared secret: its first 8 bytes are the
    /// reusable hash key, the rest is the initial one-time pool.
    /// The caller checks `psk.len() >= 16` (see `LinkParams::validate`).
    pub fn from_psk(psk: &[u8]) -> Self {
        let mut k = [0u8; 8];
        k.copy_from_slice(&psk[..8]);
        let hash_key = u64::from_le_bytes(k);
        Self { hash_key, pool: KeyPool::new(&psk[8..]) }
    }

    /// The one-time pool.
    pub fn pool(&self) -> &KeyPool {
        &self.pool
    }

    /// Moves fresh key into the pool.
    pub fn refill(&mut self, bytes: &[u8]) {
        self.pool.refill(bytes);
    }

    /// Tags `parts` (concatenated), consuming [`TAG_POOL_BITS`] pool bits.
    pub fn tag(&mut self, parts: &[&[u8]]) -> Result<u64, AuthFailure> {
        let r = self.pool.take_u64().ok_or(AuthFailure::PoolExhausted)? % P61;
        Ok(addmod(poly_hash(self.hash_key, parts), r))
    }

    /// Checks `tag` over `parts`, consuming the same pool bits the sender did.
    pub fn verify(&mut self, parts: &[&[u8]], tag: u64) -> Result<(), AuthFailure> {
        let expect = self.tag(parts)?;
        // One word compare: no early exit that could leak how close a
        // forgery came.
        if (expect ^ tag) == 0 {
            Ok(())
        } else {
            Err(AuthFailure::BadTag)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulmod_matches_u128_mod() {
        let xs = [0u64, 1, 2, P61 - 1, P61 - 2, 1 << 60, 123_456_789_012_345];
        for &a in &xs {
            for &b in &xs {
                let want = ((u128::from(a) * u128::from(b)) % u128::from(P61)) as u64;
                assert_eq!(mulmod(a, b), want, "{a}*{b}");
            }
        }
    }

    #[test]
    fn poly_hash_is_split_invariant_and_length_sensitive() {
        let data: Vec<u8> = (0..100u8).collect();
        let whole = poly_hash(99, &[&data]);
        assert_eq!(whole, poly_hash(99, &[&data[..3], &data[3..50], &data[50..]]));
        let mut longer = data.clone();
        longer.push(0);
        assert_ne!(whole, poly_hash(99, &[&longer]));
        assert_ne!(whole, poly_hash(100, &[&data]));
    }

    #[test]
    fn tag_verify_consumes_same_pool_bits() {
        let psk: Vec<u8> = (0..40u8).collect();
        let mut a = Authenticator::from_psk(&psk);
        let mut b = Authenticator::from_psk(&psk);
        assert_eq!(a.pool().bits(), 256);
        let t = a.tag(&[b"hello"]).unwrap();
        assert_eq!(b.verify(&[b"hello"], t), Ok(()));
        assert_eq!(a.pool().bits(), 192);
        assert_eq!(b.pool().bits(), 192);
        let t2 = a.tag(&[b"hello"]).unwrap();
        assert_ne!(t, t2, "fresh pad per tag");
        assert_eq!(b.verify(&[b"hellp"], t2), Err(AuthFailure::BadTag));
        let _ = a.tag(&[b"x"]).unwrap();
        let _ = a.tag(&[b"x"]).unwrap();
        assert_eq!(a.tag(&[b"x"]), Err(AuthFailure::PoolExhausted));
        assert_eq!(a.pool().consumed_bits(), 256);
    }
}
