//! Counters and histograms of the LB, rendered in the Prometheus text
//! format by the admin API. Lock-free on the connection path (atomics only).
//! Labels are backend names and fixed result words: never metadata values.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the mint latency histogram.
const MINT_BUCKETS: [f64; 10] = [0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05];

#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; MINT_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, le) in MINT_BUCKETS.iter().enumerate() {
            if s <= *le {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }
}

/// Per-backend counters.
#[derive(Default)]
pub(crate) struct BackendMetrics {
    pub connections: AtomicU64,
    pub active: AtomicU64,
    pub certificates: AtomicU64,
    pub connect_errors: AtomicU64,
    /// 1 when active health checks pass (always 1 without active checks).
    pub healthy: AtomicU64,
    /// Passive ejection: not chosen first until this time (unix ms).
    pub ejected_until_ms: AtomicU64,
    pub check_successes: AtomicU64,
    pub check_failures: AtomicU64,
    /// Set when the backend went down: fetch it a fresh key before use.
    pub stale_key: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub accepted: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub refused: AtomicU64,
    pub mint: Histogram,
    pub dmcp_accepted: AtomicU64,
    pub dmcp_rejected: AtomicU64,
    pub dmcp_unparsable: AtomicU64,
    pub audit_errors: AtomicU64,
    /// Failed QKD key fetches per backend (written by the rotation task).
    pub kme_errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// One backend's view for rendering.
pub(crate) struct BackendView<'a> {
    pub name: &'a str,
    pub m: &'a BackendMetrics,
    pub key_age: Option<Duration>,
}

impl Metrics {
    pub fn render(&self, backends: &[BackendView<'_>]) -> String {
        let mut out = String::with_capacity(4096);
        let c = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            &mut out,
            "qmeta_connections_accepted_total",
            "Client TCP connections accepted.",
            self.accepted.load(Relaxed),
        );
        c(
            &mut out,
            "qmeta_tls_handshake_failures_total",
            "Client TLS handshakes that failed or timed out.",
            self.handshake_failures.load(Relaxed),
        );
        c(
            &mut out,
            "qmeta_connections_refused_total",
            "Client connections refused because no backend was usable.",
            self.refused.load(Relaxed),
        );
        c(
            &mut out,
            "qmeta_audit_errors_total",
            "Audit records that could not be queued (certificates refused).",
            self.audit_errors.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP qmeta_dmcp_frames_total DMCP frames by result.\n# TYPE qmeta_dmcp_frames_total counter"
        );
        let _ = writeln!(out, "qmeta_dmcp_frames_total{{result=\"accepted\"}} {}", self.dmcp_accepted.load(Relaxed));
        let _ = writeln!(out, "qmeta_dmcp_frames_total{{result=\"rejected\"}} {}", self.dmcp_rejected.load(Relaxed));
        let _ =
            writeln!(out, "qmeta_dmcp_frames_total{{result=\"unparsable\"}} {}", self.dmcp_unparsable.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP qmeta_mint_seconds Time to mint one metadata certificate.\n# TYPE qmeta_mint_seconds histogram"
        );
        for (i, le) in MINT_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "qmeta_mint_seconds_bucket{{le=\"{le}\"}} {}", self.mint.buckets[i].load(Relaxed));
        }
        let count = self.mint.count.load(Relaxed);
        let _ = writeln!(out, "qmeta_mint_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "qmeta_mint_seconds_sum {}", self.mint.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "qmeta_mint_seconds_count {count}");
        let per = |out: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&BackendView<'_>) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for b in backends {
                let _ = writeln!(out, "{name}{{backend=\"{}\"}} {}", b.name, f(b));
            }
        };
        per(&mut out, "qmeta_backend_connections_total", "counter", "Connections proxied to the backend.", &|b| {
            b.m.connections.load(Relaxed).to_string()
        });
        per(&mut out, "qmeta_backend_active_connections", "gauge", "Connections open to the backend now.", &|b| {
            b.m.active.load(Relaxed).to_string()
        });
        per(
            &mut out,
            "qmeta_certificates_minted_total",
            "counter",
            "Metadata certificates minted for the backend.",
            &|b| b.m.certificates.load(Relaxed).to_string(),
        );
        per(
            &mut out,
            "qmeta_backend_connect_errors_total",
            "counter",
            "Failed connects or upstream TLS handshakes.",
            &|b| b.m.connect_errors.load(Relaxed).to_string(),
        );
        per(&mut out, "qmeta_kme_errors_total", "counter", "Failed QKD key fetches for the backend.", &|b| {
            self.kme_errors.lock().unwrap_or_else(|e| e.into_inner()).get(b.name).copied().unwrap_or(0).to_string()
        });
        per(&mut out, "qmeta_backend_up", "gauge", "1 when the backend is considered healthy.", &|b| {
            b.m.healthy.load(Relaxed).to_string()
        });
        per(
            &mut out,
            "qmeta_key_age_seconds",
            "gauge",
            "Age of the backend's current metadata key (NaN: none).",
            &|b| b.key_age.map(|a| format!("{:.3}", a.as_secs_f64())).unwrap_or_else(|| "NaN".into()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.accepted.fetch_add(3, Relaxed);
        m.mint.observe(Duration::from_micros(30));
        m.mint.observe(Duration::from_millis(3));
        let b = BackendMetrics::default();
        b.certificates.fetch_add(2, Relaxed);
        let text = m.render(&[BackendView { name: "app-a", m: &b, key_age: Some(Duration::from_millis(1500)) }]);
        assert!(text.contains("qmeta_connections_accepted_total 3"), "{text}");
        assert!(text.contains("qmeta_mint_seconds_bucket{le=\"0.00005\"} 1"), "{text}");
        assert!(text.contains("qmeta_mint_seconds_bucket{le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("qmeta_mint_seconds_count 2"), "{text}");
        assert!(text.contains("qmeta_certificates_minted_total{backend=\"app-a\"} 2"), "{text}");
        assert!(text.contains("qmeta_key_age_seconds{backend=\"app-a\"} 1.500"), "{text}");
    }
}
