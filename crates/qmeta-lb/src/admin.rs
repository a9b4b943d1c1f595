//! The admin API: Prometheus metrics and a JSON view of backends, field
//! sets, key ids and ages (never key material), recent DMCP commands and
//! the audit chain head. Bind it to loopback: it has no authentication.

use crate::metrics::BackendView;
use crate::runtime::Shared;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How many DMCP outcomes `/api/v1/dmcp/recent` keeps.
pub(crate) const RECENT_DMCP: usize = 100;

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/backends", get(backends))
        .route("/api/v1/keys", get(keys))
        .route("/api/v1/dmcp/recent", get(recent))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/reload", axum::routing::post(reload))
        .layer(axum::middleware::from_fn(same_host_only))
        .layer(axum::extract::DefaultBodyLimit::max(4096))
        .with_state(shared);
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!("admin API stopped: {e}");
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let now = Instant::now();
    let ages = s.ring.ages(now);
    let gen = s.gen();
    let views: Vec<BackendView<'_>> = gen
        .backends
        .iter()
        .map(|b| BackendView {
            name: &b.cfg.name,
            m: &b.metrics,
            key_age: s
                .ring
                .current(&b.cfg.name, now)
                .and_then(|_| ages.iter().find(|a| a.backend == b.cfg.name).map(|a| a.age)),
        })
        .collect();
    let body = s.metrics.render(&views);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn backends(State(s): State<Arc<Shared>>) -> Json<Value> {
    let now = Instant::now();
    let gen = s.gen();
    let list: Vec<Value> = gen
        .backends
        .iter()
        .map(|b| {
            let (version, scopes) = {
                let ep = b.endpoint.lock().unwrap_or_else(|e| e.into_inner());
                let st = ep.state();
                let scopes: serde_json::Map<String, Value> =
                    st.scopes().into_iter().map(|(scope, set)| (scope.to_string(), json!(set.names()))).collect();
                (st.version(), scopes)
            };
            let key = s.ring.current(&b.cfg.name, now).map(|k| k.id.to_string());
            json!({
                "name": b.cfg.name,
                "address": b.cfg.address.to_string(),
                "sae_id": b.cfg.sae_id,
                "healthy": crate::health::is_up(b),
                "active_connections": b.metrics.active.load(Relaxed),
                "certificates_minted": b.metrics.certificates.load(Relaxed),
                "key_id": key,
                "dmcp_state_version": version,
                "fields": scopes,
                "default_fields": b.cfg.default_fields.names(),
                "allowed_fields": allowed_names(&b.cfg.allowed_fields),
            })
        })
        .collect();
    Json(json!({ "backends": list }))
}

async fn keys(State(s): State<Arc<Shared>>) -> Json<Value> {
    let now = Instant::now();
    let keys: Vec<Value> = s
        .ring
        .ages(now)
        .into_iter()
        .map(|a| {
            json!({
                "backend": a.backend,
                "key_id": a.key_id.to_string(),
                "age_seconds": a.age.as_secs_f64(),
                "previous_key_id": a.previous.map(|p| p.to_string()),
                "valid": s.ring.current(&a.backend, now).is_some(),
            })
        })
        .collect();
    Json(
        json!({ "rotation_seconds": s.gen().cfg.keys.rotation.as_secs_f64(), "grace_seconds": s.gen().cfg.keys.grace.as_secs_f64(), "keys": keys }),
    )
}

async fn recent(State(s): State<Arc<Shared>>) -> Json<Value> {
    let recent = s.recent_dmcp.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({ "recent": recent.iter().cloned().collect::<Vec<Value>>() }))
}

async fn audit(State(s): State<Arc<Shared>>) -> Response {
    let head = s.audit.head();
    (StatusCode::OK, Json(json!({ "path": s.audit.path().display().to_string(), "seq": head.seq, "head": head.hash })))
        .into_response()
}

/// Re-reads the configuration file; a bad file changes nothing (409 with
/// every error), a good one is applied (200).
async fn reload(State(s): State<Arc<Shared>>) -> Response {
    match s.reload().await {
        Ok(summary) => (StatusCode::OK, Json(json!({ "reloaded": true, "summary": summary }))).into_response(),
        Err(errors) => {
            tracing::warn!("reload refused: {errors}");
            (StatusCode::CONFLICT, Json(json!({ "reloaded": false, "errors": errors }))).into_response()
        }
    }
}

/// Field names, with a run of allowed custom fields shown as one entry.
fn allowed_names(set: &qmeta_fields::FieldSet) -> Vec<String> {
    let mut names: Vec<String> = set.iter().filter(|f| !f.is_custom()).map(|f| f.name()).collect();
    let custom: Vec<u16> = set.iter().filter(|f| f.is_custom()).map(|f| f.get()).collect();
    match (custom.first(), custom.last()) {
        (Some(a), Some(b)) if custom.len() == usize::from(b - a) + 1 && a != b => {
            names.push(format!("custom_{a}..custom_{b}"))
        }
        _ => names.extend(custom.iter().map(|c| format!("custom_{c}"))),
    }
    names
}

/// DNS rebinding and cross-site requests: the admin API answers only
/// requests addressed to an IP literal or `localhost`, and never a
/// state-changing request sent by a web page (one carrying `Origin`).
async fn same_host_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !host_is_local(host) {
        return (StatusCode::FORBIDDEN, "admin API: Host must be an IP address or localhost\n").into_response();
    }
    if req.method() != axum::http::Method::GET && req.headers().contains_key(header::ORIGIN) {
        return (StatusCode::FORBIDDEN, "admin API: cross-origin requests are refused\n").into_response();
    }
    next.run(req).await
}

fn host_is_local(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => return rest.split(']').next().is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => host.rsplit_once(':').map(|(n, _)| n).unwrap_or(host),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::host_is_local;

    #[test]
    fn only_ip_literals_and_localhost() {
        for ok in ["127.0.0.1:8446", "127.0.0.1", "localhost:8446", "[::1]:8446", "10.1.2.3"] {
            assert!(host_is_local(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8446", "", "127.0.0.1.nip.io:8446"] {
            assert!(!host_is_local(bad), "{bad}");
        }
    }
}
