//! The BB84 link (`kind = "bb84"`), backed by `qmeta_bb84`.
//!
//! - [`Bb84Link`] (both sites in one process): a thread runs
//!   `Simulation::next_block` and queues the distilled key; the store pulls
//!   it through [`Link::distill`]. The thread pauses while the queue is
//!   full and paces itself to `key_rate`, so it never competes with request
//!   handling for long and never runs on the async runtime.
//! - [`LinkEnd`] (one site per process): Alice or Bob, driven by
//!   [`super::peer`] with the messages from the other KME.
//!
//! A block whose two keys differ is dropped and counted as aborted (it
//! would mean a verification failure went unnoticed).

use super::link::{Link, LinkStats};
use super::setup::{Bb84Config, Cascade};
use super::store::Site;
use super::LinkConfig;
use qmeta_bb84 as sim;
use rand::SeedableRng;
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The outcome of one block at one end.
pub struct BlockResult {
    /// The distilled key (`None`: aborted, or all of it went back into the
    /// authentication pool).
    pub key: Option<Zeroizing<Vec<u8>>>,
    pub aborted: bool,
    /// QBER estimated on the block, if it got that far.
    pub qber: Option<f64>,
}

/// One end of the link as [`super::peer`] drives it.
pub trait LinkEnd: Send {
    /// Alice: the messages that start the next block. Bob: none.
    fn start_block(&mut self) -> Vec<Vec<u8>>;
    /// One message from the other end: replies, and the block's outcome
    /// when the block ends here.
    #[allow(clippy::type_complexity)]
    fn on_message(&mut self, msg: &[u8]) -> Result<(Vec<Vec<u8>>, Option<BlockResult>), String>;
}

/// Distilled key kept ready beyond what the store holds (1024 keys of
/// 256 bits); the link thread pauses above it.
pub const AHEAD_BYTES: usize = 32 * 1024;

/// Bytes of one-time pad the Wegman–Carter authentication starts with (a
/// block spends a few KiB; later blocks refill it from their own key).
pub const BOOTSTRAP_PAD_BYTES: usize = 16 * 1024;

/// The pre-shared secret stretched to the bootstrap pad the BB84 ends
/// need, with a per-session `nonce` so that no two sessions start from the
/// same pad. Stretching makes the first block's authentication
/// computationally (not information-theoretically) secure; see docs/KME.md.
fn bootstrap_pad(psk: &[u8], nonce: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut h = Sha256::new();
    h.update(b"qmeta kme bb84 bootstrap pad v1");
    h.update((psk.len() as u64).to_be_bytes());
    h.update(psk);
    h.update(nonce);
    let mut seed: [u8; 32] = h.finalize().into();
    let mut rng = ChaCha20Rng::from_seed(seed);
    zeroize::Zeroize::zeroize(&mut seed);
    let mut pad = Zeroizing::new(vec![0u8; BOOTSTRAP_PAD_BYTES]);
    rand::RngCore::fill_bytes(&mut rng, &mut pad[..]);
    pad
}

fn params(cfg: &Bb84Config, pad: &[u8]) -> sim::LinkParams {
    sim::LinkParams {
        block_bits: cfg.block_bits,
        intrinsic_qber: cfg.intrinsic_qber,
        detection_prob: cfg.detection_prob,
        eve_fraction: cfg.eve_fraction,
        cascade: match cfg.cascade {
            Cascade::Original => sim::CascadeParams::Original,
            Cascade::Yan => sim::CascadeParams::Yan,
        },
        psk: pad.to_vec(),
        ..sim::LinkParams::default()
    }
}

fn seed_or_random(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(rand::random)
}

fn finite(q: f64) -> Option<f64> {
    q.is_finite().then_some(q)
}

/// The BB84 end for `site` (A: Alice, who also simulates the fibre and
/// any eavesdropper on it; B: Bob). Both sites pass the same `nonce`.
pub fn new_end(site: Site, cfg: &Bb84Config, seed: Option<u64>, nonce: &[u8]) -> Result<Box<dyn LinkEnd>, String> {
    let psk = cfg.psk.as_ref().ok_or("a pre-shared key is required")?;
    let pad = bootstrap_pad(psk, nonce);
    let p = params(cfg, &pad);
    p.validate().map_err(|e| e.to_string())?;
    // Each end draws its own randomness; a fixed seed keeps tests
    // reproducible without the ends sharing a stream.
    let seed = seed_or_random(seed);
    Ok(match site {
        Site::A => Box::new(AliceEnd {
            channel: sim::Channel::from_params(&p),
            alice: sim::Alice::new(p, ChaCha20Rng::seed_from_u64(seed)),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x00c0_ffee),
        }),
        Site::B => Box::new(BobEnd(sim::Bob::new(p, ChaCha20Rng::seed_from_u64(seed ^ 0x5bd1_e995)))),
    })
}

struct AliceEnd {
    alice: sim::Alice,
    channel: sim::Channel,
    rng: ChaCha8Rng,
}

struct BobEnd(sim::Bob);

/// Turns an end's outputs into packets for the peer and a block outcome.
fn outputs(
    outs: Vec<sim::Out>,
    mut channel: Option<(&sim::Channel, &mut ChaCha8Rng)>,
    qber: f64,
) -> (Vec<Vec<u8>>, Option<BlockResult>) {
    let mut send = Vec::new();
    let mut done = None;
    for o in outs {
        match o {
            sim::Out::Send(m) => send.push(sim::Packet::Classical(m).encode()),
            sim::Out::Pulses(train) => {
                if let Some((ch, rng)) = channel.as_mut() {
                    let frame = ch.transmit(&train, *rng);
                    send.push(sim::Packet::Quantum(frame).encode());
                }
            }
            sim::Out::Key(k) => {
                done = Some(BlockResult { key: (!k.is_empty()).then_some(k), aborted: false, qber: finite(qber) })
            }
            sim::Out::Aborted(_) => {
                done = Some(BlockResult { key: None, aborted: true, qber: finite(qber).filter(|q| *q > 0.0) })
            }
        }
    }
    (send, done)
}

fn packet(msg: &[u8]) -> Result<sim::Packet, String> {
    sim::Packet::decode(msg).map_err(|e| e.to_string())
}

impl LinkEnd for AliceEnd {
    fn start_block(&mut self) -> Vec<Vec<u8>> {
        let outs = self.alice.start_block();
        let q = self.alice.stats().qber_estimate;
        outputs(outs, Some((&self.channel, &mut self.rng)), q).0
    }
    fn on_message(&mut self, msg: &[u8]) -> Result<(Vec<Vec<u8>>, Option<BlockResult>), String> {
        let outs = match packet(msg)? {
            sim::Packet::Classical(m) => self.alice.on_message(m),
            sim::Packet::Quantum(_) => return Err("Alice got a quantum frame".into()),
        };
        let q = self.alice.stats().qber_estimate;
        Ok(outputs(outs, Some((&self.channel, &mut self.rng)), q))
    }
}

impl LinkEnd for BobEnd {
    fn start_block(&mut self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn on_message(&mut self, msg: &[u8]) -> Result<(Vec<Vec<u8>>, Option<BlockResult>), String> {
        let outs = match packet(msg)? {
            sim::Packet::Classical(m) => self.0.on_message(m),
            sim::Packet::Quantum(q) => self.0.on_quantum(q),
        };
        let q = self.0.stats().qber_estimate;
        Ok(outputs(outs, None, q))
    }
}

/// Distilled key waiting for the store, and the link's figures.
struct Queue {
    blocks: VecDeque<Zeroizing<Vec<u8>>>,
    bytes: usize,
    stats: LinkStats,
}

struct Shared {
    q: Mutex<Queue>,
    /// Signalled when the store took material (room for more).
    taken: Condvar,
    stop: AtomicBool,
}

/// Both ends of a BB84 link in this process, on a background thread.
pub struct Bb84Link {
    shared: Arc<Shared>,
}

impl Drop for Bb84Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.taken.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bb84Link {
    /// Starts the simulation thread. `limits.key_rate` caps the output
    /// (keys of `key_size` per second; 0: the link is down).
    pub fn spawn(limits: &LinkConfig, cfg: &Bb84Config) -> Bb84Link {
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                blocks: VecDeque::new(),
                bytes: 0,
                stats: LinkStats { kind: "bb84", up: limits.key_rate > 0, ..LinkStats::default() },
            }),
            taken: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        // Distil ahead only a little: the store pulls on demand, and a
        // debug build spends ~0.5 s of CPU per block.
        let cap = (limits.max_key_count as usize * (limits.key_size / 8) as usize).min(AHEAD_BYTES);
        let max_bps = f64::from(limits.key_rate) * f64::from(limits.key_size);
        let seed = seed_or_random(limits.seed);
        // Both ends live here: a random secret unless one is configured.
        let psk = cfg.psk.clone().unwrap_or_else(|| {
            let mut k = Zeroizing::new(vec![0u8; 32]);
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k[..]);
            k
        });
        let pad = bootstrap_pad(&psk, &seed.to_be_bytes());
        let p = params(cfg, &pad);
        let sh = shared.clone();
        let spawned =
            std::thread::Builder::new().name("qmeta-bb84".into()).spawn(move || run(sh, p, seed, cap.max(1), max_bps));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the BB84 thread; the link is down");
            lock(&shared.q).stats.up = false;
        }
        Bb84Link { shared }
    }
}

fn run(sh: Arc<Shared>, p: sim::LinkParams, seed: u64, cap: usize, max_bps: f64) {
    if max_bps <= 0.0 {
        return;
    }
    let mut simulation = match sim::Simulation::new(p, seed) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "BB84 simulation refused its parameters; the link is down");
            lock(&sh.q).stats.up = false;
            return;
        }
    };
    let started = Instant::now();
    let mut paused = Duration::ZERO;
    let mut bits_total = 0f64;
    while !sh.stop.load(Ordering::Acquire) {
        // Wait for room (the store takes material on requests).
        {
            let t = Instant::now();
            let mut q = lock(&sh.q);
            while q.bytes >= cap && !sh.stop.load(Ordering::Acquire) {
                q = sh.taken.wait_timeout(q, Duration::from_millis(200)).unwrap_or_else(|p| p.into_inner()).0;
            }
            paused += t.elapsed();
        }
        let (report, keys) = simulation.next_block();
        let ok = keys.as_ref().is_some_and(|(a, b)| a[..] == b[..]);
        let key = keys.filter(|_| ok).map(|(alice, _)| alice).filter(|k| !k.is_empty());
        let bits = key.as_ref().map_or(0, |k| k.len() * 8);
        bits_total += bits as f64;
        {
            let mut q = lock(&sh.q);
            if ok {
                q.stats.blocks_ok += 1;
            } else {
                q.stats.blocks_aborted += 1;
            }
            if let Some(k) = key {
                q.bytes += k.len();
                q.blocks.push_back(k);
            }
            // Bob may abort before Alice estimates anything: take the end
            // that did.
            let est = report.qber_estimate.max(simulation.bob().stats().qber_estimate);
            q.stats.qber = finite(est).filter(|q| *q > 0.0 || report.aborted.is_none()).or(q.stats.qber);
            let active = started.elapsed().saturating_sub(paused).as_secs_f64();
            q.stats.key_rate_bps = bits_total / active.max(1e-3);
        }
        // Pace to the configured rate.
        let due = Duration::from_secs_f64(bits_total / max_bps);
        let ahead = due.saturating_sub(started.elapsed().saturating_sub(paused));
        if !ahead.is_zero() {
            let t = Instant::now();
            let q = lock(&sh.q);
            let _ = sh.taken.wait_timeout(q, ahead.min(Duration::from_secs(1)));
            paused += t.elapsed();
        }
    }
}

impl Link for Bb84Link {
    fn distill(&mut self, _now: Instant, room: usize, pool: &mut Vec<u8>) {
        let mut guard = lock(&self.shared.q);
        let q = &mut *guard;
        let mut room = room.min(pool.capacity() - pool.len());
        while room > 0 {
            let Some(front) = q.blocks.front_mut() else { break };
            let n = front.len().min(room);
            pool.extend_from_slice(&front[..n]);
            room -= n;
            q.bytes -= n;
            if n == front.len() {
                q.blocks.pop_front();
            } else {
                // Keep the rest for the next call; the old buffer is wiped
                // when it is dropped here.
                let rest = Zeroizing::new(front[n..].to_vec());
                *front = rest;
            }
        }
        drop(guard);
        self.shared.taken.notify_all();
    }

    fn stats(&self) -> LinkStats {
        lock(&self.shared.q).stats.clone()
    }
}
