//! The quantum link between the two KMEs, behind a small trait: the seeded
//! generator here (`kind = "generator"`) or the BB84 simulation in
//! [`super::bb84`] (`kind = "bb84"`).

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::time::{Duration, Instant};

/// A source of key material shared by both sites of a KME pair.
///
/// Sans-IO: the caller passes `now`; the link appends what it distilled
/// since the previous call. In this process both KMEs read one pool, so
/// "both sides hold the same bits" holds by construction.
pub trait Link: Send {
    /// Appends at most `room` bytes of fresh shared key material to `pool`.
    /// `pool` has capacity for `room` more bytes: appending must not
    /// reallocate (a reallocation would leave a key copy behind).
    fn distill(&mut self, now: Instant, room: usize, pool: &mut Vec<u8>);

    /// Live figures for `status_extension`.
    fn stats(&self) -> LinkStats {
        LinkStats::default()
    }
}

/// What a link reports about itself (never key material).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStats {
    /// `"generator"` or `"bb84"`.
    pub kind: &'static str,
    /// QBER measured on the last block (BB84 only).
    pub qber: Option<f64>,
    /// Secret key distilled per second of link activity, bits.
    pub key_rate_bps: f64,
    /// Blocks that produced key / blocks aborted (QBER too high, failed
    /// verification, no secret fraction left).
    pub blocks_ok: u64,
    pub blocks_aborted: u64,
    /// False while the link produces nothing (dead generator, peer KME
    /// unreachable).
    pub up: bool,
}

impl Default for LinkStats {
    fn default() -> Self {
        LinkStats { kind: "generator", qber: None, key_rate_bps: 0.0, blocks_ok: 0, blocks_aborted: 0, up: false }
    }
}

/// Uniformly random bytes at a fixed rate of `key_rate` keys of
/// `key_bytes` bytes per second ("a simple key generator is acceptable").
pub struct SimulatedLink {
    key_bytes: usize,
    key_rate: u32,
    rng: StdRng,
    /// Instant up to which generation has been accounted for.
    since: Instant,
}

impl SimulatedLink {
    /// `seed` makes the key stream reproducible (tests); `None` seeds from
    /// the OS.
    pub fn new(key_bytes: usize, key_rate: u32, seed: Option<u64>, start: Instant) -> SimulatedLink {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        SimulatedLink { key_bytes: key_bytes.max(1), key_rate, rng, since: start }
    }
}

impl Link for SimulatedLink {
    fn stats(&self) -> LinkStats {
        LinkStats {
            key_rate_bps: f64::from(self.key_rate) * self.key_bytes as f64 * 8.0,
            up: self.key_rate > 0,
            ..LinkStats::default()
        }
    }

    fn distill(&mut self, now: Instant, room: usize, pool: &mut Vec<u8>) {
        if self.key_rate == 0 {
            return;
        }
        let elapsed = now.saturating_duration_since(self.since);
        let due = elapsed.as_nanos() * u128::from(self.key_rate) / 1_000_000_000;
        let room_keys = (room / self.key_bytes) as u128;
        let keys = due.min(room_keys);
        if due > room_keys {
            // The pool is full: time spent full produces nothing.
            self.since = now;
        } else {
            // Advance by exactly the time those keys took; keep the remainder.
            let nanos = keys * 1_000_000_000 / u128::from(self.key_rate);
            self.since += Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64);
        }
        let n = keys as usize * self.key_bytes;
        if n == 0 {
            return;
        }
        let start = pool.len();
        debug_assert!(pool.capacity() - start >= n, "pool must be pre-allocated");
        pool.resize(start + n, 0);
        self.rng.fill_bytes(&mut pool[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_room_and_seed() {
        let t0 = Instant::now();
        let mut a = SimulatedLink::new(32, 10, Some(7), t0);
        let mut b = SimulatedLink::new(32, 10, Some(7), t0);
        let mut pa = Vec::with_capacity(32 * 100);
        let mut pb = Vec::with_capacity(32 * 100);
        a.distill(t0 + Duration::from_millis(350), 3200, &mut pa);
        assert_eq!(pa.len(), 3 * 32, "10 keys/s for 0.35 s");
        // Remainder carried: 0.35 + 0.05 s = 4 keys in total.
        a.distill(t0 + Duration::from_millis(400), 3200, &mut pa);
        assert_eq!(pa.len(), 4 * 32);
        b.distill(t0 + Duration::from_millis(400), 3200, &mut pb);
        assert_eq!(pa, pb, "same seed, same stream");
        assert!(pa.iter().any(|&x| x != 0));
        // Room limits output.
        let mut c = SimulatedLink::new(32, 1000, None, t0);
        let mut pc = Vec::with_capacity(64);
        c.distill(t0 + Duration::from_secs(1), 64, &mut pc);
        assert_eq!(pc.len(), 64);
        // Rate 0: a dead link.
        let mut d = SimulatedLink::new(32, 0, None, t0);
        let mut pd = Vec::with_capacity(64);
        d.distill(t0 + Duration::from_secs(100), 64, &mut pd);
        assert!(pd.is_empty());
    }
}
