//! What both ends share: parameters, events, per-block statistics, and the
//! authenticated send/receive core.

use crate::auth::{poly_hash, AuthFailure, Authenticator};
use crate::bits::BitVec;
use crate::cascade::CascadeParams;
use crate::channel::PulseTrain;
use crate::math::h2;
use crate::msg::{AbortReason, AuthMsg, ClassicalMsg};
use rand::SeedableRng;
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use std::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

/// Bits disclosed by the verification hash (the transmitted 64-bit word).
pub const VERIFY_BITS: usize = 64;

/// Largest `block_bits` accepted.
pub const MAX_BLOCK_BITS: usize = 1 << 22;

/// Parameters of the simulated link; both ends must use the same values.
#[derive(Clone)]
pub struct LinkParams {
    /// n: sifted bits per block that enter error correction (the disclosed
    /// sample comes on top of these).
    pub block_bits: usize,
    /// Probability that a pulse is detected (channel transmittance ×
    /// detector efficiency).
    pub detection_prob: f64,
    /// QBER of the channel without an eavesdropper.
    pub intrinsic_qber: f64,
    /// Fraction of photons attacked by intercept-resend (1.0 = all).
    pub eve_fraction: f64,
    /// Cascade parameter set.
    pub cascade: CascadeParams,
    /// Fraction of the sifted bits disclosed to estimate the QBER.
    pub sample_fraction: f64,
    /// Blocks whose estimated QBER exceeds this abort.
    pub abort_qber: f64,
    /// Bits subtracted from the privacy-amplified length (security margin).
    pub security_margin: usize,
    /// Pre-shared secret: 8 bytes of reusable hash key, then the initial
    /// one-time pool (at least 8 more bytes; a block needs a few KiB).
    pub psk: Vec<u8>,
}

impl fmt::Debug for LinkParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkParams")
            .field("block_bits", &self.block_bits)
            .field("detection_prob", &self.detection_prob)
            .field("intrinsic_qber", &self.intrinsic_qber)
            .field("eve_fraction", &self.eve_fraction)
            .field("cascade", &self.cascade)
            .field("sample_fraction", &self.sample_fraction)
            .field("abort_qber", &self.abort_qber)
            .field("security_margin", &self.security_margin)
            .field("psk", &format_args!("<{} bytes redacted>", self.psk.len()))
            .finish()
    }
}

impl Default for LinkParams {
    /// A metro link (detection 10 %, QBER 2 %), 2^18-bit blocks, original
    /// Cascade (fewer rounds than Yan, so fewer authentication tags: see
    /// docs/QKD-SIMULATION.md). `psk` is empty and must be set.
    fn default() -> Self {
        Self {
            block_bits: 1 << 18,
            detection_prob: 0.1,
            intrinsic_qber: 0.02,
            eve_fraction: 0.0,
            cascade: CascadeParams::Original,
            sample_fraction: 0.1,
            abort_qber: 0.11,
            security_margin: 100,
            psk: Vec::new(),
        }
    }
}

/// A parameter that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    #[error("block_bits must be between 64 and {MAX_BLOCK_BITS}")]
    BlockBits,
    #[error("{0} must be a probability in [0, 1]")]
    Probability(&'static str),
    #[error("detection_prob must be above 0")]
    NoDetection,
    #[error("sample_fraction must be in (0, 0.5]")]
    SampleFraction,
    #[error("psk must hold at least 16 bytes (8 hash key + 8 pool)")]
    PskTooShort,
}

impl LinkParams {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !(64..=MAX_BLOCK_BITS).contains(&self.block_bits) {
            return Err(ParamError::BlockBits);
        }
        for (name, v) in [
            ("detection_prob", self.detection_prob),
            ("intrinsic_qber", self.intrinsic_qber),
            ("eve_fraction", self.eve_fraction),
            ("abort_qber", self.abort_qber),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ParamError::Probability(name));
            }
        }
        if self.detection_prob <= 0.0 {
            return Err(ParamError::NoDetection);
        }
        if !(self.sample_fraction > 0.0 && self.sample_fraction <= 0.5) {
            return Err(ParamError::SampleFraction);
        }
        if self.psk.len() < 16 {
            return Err(ParamError::PskTooShort);
        }
        Ok(())
    }

    /// Bits disclosed for parameter estimation per block: s with
    /// s / (n + s) = sample_fraction.
    pub fn sample_bits(&self) -> usize {
        let f = self.sample_fraction;
        ((self.block_bits as f64 * f / (1.0 - f)).ceil() as usize).max(1)
    }
}

/// Privacy-amplified length ℓ = ⌊n(1 − h(Q)) − disclosed − margin⌋, or 0.
pub fn secret_length(n: usize, q_est: f64, disclosed: usize, margin: usize) -> usize {
    let l = (n as f64 * (1.0 - h2(q_est))).floor() - disclosed as f64 - margin as f64;
    if l > 0.0 {
        l as usize
    } else {
        0
    }
}

/// Splits the sifted bits into (disclosed sample, key) with `s` sample
/// positions chosen by `seed` (both ends derive the same positions).
pub fn split_sample(sifted: &BitVec, s: usize, seed: u64) -> (BitVec, BitVec) {
    use rand::Rng;
    let m = sifted.len();
    let mut idx: Vec<u32> = (0..m as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mask = BitVec::zeros(m);
    for i in 0..s.min(m) {
        let j = rng.gen_range(i..m);
        idx.swap(i, j);
        mask.set(idx[i] as usize, true);
    }
    let mut rest = mask.clone();
    for i in 0..m {
        rest.flip(i);
    }
    (sifted.select(&mask), sifted.select(&rest))
}

/// Universal hash of a key for verification.
pub fn verify_hash(key: &BitVec, hash_key: u64) -> u64 {
    let bytes = Zeroizing::new(key.to_bytes());
    poly_hash(hash_key, &[&bytes])
}

/// What an end asks its driver to do, or reports.
#[derive(Debug)]
pub enum Out {
    /// Send this message to the peer over the classical channel.
    Send(AuthMsg),
    /// Alice only: put these pulses into the quantum channel.
    Pulses(PulseTrain),
    /// The block produced this key (identical at both ends).
    Key(Zeroizing<Vec<u8>>),
    /// The block ended without key.
    Aborted(AbortReason),
}

/// One end's account of the current (or last) block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndStats {
    pub block: u64,
    pub n_raw: usize,
    pub n_detected: usize,
    pub n_sifted: usize,
    pub n: usize,
    pub sample_bits: usize,
    pub qber_estimate: f64,
    pub parity_bits: usize,
    pub verification_bits: usize,
    pub final_key_bits: usize,
    pub delivered_bits: usize,
    pub auth_bits_consumed: usize,
    pub pool_bits: usize,
    pub messages: usize,
}

/// Authenticated messaging, randomness and accounting shared by both ends.
pub(crate) struct Core {
    pub params: LinkParams,
    pub auth: Authenticator,
    pub seq: u64,
    pub rng: ChaCha20Rng,
    pool_target_bits: usize,
    consumed_at_start: u64,
    pub stats: EndStats,
}

impl Core {
    pub fn new(params: LinkParams, rng: ChaCha20Rng) -> Self {
        let auth = Authenticator::from_psk(&params.psk);
        let pool_target_bits = auth.pool().bits();
        Self { params, auth, seq: 0, rng, pool_target_bits, consumed_at_start: 0, stats: EndStats::default() }
    }

    pub fn begin_block(&mut self, block: u64) {
        self.consumed_at_start = self.auth.pool().consumed_bits();
        self.stats = EndStats {
            block,
            n: self.params.block_bits,
            sample_bits: self.params.sample_bits(),
            pool_bits: self.auth.pool().bits(),
            ..EndStats::default()
        };
    }

    fn account(&mut self) {
        self.stats.messages += 1;
        self.stats.auth_bits_consumed = (self.auth.pool().consumed_bits() - self.consumed_at_start) as usize;
        self.stats.pool_bits = self.auth.pool().bits();
    }

    /// Tags `msg` with the next sequence number.
    pub fn seal(&mut self, msg: ClassicalMsg) -> Result<AuthMsg, AbortReason> {
        let seq = self.seq;
        let body = msg.encode();
        let tag = self.auth.tag(&[&seq.to_be_bytes(), &body]).map_err(|_| AbortReason::PoolExhausted)?;
        self.seq += 1;
        self.account();
        Ok(AuthMsg { seq, tag, msg })
    }

    /// Checks sequence number and tag of a received message.
    pub fn open(&mut self, m: &AuthMsg) -> Result<(), AbortReason> {
        if m.seq != self.seq {
            return Err(AbortReason::AuthenticationFailed);
        }
        // The seq advances and the pad is spent even on failure, so both
        // ends stay aligned if the driver starts a new block afterwards.
        self.seq += 1;
        let body = m.msg.encode();
        let r = self.auth.verify(&[&m.seq.to_be_bytes(), &body], m.tag);
        self.account();
        r.map_err(|e| match e {
            AuthFailure::PoolExhausted => AbortReason::PoolExhausted,
            AuthFailure::BadTag => AbortReason::AuthenticationFailed,
        })
    }

    /// Sends an abort notice (best effort) and reports the abort.
    pub fn abort(&mut self, reason: AbortReason) -> Vec<Out> {
        let mut out = Vec::new();
        if let Ok(m) = self.seal(ClassicalMsg::Abort { reason }) {
            out.push(Out::Send(m));
        }
        out.push(Out::Aborted(reason));
        out
    }

    /// Refills the pool back to its bootstrap size from the final key and
    /// returns the rest (whole bytes) for delivery.
    pub fn finish_key(&mut self, key: &BitVec) -> Zeroizing<Vec<u8>> {
        let bytes = Zeroizing::new(key.to_bytes());
        let whole = key.len() / 8;
        let need_bits = self.pool_target_bits.saturating_sub(self.auth.pool().bits());
        let refill = need_bits.div_ceil(8).min(whole);
        self.auth.refill(&bytes[..refill]);
        let out = Zeroizing::new(bytes[refill..whole].to_vec());
        self.stats.final_key_bits = key.len();
        self.stats.delivered_bits = out.len() * 8;
        self.stats.pool_bits = self.auth.pool().bits();
        out
    }
}
