//! The qmeta policy agent: runs beside a backend and steers, over DMCP,
//! which client facts the LB puts into the certificates it mints for that
//! backend.
//!
//! It reads a policy file (required / permissible / forbidden fields, per
//! SNI scope, optionally randomized), turns it into DMCP commands with
//! `qmeta_dmcp::diff`, authenticates each exchange with a fresh QKD key
//! from its KME, and keeps the LB converged: SYNC after every (re)connect,
//! only the changes after a policy reload (SIGHUP). It never asks for a
//! forbidden field. It is not the backend SDK (decrypting certificates is
//! `qmeta-sdk`) and does no logging setup or exit-code handling (the
//! `qmeta` binary does).
//!
//! Call order: [`load_config`] (every error in both files at once) →
//! [`run`] until the shutdown watch turns true. Tests drive
//! [`run_with`] with their own [`KeySource`] and reload channel.
#![forbid(unsafe_code)]

mod config;
mod keys;
mod plan;
mod policy;
mod session;
mod status;

pub use config::{load_config, AgentConfig, DEFAULT_RECONNECT, DEFAULT_TIMEOUT, MAX_BACKOFF};
pub use keys::{KeySource, KmeKeys, DMCP_KEY_BITS};
pub use plan::{asks_for, Planner};
pub use policy::{load_policy, parse_policy, Policy, ScopePolicy};
pub use session::run_with;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// Runs the agent until `shutdown` turns true: keys from the configured
/// KME, policy reloads on SIGHUP.
pub async fn run(cfg: AgentConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let client = qmeta_qkd::client::KmeClient::new(cfg.kme.clone())?;
    let keys = KmeKeys { client, lb_sae_id: cfg.lb_sae_id.clone() };
    let (tx, rx) = mpsc::channel(1);
    let mut hup = signal(SignalKind::hangup())?;
    let forward = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A reload already pending covers this one too.
            let _ = tx.try_send(());
        }
    });
    let result = run_with(cfg, keys, rx, shutdown).await;
    forward.abort();
    result
}
