//! A faithful, deterministic simulation of a BB84 QKD link and its classical
//! post-processing, sans-IO.
//!
//! Per block: raw exchange over a channel model (loss, intrinsic errors,
//! optional intercept-resend eavesdropper) → sifting → QBER estimation on a
//! disclosed sample, with abort → Cascade error correction (original or Yan
//! et al. parameters) → verification by a universal hash → Toeplitz privacy
//! amplification to ℓ = ⌊n(1 − h(Q)) − disclosed − margin⌋. Every classical
//! message carries a Wegman–Carter tag whose one-time pad comes from a key
//! pool bootstrapped from a pre-shared secret and refilled from the key the
//! link produces; consumption is accounted per block.
//!
//! What it is not: a QKD device driver, a KME, or a transport. It does no
//! I/O and reads no clock; every random choice comes from RNGs passed in, so
//! a seed fixes a whole run bit for bit. Finite-key corrections beyond the
//! fixed security margin are not modelled.
//!
//! Call order, both ends in one process: [`Simulation::new`] →
//! [`Simulation::next_block`] repeatedly. Split across two processes (LB site
//! and backend site): [`Alice::new`] / [`Bob::new`] with the same
//! [`LinkParams`]; [`Alice::start_block`]; every [`Out::Pulses`] goes through
//! [`Channel::transmit`] and the resulting [`QuantumFrame`] to
//! [`Bob::on_quantum`]; every [`Out::Send`] to the peer's `on_message`,
//! in order (wrap both in [`Packet`] on one byte stream); each end finishes
//! a block with [`Out::Key`] (identical keys) or [`Out::Aborted`]. If a block
//! stalls (lost peer), call `start_block` again: sequence numbers and the
//! pool stay aligned as long as every sent message was delivered.
#![forbid(unsafe_code)]

mod alice;
pub mod auth;
pub mod bits;
mod bob;
pub mod cascade;
pub mod channel;
mod cli;
mod driver;
mod link;
pub mod math;
pub mod msg;
pub mod report;
pub mod toeplitz;
pub mod wire;

pub use alice::Alice;
pub use bob::Bob;
pub use cascade::CascadeParams;
pub use channel::{Channel, Packet, PulseTrain, QuantumFrame};
pub use cli::cli_main;
pub use driver::{run_block, BlockReport, KeyPair, Simulation};
pub use link::{secret_length, EndStats, LinkParams, Out, ParamError, MAX_BLOCK_BITS, VERIFY_BITS};
pub use msg::{AbortReason, AuthMsg, ClassicalMsg};
pub use wire::DecodeError;
