//! End-to-end behaviour of the simulated link (both ends in memory).

use qmeta_bb84::math::{h2, rate_with_efficiency};
use qmeta_bb84::{AbortReason, CascadeParams, LinkParams, Simulation, VERIFY_BITS};

fn params(n: usize, q: f64) -> LinkParams {
    LinkParams {
        block_bits: n,
        detection_prob: 1.0,
        intrinsic_qber: q,
        psk: (0..8 + 16 * 1024).map(|i| (i * 7 + 3) as u8).collect(),
        ..LinkParams::default()
    }
}

#[test]
fn keys_identical_over_twenty_blocks() {
    // Yan et al. runs many more rounds, each costing a 64-bit tag, so it needs
    // longer blocks before any key is left over after refilling the pool.
    for (cascade, n, blocks) in [(CascadeParams::Original, 30_000, 20), (CascadeParams::Yan, 80_000, 5)] {
        let mut sim = Simulation::new(LinkParams { cascade, ..params(n, 0.03) }, 7).unwrap();
        let mut previous: Option<Vec<u8>> = None;
        for block in 0..blocks {
            let (r, keys) = sim.next_block();
            let (a, b) = keys.unwrap_or_else(|| panic!("block {block} aborted: {r:?}"));
            assert_eq!(a, b, "block {block}");
            assert!(r.verified);
            assert_eq!(a.len() * 8, r.delivered_bits);
            assert!(r.final_key_bits > n / 3 && r.delivered_bits > n / 10, "{r:?}");
            assert!(r.qber_actual > 0.02 && r.qber_actual < 0.04, "{r:?}");
            assert_ne!(previous.as_deref(), Some(&a[..]), "fresh key every block");
            previous = Some(a.to_vec());
        }
    }
}

#[test]
fn a_seed_fixes_the_whole_run() {
    let run = |seed| {
        let mut sim = Simulation::new(params(5_000, 0.02), seed).unwrap();
        (0..3)
            .map(|_| {
                let (r, k) = sim.next_block();
                (format!("{r:?}"), k.map(|(a, _)| a.to_vec()))
            })
            .collect::<Vec<_>>()
    };
    let first = run(42);
    assert_eq!(first, run(42));
    assert_ne!(first, run(43));
    assert!(first.iter().all(|(_, k)| k.is_some()));
}

#[test]
fn key_length_follows_the_formula_and_the_rate_estimate() {
    let n = 50_000;
    let mut sim = Simulation::new(params(n, 0.02), 3).unwrap();
    for _ in 0..3 {
        let (r, keys) = sim.next_block();
        assert!(keys.is_some(), "{r:?}");
        // Exactly ℓ = ⌊n(1 − h(Q_est)) − parity − verification − margin⌋.
        let want =
            (n as f64 * (1.0 - h2(r.qber_estimate))).floor() as usize - r.cascade_parity_bits - VERIFY_BITS - 100;
        assert_eq!(r.final_key_bits, want);
        // And close to n(1 − h(Q) − f·h(Q)) minus the fixed overheads.
        let predicted = n as f64 * rate_with_efficiency(r.qber_actual, r.efficiency_f) - 164.0;
        let rel = (r.final_key_bits as f64 - predicted).abs() / predicted;
        assert!(rel < 0.03, "ℓ {} vs predicted {predicted:.0} ({rel:.3})", r.final_key_bits);
        assert!(r.efficiency_f > 1.0 && r.efficiency_f < 1.3, "{r:?}");
    }
}

#[test]
fn full_intercept_resend_gives_quarter_qber_and_no_key() {
    let p = LinkParams { eve_fraction: 1.0, detection_prob: 0.3, ..params(50_000, 0.0) };
    let mut sim = Simulation::new(p, 11).unwrap();
    for _ in 0..4 {
        let (r, keys) = sim.next_block();
        assert!(keys.is_none());
        assert_eq!(r.aborted, Some(AbortReason::QberTooHigh));
        assert!((r.qber_estimate - 0.25).abs() <= 0.02, "{}", r.qber_estimate);
        assert_eq!(r.final_key_bits, 0);
        assert_eq!(r.delivered_bits, 0);
    }
}

#[test]
fn partial_eavesdropping_raises_qber_by_a_quarter_of_the_fraction() {
    let p = LinkParams { eve_fraction: 0.2, ..params(50_000, 0.01) };
    let mut sim = Simulation::new(p, 5).unwrap();
    let (r, keys) = sim.next_block();
    // 0.01 + 0.2/4 − 2·0.01·0.05 ≈ 0.059: still below the abort threshold.
    assert!((r.qber_actual - 0.059).abs() < 0.005, "{r:?}");
    assert!(keys.is_some());
}

#[test]
fn lossy_link_sends_more_pulses_for_the_same_key() {
    let mut lossless = Simulation::new(params(10_000, 0.02), 1).unwrap();
    let mut lossy = Simulation::new(LinkParams { detection_prob: 0.01, ..params(10_000, 0.02) }, 1).unwrap();
    let (a, _) = lossless.next_block();
    let (b, kb) = lossy.next_block();
    assert!(kb.is_some());
    let ratio = b.n_raw as f64 / a.n_raw as f64;
    assert!((90.0..110.0).contains(&ratio), "{ratio}");
    assert!((b.n_detected as f64 / b.n_raw as f64 - 0.01).abs() < 0.001);
}

#[test]
fn invalid_parameters_are_rejected() {
    assert!(Simulation::new(LinkParams { psk: vec![1; 15], ..params(1000, 0.0) }, 1).is_err());
    assert!(Simulation::new(LinkParams { sample_fraction: 0.0, ..params(1000, 0.0) }, 1).is_err());
    assert!(Simulation::new(LinkParams { detection_prob: 0.0, ..params(1000, 0.0) }, 1).is_err());
    assert!(Simulation::new(LinkParams { block_bits: 10, ..params(1000, 0.0) }, 1).is_err());
    let dbg = format!("{:?}", params(1000, 0.0));
    assert!(dbg.contains("<16392 bytes redacted>"), "{dbg}");
}
