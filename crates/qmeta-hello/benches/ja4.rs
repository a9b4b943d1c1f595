//! capture + JA4 of a real curl ClientHello (tests/captures/curl.bin).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use qmeta_hello::{capture, Capture};

const CURL: &[u8] = include_bytes!("../tests/captures/curl.bin");

fn bench(c: &mut Criterion) {
    let Ok(Capture::Complete { hello, .. }) = capture(CURL) else {
        panic!("curl.bin is not a complete ClientHello");
    };
    c.bench_function("capture", |b| b.iter(|| capture(black_box(CURL))));
    c.bench_function("ja4", |b| b.iter(|| black_box(&hello).ja4()));
    c.bench_function("capture+ja4", |b| {
        b.iter(|| match capture(black_box(CURL)) {
            Ok(Capture::Complete { hello, .. }) => hello.ja4(),
            _ => unreachable!(),
        })
    });
    c.bench_function("ja3", |b| b.iter(|| black_box(&hello).ja3()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
