//! `qmeta qkd simulate` and the SVG plot.

use qmeta_bb84::report::{simulate_sweep, svg_plot};
use qmeta_bb84::{cli_main, CascadeParams, LinkParams};

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn simulate_writes_a_plot_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("rate.svg");
    let code = cli_main(&args(&format!(
        "qkd simulate --qber 0.02,0.05 --blocks 2 --n 20000 --cascade original --seed 3 --plot {}",
        plot.display()
    )));
    assert_eq!(code, 0);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"));
    assert_eq!(svg.matches("<circle").count(), 2 + 1, "two points and the legend marker");
    assert!(svg.contains("bound 1 − 2h(Q)"));
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn bad_usage_exits_64() {
    assert_eq!(cli_main(&args("--qber nope")), 64);
    assert_eq!(cli_main(&args("--cascade fast")), 64);
    assert_eq!(cli_main(&args("--blocks")), 64);
    assert_eq!(cli_main(&args("--frobnicate 1")), 64);
    assert_eq!(cli_main(&args("--n 5")), 64);
    assert_eq!(cli_main(&args("--help")), 0);
}

#[test]
fn sweep_reports_rates_near_the_prediction_and_eve_kills_the_key() {
    let params = LinkParams {
        block_bits: 30_000,
        detection_prob: 1.0,
        cascade: CascadeParams::Original,
        psk: vec![9; 8 + 16_384],
        ..LinkParams::default()
    };
    let mut calls = Vec::new();
    let points = simulate_sweep(&params, &[0.02, 0.05], 2, 1, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(calls, vec![(1, 4), (2, 4), (3, 4), (4, 4)]);
    for p in &points {
        assert_eq!(p.aborted, 0);
        assert_eq!(p.key_mismatches, 0);
        assert!((p.actual_qber - p.qber).abs() < 0.005, "{p:?}");
        assert!((p.secret_fraction - p.predicted_fraction()).abs() < 0.03, "{p:?}");
    }
    assert!(points[0].secret_fraction > points[1].secret_fraction);
    let eve = LinkParams { eve_fraction: 1.0, ..params };
    let points = simulate_sweep(&eve, &[0.0], 2, 1, &mut |_, _| {}).unwrap();
    assert_eq!(points[0].aborted, 2);
    assert_eq!(points[0].secret_fraction, 0.0);
    assert!((points[0].measured_qber - 0.25).abs() < 0.02);
    let svg = svg_plot(&points);
    assert!(svg.contains("<circle"));
}
