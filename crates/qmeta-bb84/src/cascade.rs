//! Cascade error correction (Brassard–Salvail), sans-IO.
//!
//! Both ends derive the same passes from a shared seed: pass 0 keeps the key
//! order, later passes use a Fisher–Yates permutation; each pass cuts the
//! (permuted) key into blocks of its size. Alice discloses the parity of every
//! top-level block of every pass at once — her key never changes, so this is
//! exactly the set of parities sequential Cascade discloses. Bob then runs
//! binary searches on his odd blocks, one parity bit per step, in rounds:
//! each round holds the searches of one pass (its blocks are disjoint, so the
//! searches cannot disturb each other). A corrected bit flips the parity of
//! the block holding it in every other pass; odd blocks in already-processed
//! passes are searched next, smallest blocks first (the "cascade").
//!
//! Bob keeps his key in each pass's order, bit-packed, so a sub-block parity
//! is a few word XORs; correcting a bit updates every pass through the
//! inverse permutations.

use crate::bits::BitVec;

/// Published Cascade parameter sets (Martinez-Mateo et al., arXiv:1407.3257).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CascadeParams {
    /// k1 = ⌈0.73/Q⌉, doubling each pass, 4 passes.
    Original,
    /// Yan et al.: k1 = ⌈0.80/Q⌉, k2 = 5·k1, then n/2; 10 passes.
    Yan,
}

/// Lowest QBER used to size blocks: an estimate of 0 would mean one block
/// the size of the key, which finds nothing if there are errors after all.
pub const MIN_SIZING_QBER: f64 = 0.002;

impl CascadeParams {
    /// Block size of every pass for error rate `q` and key length `n`.
    pub fn block_sizes(self, q: f64, n: usize) -> Vec<usize> {
        let q = q.clamp(MIN_SIZING_QBER, 0.5);
        let n = n.max(1);
        let clamp = |k: f64| (k.ceil() as usize).clamp(1, n);
        match self {
            CascadeParams::Original => {
                let k1 = clamp(0.73 / q);
                (0..4).map(|i| (k1 << i).clamp(1, n)).collect()
            }
            CascadeParams::Yan => {
                let k1 = clamp(0.80 / q);
                let mut v = vec![k1, (k1 * 5).clamp(1, n)];
                v.extend(std::iter::repeat_n(n.div_ceil(2).max(1), 8));
                v
            }
        }
    }

    /// Short name used in tables and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            CascadeParams::Original => "original",
            CascadeParams::Yan => "yan",
        }
    }

    /// Mean efficiency published for n = 10,000 at `q` ∈ {1, 2, 5, 10 %}.
    pub fn published_efficiency(self, q: f64) -> Option<f64> {
        let table = [(0.01, 1.143, 1.095), (0.02, 1.159, 1.084), (0.05, 1.185, 1.077), (0.10, 1.209, 1.092)];
        table.iter().find(|(tq, _, _)| (tq - q).abs() < 1e-9).map(|&(_, o, y)| match self {
            CascadeParams::Original => o,
            CascadeParams::Yan => y,
        })
    }
}

/// One parity request: the parity of positions `[start, end)` of pass `pass`
/// (positions in that pass's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParityQuery {
    pub pass: u8,
    pub start: u32,
    pub end: u32,
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good equidistribution.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Clone)]
struct Pass {
    block: usize,
    /// Pass order → key index (`None` for the identity of pass 0).
    perm: Option<Vec<u32>>,
    /// Key index → pass order.
    inv: Option<Vec<u32>>,
}

/// The passes both ends derive from the block sizes and the shared seed.
#[derive(Clone)]
pub struct Layout {
    n: usize,
    passes: Vec<Pass>,
}

impl Layout {
    /// Derives the passes. `n` must fit in `u32`.
    pub fn new(n: usize, sizes: &[usize], seed: u64) -> Self {
        let passes = sizes
            .iter()
            .enumerate()
            .map(|(p, &block)| {
                if p == 0 {
                    return Pass { block, perm: None, inv: None };
                }
                // The permutations are public (the seed travels in the clear), so
                // a fast statistical generator is enough here.
                let mut rng = SplitMix64(seed ^ (p as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut perm: Vec<u32> = (0..n as u32).collect();
                for i in (1..n).rev() {
                    // Multiply-shift range reduction: bias ≤ n/2^64, far below
                    // anything Cascade's statistics could show.
                    let j = ((u128::from(rng.next()) * (i as u128 + 1)) >> 64) as usize;
                    perm.swap(i, j);
                }
                let mut inv = vec![0u32; n];
                for (pos, &x) in perm.iter().enumerate() {
                    inv[x as usize] = pos as u32;
                }
                Pass { block, perm: Some(perm), inv: Some(inv) }
            })
            .collect();
        Self { n, passes }
    }

    /// Key length.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of passes.
    pub fn pass_count(&self) -> usize {
        self.passes.len()
    }

    /// Number of top-level blocks in pass `p`.
    pub fn blocks(&self, p: usize) -> usize {
        self.n.div_ceil(self.passes[p].block)
    }

    /// Total top-level parities over all passes.
    pub fn total_blocks(&self) -> usize {
        (0..self.passes.len()).map(|p| self.blocks(p)).sum()
    }

    fn shuffle(&self, p: usize, key: &BitVec) -> BitVec {
        match &self.passes[p].perm {
            None => key.clone(),
            Some(perm) => {
                let words = perm
                    .chunks(64)
                    .map(|c| c.iter().enumerate().fold(0u64, |w, (b, &x)| w | (u64::from(key.get(x as usize)) << b)))
                    .collect();
                BitVec::from_words(words, self.n)
            }
        }
    }

    fn top_parities(&self, p: usize, shuffled: &BitVec) -> BitVec {
        let k = self.passes[p].block;
        let mut out = BitVec::zeros(self.blocks(p));
        for b in 0..self.blocks(p) {
            out.set(b, shuffled.parity_range(b * k, ((b + 1) * k).min(self.n)));
        }
        out
    }

    fn position(&self, p: usize, x: usize) -> usize {
        match &self.passes[p].inv {
            None => x,
            Some(inv) => inv[x] as usize,
        }
    }

    fn key_index(&self, p: usize, pos: usize) -> usize {
        match &self.passes[p].perm {
            None => pos,
            Some(perm) => perm[pos] as usize,
        }
    }
}

/// Alice's side: answers parity queries on her (fixed) key.
pub struct CascadeAlice {
    layout: Layout,
    shuffled: Vec<BitVec>,
}

impl CascadeAlice {
    /// Prepares the per-pass copies of `key` (`key.len() == layout.n()`).
    pub fn new(layout: Layout, key: &BitVec) -> Self {
        let shuffled = (0..layout.pass_count()).map(|p| layout.shuffle(p, key)).collect();
        Self { layout, shuffled }
    }

    /// The top-level block parities of all passes, pass after pass.
    pub fn top_parities(&self) -> BitVec {
        let mut out = BitVec::new();
        for p in 0..self.layout.pass_count() {
            out.extend(&self.layout.top_parities(p, &self.shuffled[p]));
        }
        out
    }

    /// Parities for `queries`, or `None` if any query is out of range.
    pub fn answer(&self, queries: &[ParityQuery]) -> Option<BitVec> {
        let mut out = BitVec::zeros(queries.len());
        for (i, q) in queries.iter().enumerate() {
            let (p, s, e) = (q.pass as usize, q.start as usize, q.end as usize);
            if p >= self.layout.pass_count() || s >= e || e > self.layout.n {
                return None;
            }
            out.set(i, self.shuffled[p].parity_range(s, e));
        }
        Some(out)
    }
}

#[derive(Clone, Copy)]
struct Search {
    pass: usize,
    lo: usize,
    hi: usize,
}

/// Bob's side: drives the binary searches and corrects his key.
pub struct CascadeBob {
    layout: Layout,
    key: BitVec,
    shuffled: Vec<BitVec>,
    alice_top: Vec<BitVec>,
    bob_top: Vec<BitVec>,
    current: usize,
    searches: Vec<Search>,
    disclosed: usize,
    corrected: usize,
}

/// Alice's top-level parities do not match the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParityCountMismatch;

impl CascadeBob {
    /// Starts reconciliation of `key` given Alice's top-level parities.
    pub fn new(layout: Layout, key: BitVec, alice_top: &BitVec) -> Result<Self, ParityCountMismatch> {
        if alice_top.len() != layout.total_blocks() || key.len() != layout.n {
            return Err(ParityCountMismatch);
        }
        let mut shuffled = Vec::new();
        let mut bob_top = Vec::new();
        let mut alice = Vec::new();
        let mut off = 0;
        for p in 0..layout.pass_count() {
            let s = layout.shuffle(p, &key);
            bob_top.push(layout.top_parities(p, &s));
            shuffled.push(s);
            let nb = layout.blocks(p);
            alice.push(alice_top.slice(off, off + nb));
            off += nb;
        }
        let disclosed = layout.total_blocks();
        Ok(Self {
            layout,
            key,
            shuffled,
            alice_top: alice,
            bob_top,
            current: 0,
            searches: Vec::new(),
            disclosed,
            corrected: 0,
        })
    }

    /// Parity bits disclosed so far (top-level parities plus one per query).
    pub fn disclosed_bits(&self) -> usize {
        self.disclosed
    }

    /// Bits flipped so far.
    pub fn corrected_bits(&self) -> usize {
        self.corrected
    }

    /// The (corrected) key.
    pub fn key(&self) -> &BitVec {
        &self.key
    }

    /// Consumes the engine, returning the corrected key.
    pub fn into_key(self) -> BitVec {
        self.key
    }

    fn flip(&mut self, x: usize) {
        self.key.flip(x);
        self.corrected += 1;
        for p in 0..self.layout.pass_count() {
            let pos = self.layout.position(p, x);
            self.shuffled[p].flip(pos);
            self.bob_top[p].flip(pos / self.layout.passes[p].block);
        }
    }

    /// Collects the odd blocks of the lowest pass `<= current` that has any.
    fn start_searches(&mut self) -> bool {
        for p in 0..=self.current {
            let k = self.layout.passes[p].block;
            let mut found = false;
            for (wi, (a, b)) in self.alice_top[p].words().iter().zip(self.bob_top[p].words()).enumerate() {
                let mut d = a ^ b;
                while d != 0 {
                    let blk = wi * 64 + d.trailing_zeros() as usize;
                    d &= d - 1;
                    let lo = blk * k;
                    let hi = (lo + k).min(self.layout.n);
                    self.searches.push(Search { pass: p, lo, hi });
                    found = true;
                }
            }
            if found {
                return true;
            }
        }
        false
    }

    /// Finishes searches narrowed to one bit (flipping it); keeps the rest.
    fn settle(&mut self) {
        let mut i = 0;
        while i < self.searches.len() {
            let s = self.searches[i];
            if s.hi - s.lo == 1 {
                let x = self.layout.key_index(s.pass, s.lo);
                self.flip(x);
                self.searches.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The next round of queries, or `None` once Cascade has finished.
    pub fn next_queries(&mut self) -> Option<Vec<ParityQuery>> {
        loop {
            if !self.searches.is_empty() {
                let qs = self
                    .searches
                    .iter()
                    .map(|s| ParityQuery {
                        pass: s.pass as u8,
                        start: s.lo as u32,
                        end: (s.lo + (s.hi - s.lo).div_ceil(2)) as u32,
                    })
                    .collect();
                return Some(qs);
            }
            if self.start_searches() {
                // One-bit blocks need no query: their odd parity locates the error.
                self.settle();
                continue;
            }
            if self.current + 1 < self.layout.pass_count() {
                self.current += 1;
            } else {
                return None;
            }
        }
    }

    /// Applies Alice's answers to the queries last returned by
    /// [`CascadeBob::next_queries`] (same order, same count).
    pub fn on_answers(&mut self, answers: &BitVec) -> Result<(), ParityCountMismatch> {
        if answers.len() != self.searches.len() {
            return Err(ParityCountMismatch);
        }
        self.disclosed += answers.len();
        for (i, s) in self.searches.iter_mut().enumerate() {
            let mid = s.lo + (s.hi - s.lo).div_ceil(2);
            let bob = self.shuffled[s.pass].parity_range(s.lo, mid);
            if bob != answers.get(i) {
                s.hi = mid;
            } else {
                s.lo = mid;
            }
        }
        self.settle();
        Ok(())
    }
}

/// Runs Cascade in memory: returns Bob's corrected key and the parity bits
/// disclosed. For tests, benchmarks and the efficiency table.
pub fn reconcile(alice: &BitVec, bob: &BitVec, sizes: &[usize], seed: u64) -> (BitVec, usize) {
    let layout = Layout::new(alice.len(), sizes, seed);
    let a = CascadeAlice::new(layout.clone(), alice);
    let mut b = CascadeBob::new(layout, bob.clone(), &a.top_parities()).expect("same layout on both sides");
    while let Some(q) = b.next_queries() {
        let ans = a.answer(&q).expect("queries from Bob are in range");
        b.on_answers(&ans).expect("one answer per query");
    }
    let d = b.disclosed_bits();
    (b.into_key(), d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn noisy(n: usize, q: f64, seed: u64) -> (BitVec, BitVec) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = BitVec::random(n, &mut rng);
        let mut b = a.clone();
        for i in 0..n {
            if rng.gen_bool(q) {
                b.flip(i);
            }
        }
        (a, b)
    }

    #[test]
    fn block_sizes_follow_the_published_schedules() {
        assert_eq!(CascadeParams::Original.block_sizes(0.01, 10_000), vec![73, 146, 292, 584]);
        let y = CascadeParams::Yan.block_sizes(0.02, 10_000);
        assert_eq!(y.len(), 10);
        assert_eq!(&y[..3], &[40, 200, 5000]);
    }

    #[test]
    fn corrects_errors_and_discloses_more_than_shannon_limit() {
        for (params, seed) in [(CascadeParams::Original, 1), (CascadeParams::Yan, 2)] {
            let (a, b) = noisy(10_000, 0.03, seed);
            let errors = a.hamming(&b);
            assert!(errors > 200, "{errors}");
            let (fixed, disclosed) = reconcile(&a, &b, &params.block_sizes(0.03, 10_000), seed);
            assert_eq!(fixed, a, "{params:?}");
            let shannon = 10_000.0 * crate::math::h2(errors as f64 / 10_000.0);
            assert!(disclosed as f64 > shannon, "{disclosed} vs {shannon}");
            assert!((disclosed as f64) < 1.5 * shannon, "{disclosed} vs {shannon}");
        }
    }

    #[test]
    fn error_free_key_discloses_only_top_parities() {
        let (a, _) = noisy(1000, 0.0, 3);
        let sizes = CascadeParams::Original.block_sizes(0.05, 1000);
        let (fixed, disclosed) = reconcile(&a, &a, &sizes, 9);
        assert_eq!(fixed, a);
        assert_eq!(disclosed, Layout::new(1000, &sizes, 9).total_blocks());
    }

    #[test]
    fn alice_rejects_out_of_range_queries() {
        let (a, _) = noisy(100, 0.0, 4);
        let alice = CascadeAlice::new(Layout::new(100, &[10, 20], 1), &a);
        let bad = [
            ParityQuery { pass: 2, start: 0, end: 1 },
            ParityQuery { pass: 0, start: 5, end: 5 },
            ParityQuery { pass: 1, start: 0, end: 101 },
        ];
        for q in bad {
            assert!(alice.answer(&[q]).is_none(), "{q:?}");
        }
        assert!(alice.answer(&[ParityQuery { pass: 1, start: 0, end: 100 }]).is_some());
    }
}
