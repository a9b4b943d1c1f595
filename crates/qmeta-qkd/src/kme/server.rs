//! One KME site over HTTPS: TCP accept → TLS handshake with a required
//! client certificate → the CN becomes the SAE id (a request extension) →
//! quirks (if any) → axum routes → the [`Store`] (and, for a site running
//! alone, the peer KME that must learn about issued keys).
//!
//! Method rules (spec 5): status is GET only; enc_keys and dec_keys are
//! POST, or GET with only `number`/`size` (enc_keys) or exactly one
//! `key_ID` (dec_keys) as query parameters and no body. Other methods
//! answer 405.

use super::peer::PeerHandle;
use super::quirks::{Quirk, Quirks, SLOW_DELAY};
use super::store::{Refusal, Site, Store};
use super::{KmeError, KmeSiteConfig};
use crate::api::{self, ErrorBody, KeyContainer, KeyIds, KeyRequest};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// Largest request body (a key-id list of 4096 ids is ~200 KiB).
const MAX_REQUEST_BYTES: usize = 256 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The calling SAE, from its certificate.
#[derive(Clone, Debug)]
struct SaeId(String);

struct SiteState {
    site: Site,
    kme_id: String,
    store: Arc<Mutex<Store>>,
    quirks: Quirks,
    /// Requests seen, for the `burst_503` quirk.
    requests: AtomicU64,
    /// Split layout: the peer KME that holds the reservations.
    peer: Option<PeerHandle>,
}

impl SiteState {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bad(&self, m: impl Into<String>) -> Response {
        refusal(&self.quirks, Refusal::BadRequest(m.into()))
    }
}

/// A bound, not yet serving, site.
pub(super) struct BoundSite {
    pub local_addr: SocketAddr,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    state: Arc<SiteState>,
    kme_id: String,
}

pub(super) async fn bind(
    cfg: &KmeSiteConfig,
    site: Site,
    store: Arc<Mutex<Store>>,
    quirks: Quirks,
    peer: Option<PeerHandle>,
) -> Result<BoundSite, KmeError> {
    let tls =
        qmeta_pki::server_config(&cfg.cert, &cfg.key, qmeta_pki::ClientAuth::Required(&cfg.client_ca), &[b"http/1.1"])
            .map_err(|source| KmeError::Credentials { kme_id: cfg.kme_id.clone(), source })?;
    let listener = TcpListener::bind(cfg.listen).await.map_err(|source| KmeError::Bind {
        kme_id: cfg.kme_id.clone(),
        addr: cfg.listen,
        source,
    })?;
    let local_addr = listener.local_addr().map_err(|source| KmeError::Bind {
        kme_id: cfg.kme_id.clone(),
        addr: cfg.listen,
        source,
    })?;
    if !quirks.is_empty() {
        let names: Vec<&str> = quirks.iter().map(Quirk::name).collect();
        tracing::warn!(kme = %cfg.kme_id, quirks = ?names, "KME imitates non-conforming KMEs");
    }
    let state =
        Arc::new(SiteState { site, kme_id: cfg.kme_id.clone(), store, quirks, requests: AtomicU64::new(0), peer });
    Ok(BoundSite {
        local_addr,
        listener,
        acceptor: TlsAcceptor::from(Arc::new(tls)),
        router: router(state.clone()),
        state,
        kme_id: cfg.kme_id.clone(),
    })
}

fn router(state: Arc<SiteState>) -> Router {
    Router::new()
        .route("/api/v1/keys/{sae}/status", get(status))
        .route("/api/v1/keys/{sae}/enc_keys", get(enc_get).post(enc_post))
        .route("/api/v1/keys/{sae}/dec_keys", get(dec_get).post(dec_post))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(state)
}

impl BoundSite {
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        // Connection tasks live in the set: leaving this function aborts them.
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        conns.spawn(serve_conn(tcp, self.acceptor.clone(), self.router.clone(), self.state.clone()));
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(kme = %self.kme_id, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
        tracing::info!(kme = %self.kme_id, "KME stopped");
    }
}

async fn serve_conn(tcp: TcpStream, acceptor: TlsAcceptor, router: Router, state: Arc<SiteState>) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "KME TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    // The verifier required a certificate chaining to client_ca; its CN is the SAE id.
    let sae = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| qmeta_pki::common_name(c));
    let Some(sae) = sae else {
        tracing::warn!("KME client certificate has no CN; closing");
        return;
    };
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(SaeId(sae.clone()));
        let mut router = router.clone();
        let state = state.clone();
        async move {
            if state.quirks.has(Quirk::Slow) {
                tokio::time::sleep(SLOW_DELAY).await;
            }
            let n = state.requests.fetch_add(1, Ordering::Relaxed);
            if state.quirks.burst_refuses(n) {
                let r = Refusal::Unavailable("KME busy (burst_503 quirk)".into());
                return Ok(refusal(&state.quirks, r));
            }
            router.call(req).await
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
}

fn refusal(quirks: &Quirks, r: Refusal) -> Response {
    let err = |status, message: String| {
        let body = if quirks.has(Quirk::DetailErrors) {
            serde_json::to_vec(&serde_json::json!({ "detail": message }))
        } else {
            serde_json::to_vec(&ErrorBody::new(message))
        };
        json(status, body.unwrap_or_default())
    };
    match r {
        Refusal::BadRequest(m) => err(StatusCode::BAD_REQUEST, m),
        Refusal::NotFound if quirks.has(Quirk::NotFound404) => {
            err(StatusCode::NOT_FOUND, api::MSG_KEYS_NOT_FOUND.into())
        }
        Refusal::NotFound => err(StatusCode::BAD_REQUEST, api::MSG_KEYS_NOT_FOUND.into()),
        Refusal::Unavailable(m) => err(StatusCode::SERVICE_UNAVAILABLE, m),
        Refusal::Unauthorized => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn keys_response(quirks: &Quirks, keys: Result<Vec<crate::Key>, Refusal>) -> Response {
    match keys {
        Ok(keys) => match serde_json::to_vec(&KeyContainer::from_keys(&keys)) {
            Ok(mut body) => {
                // `keys` is the container's first field: `{"keys":...`.
                if quirks.has(Quirk::CapitalKeys) && body.starts_with(b"{\"keys\"") {
                    body[2] = b'K';
                }
                json(StatusCode::OK, body)
            }
            Err(_) => refusal(quirks, Refusal::Unavailable("could not encode keys".into())),
        },
        Err(r) => refusal(quirks, r),
    }
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

async fn status(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(slave): Path<String>,
) -> Response {
    let res = s.store().status(s.site, &sae.0, &slave, Instant::now());
    match res {
        Ok(mut st) => {
            if let (Some(peer), Some(ext)) = (&s.peer, st.status_extension.as_mut()) {
                ext["qmeta_peer_connected"] = serde_json::json!(peer.is_connected());
            }
            json(StatusCode::OK, serde_json::to_vec(&st).unwrap_or_default())
        }
        Err(r) => refusal(&s.quirks, r),
    }
}

async fn enc(s: &SiteState, sae: &str, slave: &str, req: &KeyRequest) -> Response {
    let issued = s.store().issue(s.site, sae, slave, req, Instant::now());
    let res = match issued {
        Ok(issued) => match (issued.relay, &s.peer) {
            (None, _) => Ok(issued.keys),
            // The keys go to the master only once the peer KME holds them
            // for the slaves: a dec_keys right after enc_keys must succeed.
            (Some(relay), Some(peer)) => match peer.relay(relay).await {
                Ok(()) => Ok(issued.keys),
                Err(e) => Err(Refusal::Unavailable(format!("peer KME: {e}"))),
            },
            (Some(_), None) => Err(Refusal::Unavailable("no peer KME".into())),
        },
        Err(r) => Err(r),
    };
    match &res {
        Ok(keys) => {
            let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
            tracing::info!(kme = %s.kme_id, master = %sae, slave = %slave, key_ids = ?ids, "enc_keys");
        }
        Err(r) => {
            tracing::info!(kme = %s.kme_id, master = %sae, slave = %slave, refusal = ?r, "enc_keys refused")
        }
    }
    keys_response(&s.quirks, res)
}

async fn enc_post(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(slave): Path<String>,
    body: Bytes,
) -> Response {
    let req: KeyRequest = if is_blank(&body) {
        KeyRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return s.bad(format!("request body is not a valid Key request: {e}")),
        }
    };
    enc(&s, &sae.0, &slave, &req).await
}

async fn enc_get(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(slave): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let bad = |m: String| s.bad(m);
    if !is_blank(&body) {
        return bad("GET enc_keys takes no body; use POST for a Key request".into());
    }
    let mut req = KeyRequest::default();
    let Some(pairs) = query_pairs(query.as_deref()) else {
        return bad("too many query parameters".into());
    };
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "number" => &mut req.number,
            "size" => &mut req.size,
            _ => return bad("GET enc_keys accepts only the number and size query parameters".into()),
        };
        if slot.is_some() {
            return bad(format!("query parameter {name} given twice"));
        }
        match value.parse::<u32>() {
            Ok(v) => *slot = Some(v),
            Err(_) => return bad(format!("query parameter {name} is not a non-negative integer")),
        }
    }
    enc(&s, &sae.0, &slave, &req).await
}

fn dec(s: &SiteState, sae: &str, master: &str, ids: &[String]) -> Response {
    let res = s.store().dec_keys(s.site, sae, master, ids);
    match &res {
        Ok(_) => {
            tracing::info!(kme = %s.kme_id, slave = %sae, master = %master, key_ids = ?ids, "dec_keys")
        }
        Err(r) => {
            tracing::info!(kme = %s.kme_id, slave = %sae, master = %master, refusal = ?r, "dec_keys refused")
        }
    }
    keys_response(&s.quirks, res)
}

async fn dec_post(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(master): Path<String>,
    body: Bytes,
) -> Response {
    let ids: KeyIds = match serde_json::from_slice(&body) {
        Ok(ids) => ids,
        Err(e) => return s.bad(format!("request body is not a valid Key IDs object: {e}")),
    };
    let ids: Vec<String> = ids.key_ids.into_iter().map(|e| e.key_id).collect();
    dec(&s, &sae.0, &master, &ids)
}

async fn dec_get(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(master): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if !is_blank(&body) {
        return s.bad("GET dec_keys takes no body; use POST for Key IDs");
    }
    let pairs = query_pairs(query.as_deref()).unwrap_or_default();
    match pairs.as_slice() {
        [(name, id)] if name == "key_ID" => dec(&s, &sae.0, &master, std::slice::from_ref(id)),
        _ => s.bad("GET dec_keys takes exactly one key_ID query parameter"),
    }
}

/// Most query parameters a GET may carry (the spec allows two).
const MAX_QUERY_PAIRS: usize = 8;

/// `a=1&b=2` → pairs, percent-decoded (`+` is a space, as in forms);
/// `None` when there are more than [`MAX_QUERY_PAIRS`].
fn query_pairs(query: Option<&str>) -> Option<Vec<(String, String)>> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    let parts: Vec<&str> = query.unwrap_or("").split('&').filter(|p| !p.is_empty()).take(MAX_QUERY_PAIRS + 1).collect();
    if parts.len() > MAX_QUERY_PAIRS {
        return None;
    }
    Some(
        parts
            .into_iter()
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(
            query_pairs(Some("number=2&size=256")),
            Some(vec![("number".into(), "2".into()), ("size".into(), "256".into())])
        );
        assert_eq!(query_pairs(Some("key_ID=a%2Db")), Some(vec![("key_ID".into(), "a-b".into())]));
        assert_eq!(query_pairs(None), Some(vec![]));
        assert_eq!(query_pairs(Some(&"x=1&".repeat(8))).map(|p| p.len()), Some(8));
        assert_eq!(query_pairs(Some(&"x=1&".repeat(100))), None);
    }
}
