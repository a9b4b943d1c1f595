//! Credentials and TLS configuration for every qmeta part.
//!
//! This crate owns the rustls crypto provider (aws-lc-rs): every other crate
//! gets its provider, its `ServerConfig` and its `ClientConfig` from here, so
//! there is exactly one provider in the process.
//!
//! What it is not: the per-connection LB certificate (that is `qmeta-cert`).
//!
//! Call order: [`install_provider`] once at start; generate a [`Ca`] and issue
//! [`Credential`]s from it (or load PEM files written earlier); build TLS
//! configs with [`server_config`] / [`client_config`].
#![forbid(unsafe_code)]

mod ca;
mod tls;

pub use ca::{Ca, Credential, KeyAlg};
pub use tls::{
    client_config, common_name, install_provider, load_certs, load_key, provider, root_store, server_config, ClientAuth,
};

/// Errors loading or generating credentials. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: no PEM {what} found")]
    NoPem { path: String, what: &'static str },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("generating credentials: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}
