//! The qmeta load balancer: a TLS-terminating TCP proxy that mints a fresh
//! metadata certificate for every backend connection.
//!
//! What it is: the daemon behind `qmeta lb`. Per client connection it
//! terminates TLS (rustls, aws-lc-rs), collects facts about the connection,
//! picks a backend (round robin, failing over to the next one when a connect
//! fails), asks that backend's DMCP state which fields to include, seals them
//! under the backend's current QKD key into a certificate signed by the LB CA,
//! records the issuance in the audit log, and connects to the backend with
//! mutual TLS presenting that certificate. Then it copies bytes both ways.
//! In HTTP mode (`[listen] mode = "http"`, module `http`) it serves the
//! client with hyper instead and forwards request by request, minting per
//! set of request field values (host, user agent, ..., route scopes).
//!
//! What it is not: the certificate format (`qmeta-cert`), the control
//! protocol (`qmeta-dmcp`), the key client (`qmeta-qkd`) or the audit format
//! (`qmeta-audit`) — this crate wires them to sockets and time.
//!
//! Call order: [`config::load`] → [`Lb::start`] → ... → [`Lb::shutdown`].
#![forbid(unsafe_code)]

mod activity;
mod admin;
mod balance;
pub mod config;
mod control;
mod facts;
mod health;
mod http;
mod metrics;
mod mint;
mod preamble;
mod proxy;
mod rewind;
mod runtime;

pub use runtime::Lb;

/// Wall-clock Unix time in milliseconds (0 if the clock is before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
