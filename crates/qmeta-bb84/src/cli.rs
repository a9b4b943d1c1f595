//! `qmeta qkd simulate`: a table of measured QBER, Cascade efficiency,
//! secret fraction and key rate per QBER, and an optional SVG plot.

use crate::cascade::CascadeParams;
use crate::link::LinkParams;
use crate::math::asymptotic_rate;
use crate::report::{simulate_sweep, svg_plot, SweepPoint};
use std::io::Write;

const USAGE: &str = "usage: qmeta qkd simulate [--qber 0.01,0.02,0.05,0.1] [--blocks N] [--n BITS]
                           [--cascade original|yan|both] [--eve FRACTION]
                           [--detection PROB] [--seed S] [--plot out.svg]
Simulates a BB84 link (both ends in this process) and prints, per QBER and
Cascade variant: measured QBER, Cascade efficiency f, secret fraction l/n,
the prediction 1-h(Q)-f*h(Q), the bound 1-2h(Q), key bits per pulse, and
authentication pool bits spent per key bit.";

/// Exit code for bad command-line usage (as for bad configuration).
const EXIT_USAGE: i32 = 64;

struct Args {
    qbers: Vec<f64>,
    blocks: usize,
    n: usize,
    cascades: Vec<CascadeParams>,
    eve: f64,
    detection: f64,
    seed: u64,
    plot: Option<String>,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        qbers: vec![0.01, 0.02, 0.05, 0.1],
        blocks: 10,
        n: 10_000,
        cascades: vec![CascadeParams::Original, CascadeParams::Yan],
        eve: 0.0,
        detection: 0.1,
        seed: 1,
        plot: None,
    };
    // Accept being handed the whole `qkd simulate …` tail or just the options.
    let mut it = args.iter().skip_while(|s| *s == "qkd" || *s == "simulate").peekable();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?.as_str();
        let bad = |what: &str| format!("{flag}: {what}");
        match flag.as_str() {
            "--qber" => {
                a.qbers = val
                    .split(',')
                    .map(|q| q.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("expected comma-separated numbers"))?;
                if a.qbers.iter().any(|q| !(0.0..=0.5).contains(q)) {
                    return Err(bad("each QBER must be in [0, 0.5]"));
                }
            }
            "--blocks" => a.blocks = val.parse().map_err(|_| bad("expected a count"))?,
            "--n" => a.n = val.parse().map_err(|_| bad("expected a bit count"))?,
            "--cascade" => {
                a.cascades = match val {
                    "original" => vec![CascadeParams::Original],
                    "yan" => vec![CascadeParams::Yan],
                    "both" => vec![CascadeParams::Original, CascadeParams::Yan],
                    _ => return Err(bad("expected original, yan or both")),
                }
            }
            "--eve" => a.eve = val.parse().map_err(|_| bad("expected a fraction"))?,
            "--detection" => a.detection = val.parse().map_err(|_| bad("expected a probability"))?,
            "--seed" => a.seed = val.parse().map_err(|_| bad("expected an integer"))?,
            "--plot" => a.plot = Some(val.to_string()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.blocks == 0 || a.qbers.is_empty() {
        return Err("--blocks and --qber must not be empty".into());
    }
    Ok(Some(a))
}

fn fmt_pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}%", v * 100.0)
    } else {
        "-".into()
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "-".into()
    }
}

fn print_point(out: &mut impl Write, p: &SweepPoint) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<9} {:>7} {:>9} {:>9} {:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7}",
        p.cascade.name(),
        fmt_pct(p.qber),
        fmt_pct(p.measured_qber),
        fmt_pct(p.actual_qber),
        fmt_num(p.efficiency_f),
        fmt_num(p.secret_fraction),
        fmt_num(p.predicted_fraction()),
        fmt_num(asymptotic_rate(p.actual_qber)),
        format!("{:.4}", p.key_rate_per_pulse),
        fmt_num(p.auth_per_key_bit),
        format!("{}/{}", p.aborted, p.blocks),
    )
}

/// Runs `qmeta qkd simulate` with `args` (the options, optionally preceded by
/// `qkd simulate`). Returns the process exit code.
pub fn cli_main(args: &[String]) -> i32 {
    let a = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("qmeta qkd simulate: {e}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let mut psk = vec![0u8; 64 * 1024];
    // A simulation-only bootstrap secret, derived from the seed.
    for (i, b) in psk.iter_mut().enumerate() {
        *b = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(a.seed).to_le_bytes()[7];
    }
    let mut points = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(
        out,
        "n = {} bits per block, {} blocks per point, eve = {}, detection = {}, seed = {}",
        a.n, a.blocks, a.eve, a.detection, a.seed
    );
    let _ = writeln!(
        out,
        "{:<9} {:>7} {:>9} {:>9} {:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7}",
        "cascade", "QBER", "measured", "actual", "f", "l/n", "1-h-fh", "1-2h", "bits/pls", "auth/bit", "aborted"
    );
    for c in &a.cascades {
        let params = LinkParams {
            block_bits: a.n,
            detection_prob: a.detection,
            eve_fraction: a.eve,
            cascade: *c,
            psk: psk.clone(),
            ..LinkParams::default()
        };
        let mut progress = |done: usize, total: usize| {
            eprint!("\r{} cascade: block {done}/{total}   ", c.name());
            if done == total {
                eprint!("\r{:40}\r", "");
            }
        };
        match simulate_sweep(&params, &a.qbers, a.blocks, a.seed, &mut progress) {
            Ok(ps) => {
                for p in &ps {
                    let _ = print_point(&mut out, p);
                }
                points.extend(ps);
            }
            Err(e) => {
                eprintln!("qmeta qkd simulate: {e}");
                return EXIT_USAGE;
            }
        }
    }
    if let Some(path) = &a.plot {
        if let Err(e) = std::fs::write(path, svg_plot(&points)) {
            eprintln!("qmeta qkd simulate: writing {path}: {e}");
            return 1;
        }
        let _ = writeln!(out, "plot written to {path}");
    }
    0
}
