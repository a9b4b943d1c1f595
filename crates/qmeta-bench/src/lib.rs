//! Benchmarks for qmeta, side by side with HAProxy.
//!
//! What it is: the pieces of `qmeta-loadgen` (a TLS load generator that
//! defeats client-side session resumption, so every connection pays a full
//! handshake) and of the criterion micro-benchmarks under `benches/`: pure
//! parsers for `/proc` (CPU time, RSS, open TCP connections), latency
//! percentiles, and the HTTP/1.1 response check. `bench/run-load.sh` and
//! `bench/run-micro.sh` drive them; `docs/BENCHMARKS.md` holds the figures.
//!
//! What it is not: a test suite. Nothing here asserts on timings; CI does
//! not run the benchmarks.
//!
//! Call order of the load generator: [`client::tls_config`] once →
//! [`modes`] (`max_rate`, `fixed_rate`, `bulk` or `idle`) → its report
//! merged with [`procfs::CpuSample`] deltas into one JSON document.
#![forbid(unsafe_code)]

pub mod client;
pub mod http;
pub mod modes;
pub mod procfs;
pub mod stats;
