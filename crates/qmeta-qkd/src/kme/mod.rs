//! A simulated KME pair speaking ETSI GS QKD 014: site A (the LB's KME) and
//! site B (the backends' KME) in one process, fed by one simulated link.
//!
//! Each site is an HTTPS server that requires a client certificate; the
//! calling SAE's id is the CN of that certificate, never anything in the
//! request. The pair is the strict reference of the spec: exact error
//! messages, one-time delivery, 401 for a dec_keys call by an SAE that was
//! not the named slave, stored_key_count ≤ max_key_count.
//!
//! Call order: [`load_config`] (or build a [`KmePairConfig`]) →
//! [`start_pair`] → [`KmePair::addr_a`] / [`KmePair::addr_b`] →
//! [`KmePair::shutdown`].

mod config;
pub mod link;
mod server;
pub mod store;

pub use config::load_config;
pub use link::{Link, SimulatedLink};

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
        for (key, v) in [
            ("key_size", self.key_size),
            ("min_key_size", self.min_key_size),
            ("max_key_size", self.max_key_size),
        ] {
            if v == 0 || v % 8 != 0 || v > MAX_KEY_SIZE_BITS {
                out.push((
                    key,
                    format!("{v} must be a multiple of 8 in 8..={MAX_KEY_SIZE_BITS}"),
                ));
            }
        }
        if !(self.min_key_size <= self.key_size && self.key_size <= self.max_key_size) {
            out.push((
                "key_size",
                "must satisfy min_key_size <= key_size <= max_key_size".into(),
            ));
        }
        if self.max_key_count == 0 || self.max_key_count > MAX_KEY_COUNT {
            out.push(("max_key_count", format!("must be in 1..={MAX_KEY_COUNT}")));
        }
        if self.key_rate > MAX_KEY_RATE {
            out.push(("key_rate", format!("must be in 0..={MAX_KEY_RATE}")));
        }
        if self.max_key_per_request == 0 || self.max_key_per_request > MAX_KEYS_PER_REQUEST {
            out.push((
                "max_key_per_request",
                format!("must be in 1..={MAX_KEYS_PER_REQUEST}"),
            ));
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
        let mut out: Vec<(String, String)> = self
            .link
            .problems()
            .into_iter()
            .map(|(k, m)| (format!("link.{k}"), m))
            .collect();
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
                out.push((
                    format!("{name}.saes"),
                    "at least one SAE id is needed".into(),
                ));
            }
        }
        if let Some(dup) = self.b.saes.iter().find(|s| self.a.saes.contains(s)) {
            out.push((
                "b.saes".into(),
                format!("SAE {dup:?} is attached to both KMEs"),
            ));
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
    Credentials {
        kme_id: String,
        source: qmeta_pki::PkiError,
    },
    /// The listen address is taken or not allowed.
    #[error("KME {kme_id}: cannot listen on {addr}: {source}")]
    Bind {
        kme_id: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
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
        f.debug_struct("KmePair")
            .field("addr_a", &self.addr_a)
            .field("addr_b", &self.addr_b)
            .finish()
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

/// Starts both KMEs: checks the config, loads credentials, binds, serves.
pub async fn start_pair(cfg: KmePairConfig) -> Result<KmePair, KmeError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        let text: Vec<String> = problems
            .iter()
            .map(|(k, m)| format!("`{k}`: {m}"))
            .collect();
        return Err(KmeError::InvalidConfig(text.join("; ")));
    }
    let now = Instant::now();
    let key_bytes = (cfg.link.key_size / 8) as usize;
    let link = SimulatedLink::new(key_bytes, cfg.link.key_rate, cfg.link.seed, now);
    let info = |s: &KmeSiteConfig| store::SiteInfo {
        kme_id: s.kme_id.clone(),
        saes: s.saes.clone(),
    };
    let shared = Arc::new(Mutex::new(store::Store::new(
        cfg.link.clone(),
        Box::new(link),
        info(&cfg.a),
        info(&cfg.b),
    )));
    let (stop, stop_rx) = watch::channel(false);
    let a = server::bind(&cfg.a, store::Site::A, shared.clone()).await?;
    let b = server::bind(&cfg.b, store::Site::B, shared).await?;
    let (addr_a, addr_b) = (a.local_addr, b.local_addr);
    tracing::info!(kme_a = %cfg.a.kme_id, %addr_a, kme_b = %cfg.b.kme_id, %addr_b, "KME pair listening");
    let tasks = vec![
        tokio::spawn(a.run(stop_rx.clone())),
        tokio::spawn(b.run(stop_rx)),
    ];
    Ok(KmePair {
        addr_a,
        addr_b,
        stop,
        tasks,
    })
}
