//! DMCP: encode + MAC a request (agent), parse a frame, verify + dispatch
//! it (LB endpoint).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use qmeta_dmcp::{parse_frame, ClientSession, Command, ControlState, Endpoint, Limits, Scope};
use qmeta_fields::{FieldId, FieldSet};
use std::hint::black_box;
use uuid::Uuid;

const T0: u64 = 1_900_000_000_000;
const KEY: [u8; 64] = [9; 64];

fn cmd() -> Command {
    Command::Include { scope: Scope::Backend, field: FieldId::SNI }
}

fn endpoint() -> Endpoint {
    let all: FieldSet = FieldId::known().collect();
    let default: FieldSet = [FieldId::SRC_IP, FieldId::TIMESTAMP].into_iter().collect();
    Endpoint::new(ControlState::new(default, all), Limits::default())
}

fn dmcp(c: &mut Criterion) {
    let mut g = c.benchmark_group("dmcp");
    let mut client = ClientSession::new("sae-app-a".into());
    let mut n = 0u128;
    g.bench_function("encode_request", |b| {
        b.iter(|| {
            n += 1;
            client.request(black_box(&cmd()), Uuid::from_u128(n), &KEY, T0)
        })
    });
    let frame = ClientSession::new("sae-app-a".into()).request(&cmd(), Uuid::from_u128(1), &KEY, T0);
    g.bench_function("parse_frame", |b| b.iter(|| parse_frame(black_box(&frame)).unwrap().unwrap()));
    // Each frame needs a fresh key id and seq (the replay guard refuses
    // repeats); simulated time moves 10 ms per frame so the guard prunes,
    // and each frame is handled at its own time stamp (criterion builds a
    // batch of inputs before running the routine on them).
    let mut ep = endpoint();
    let mut client = ClientSession::new("sae-app-a".into());
    let now = std::cell::Cell::new(T0);
    let mut id = 0u128;
    g.bench_function("verify_dispatch", |b| {
        b.iter_batched(
            || {
                now.set(now.get() + 10);
                id += 1;
                let f = client.request(&cmd(), Uuid::from_u128(id), &KEY, now.get());
                (parse_frame(&f).unwrap().unwrap().1, now.get())
            },
            |(inc, at)| {
                let h = ep.handle(inc, Some(&KEY), at, [0; 32]);
                assert!(h.outcome.accepted, "{:?}", h.outcome.reason);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, dmcp);
criterion_main!(benches);
