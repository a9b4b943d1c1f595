//! Bit-packed vector: the representation of every key, basis string and
//! parity list in this crate (64 bits per word, bit `i` is bit `i % 64` of
//! word `i / 64`; bits past `len` are always zero).

use rand::RngCore;
use std::fmt;
use zeroize::Zeroize;

/// A growable, bit-packed vector of bits.
///
/// Holds key material, so `Debug` prints the length only and the words are
/// zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BitVec {
    words: Vec<u64>,
    len: usize,
}

impl Drop for BitVec {
    fn drop(&mut self) {
        self.words.zeroize();
    }
}

impl fmt::Debug for BitVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BitVec {{ len: {}, bits: <redacted> }}", self.len)
    }
}

impl BitVec {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// `len` zero bits.
    pub fn zeros(len: usize) -> Self {
        Self { words: vec![0; len.div_ceil(64)], len }
    }

    /// `len` uniformly random bits drawn from `rng`.
    pub fn random(len: usize, rng: &mut dyn RngCore) -> Self {
        let mut words = vec![0u64; len.div_ceil(64)];
        for w in words.iter_mut() {
            *w = rng.next_u64();
        }
        Self::from_words(words, len)
    }

    /// Builds from packed words; bits at and past `len` are cleared.
    pub fn from_words(mut words: Vec<u64>, len: usize) -> Self {
        words.resize(len.div_ceil(64), 0);
        let mut v = Self { words, len };
        v.clear_tail();
        v
    }

    /// Builds from little-endian-bit bytes (bit `i` is bit `i % 8` of byte
    /// `i / 8`); bits past `len` are ignored.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Self {
        let mut words = vec![0u64; len.div_ceil(64)];
        for (i, b) in bytes.iter().take(len.div_ceil(8)).enumerate() {
            words[i / 8] |= u64::from(*b) << ((i % 8) * 8);
        }
        Self::from_words(words, len)
    }

    /// The bits as little-endian-bit bytes, `ceil(len / 8)` of them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len.div_ceil(8));
        for i in 0..self.len.div_ceil(8) {
            out.push((self.words[i / 8] >> ((i % 8) * 8)) as u8);
        }
        out
    }

    fn clear_tail(&mut self) {
        let r = self.len % 64;
        if r != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << r) - 1;
            }
        }
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed words (bits past `len` are zero).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Bit `i`. Panics when `i >= len` (a bug in this crate, never peer input:
    /// every index taken from a message is checked first).
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        debug_assert!(i < self.len);
        (self.words[i >> 6] >> (i & 63)) & 1 == 1
    }

    /// Sets bit `i` to `b`.
    #[inline]
    pub fn set(&mut self, i: usize, b: bool) {
        debug_assert!(i < self.len);
        let m = 1u64 << (i & 63);
        if b {
            self.words[i >> 6] |= m;
        } else {
            self.words[i >> 6] &= !m;
        }
    }

    /// Inverts bit `i`.
    #[inline]
    pub fn flip(&mut self, i: usize) {
        debug_assert!(i < self.len);
        self.words[i >> 6] ^= 1u64 << (i & 63);
    }

    /// Appends one bit.
    #[inline]
    pub fn push(&mut self, b: bool) {
        if self.len % 64 == 0 {
            self.words.push(0);
        }
        if b {
            self.words[self.len >> 6] |= 1u64 << (self.len & 63);
        }
        self.len += 1;
    }

    /// Appends all bits of `other`.
    pub fn extend(&mut self, other: &BitVec) {
        for i in 0..other.len {
            self.push(other.get(i));
        }
    }

    /// Shortens to `len` bits (no-op when already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.words.truncate(len.div_ceil(64));
            self.clear_tail();
        }
    }

    /// The bits `[start, end)` as a new vector.
    pub fn slice(&self, start: usize, end: usize) -> BitVec {
        debug_assert!(start <= end && end <= self.len);
        let len = end - start;
        let mut words = vec![0u64; len.div_ceil(64)];
        let (q, r) = (start / 64, start % 64);
        for (k, w) in words.iter_mut().enumerate() {
            let lo = self.words.get(q + k).copied().unwrap_or(0);
            let hi = if r == 0 { 0 } else { self.words.get(q + k + 1).copied().unwrap_or(0) << (64 - r) };
            *w = (lo >> r) | hi;
        }
        Self::from_words(words, len)
    }

    /// Number of one bits.
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Number of positions where `self` and `other` differ (equal lengths).
    pub fn hamming(&self, other: &BitVec) -> usize {
        debug_assert_eq!(self.len, other.len);
        self.words.iter().zip(&other.words).map(|(a, b)| (a ^ b).count_ones() as usize).sum()
    }

    /// Parity (XOR) of the bits `[start, end)`.
    #[inline]
    pub fn parity_range(&self, start: usize, end: usize) -> bool {
        debug_assert!(start <= end && end <= self.len);
        if start >= end {
            return false;
        }
        let (ws, we) = (start >> 6, (end - 1) >> 6);
        let first_mask = !0u64 << (start & 63);
        let last_mask = !0u64 >> (63 - ((end - 1) & 63));
        if ws == we {
            return (self.words[ws] & first_mask & last_mask).count_ones() & 1 == 1;
        }
        let mut acc = self.words[ws] & first_mask;
        for w in &self.words[ws + 1..we] {
            acc ^= w;
        }
        acc ^= self.words[we] & last_mask;
        acc.count_ones() & 1 == 1
    }

    /// Keeps the bits where `keep` is set, in order (equal lengths).
    pub fn select(&self, keep: &BitVec) -> BitVec {
        debug_assert_eq!(self.len, keep.len);
        let mut out = BitVec::zeros(keep.count_ones());
        let mut j = 0;
        for (&w, &k) in self.words.iter().zip(&keep.words) {
            let mut m = k;
            while m != 0 {
                let b = m.trailing_zeros() as usize;
                if (w >> b) & 1 == 1 {
                    out.set(j, true);
                }
                j += 1;
                m &= m - 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn parity_range_matches_naive() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v = BitVec::random(300, &mut rng);
        for s in 0..300 {
            for e in (s..=300).step_by(7) {
                let naive = (s..e).filter(|&i| v.get(i)).count() % 2 == 1;
                assert_eq!(v.parity_range(s, e), naive, "{s}..{e}");
            }
        }
    }

    #[test]
    fn bytes_slice_select_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let v = BitVec::random(203, &mut rng);
        assert_eq!(BitVec::from_bytes(&v.to_bytes(), 203), v);
        let s = v.slice(61, 190);
        assert_eq!(s.len(), 129);
        for i in 0..129 {
            assert_eq!(s.get(i), v.get(61 + i));
        }
        let mut keep = BitVec::zeros(203);
        for i in (0..203).step_by(3) {
            keep.set(i, true);
        }
        let sel = v.select(&keep);
        assert_eq!(sel.len(), 68);
        for (j, i) in (0..203).step_by(3).enumerate() {
            assert_eq!(sel.get(j), v.get(i));
        }
    }

    #[test]
    fn debug_hides_bits() {
        let v = BitVec::from_words(vec![0xdead_beef], 32);
        assert_eq!(format!("{v:?}"), "BitVec { len: 32, bits: <redacted> }");
    }
}
