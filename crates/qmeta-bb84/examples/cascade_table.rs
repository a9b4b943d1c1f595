//! Cascade efficiency table for n = 10,000 bits against the published means
//! (Martinez-Mateo et al., arXiv:1407.3257, 10,000 runs per point).
//!
//! `cargo run --release -p qmeta-bb84 --example cascade_table [RUNS]`
//! (default 10,000 runs per point). Each run: random 10,000-bit key, a
//! binary symmetric channel with crossover Q, Cascade with block sizes from
//! Q; f = parity bits disclosed / (n·h(Q_actual)).

use qmeta_bb84::bits::BitVec;
use qmeta_bb84::cascade::{reconcile, CascadeParams};
use qmeta_bb84::math::h2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

const N: usize = 10_000;

fn main() {
    let runs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    println!("Cascade efficiency, n = {N}, {runs} runs per point");
    println!("| Q | variant | mean f | std f | published | difference | frame error rate |");
    println!("|---|---|---|---|---|---|---|");
    let started = Instant::now();
    for params in [CascadeParams::Original, CascadeParams::Yan] {
        for q in [0.01, 0.02, 0.05, 0.10] {
            let (mut sum, mut sum2, mut failures) = (0.0, 0.0, 0u64);
            for run in 0..runs {
                let mut rng = ChaCha8Rng::seed_from_u64(run ^ ((q * 1e4) as u64) << 40);
                let alice = BitVec::random(N, &mut rng);
                let mut bob = alice.clone();
                for i in 0..N {
                    if rng.gen_bool(q) {
                        bob.flip(i);
                    }
                }
                let actual = alice.hamming(&bob) as f64 / N as f64;
                let (fixed, disclosed) = reconcile(&alice, &bob, &params.block_sizes(q, N), run);
                failures += u64::from(fixed != alice);
                let f = disclosed as f64 / (N as f64 * h2(actual));
                sum += f;
                sum2 += f * f;
            }
            let mean = sum / runs as f64;
            let std = (sum2 / runs as f64 - mean * mean).max(0.0).sqrt();
            let published = params.published_efficiency(q).expect("tabulated Q");
            println!(
                "| {:.0} % | {} | {mean:.4} | {std:.4} | {published:.3} | {:+.4} | {:.1e} |",
                q * 100.0,
                params.name(),
                mean - published,
                failures as f64 / runs as f64
            );
        }
    }
    println!("({} runs in {:.1} s)", 8 * runs, started.elapsed().as_secs_f64());
}
