//! Bob: measures photons in random bases, announces his bases, estimates the
//! QBER, corrects his key with Cascade, proves it by a hash and amplifies.
//! Sans-IO: quantum frames and messages in, [`Out`] events out.

use crate::bits::BitVec;
use crate::cascade::{CascadeBob, Layout};
use crate::channel::QuantumFrame;
use crate::link::{secret_length, split_sample, verify_hash, Core, EndStats, LinkParams, Out, VERIFY_BITS};
use crate::math::asymptotic_rate;
use crate::msg::{AbortReason, AuthMsg, ClassicalMsg};
use crate::toeplitz::toeplitz_hash;
use rand::RngCore;
use rand_chacha::ChaCha20Rng;

enum State {
    Idle,
    AwaitQuantum {
        frame: u32,
    },
    /// Measured `frame`; waiting for Alice's sifting of it.
    AwaitSift {
        frame: u32,
        bits: BitVec,
    },
    AwaitEstimate,
    AwaitParities {
        key: BitVec,
        q_est: f64,
    },
    Reconciling {
        q_est: f64,
        cascade: CascadeBob,
    },
    AwaitAmplify {
        key: BitVec,
        q_est: f64,
    },
}

/// The receiving end of the link (at the backend site in qmeta).
pub struct Bob {
    core: Core,
    block: u64,
    state: State,
    sifted: BitVec,
    /// Key before error correction, for the in-memory driver's QBER measure.
    pub(crate) diag_key: Option<BitVec>,
}

impl Bob {
    /// A new end; `params` must equal Alice's and `rng` be seeded from a
    /// secret source (it draws measurement bases and hash keys).
    pub fn new(params: LinkParams, rng: ChaCha20Rng) -> Self {
        Self { core: Core::new(params, rng), block: 0, state: State::Idle, sifted: BitVec::new(), diag_key: None }
    }

    /// Statistics of the current or last block.
    pub fn stats(&self) -> &EndStats {
        &self.core.stats
    }

    /// Bits left in the one-time authentication pool.
    pub fn pool_bits(&self) -> usize {
        self.core.auth.pool().bits()
    }

    fn target(&self) -> usize {
        self.core.params.block_bits + self.core.params.sample_bits()
    }

    fn send(&mut self, out: &mut Vec<Out>, msg: ClassicalMsg) -> bool {
        match self.core.seal(msg) {
            Ok(m) => {
                out.push(Out::Send(m));
                true
            }
            Err(r) => {
                self.state = State::Idle;
                out.push(Out::Aborted(r));
                false
            }
        }
    }

    fn abort(&mut self, reason: AbortReason) -> Vec<Out> {
        self.state = State::Idle;
        self.core.abort(reason)
    }

    /// Measures one frame from the quantum channel. Frame 0 of a block starts
    /// that block (abandoning any block in progress).
    pub fn on_quantum(&mut self, q: QuantumFrame) -> Vec<Out> {
        if q.frame == 0 {
            self.block = q.block;
            self.core.begin_block(q.block);
            self.sifted = BitVec::new();
            self.diag_key = None;
            self.state = State::AwaitQuantum { frame: 0 };
        }
        let expected = matches!(self.state, State::AwaitQuantum { frame } if frame == q.frame);
        let count = q.detected.len();
        if !expected
            || q.block != self.block
            || q.basis.len() != count
            || q.value.len() != count
            || q.detected.last().is_some_and(|&d| d >= q.slots)
        {
            return self.abort(AbortReason::ProtocolViolation);
        }
        // Measuring in the photon's basis reads its value; in the other basis
        // the outcome is a fair coin.
        let bases = BitVec::random(count, &mut self.core.rng);
        let coins = BitVec::random(count, &mut self.core.rng);
        let mut bits = BitVec::zeros(count);
        for i in 0..count {
            let b = if bases.get(i) == q.basis.get(i) { q.value.get(i) } else { coins.get(i) };
            bits.set(i, b);
        }
        self.core.stats.n_raw += q.slots as usize;
        self.core.stats.n_detected += count;
        let mut out = Vec::new();
        let msg = ClassicalMsg::Detections { frame: q.frame, slots: q.slots, detected: q.detected, bases };
        if self.send(&mut out, msg) {
            self.state = State::AwaitSift { frame: q.frame, bits };
        }
        out
    }

    /// Handles one message from Alice.
    pub fn on_message(&mut self, m: AuthMsg) -> Vec<Out> {
        if let Err(r) = self.core.open(&m) {
            self.state = State::Idle;
            return vec![Out::Aborted(r)];
        }
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, m.msg) {
            (_, ClassicalMsg::Abort { reason }) => vec![Out::Aborted(reason)],
            (State::AwaitSift { frame, bits }, ClassicalMsg::Sift { frame: f, matches }) => {
                if f != frame || matches.len() != bits.len() {
                    return self.abort(AbortReason::ProtocolViolation);
                }
                self.sifted.extend(&bits.select(&matches));
                if self.sifted.len() >= self.target() {
                    self.core.stats.n_sifted = self.sifted.len();
                    self.sifted.truncate(self.target());
                    self.state = State::AwaitEstimate;
                } else if frame == u32::MAX {
                    return self.abort(AbortReason::ProtocolViolation);
                } else {
                    self.state = State::AwaitQuantum { frame: frame + 1 };
                }
                Vec::new()
            }
            (State::AwaitEstimate, ClassicalMsg::Estimate { sample_seed, alice_sample }) => {
                self.estimate(sample_seed, &alice_sample)
            }
            (State::AwaitParities { key, q_est }, ClassicalMsg::Parities { cascade_seed, parities }) => {
                let sizes = self.core.params.cascade.block_sizes(q_est, key.len());
                let layout = Layout::new(key.len(), &sizes, cascade_seed);
                match CascadeBob::new(layout, key, &parities) {
                    Ok(cascade) => self.drive(cascade, q_est),
                    Err(_) => self.abort(AbortReason::ProtocolViolation),
                }
            }
            (State::Reconciling { q_est, mut cascade }, ClassicalMsg::Answer { parities }) => {
                if cascade.on_answers(&parities).is_err() {
                    return self.abort(AbortReason::ProtocolViolation);
                }
                self.drive(cascade, q_est)
            }
            (State::AwaitAmplify { key, q_est }, ClassicalMsg::Amplify { out_len, seed }) => {
                let disclosed = self.core.stats.parity_bits + VERIFY_BITS;
                let l = secret_length(key.len(), q_est, disclosed, self.core.params.security_margin);
                if l == 0 || out_len as usize != l || seed.len() != key.len() + l - 1 {
                    return self.abort(AbortReason::ProtocolViolation);
                }
                let final_key = toeplitz_hash(&seed, &key, l);
                vec![Out::Key(self.core.finish_key(&final_key))]
            }
            _ => self.abort(AbortReason::ProtocolViolation),
        }
    }

    fn estimate(&mut self, sample_seed: u64, alice_sample: &BitVec) -> Vec<Out> {
        let s = self.core.params.sample_bits();
        if alice_sample.len() != s {
            return self.abort(AbortReason::ProtocolViolation);
        }
        let sifted = std::mem::take(&mut self.sifted);
        let (bob_sample, key) = split_sample(&sifted, s, sample_seed);
        let q_est = bob_sample.hamming(alice_sample) as f64 / s as f64;
        self.core.stats.qber_estimate = q_est;
        if q_est > self.core.params.abort_qber || asymptotic_rate(q_est) <= 0.0 {
            return self.abort(AbortReason::QberTooHigh);
        }
        self.diag_key = Some(key.clone());
        let mut out = Vec::new();
        if self.send(&mut out, ClassicalMsg::EstimateReply { bob_sample }) {
            self.state = State::AwaitParities { key, q_est };
        }
        out
    }

    /// Sends the next query round, or the verification hash when done.
    fn drive(&mut self, mut cascade: CascadeBob, q_est: f64) -> Vec<Out> {
        let mut out = Vec::new();
        if let Some(queries) = cascade.next_queries() {
            self.core.stats.parity_bits = cascade.disclosed_bits() + queries.len();
            if self.send(&mut out, ClassicalMsg::Query { queries }) {
                self.state = State::Reconciling { q_est, cascade };
            }
            return out;
        }
        self.core.stats.parity_bits = cascade.disclosed_bits();
        self.core.stats.verification_bits = VERIFY_BITS;
        let key = cascade.into_key();
        let hash_key = self.core.rng.next_u64();
        let hash = verify_hash(&key, hash_key);
        if self.send(&mut out, ClassicalMsg::Verify { hash_key, hash }) {
            self.state = State::AwaitAmplify { key, q_est };
        }
        out
    }
}
