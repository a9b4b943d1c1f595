//! In-memory driver: connects Alice, the channel and Bob, and reports on
//! each block.

use crate::alice::Alice;
use crate::bob::Bob;
use crate::channel::{Channel, QuantumFrame};
use crate::link::{LinkParams, Out, ParamError};
use crate::math::h2;
use crate::msg::{AbortReason, AuthMsg};
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use std::collections::VecDeque;
use zeroize::Zeroizing;

/// Alice's key and Bob's key for one block.
pub type KeyPair = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);

/// What happened in one block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockReport {
    /// Pulses sent.
    pub n_raw: usize,
    /// Pulses detected.
    pub n_detected: usize,
    /// Sifted bits (bases matched) before truncation to n + sample.
    pub n_sifted: usize,
    /// Bits entering error correction.
    pub n: usize,
    /// Bits disclosed for parameter estimation.
    pub sample_bits: usize,
    pub qber_estimate: f64,
    /// Errors between the two keys entering error correction / n (only the
    /// simulator can know it; NaN when the block aborted before).
    pub qber_actual: f64,
    pub cascade_parity_bits: usize,
    /// Parity bits / (n·h(qber_actual)); NaN without errors.
    pub efficiency_f: f64,
    /// Verification hashes matched.
    pub verified: bool,
    /// Privacy-amplified length ℓ.
    pub final_key_bits: usize,
    /// ℓ minus what went back into the authentication pool (whole bytes).
    pub delivered_bits: usize,
    /// ℓ / n.
    pub secret_fraction: f64,
    /// One-time pool bits spent on tags in this block.
    pub auth_bits_consumed: usize,
    /// Pool bits left after the block (Alice's side).
    pub pool_bits: usize,
    /// Classical messages exchanged.
    pub messages: usize,
    pub aborted: Option<AbortReason>,
}

enum ToBob {
    Quantum(QuantumFrame),
    Msg(AuthMsg),
}

/// Guards against a state-machine bug looping forever.
const MAX_STEPS: usize = 1_000_000;

/// Runs one block between `alice` and `bob` over `channel` in memory. The
/// channel's randomness (loss, Eve, noise) comes from `rng`.
pub fn run_block<R: Rng + ?Sized>(
    alice: &mut Alice,
    bob: &mut Bob,
    channel: &Channel,
    rng: &mut R,
) -> (BlockReport, Option<KeyPair>) {
    let mut to_bob: VecDeque<ToBob> = VecDeque::new();
    let mut to_alice: VecDeque<AuthMsg> = VecDeque::new();
    let (mut a_key, mut b_key, mut a_abort, mut b_abort) = (None, None, None, None);
    let mut from_alice = alice.start_block();
    let mut from_bob = Vec::new();
    for _ in 0..MAX_STEPS {
        for o in from_alice.drain(..) {
            match o {
                Out::Send(m) => to_bob.push_back(ToBob::Msg(m)),
                Out::Pulses(t) => to_bob.push_back(ToBob::Quantum(channel.transmit(&t, rng))),
                Out::Key(k) => a_key = Some(k),
                Out::Aborted(r) => a_abort = Some(r),
            }
        }
        for o in from_bob.drain(..) {
            match o {
                Out::Send(m) => to_alice.push_back(m),
                Out::Pulses(_) => {}
                Out::Key(k) => b_key = Some(k),
                Out::Aborted(r) => b_abort = Some(r),
            }
        }
        if let Some(x) = to_bob.pop_front() {
            from_bob = match x {
                ToBob::Quantum(q) => bob.on_quantum(q),
                ToBob::Msg(m) => bob.on_message(m),
            };
        } else if let Some(m) = to_alice.pop_front() {
            from_alice = alice.on_message(m);
        } else {
            break;
        }
    }
    let a = alice.stats();
    let n = a.n;
    let qber_actual = match (&alice.diag_key, &bob.diag_key) {
        (Some(ka), Some(kb)) if ka.len() == kb.len() => ka.hamming(kb) as f64 / ka.len() as f64,
        _ => f64::NAN,
    };
    let keys = match (a_key, b_key) {
        (Some(x), Some(y)) => Some((x, y)),
        _ => None,
    };
    let report = BlockReport {
        n_raw: a.n_raw,
        n_detected: a.n_detected,
        n_sifted: a.n_sifted,
        n,
        sample_bits: a.sample_bits,
        // Bob estimates first (and alone, when he aborts).
        qber_estimate: bob.stats().qber_estimate,
        qber_actual,
        cascade_parity_bits: a.parity_bits,
        efficiency_f: a.parity_bits as f64 / (n as f64 * h2(qber_actual)),
        verified: keys.is_some(),
        final_key_bits: if keys.is_some() { a.final_key_bits } else { 0 },
        delivered_bits: if keys.is_some() { a.delivered_bits } else { 0 },
        secret_fraction: if keys.is_some() { a.final_key_bits as f64 / n as f64 } else { 0.0 },
        auth_bits_consumed: a.auth_bits_consumed,
        pool_bits: a.pool_bits,
        messages: a.messages,
        aborted: a_abort.or(b_abort),
    };
    (report, keys)
}

/// Both ends of a link and its channel in one process, seeded.
pub struct Simulation {
    alice: Alice,
    bob: Bob,
    channel: Channel,
    rng: ChaCha8Rng,
}

impl Simulation {
    /// A link with the given parameters; the whole run is a function of
    /// `params` and `seed`.
    pub fn new(params: LinkParams, seed: u64) -> Result<Self, ParamError> {
        params.validate()?;
        let mut master = ChaCha20Rng::seed_from_u64(seed);
        let alice = Alice::new(params.clone(), ChaCha20Rng::from_seed(master.gen()));
        let bob = Bob::new(params.clone(), ChaCha20Rng::from_seed(master.gen()));
        Ok(Self { alice, bob, channel: Channel::from_params(&params), rng: ChaCha8Rng::from_seed(master.gen()) })
    }

    /// Runs one block: its report and, unless it aborted, (Alice's key,
    /// Bob's key).
    pub fn next_block(&mut self) -> (BlockReport, Option<KeyPair>) {
        run_block(&mut self.alice, &mut self.bob, &self.channel, &mut self.rng)
    }

    /// Alice's end.
    pub fn alice(&self) -> &Alice {
        &self.alice
    }

    /// Bob's end.
    pub fn bob(&self) -> &Bob {
        &self.bob
    }
}
