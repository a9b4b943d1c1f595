//! Sweeps over QBER and a hand-written SVG plot of the results.

use crate::cascade::CascadeParams;
use crate::driver::Simulation;
use crate::link::{LinkParams, ParamError};
use crate::math::{asymptotic_rate, rate_with_efficiency};
use std::fmt::Write as _;

/// Averages over the blocks simulated at one QBER setting.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub cascade: CascadeParams,
    /// Intrinsic QBER of the channel (the setting).
    pub qber: f64,
    pub eve_fraction: f64,
    /// Mean QBER estimated from the disclosed samples.
    pub measured_qber: f64,
    /// Mean actual QBER of blocks that reached error correction (NaN if none).
    pub actual_qber: f64,
    /// Mean Cascade efficiency over blocks that reached error correction.
    pub efficiency_f: f64,
    /// Mean ℓ/n over all blocks (aborted blocks count as 0).
    pub secret_fraction: f64,
    /// Mean final key bits per pulse sent.
    pub key_rate_per_pulse: f64,
    /// Authentication pool bits spent per final key bit.
    pub auth_per_key_bit: f64,
    pub blocks: usize,
    pub aborted: usize,
    /// Blocks where Alice's and Bob's keys differed (must stay 0).
    pub key_mismatches: usize,
}

impl SweepPoint {
    /// 1 − h(Q) − f·h(Q) at the measured QBER and efficiency.
    pub fn predicted_fraction(&self) -> f64 {
        rate_with_efficiency(self.actual_qber, self.efficiency_f)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Runs `blocks_per_point` blocks at each intrinsic QBER in `qbers`, with the
/// other settings from `params`; `progress(done, total)` is called after each
/// block.
pub fn simulate_sweep(
    params: &LinkParams,
    qbers: &[f64],
    blocks_per_point: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<SweepPoint>, ParamError> {
    let total = qbers.len() * blocks_per_point;
    let mut done = 0;
    let mut points = Vec::new();
    for (i, &q) in qbers.iter().enumerate() {
        let p = LinkParams { intrinsic_qber: q, ..params.clone() };
        let mut sim = Simulation::new(p, seed.wrapping_add(i as u64))?;
        let (mut est, mut act, mut eff, mut frac, mut rate) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut aborted, mut mismatches, mut auth, mut key_bits) = (0, 0, 0usize, 0usize);
        for _ in 0..blocks_per_point {
            let (r, keys) = sim.next_block();
            est.push(r.qber_estimate);
            if r.qber_actual.is_finite() {
                act.push(r.qber_actual);
            }
            if r.efficiency_f.is_finite() {
                eff.push(r.efficiency_f);
            }
            frac.push(r.secret_fraction);
            rate.push(r.final_key_bits as f64 / r.n_raw.max(1) as f64);
            auth += r.auth_bits_consumed;
            key_bits += r.final_key_bits;
            match keys {
                Some((a, b)) if a != b => mismatches += 1,
                Some(_) => {}
                None => aborted += 1,
            }
            done += 1;
            progress(done, total);
        }
        points.push(SweepPoint {
            cascade: params.cascade,
            qber: q,
            eve_fraction: params.eve_fraction,
            measured_qber: mean(&est),
            actual_qber: mean(&act),
            efficiency_f: mean(&eff),
            secret_fraction: mean(&frac),
            key_rate_per_pulse: mean(&rate),
            auth_per_key_bit: if key_bits > 0 { auth as f64 / key_bits as f64 } else { f64::NAN },
            blocks: blocks_per_point,
            aborted,
            key_mismatches: mismatches,
        });
    }
    Ok(points)
}

const W: f64 = 640.0;
const H: f64 = 420.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 60.0;

/// Key rate (secret fraction ℓ/n) against measured QBER for every point,
/// one marker per Cascade variant, over the asymptotic bound 1 − 2h(Q).
pub fn svg_plot(points: &[SweepPoint]) -> String {
    let q_max = points.iter().map(|p| p.measured_qber).filter(|q| q.is_finite()).fold(0.12f64, f64::max).min(0.5);
    let x = |q: f64| L + (q / q_max) * (W - L - R);
    let y = |r: f64| T + (1.0 - r.clamp(0.0, 1.0)) * (H - T - B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">BB84 secret key fraction vs QBER (qmeta-bb84)</text>"#,
        W / 2.0
    );
    // Axes, grid and ticks.
    for i in 0..=5 {
        let r = i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{r:.1}</text>"##,
            y(r),
            W - R,
            L - 6.0,
            y(r) + 4.0
        );
    }
    let steps = (q_max / 0.02).floor() as usize;
    for i in 0..=steps {
        let q = i as f64 * 0.02;
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{T}" x2="{0:.1}" y2="{1}" stroke="#eee"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3:.0}%</text>"##,
            x(q),
            H - B,
            H - B + 16.0,
            q * 100.0
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{L}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{0}" stroke="black"/>"#,
        H - B,
        W - R
    );
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">QBER</text>"#, (L + W - R) / 2.0, H - 20.0);
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">secret key bits per sifted bit (ℓ/n)</text>"#,
        (T + H - B) / 2.0
    );
    // Asymptotic bound.
    let mut path = String::new();
    for i in 0..=200 {
        let q = q_max * i as f64 / 200.0;
        let _ = write!(path, "{:.1},{:.1} ", x(q), y(asymptotic_rate(q)));
    }
    let _ = writeln!(s, r##"<polyline points="{path}" fill="none" stroke="#444" stroke-dasharray="6 4"/>"##);
    // Measured points.
    for p in points.iter().filter(|p| p.measured_qber.is_finite()) {
        let (cx, cy) = (x(p.measured_qber), y(p.secret_fraction));
        let _ = match p.cascade {
            CascadeParams::Original => writeln!(s, r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="5" fill="#1f77b4"/>"##),
            CascadeParams::Yan => writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="none" stroke="#d62728" stroke-width="2"/>"##,
                cx - 4.5,
                cy - 4.5
            ),
        };
    }
    // Legend.
    let (lx, ly) = (W - R - 230.0, T + 14.0);
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="#444" stroke-dasharray="6 4"/><text x="{}" y="{}">bound 1 − 2h(Q)</text>"##,
        lx + 30.0,
        lx + 38.0,
        ly + 4.0
    );
    let _ = writeln!(
        s,
        r##"<circle cx="{}" cy="{}" r="5" fill="#1f77b4"/><text x="{}" y="{}">measured, Cascade original</text>"##,
        lx + 15.0,
        ly + 20.0,
        lx + 38.0,
        ly + 24.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="{}" width="9" height="9" fill="none" stroke="#d62728" stroke-width="2"/><text x="{}" y="{}">measured, Cascade Yan et al.</text>"##,
        lx + 10.5,
        ly + 35.5,
        lx + 38.0,
        ly + 44.0
    );
    s.push_str("</svg>\n");
    s
}
