//! Final secret-key throughput at Q = 2 % (both ends and the channel
//! simulated on one core). Criterion's "elem/s" is final key bits per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qmeta_bb84::{CascadeParams, LinkParams, Simulation};

fn params(cascade: CascadeParams) -> LinkParams {
    LinkParams {
        intrinsic_qber: 0.02,
        cascade,
        psk: (0..8 + 65_536).map(|i| (i * 7 + 1) as u8).collect(),
        ..LinkParams::default()
    }
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("bb84_final_key_q2");
    g.sample_size(10);
    for cascade in [CascadeParams::Original, CascadeParams::Yan] {
        let p = params(cascade);
        // Calibrate the mean delivered key per block (deterministic seed).
        let mut sim = Simulation::new(p.clone(), 1).unwrap();
        let blocks = 4;
        let bits: usize = (0..blocks).map(|_| sim.next_block().0.delivered_bits).sum();
        g.throughput(Throughput::Elements((bits / blocks) as u64));
        g.bench_function(format!("{}_n{}", cascade.name(), p.block_bits), |b| b.iter(|| sim.next_block()));
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
