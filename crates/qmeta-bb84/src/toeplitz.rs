//! Toeplitz hashing for privacy amplification.
//!
//! The ℓ × n Toeplitz matrix is `T[i][j] = s[i − j + n − 1]` for a seed s of
//! n + ℓ − 1 bits, so `(T·x)_i = Σ_j s[i + n − 1 − j]·x[j]` is coefficient
//! i + n − 1 of the GF(2) polynomial product s(z)·x(z). Computing that product
//! with Karatsuba over 64-bit carry-less multiplies costs O(n^1.58) word
//! operations instead of the O(n·ℓ/64) of row-by-row hashing, which is what
//! makes 10^5–10^6-bit blocks affordable.

use crate::bits::BitVec;

/// Operands at or below this many words use schoolbook multiplication.
const KARATSUBA_CUTOFF: usize = 64;

/// Carry-less products of `a` with every byte value, for table-driven
/// multiplication (no CLMUL intrinsics: the crate forbids `unsafe`).
#[inline]
fn byte_table(a: u64, t: &mut [u128; 256]) {
    let a = u128::from(a);
    t[0] = 0;
    for k in 0..8 {
        t[1 << k] = a << k;
    }
    for i in 3..256usize {
        if !i.is_power_of_two() {
            t[i] = t[i & (i - 1)] ^ t[i & i.wrapping_neg()];
        }
    }
}

#[inline]
fn clmul_with(t: &[u128; 256], b: u64) -> u128 {
    let mut r = 0u128;
    let mut k = 0;
    while k < 64 {
        r ^= t[((b >> k) & 0xff) as usize] << k;
        k += 8;
    }
    r
}

/// out ^= a·b, schoolbook (`out.len() >= a.len() + b.len()`).
fn schoolbook(a: &[u64], b: &[u64], out: &mut [u64]) {
    let mut t = [0u128; 256];
    for (i, &ai) in a.iter().enumerate() {
        if ai == 0 {
            continue;
        }
        byte_table(ai, &mut t);
        let row = &mut out[i..i + b.len() + 1];
        let mut carry = 0u64;
        for (o, &bj) in row.iter_mut().zip(b) {
            let p = clmul_with(&t, bj);
            *o ^= (p as u64) ^ carry;
            carry = (p >> 64) as u64;
        }
        row[b.len()] ^= carry;
    }
}

/// out ^= a·b for equal-length `a`, `b` (`out.len() >= 2·len`).
fn karatsuba(a: &[u64], b: &[u64], out: &mut [u64]) {
    let m = a.len();
    debug_assert_eq!(m, b.len());
    if m <= KARATSUBA_CUTOFF {
        schoolbook(a, b, out);
        return;
    }
    let h = m / 2;
    let hi = m - h; // >= h
    let (a0, a1) = a.split_at(h);
    let (b0, b1) = b.split_at(h);
    let mut z0 = vec![0u64; 2 * h];
    karatsuba(a0, b0, &mut z0);
    let mut z2 = vec![0u64; 2 * hi];
    karatsuba(a1, b1, &mut z2);
    let mut sa = a1.to_vec();
    let mut sb = b1.to_vec();
    for i in 0..h {
        sa[i] ^= a0[i];
        sb[i] ^= b0[i];
    }
    let mut z1 = vec![0u64; 2 * hi];
    karatsuba(&sa, &sb, &mut z1);
    for (i, w) in z0.iter().enumerate() {
        z1[i] ^= w;
    }
    for (i, w) in z2.iter().enumerate() {
        z1[i] ^= w;
    }
    for (i, w) in z0.iter().enumerate() {
        out[i] ^= w;
    }
    for (i, w) in z1.iter().enumerate() {
        out[h + i] ^= w;
    }
    for (i, w) in z2.iter().enumerate() {
        out[2 * h + i] ^= w;
    }
}

/// The GF(2) polynomial product of two packed bit strings (bit i is the
/// coefficient of z^i); `a.len() + b.len()` words.
pub fn gf2_mul(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (a, b) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let m = b.len();
    let mut out = vec![0u64; a.len() + m + m];
    if m == 0 {
        out.truncate(a.len());
        return out;
    }
    // Unbalanced operands: multiply b by each m-word chunk of a, so no
    // Karatsuba level works on padding.
    let mut chunk = vec![0u64; m];
    for (c, part) in a.chunks(m).enumerate() {
        chunk[..part.len()].copy_from_slice(part);
        chunk[part.len()..].fill(0);
        karatsuba(&chunk, b, &mut out[c * m..]);
    }
    out.truncate(a.len() + m);
    out
}

/// T·x for the Toeplitz matrix defined by `seed` (`seed.len()` must be
/// `input.len() + out_len − 1`; `out_len >= 1`).
pub fn toeplitz_hash(seed: &BitVec, input: &BitVec, out_len: usize) -> BitVec {
    let n = input.len();
    assert!(out_len >= 1 && n >= 1 && seed.len() == n + out_len - 1);
    let prod = gf2_mul(seed.words(), input.words());
    let total = prod.len() * 64;
    BitVec::from_words(prod, total).slice(n - 1, n - 1 + out_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn naive(seed: &BitVec, x: &BitVec, l: usize) -> BitVec {
        let n = x.len();
        let mut out = BitVec::zeros(l);
        for i in 0..l {
            let mut p = false;
            for j in 0..n {
                p ^= seed.get(i + n - 1 - j) & x.get(j);
            }
            out.set(i, p);
        }
        out
    }

    #[test]
    fn clmul_matches_bitwise() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let a = rand::RngCore::next_u64(&mut rng);
            let b = rand::RngCore::next_u64(&mut rng);
            let mut want = 0u128;
            for k in 0..64 {
                if (b >> k) & 1 == 1 {
                    want ^= u128::from(a) << k;
                }
            }
            let mut t = [0u128; 256];
            byte_table(a, &mut t);
            assert_eq!(clmul_with(&t, b), want);
        }
    }

    #[test]
    fn karatsuba_matches_schoolbook() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for m in [1usize, 5, 24, 25, 49, 100, 131] {
            let a = BitVec::random(m * 64, &mut rng);
            let b = BitVec::random(m * 64 - 17, &mut rng);
            let mut want = vec![0u64; a.words().len() + b.words().len()];
            schoolbook(a.words(), b.words(), &mut want);
            assert_eq!(gf2_mul(a.words(), b.words()), want, "m={m}");
        }
    }

    #[test]
    fn toeplitz_matches_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (n, l) in [(1usize, 1usize), (70, 30), (500, 333), (2000, 1500)] {
            let x = BitVec::random(n, &mut rng);
            let s = BitVec::random(n + l - 1, &mut rng);
            assert_eq!(toeplitz_hash(&s, &x, l), naive(&s, &x, l), "n={n} l={l}");
        }
    }
}
