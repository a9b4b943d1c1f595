//! Audit log: the sans-IO hash chain alone, and appends through
//! `AuditLog` to a file (enqueue, chain, write, batched fsync), measured to
//! the flush that makes them durable.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qmeta_audit::{AuditLog, AuditOptions, Chain, Record};
use std::hint::black_box;
use std::time::Instant;

fn record(i: u64) -> Record {
    Record::CertIssued {
        serial: format!("{:032x}", (1u128 << 127) | i as u128),
        backend: "app-a".into(),
        fields: vec![1, 5],
        dropped: vec![],
        key_id: "5f0c2a8e-3b1d-4d6e-9a57-0c8f6b2d1e44".into(),
        state_version: 3,
        conn_id: i,
    }
}

fn audit(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    let mut chain = Chain::new();
    let mut out = Vec::with_capacity(1024);
    let rec = record(1);
    g.bench_function("chain_append", |b| {
        b.iter(|| {
            out.clear();
            chain.append_to(1_900_000_000_000, black_box(&rec), &mut out);
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        &dir.path().join("audit.log"),
        AuditOptions { queue_capacity: 1 << 20, ..AuditOptions::default() },
    )
    .unwrap();
    // Time = enqueue every record + wait until all are written and fsynced:
    // the rate the writer sustains, not just the enqueue rate.
    g.bench_function("log_append_flushed", |b| {
        b.iter_custom(|iters| {
            let recs: Vec<Record> = (0..iters).map(record).collect();
            let start = Instant::now();
            for r in recs {
                log.record(r).unwrap();
            }
            log.flush().unwrap();
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, audit);
criterion_main!(benches);
