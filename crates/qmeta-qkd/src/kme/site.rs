//! Starting a KME from a whole [`KmeConfig`]: a pair in this process, or
//! one site whose peer runs in another process.

use super::peer::{self, PeerHandle};
use super::quirks::Quirk;
use super::setup::{KmeConfig, SingleSiteConfig};
use super::store::{Site, SiteInfo, Store, StoreOptions};
use super::{invalid, server, site_info, start_pair_with, KmeError, KmePair, LinkStats};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One running site of a two-process pair.
pub struct KmeSite {
    addr: SocketAddr,
    link_addr: Option<SocketAddr>,
    peer: PeerHandle,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KmeSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmeSite").field("addr", &self.addr).field("link_addr", &self.link_addr).finish()
    }
}

impl KmeSite {
    /// Where the ETSI 014 API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Where this site accepts the peer KME (`[link] listen` mode).
    pub fn link_addr(&self) -> Option<SocketAddr> {
        self.link_addr
    }
    /// True while the link to the peer KME is up.
    pub fn peer_connected(&self) -> bool {
        self.peer.is_connected()
    }
    /// Stops serving, drops the link, waits for the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for KmeSite {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts one site: the ETSI 014 server and the channel to the peer KME.
pub async fn start_site(cfg: SingleSiteConfig) -> Result<KmeSite, KmeError> {
    let mut problems: Vec<(String, String)> =
        cfg.link.problems().into_iter().map(|(k, m)| (format!("link.{k}"), m)).collect();
    problems.extend(cfg.bb84.problems().into_iter().map(|(k, m)| (format!("link.{k}"), m)));
    if cfg.bb84.psk.is_none() {
        problems.push(("link.psk".into(), "required for a single site".into()));
    }
    if cfg.local.kme_id == cfg.peer.kme_id {
        problems.push(("kme_id".into(), "the two sites need different ids".into()));
    }
    invalid(problems)?;
    let local = site_info(&cfg.local);
    let peer = SiteInfo { kme_id: cfg.peer.kme_id.clone(), saes: cfg.peer.saes.clone() };
    let (a, b) = match cfg.site {
        Site::A => (local, peer),
        Site::B => (peer, local),
    };
    let mut size_is_bytes = [false; 2];
    size_is_bytes[if cfg.site == Site::A { 0 } else { 1 }] = cfg.quirks.has(Quirk::BitsAsBytes);
    let opts = StoreOptions { max_sae_id_count: cfg.max_sae_id_count, size_is_bytes };
    let stats = Arc::new(Mutex::new(LinkStats { kind: "bb84", ..LinkStats::default() }));
    let store = Arc::new(Mutex::new(Store::new_split(cfg.link.clone(), opts, cfg.site, a, b, stats.clone())));
    let channel = peer::bind(peer::Channel {
        site: cfg.site,
        local: cfg.local.clone(),
        peer: cfg.peer.clone(),
        channel: cfg.channel,
        bb84: cfg.bb84.clone(),
        max_bits_per_sec: f64::from(cfg.link.key_rate) * f64::from(cfg.link.key_size),
        seed: cfg.link.seed,
        store: store.clone(),
        stats,
    })
    .await?;
    let handle = channel.handle.clone();
    let link_addr = channel.listen_addr;
    let server = server::bind(&cfg.local, cfg.site, store, cfg.quirks.clone(), Some(handle.clone())).await?;
    let addr = server.local_addr;
    let (stop, stop_rx) = watch::channel(false);
    tracing::info!(kme = %cfg.local.kme_id, %addr, ?link_addr, "KME site listening");
    let tasks = vec![tokio::spawn(server.run(stop_rx.clone())), tokio::spawn(channel.run(stop_rx))];
    Ok(KmeSite { addr, link_addr, peer: handle, stop, tasks })
}

/// A running KME: both sites, or one.
#[derive(Debug)]
pub enum RunningKme {
    Pair(KmePair),
    Site(KmeSite),
}

impl RunningKme {
    /// The ETSI 014 listen addresses (A then B, or the one site's).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        match self {
            RunningKme::Pair(p) => vec![p.addr_a(), p.addr_b()],
            RunningKme::Site(s) => vec![s.addr()],
        }
    }

    pub async fn shutdown(self) {
        match self {
            RunningKme::Pair(p) => p.shutdown().await,
            RunningKme::Site(s) => s.shutdown().await,
        }
    }
}

/// Starts what `cfg` describes.
pub async fn start(cfg: KmeConfig) -> Result<RunningKme, KmeError> {
    match cfg {
        KmeConfig::Pair { pair, options } => start_pair_with(pair, options).await.map(RunningKme::Pair),
        KmeConfig::Site(site) => start_site(*site).await.map(RunningKme::Site),
    }
}
