//! A simulated KME pair speaking ETSI GS QKD 014: site A (the LB's KME) and
//! site B (the backends' KME), fed by a simulated QKD link (BB84 by
//! default, or a plain key generator).
//!
//! Each site is an HTTPS server that requires a client certificate; the
//! calling SAE's id is the CN of that certificate, never anything in the
//! request. Without quirks a site is the strict reference of the spec:
//! exact error messages, one-time delivery, 401 for a dec_keys call by an
//! SAE that was not a named slave, stored_key_count ≤ max_key_count,
//! additional slaves when `max_SAE_ID_count` > 0. The rules, quirk modes
//! and the two-process link are described in `docs/KME.md`.
//!
//! The two sites run in one process ([`start_pair`]) or each in its own
//! process ([`start_site`]), the BB84 messages and key relays then crossing
//! a mutually authenticated TLS connection between the KMEs ([`peer`]).
//!
//! Call order: [`load`] (or build a [`KmeConfig`]) → [`start`] →
//! [`RunningKme::shutdown`]; for a pair only: [`load_config`] →
//! [`start_pair`] / [`start_pair_with`] → [`KmePair::addr_a`] /
//! [`KmePair::addr_b`] → [`KmePair::shutdown`].

pub mod bb84;
mod config;
pub mod link;
pub mod peer;
mod pool;
pub mod quirks;
mod server;
pub mod setup;
mod site;
pub mod store;

pub use config::{load, load_config, MAX_SAE_ID_COUNT};
pub use link::{Link, LinkStats, SimulatedLink};
pub use quirks::{Quirk, Quirks};
pub use setup::{Bb84Config, Cascade, KmeConfig, LinkKind, PairOptions, PeerChannel, PeerSite, SingleSiteConfig};
pub use site::{start, start_site, KmeSite, RunningKme};
pub use store::Site;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One KME of the pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmeSiteConfig {
    /// The KME id: also the DNS name in its server certificate.
    pub kme_id: String,
    pub listen: SocketAddr,
    /// Server certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA(s) that SAE client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// SAE ids attached to this KME (the CNs of their certificates).
    pub saes: Vec<String>,
}

/// The simulated quantum link and the limits both KMEs announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Keys of `key_size` generated per second (0: a dead link).
    pub key_rate: u32,
    /// Most keys of `key_size` the pool holds.
    pub max_key_count: u32,
    /// Default key size, bits.
    pub key_size: u32,
    pub max_key_size: u32,
    pub min_key_size: u32,
    pub max_key_per_request: u32,
    /// Seed for a reproducible key stream (tests only).
    pub seed: Option<u64>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            key_rate: 1000,
            max_key_count: 100_000,
            key_size: 256,
            max_key_size: 1024,
            min_key_size: 64,
            max_key_per_request: 128,
            seed: None,
        }
    }
}

/// Upper bounds the loader and [`start_pair`] enforce.
pub const MAX_KEY_COUNT: u32 = 1_000_000;
pub const MAX_KEY_RATE: u32 = 1_000_000;
pub const MAX_KEY_SIZE_BITS: u32 = 8192;
pub const MAX_KEYS_PER_REQUEST: u32 = 4096;

impl LinkConfig {
    /// Every inconsistency, as (key, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, v) in
            [("key_size", self.key_size), ("min_key_size", self.min_key_size), ("max_key_size", self.max_key_size)]
        {
            if v == 0 || v % 8 != 0 || v > MAX_KEY_SIZE_BITS {
                out.push((key, format!("{v} must be a multiple of 8 in 8..={MAX_KEY_SIZE_BITS}")));
            }
        }
        if !(self.min_key_size <= self.key_size && self.key_size <= self.max_key_size) {
            out.push(("key_size", "must satisfy min_key_size <= key_size <= max_key_size".into()));
        }
        if self.max_key_count == 0 || self.max_key_count > MAX_KEY_COUNT {
            out.push(("max_key_count", format!("must be in 1..={MAX_KEY_COUNT}")));
        }
        if self.key_rate > MAX_KEY_RATE {
            out.push(("key_rate", format!("must be in 0..={MAX_KEY_RATE}")));
        }
        if self.max_key_per_request == 0 || self.max_key_per_request > MAX_KEYS_PER_REQUEST {
            out.push(("max_key_per_request", format!("must be in 1..={MAX_KEYS_PER_REQUEST}")));
        }
        out
    }
}

/// Both sites and the link between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmePairConfig {
    pub a: KmeSiteConfig,
    pub b: KmeSiteConfig,
    pub link: LinkConfig,
}

impl KmePairConfig {
    /// Every inconsistency, as (dotted key, message) pairs.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            self.link.problems().into_iter().map(|(k, m)| (format!("link.{k}"), m)).collect();
        out.extend(self.site_problems());
        out
    }

    /// Inconsistencies between the two sites.
    pub fn site_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.a.kme_id == self.b.kme_id {
            out.push(("b.kme_id".into(), "must differ from a.kme_id".into()));
        }
        for (name, site) in [("a", &self.a), ("b", &self.b)] {
            if site.saes.is_empty() {
                out.push((format!("{name}.saes"), "at least one SAE id is needed".into()));
            }
        }
        if let Some(dup) = self.b.saes.iter().find(|s| self.a.saes.contains(s)) {
            out.push(("b.saes".into(), format!("SAE {dup:?} is attached to both KMEs")));
        }
        if self.a.listen == self.b.listen && self.a.listen.port() != 0 {
            out.push(("b.listen".into(), "must differ from a.listen".into()));
        }
        out
    }
}

/// Why a pair could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmeError {
    /// The configuration is inconsistent (each problem with its key).
    #[error("KME pair configuration: {0}")]
    InvalidConfig(String),
    /// A certificate, key or CA file of a site is unusable.
    #[error("KME {kme_id}: credentials: {source}")]
    Credentials { kme_id: String, source: qmeta_pki::PkiError },
    /// The listen address is taken or not allowed.
    #[error("KME {kme_id}: cannot listen on {addr}: {source}")]
    Bind { kme_id: String, addr: SocketAddr, source: std::io::Error },
    /// The BB84 link could not be set up.
    #[error("KME link: {0}")]
    Link(String),
}

/// A running pair. Dropping it also stops the servers.
pub struct KmePair {
    addr_a: SocketAddr,
    addr_b: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KmePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmePair").field("addr_a", &self.addr_a).field("addr_b", &self.addr_b).finish()
    }
}

impl KmePair {
    /// Where site A listens (the real port when the config said 0).
    pub fn addr_a(&self) -> SocketAddr {
        self.addr_a
    }
    pub fn addr_b(&self) -> SocketAddr {
        self.addr_b
    }
    /// Stops accepting, closes open connections and waits for the servers.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for KmePair {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts both KMEs with the default options (a BB84 link, no quirks):
/// checks the config, loads credentials, binds, serves.
pub async fn start_pair(cfg: KmePairConfig) -> Result<KmePair, KmeError> {
    start_pair_with(cfg, PairOptions::default()).await
}

fn invalid(problems: Vec<(String, String)>) -> Result<(), KmeError> {
    if problems.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = problems.iter().map(|(k, m)| format!("`{k}`: {m}")).collect();
    Err(KmeError::InvalidConfig(text.join("; ")))
}

fn site_info(s: &KmeSiteConfig) -> store::SiteInfo {
    store::SiteInfo { kme_id: s.kme_id.clone(), saes: s.saes.clone() }
}

/// Starts both KMEs in this process with `options` (link kind, quirks,
/// multicast).
pub async fn start_pair_with(cfg: KmePairConfig, options: PairOptions) -> Result<KmePair, KmeError> {
    let mut problems = cfg.problems();
    if let LinkKind::Bb84(b) = &options.kind {
        problems.extend(b.problems().into_iter().map(|(k, m)| (format!("link.{k}"), m)));
    }
    if options.max_sae_id_count > MAX_SAE_ID_COUNT {
        problems.push(("link.max_sae_id_count".into(), format!("must be in 0..={MAX_SAE_ID_COUNT}")));
    }
    invalid(problems)?;
    let now = Instant::now();
    let key_bytes = (cfg.link.key_size / 8) as usize;
    let link: Box<dyn Link> = match &options.kind {
        LinkKind::Generator => Box::new(SimulatedLink::new(key_bytes, cfg.link.key_rate, cfg.link.seed, now)),
        LinkKind::Bb84(b) => Box::new(bb84::Bb84Link::spawn(&cfg.link, b)),
    };
    let opts = store::StoreOptions {
        max_sae_id_count: options.max_sae_id_count,
        size_is_bytes: [options.quirks_a.has(Quirk::BitsAsBytes), options.quirks_b.has(Quirk::BitsAsBytes)],
    };
    let shared = Arc::new(Mutex::new(store::Store::with_options(
        cfg.link.clone(),
        opts,
        link,
        site_info(&cfg.a),
        site_info(&cfg.b),
    )));
    let (stop, stop_rx) = watch::channel(false);
    let a = server::bind(&cfg.a, Site::A, shared.clone(), options.quirks_a, None).await?;
    let b = server::bind(&cfg.b, Site::B, shared, options.quirks_b, None).await?;
    let (addr_a, addr_b) = (a.local_addr, b.local_addr);
    tracing::info!(kme_a = %cfg.a.kme_id, %addr_a, kme_b = %cfg.b.kme_id, %addr_b, "KME pair listening");
    let tasks = vec![tokio::spawn(a.run(stop_rx.clone())), tokio::spawn(b.run(stop_rx))];
    Ok(KmePair { addr_a, addr_b, stop, tasks })
}
