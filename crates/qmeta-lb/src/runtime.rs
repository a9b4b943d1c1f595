//! Starting and stopping the LB: open the audit log, load the CA, start key
//! rotation, bind the listeners.

use crate::config::{BackendConfig, LbConfig};
use crate::mint::Minter;
use qmeta_audit::{AuditLog, AuditOptions, Record};
use qmeta_dmcp::{ControlState, Endpoint};
use qmeta_qkd::client::{KmeClient, KmeClientConfig};
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
    pub endpoint: Mutex<Endpoint>,
    pub metrics: crate::metrics::BackendMetrics,
}

pub(crate) struct Shared {
    pub cfg: LbConfig,
    pub backends: Vec<Backend>,
    pub by_sae: HashMap<String, usize>,
    pub balancer: Box<dyn crate::balance::Balancer>,
    pub geo: Option<Arc<qmeta_geo::Geo>>,
    pub conn_ids: AtomicU64,
    pub ring: Arc<KeyRing>,
    pub minter: Minter,
    pub audit: AuditLog,
    pub kme: KmeClient,
    pub acceptor: TlsAcceptor,
    pub metrics: crate::metrics::Metrics,
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
}

impl Lb {
    /// Binds the client and control listeners and starts serving.
    pub async fn start(cfg: LbConfig) -> anyhow::Result<Lb> {
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
        let alpn: Vec<&[u8]> = cfg.listen.alpn.iter().map(|s| s.as_bytes()).collect();
        let server = qmeta_pki::server_config(&cfg.listen.cert, &cfg.listen.key, qmeta_pki::ClientAuth::None, &alpn)?;
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let kme = KmeClient::new(KmeClientConfig {
            url: cfg.kme.url.clone(),
            kme_id: cfg.kme.kme_id.clone(),
            ca: cfg.kme.ca.clone(),
            cert: cfg.kme.cert.clone(),
            key: cfg.kme.key.clone(),
            timeout: cfg.kme.timeout,
        })?;
        let ring = KeyRing::new(RotationPolicy { interval: cfg.keys.rotation, grace: cfg.keys.grace, key_bits: 256 });
        let backends: Vec<Backend> = cfg
            .backends
            .iter()
            .map(|b| Backend {
                cfg: b.clone(),
                endpoint: Mutex::new(Endpoint::new(
                    ControlState::new(b.default_fields.clone(), b.allowed_fields.clone()),
                    qmeta_dmcp::Limits {
                        max_clock_skew_ms: cfg.control.max_clock_skew.as_millis() as u64,
                        ..Default::default()
                    },
                )),
                metrics: crate::metrics::BackendMetrics { healthy: 1.into(), ..Default::default() },
            })
            .collect();
        let by_sae = backends.iter().enumerate().map(|(i, b)| (b.cfg.sae_id.clone(), i)).collect();
        let listener = TcpListener::bind(cfg.listen.address)
            .await
            .map_err(|e| anyhow::anyhow!("listen.address {}: {e}", cfg.listen.address))?;
        let control = TcpListener::bind(cfg.control.address)
            .await
            .map_err(|e| anyhow::anyhow!("control.address {}: {e}", cfg.control.address))?;
        let admin = match cfg.admin.as_ref() {
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
        let rotation_targets = backends.iter().map(|b| (b.cfg.name.clone(), b.cfg.sae_id.clone())).collect();
        let geo = match &cfg.geo {
            Some(g) => Some(Arc::new(qmeta_geo::Geo::open(g).map_err(|e| anyhow::anyhow!("geo: {e}"))?)),
            None => None,
        };
        let balancer = cfg.balance.build(&cfg.backends.iter().map(|b| b.weight).collect::<Vec<_>>());
        let shared = Arc::new(Shared {
            cfg,
            backends,
            by_sae,
            balancer,
            geo,
            conn_ids: AtomicU64::new(rand::random::<u32>() as u64),
            ring: ring.clone(),
            minter,
            audit: audit.clone(),
            kme: kme.clone(),
            acceptor,
            metrics: Default::default(),
            recent_dmcp: Mutex::new(std::collections::VecDeque::with_capacity(crate::admin::RECENT_DMCP)),
        });
        let _ = audit.record(Record::Lifecycle { component: "lb".into(), what: format!("started on {addr}") });
        let (shutdown, rx) = watch::channel(false);
        let events_audit = audit.clone();
        let rotation = qmeta_qkd::rotation::spawn_rotation(
            ring,
            kme,
            rotation_targets,
            Arc::new(move |ev| on_rotation(&events_audit, ev)),
        );
        wait_for_first_keys(&shared, Duration::from_secs(5)).await;
        let mut tasks = vec![
            rotation,
            tokio::spawn(crate::proxy::serve(shared.clone(), listener, rx.clone())),
            tokio::spawn(crate::control::serve(shared.clone(), control, rx.clone())),
        ];
        if let Some(admin) = admin {
            tasks.push(tokio::spawn(crate::admin::serve(shared, admin, rx)));
        }
        tracing::info!(%addr, %control_addr, "load balancer listening");
        Ok(Lb { addr, control_addr, admin_addr, shutdown, tasks, audit })
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

    /// Stops accepting, aborts background tasks and flushes the audit log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
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
        let missing: Vec<&str> = shared
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

fn on_rotation(audit: &AuditLog, ev: RotationEvent) {
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
