//! The backend SDK: verify the certificate the qmeta load balancer presents
//! on every LB→backend mTLS connection, and read the client metadata sealed
//! inside it.
//!
//! The LB mints one short-lived client certificate per connection, signed
//! by its own CA. Each forwarded fact (source address, timestamp, SNI, …)
//! sits in its own non-critical extension, encrypted under a key derived
//! from a QKD key; the key's id travels in the certificate, so the backend
//! fetches the same key from its own KME (ETSI GS QKD 014 `dec_keys`) the
//! first time it sees that id. The byte format is in `docs/FORMAT.md`; how a
//! non-Rust backend does the same (nginx + any language) is in `docs/SDK.md`.
//!
//! What it is not: a TLS server. It plugs into any rustls server — the
//! verifier goes into the `ServerConfig`, the reader runs after the
//! handshake. [`sample`] is a small HTTP backend built that way, used by
//! `qmeta demo` and the tests. It does not talk DMCP (that is the agent).
//!
//! Call order:
//! 1. [`client_verifier`] (or [`server_config`]) once at start, so rustls
//!    refuses any connection without a client certificate chaining to the
//!    LB CA;
//! 2. [`MetadataReader::new`] once, with a `DecKeyCache` whose master SAE is
//!    the LB's SAE id;
//! 3. per connection, after the handshake:
//!    [`MetadataReader::read`]`(conn.peer_certificates())` → [`Metadata`],
//!    then [`Metadata::get`] or [`Metadata::to_json`].
#![forbid(unsafe_code)]

mod error;
mod metadata;
mod reader;
pub mod sample;
mod tls;

pub use error::SdkError;
pub use metadata::Metadata;
pub use reader::MetadataReader;
pub use sample::{SampleBackend, SampleBackendConfig};
pub use tls::{client_verifier, server_config};
