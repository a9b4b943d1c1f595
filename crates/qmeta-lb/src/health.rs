//! Active health checks (TCP connect, mTLS handshake with a minted
//! certificate, or an HTTP status over that connection) and the passive
//! ejection state a failed client connection leaves behind.
//!
//! A backend is "up" when its active checks pass (`rise` successes after
//! being down, `fall` failures to go down) and it is not passively ejected.
//! Down backends are still tried last, so a pool whose every backend is down
//! keeps trying rather than refusing outright.

use crate::config::{HealthCheck, HealthConfig};
use crate::runtime::{Backend, Generation, Shared};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// True when the backend may be chosen first.
pub(crate) fn is_up(b: &Backend) -> bool {
    b.metrics.healthy.load(Relaxed) == 1 && crate::unix_ms() >= b.metrics.ejected_until_ms.load(Relaxed)
}

/// Passive ejection after a failed connect or handshake.
pub(crate) fn eject(b: &Backend, for_: Duration) {
    b.metrics.ejected_until_ms.store(crate::unix_ms() + for_.as_millis() as u64, Relaxed);
}

/// A connection succeeded: end any passive ejection.
pub(crate) fn succeeded(b: &Backend) {
    b.metrics.ejected_until_ms.store(0, Relaxed);
}

/// Starts the checks of a generation (none when `check = "none"`).
pub(crate) fn spawn(shared: Arc<Shared>, gen: Arc<Generation>) -> Option<JoinHandle<()>> {
    let cfg = gen.cfg.health.clone();
    if cfg.check == HealthCheck::None {
        for b in &gen.backends {
            b.metrics.healthy.store(1, Relaxed);
        }
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let checks = gen.backends.iter().map(|b| check_one(&shared, &gen, b, &cfg));
            let results = futures_join_all(checks).await;
            for (b, ok) in gen.backends.iter().zip(results) {
                record(b, ok, &cfg);
            }
        }
    }))
}

/// Applies rise/fall hysteresis.
fn record(b: &Backend, ok: bool, cfg: &HealthConfig) {
    let m = &b.metrics;
    if ok {
        m.check_failures.store(0, Relaxed);
        let n = m.check_successes.fetch_add(1, Relaxed) + 1;
        if m.healthy.load(Relaxed) == 0 && n >= u64::from(cfg.rise) {
            m.healthy.store(1, Relaxed);
            tracing::info!(backend = %b.cfg.name, "health check: backend is up");
        }
    } else {
        m.check_successes.store(0, Relaxed);
        let n = m.check_failures.fetch_add(1, Relaxed) + 1;
        if m.healthy.load(Relaxed) == 1 && n >= u64::from(cfg.fall) {
            m.healthy.store(0, Relaxed);
            // A backend that went away may come back as a new process that
            // never saw the current key — and the KME delivers a key once.
            // Give it a fresh key before bringing it back.
            m.stale_key.store(1, Relaxed);
            tracing::warn!(backend = %b.cfg.name, "health check: backend is down");
        }
    }
}

async fn futures_join_all<F: std::future::Future<Output = bool>>(futs: impl Iterator<Item = F>) -> Vec<bool> {
    let mut out = Vec::new();
    // Backends are few; checking them one after another keeps it simple
    // and each check is bounded by the timeout.
    for f in futs {
        out.push(f.await);
    }
    out
}

async fn check_one(shared: &Shared, gen: &Generation, b: &Backend, cfg: &HealthConfig) -> bool {
    let started = Instant::now();
    let result = tokio::time::timeout(cfg.timeout, probe(shared, gen, b, cfg)).await;
    match result {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(backend = %b.cfg.name, elapsed = ?started.elapsed(), "health check failed: {e}");
            false
        }
        Err(_) => {
            tracing::debug!(backend = %b.cfg.name, "health check timed out");
            false
        }
    }
}

async fn probe(shared: &Shared, gen: &Generation, b: &Backend, cfg: &HealthConfig) -> Result<(), String> {
    let tcp = TcpStream::connect(b.cfg.address).await.map_err(|e| format!("connect: {e}"))?;
    if cfg.check == HealthCheck::Tcp {
        return Ok(());
    }
    // The TLS check presents a real minted certificate (no fields), so it
    // exercises exactly what client connections need: a valid QKD key and
    // the backend accepting the LB CA.
    if b.metrics.stale_key.load(Relaxed) == 1 {
        fresh_key(shared, b).await?;
    }
    let key = shared.ring.current(&b.cfg.name, Instant::now()).ok_or("no valid QKD key")?;
    let subject = format!("qmeta {} health", gen.cfg.node_id);
    let req = qmeta_cert::MintRequest {
        serial: rand::random(),
        now_unix: crate::unix_ms() / 1000,
        validity_secs: 60,
        subject_cn: &subject,
        key_id: key.id,
        qkd_key: &key.bytes,
        state_version: 0,
        fields: &[],
    };
    let alpn = (cfg.check == HealthCheck::Http).then_some(&b"http/1.1"[..]);
    let (minted, tls_cfg) = shared.minter.mint(&req, alpn).map_err(|e| format!("mint: {e}"))?;
    shared
        .audit
        .record(qmeta_audit::Record::CertIssued {
            serial: minted.serial_hex,
            backend: b.cfg.name.clone(),
            fields: vec![],
            dropped: vec![],
            key_id: key.id.to_string(),
            state_version: 0,
            conn_id: 0,
        })
        .map_err(|e| format!("audit: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from(b.cfg.server_name.clone()).map_err(|e| e.to_string())?;
    let mut tls =
        tokio_rustls::TlsConnector::from(tls_cfg).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    if cfg.check == HealthCheck::Tls {
        let _ = tls.shutdown().await;
        return Ok(());
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: qmeta-health\r\nConnection: close\r\n\r\n",
        cfg.http_path, b.cfg.server_name
    );
    tls.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        let r = tls.read(&mut head[n..]).await.map_err(|e| format!("read: {e}"))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = std::str::from_utf8(&head[..n]).unwrap_or("");
    let status: u16 = line.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)).and_then(|c| c.parse().ok()).unwrap_or(0);
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

/// Fetches and installs a new metadata key for `b` now (audited).
pub(crate) async fn fresh_key(shared: &Shared, b: &Backend) -> Result<(), String> {
    let mut keys = shared.kme.enc_keys(&b.cfg.sae_id, 1, 256).await.map_err(|e| format!("fresh key: {e}"))?;
    let key = keys.pop().ok_or("fresh key: KME returned none")?;
    let id = key.id;
    let previous = shared.ring.install(&b.cfg.name, key, Instant::now());
    b.metrics.stale_key.store(0, Relaxed);
    tracing::info!(backend = %b.cfg.name, key_id = %id, "backend was down: rotated its metadata key before bringing it back");
    let _ = shared.audit.record(qmeta_audit::Record::KeyRotated {
        backend: b.cfg.name.clone(),
        key_id: id.to_string(),
        previous: previous.map(|p| p.to_string()),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let b = Backend {
            cfg: test_backend(),
            endpoint: Arc::new(std::sync::Mutex::new(qmeta_dmcp::Endpoint::new(
                qmeta_dmcp::ControlState::new(Default::default(), Default::default()),
                Default::default(),
            ))),
            metrics: Arc::new(crate::metrics::BackendMetrics { healthy: 1.into(), ..Default::default() }),
        };
        let cfg = HealthConfig { fall: 2, rise: 3, ..HealthConfig::default() };
        record(&b, false, &cfg);
        assert!(is_up(&b), "one failure is not enough");
        record(&b, false, &cfg);
        assert!(!is_up(&b));
        record(&b, true, &cfg);
        record(&b, true, &cfg);
        assert!(!is_up(&b), "two successes are not enough");
        record(&b, true, &cfg);
        assert!(is_up(&b));
        eject(&b, Duration::from_secs(60));
        assert!(!is_up(&b), "passively ejected");
        succeeded(&b);
        assert!(is_up(&b));
    }

    fn test_backend() -> crate::config::BackendConfig {
        crate::config::BackendConfig {
            name: "a".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            server_name: "a".into(),
            sae_id: "sae-a".into(),
            default_fields: Default::default(),
            allowed_fields: Default::default(),
            weight: 1,
        }
    }
}
