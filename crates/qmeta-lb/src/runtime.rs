//! Starting and stopping the LB: open the audit log, load the CA, start key
//! rotation, bind the listeners.

use crate::config::{BackendConfig, LbConfig};
use crate::mint::Minter;
use qmeta_audit::{AuditLog, AuditOptions, Record};
use qmeta_dmcp::{ControlState, Endpoint};
use qmeta_qkd::client::KmeClient;
use qmeta_qkd::rotation::{KeyRing, RotationEvent, RotationPolicy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub(crate) struct Backend {
    pub cfg: BackendConfig,
    /// DMCP state of this backend. Changed only by `Endpoint::handle`
    /// (which calls `ControlState::dispatch`); read on every connection.
    /// Kept across reloads while the backend keeps its name and SAE id.
    pub endpoint: Arc<Mutex<Endpoint>>,
    pub metrics: Arc<crate::metrics::BackendMetrics>,
}

/// Everything a reload may replace. Connections keep the generation they
/// started with, so a reload never disturbs them.
pub(crate) struct Generation {
    pub cfg: LbConfig,
    pub backends: Vec<Backend>,
    pub by_sae: HashMap<String, usize>,
    pub balancer: Box<dyn crate::balance::Balancer>,
    pub geo: Option<Arc<qmeta_geo::Geo>>,
    pub acceptor: TlsAcceptor,
}

pub(crate) struct Shared {
    gen: std::sync::RwLock<Arc<Generation>>,
    /// Where `reload` reads the configuration from.
    pub config_path: Option<std::path::PathBuf>,
    reloading: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// The active health checks of the current generation.
    health_task: Mutex<Option<JoinHandle<()>>>,
    /// Client connections in progress (for draining on shutdown).
    pub in_flight: AtomicU64,
    pub conn_ids: AtomicU64,
    pub ring: Arc<KeyRing>,
    pub minter: Minter,
    pub audit: AuditLog,
    pub kme: KmeClient,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The last DMCP outcomes, for the admin API (no values, no keys).
    pub recent_dmcp: Mutex<std::collections::VecDeque<serde_json::Value>>,
}

/// A running load balancer.
pub struct Lb {
    addr: SocketAddr,
    control_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    audit: AuditLog,
    shared: Arc<Shared>,
}

impl Lb {
    /// Binds the client and control listeners and starts serving.
    /// `config_path` is where [`Lb::reload`] reads the configuration again.
    pub async fn start(cfg: LbConfig, config_path: Option<std::path::PathBuf>) -> anyhow::Result<Lb> {
        qmeta_pki::install_provider();
        let audit = AuditLog::open(
            &cfg.audit.path,
            AuditOptions {
                fsync_interval: cfg.audit.fsync_interval,
                max_file_bytes: cfg.audit.max_file_bytes,
                ..AuditOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("audit log: {e}"))?;
        let issuer = qmeta_cert::Issuer::from_pem(&read(&cfg.certificates.ca_cert)?, &read(&cfg.certificates.ca_key)?)
            .map_err(|e| anyhow::anyhow!("LB CA {}: {e}", cfg.certificates.ca_cert.display()))?;
        let minter = Minter::new(issuer, cfg.certificates.leaf_alg, &cfg.upstream.ca)?;
        let kme = KmeClient::new(cfg.kme.clone())?;
        let ring = KeyRing::new(RotationPolicy { interval: cfg.keys.rotation, grace: cfg.keys.grace, key_bits: 256 });
        let generation = Generation::build(cfg, None)?;
        let listener = TcpListener::bind(generation.cfg.listen.address)
            .await
            .map_err(|e| anyhow::anyhow!("listen.address {}: {e}", generation.cfg.listen.address))?;
        let control = TcpListener::bind(generation.cfg.control.address)
            .await
            .map_err(|e| anyhow::anyhow!("control.address {}: {e}", generation.cfg.control.address))?;
        let admin = match generation.cfg.admin.as_ref() {
            Some(a) => Some(
                TcpListener::bind(a.address).await.map_err(|e| anyhow::anyhow!("admin.address {}: {e}", a.address))?,
            ),
            None => None,
        };
        let admin_addr = match &admin {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let addr = listener.local_addr()?;
        let control_addr = control.local_addr()?;
        let shared = Arc::new(Shared {
            gen: std::sync::RwLock::new(Arc::new(generation)),
            config_path,
            reloading: tokio::sync::Mutex::new(None),
            health_task: Mutex::new(None),
            in_flight: AtomicU64::new(0),
            conn_ids: AtomicU64::new(rand::random::<u32>() as u64),
            ring,
            minter,
            audit: audit.clone(),
            kme,
            metrics: Default::default(),
            recent_dmcp: Mutex::new(std::collections::VecDeque::with_capacity(crate::admin::RECENT_DMCP)),
        });
        let _ = audit.record(Record::Lifecycle { component: "lb".into(), what: format!("started on {addr}") });
        let (shutdown, rx) = watch::channel(false);
        *shared.reloading.lock().await = Some(shared.spawn_rotation());
        *shared.health_task.lock().unwrap_or_else(|e| e.into_inner()) =
            crate::health::spawn(shared.clone(), shared.gen());
        wait_for_first_keys(&shared, Duration::from_secs(5)).await;
        let mut tasks = vec![
            tokio::spawn(crate::proxy::serve(shared.clone(), listener, rx.clone())),
            tokio::spawn(crate::control::serve(shared.clone(), control, rx.clone())),
        ];
        if let Some(admin) = admin {
            tasks.push(tokio::spawn(crate::admin::serve(shared.clone(), admin, rx)));
        }
        tracing::info!(%addr, %control_addr, "load balancer listening");
        Ok(Lb { addr, control_addr, admin_addr, shutdown, tasks, audit, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The admin API's address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Re-reads the configuration file and applies it; see [`Shared::reload`].
    pub async fn reload(&self) -> Result<String, String> {
        self.shared.reload().await
    }

    /// Stops accepting, lets open connections finish for up to `drain`,
    /// then stops everything and flushes the audit log.
    pub async fn shutdown(self) {
        self.shutdown_within(Duration::from_secs(10)).await
    }

    pub async fn shutdown_within(self, drain: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + drain;
        while self.shared.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.shared.in_flight.load(std::sync::atomic::Ordering::Relaxed);
        if left > 0 {
            tracing::warn!(connections = left, "drain timeout: closing connections still open");
        }
        if let Some(r) = self.shared.reloading.lock().await.take() {
            r.abort();
        }
        if let Some(h) = self.shared.health_task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.audit.record(Record::Lifecycle { component: "lb".into(), what: "stopped".into() });
        let audit = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    }
}

/// Gives the rotation task a moment to fetch every backend's first key, so
/// the LB does not announce itself ready only to refuse every connection.
/// If the KME does not answer in time the LB starts anyway and fails
/// closed until keys arrive.
async fn wait_for_first_keys(shared: &Shared, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = Instant::now();
        let gen = shared.gen();
        let missing: Vec<&str> = gen
            .backends
            .iter()
            .filter(|b| shared.ring.current(&b.cfg.name, now).is_none())
            .map(|b| b.cfg.name.as_str())
            .collect();
        if missing.is_empty() {
            return;
        }
        if now >= deadline {
            tracing::warn!(
                ?missing,
                "no QKD key yet for some backends: their connections are refused until one arrives"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn on_rotation(audit: &AuditLog, metrics: &crate::metrics::Metrics, ev: RotationEvent) {
    let rec = match ev {
        RotationEvent::Fetched { backend, slave_sae, key_id } => {
            tracing::debug!(%backend, %key_id, "fetched metadata key");
            Record::KeyFetched {
                sae: slave_sae,
                key_id: key_id.to_string(),
                purpose: format!("metadata key for {backend}"),
            }
        }
        RotationEvent::Rotated { backend, key_id, previous } => {
            tracing::info!(%backend, %key_id, "rotated metadata key");
            Record::KeyRotated { backend, key_id: key_id.to_string(), previous: previous.map(|p| p.to_string()) }
        }
        RotationEvent::Failed { backend, error, retryable } => {
            *metrics.kme_errors.lock().unwrap_or_else(|e| e.into_inner()).entry(backend.clone()).or_default() += 1;
            tracing::warn!(%backend, retryable, "fetching a metadata key failed: {error}");
            return;
        }
        RotationEvent::Expired { backend } => {
            tracing::error!(%backend, "no valid metadata key (KME unreachable, grace window over): refusing connections to this backend");
            Record::KeyUnavailable { backend, reason: "key expired and no replacement from the KME".into() }
        }
    };
    if let Err(e) = audit.record(rec) {
        tracing::error!("audit log: {e}");
    }
}

impl Generation {
    /// Builds a generation from a validated config, keeping the DMCP state
    /// and counters of backends that `previous` already had (same name and
    /// SAE id).
    pub fn build(cfg: LbConfig, previous: Option<&Generation>) -> anyhow::Result<Generation> {
        let alpn: Vec<&[u8]> = cfg.listen.alpn.iter().map(|s| s.as_bytes()).collect();
        let server = qmeta_pki::server_config(&cfg.listen.cert, &cfg.listen.key, qmeta_pki::ClientAuth::None, &alpn)?;
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let limits = qmeta_dmcp::Limits {
            max_clock_skew_ms: cfg.control.max_clock_skew.as_millis() as u64,
            ..Default::default()
        };
        let backends: Vec<Backend> = cfg
            .backends
            .iter()
            .map(|b| {
                let old =
                    previous.and_then(|g| g.backends.iter().find(|o| o.cfg.name == b.name && o.cfg.sae_id == b.sae_id));
                // A changed allowlist or default set starts the backend's DMCP
                // state afresh (fail safe: nothing beyond the new limits); its
                // agent resyncs on its next reconnect.
                let keep_state = old
                    .filter(|o| o.cfg.allowed_fields == b.allowed_fields && o.cfg.default_fields == b.default_fields);
                Backend {
                    cfg: b.clone(),
                    endpoint: keep_state.map(|o| o.endpoint.clone()).unwrap_or_else(|| {
                        Arc::new(Mutex::new(Endpoint::new(
                            ControlState::new(b.default_fields.clone(), b.allowed_fields.clone()),
                            limits.clone(),
                        )))
                    }),
                    metrics: old.map(|o| o.metrics.clone()).unwrap_or_else(|| {
                        Arc::new(crate::metrics::BackendMetrics { healthy: 1.into(), ..Default::default() })
                    }),
                }
            })
            .collect();
        let by_sae = backends.iter().enumerate().map(|(i, b)| (b.cfg.sae_id.clone(), i)).collect();
        let geo = match &cfg.geo {
            Some(g) => Some(Arc::new(qmeta_geo::Geo::open(g).map_err(|e| anyhow::anyhow!("geo: {e}"))?)),
            None => None,
        };
        let balancer = cfg.balance.build(&cfg.backends.iter().map(|b| b.weight).collect::<Vec<_>>());
        Ok(Generation { cfg, backends, by_sae, balancer, geo, acceptor })
    }

    fn rotation_targets(&self) -> Vec<(String, String)> {
        self.backends.iter().map(|b| (b.cfg.name.clone(), b.cfg.sae_id.clone())).collect()
    }
}

impl Shared {
    /// The current generation. Cheap: a read lock and an `Arc` clone.
    pub fn gen(&self) -> Arc<Generation> {
        self.gen.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn spawn_rotation(&self) -> JoinHandle<()> {
        let audit = self.audit.clone();
        qmeta_qkd::rotation::spawn_rotation(self.ring.clone(), self.kme.clone(), self.gen().rotation_targets(), {
            let metrics = self.metrics.clone();
            Arc::new(move |ev| on_rotation(&audit, &metrics, ev))
        })
    }

    /// Re-reads the config file, validates it completely, and only then
    /// swaps it in. A bad file changes nothing. DMCP state, keys and open
    /// connections survive; settings that need new sockets or a new CA are
    /// refused with a message saying to restart.
    pub async fn reload(self: &Arc<Self>) -> Result<String, String> {
        let Some(path) = &self.config_path else {
            return Err("no configuration file to reload from".into());
        };
        let mut rotation = self.reloading.lock().await;
        let cfg = crate::config::load(path).map_err(|e| e.to_string())?;
        let old = self.gen();
        let mut fixed = Vec::new();
        let same = |what: &str, a: String, b: String, fixed: &mut Vec<String>| {
            if a != b {
                fixed.push(format!("{what} cannot change on reload (restart to apply)"));
            }
        };
        same("listen.address", old.cfg.listen.address.to_string(), cfg.listen.address.to_string(), &mut fixed);
        same(
            "listen.max_connections",
            old.cfg.listen.max_connections.to_string(),
            cfg.listen.max_connections.to_string(),
            &mut fixed,
        );
        same("control.address", old.cfg.control.address.to_string(), cfg.control.address.to_string(), &mut fixed);
        same(
            "admin",
            format!("{:?}", old.cfg.admin.as_ref().map(|a| a.address)),
            format!("{:?}", cfg.admin.as_ref().map(|a| a.address)),
            &mut fixed,
        );
        same("kme", format!("{:?}", old.cfg.kme), format!("{:?}", cfg.kme), &mut fixed);
        same("certificates", format!("{:?}", old.cfg.certificates), format!("{:?}", cfg.certificates), &mut fixed);
        same(
            "upstream.ca",
            old.cfg.upstream.ca.display().to_string(),
            cfg.upstream.ca.display().to_string(),
            &mut fixed,
        );
        same("keys", format!("{:?}", old.cfg.keys), format!("{:?}", cfg.keys), &mut fixed);
        same("audit", format!("{:?}", old.cfg.audit), format!("{:?}", cfg.audit), &mut fixed);
        same("node_id", old.cfg.node_id.clone(), cfg.node_id.clone(), &mut fixed);
        if !fixed.is_empty() {
            return Err(format!("{}: {}", path.display(), fixed.join("; ")));
        }
        let new = Generation::build(cfg, Some(&old)).map_err(|e| format!("{}: {e:#}", path.display()))?;
        let targets_changed = new.rotation_targets() != old.rotation_targets();
        let summary = format!(
            "reloaded {}: {} backend(s): {}",
            path.display(),
            new.backends.len(),
            new.backends.iter().map(|b| b.cfg.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        let new = Arc::new(new);
        *self.gen.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        let health = crate::health::spawn(self.clone(), new);
        if let Some(old_checks) =
            std::mem::replace(&mut *self.health_task.lock().unwrap_or_else(|e| e.into_inner()), health)
        {
            old_checks.abort();
        }
        if targets_changed {
            if let Some(old_task) = rotation.take() {
                old_task.abort();
            }
            *rotation = Some(self.spawn_rotation());
        }
        let _ = self.audit.record(Record::Lifecycle { component: "lb".into(), what: summary.clone() });
        tracing::info!("{summary}");
        Ok(summary)
    }
}
