//! Alice: prepares photons, sifts, discloses her sample, answers Cascade
//! parity queries, checks Bob's verification hash and chooses the Toeplitz
//! seed. Sans-IO: messages in, [`Out`] events out.

use crate::bits::BitVec;
use crate::cascade::{CascadeAlice, Layout};
use crate::channel::PulseTrain;
use crate::link::{secret_length, split_sample, verify_hash, Core, EndStats, LinkParams, Out, VERIFY_BITS};
use crate::msg::{AbortReason, AuthMsg, ClassicalMsg, MAX_FRAME_SLOTS};
use crate::toeplitz::toeplitz_hash;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha20Rng;

enum State {
    Idle,
    /// Waiting for Bob's detections of `frame`.
    Sifting {
        frame: u32,
        train: PulseTrain,
    },
    AwaitEstimateReply {
        sample: BitVec,
        key: BitVec,
    },
    Reconciling {
        key: BitVec,
        q_est: f64,
        cascade: CascadeAlice,
    },
}

/// The sending end of the link (at the LB site in qmeta).
pub struct Alice {
    core: Core,
    block: u64,
    state: State,
    sifted: BitVec,
    /// The block's key before error correction, kept for the in-memory
    /// driver's QBER measurement (a real end could not see the peer's).
    pub(crate) diag_key: Option<BitVec>,
}

impl Alice {
    /// A new end; `params` must be valid (see [`LinkParams::validate`]) and
    /// `rng` seeded from a secret source (it draws bits, bases and seeds).
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

    /// Starts a new block (abandoning any block in progress): the first
    /// frame of pulses.
    pub fn start_block(&mut self) -> Vec<Out> {
        self.block += 1;
        self.core.begin_block(self.block);
        self.sifted = BitVec::new();
        self.diag_key = None;
        vec![Out::Pulses(self.next_frame(0))]
    }

    fn target(&self) -> usize {
        self.core.params.block_bits + self.core.params.sample_bits()
    }

    fn next_frame(&mut self, frame: u32) -> PulseTrain {
        // Enough pulses for the missing sifted bits with ~6σ to spare, so a
        // second frame is rare.
        let missing = self.target().saturating_sub(self.sifted.len()) as f64;
        let yield_per_pulse = self.core.params.detection_prob * 0.5;
        let want = (missing + 6.0 * missing.sqrt() + 64.0) / yield_per_pulse;
        let slots = (want.ceil() as usize).min(MAX_FRAME_SLOTS);
        let train = PulseTrain {
            block: self.block,
            frame,
            basis: BitVec::random(slots, &mut self.core.rng),
            value: BitVec::random(slots, &mut self.core.rng),
        };
        self.core.stats.n_raw += slots;
        self.state = State::Sifting { frame, train: train.clone() };
        train
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

    /// Handles one message from Bob.
    pub fn on_message(&mut self, m: AuthMsg) -> Vec<Out> {
        if let Err(r) = self.core.open(&m) {
            self.state = State::Idle;
            return vec![Out::Aborted(r)];
        }
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, m.msg) {
            (_, ClassicalMsg::Abort { reason }) => vec![Out::Aborted(reason)],
            (State::Sifting { frame, train }, ClassicalMsg::Detections { frame: f, slots, detected, bases }) => {
                if f != frame || slots as usize != train.slots() || bases.len() != detected.len() {
                    return self.abort(AbortReason::ProtocolViolation);
                }
                self.sift(frame, &train, &detected, &bases)
            }
            (State::AwaitEstimateReply { sample, key }, ClassicalMsg::EstimateReply { bob_sample }) => {
                if bob_sample.len() != sample.len() {
                    return self.abort(AbortReason::ProtocolViolation);
                }
                self.reconcile(key, sample.hamming(&bob_sample) as f64 / sample.len() as f64)
            }
            (State::Reconciling { key, q_est, cascade }, ClassicalMsg::Query { queries }) => {
                let Some(parities) = cascade.answer(&queries) else {
                    return self.abort(AbortReason::ProtocolViolation);
                };
                self.core.stats.parity_bits += queries.len();
                self.state = State::Reconciling { key, q_est, cascade };
                let mut out = Vec::new();
                self.send(&mut out, ClassicalMsg::Answer { parities });
                out
            }
            (State::Reconciling { key, q_est, .. }, ClassicalMsg::Verify { hash_key, hash }) => {
                if verify_hash(&key, hash_key) != hash {
                    return self.abort(AbortReason::VerificationFailed);
                }
                self.amplify(&key, q_est)
            }
            _ => self.abort(AbortReason::ProtocolViolation),
        }
    }

    fn sift(&mut self, frame: u32, train: &PulseTrain, detected: &[u32], bases: &BitVec) -> Vec<Out> {
        let mut matches = BitVec::zeros(detected.len());
        for (i, &s) in detected.iter().enumerate() {
            let s = s as usize;
            if train.basis.get(s) == bases.get(i) {
                matches.set(i, true);
                self.sifted.push(train.value.get(s));
            }
        }
        self.core.stats.n_detected += detected.len();
        let mut out = Vec::new();
        if !self.send(&mut out, ClassicalMsg::Sift { frame, matches }) {
            return out;
        }
        if self.sifted.len() < self.target() {
            if frame == u32::MAX {
                return self.abort(AbortReason::ProtocolViolation);
            }
            out.push(Out::Pulses(self.next_frame(frame + 1)));
            return out;
        }
        let sifted = std::mem::take(&mut self.sifted);
        self.core.stats.n_sifted = sifted.len();
        let mut sifted = sifted;
        sifted.truncate(self.target());
        let sample_seed = self.core.rng.next_u64();
        let (sample, key) = split_sample(&sifted, self.core.params.sample_bits(), sample_seed);
        if self.send(&mut out, ClassicalMsg::Estimate { sample_seed, alice_sample: sample.clone() }) {
            self.state = State::AwaitEstimateReply { sample, key };
        }
        out
    }

    fn reconcile(&mut self, key: BitVec, q_est: f64) -> Vec<Out> {
        self.core.stats.qber_estimate = q_est;
        if q_est > self.core.params.abort_qber {
            return self.abort(AbortReason::QberTooHigh);
        }
        let cascade_seed = self.core.rng.gen::<u64>();
        let sizes = self.core.params.cascade.block_sizes(q_est, key.len());
        let cascade = CascadeAlice::new(Layout::new(key.len(), &sizes, cascade_seed), &key);
        let parities = cascade.top_parities();
        self.diag_key = Some(key.clone());
        self.core.stats.parity_bits = parities.len();
        let mut out = Vec::new();
        if self.send(&mut out, ClassicalMsg::Parities { cascade_seed, parities }) {
            self.state = State::Reconciling { key, q_est, cascade };
        }
        out
    }

    fn amplify(&mut self, key: &BitVec, q_est: f64) -> Vec<Out> {
        let p = &self.core.params;
        self.core.stats.verification_bits = VERIFY_BITS;
        let disclosed = self.core.stats.parity_bits + VERIFY_BITS;
        let l = secret_length(key.len(), q_est, disclosed, p.security_margin);
        if l == 0 {
            return self.abort(AbortReason::NoSecretKey);
        }
        let seed = BitVec::random(key.len() + l - 1, &mut self.core.rng);
        let final_key = toeplitz_hash(&seed, key, l);
        let mut out = Vec::new();
        if self.send(&mut out, ClassicalMsg::Amplify { out_len: l as u32, seed }) {
            out.push(Out::Key(self.core.finish_key(&final_key)));
        }
        out
    }
}
