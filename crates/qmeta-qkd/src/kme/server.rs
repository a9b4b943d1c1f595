//! One KME site over HTTPS: TCP accept → TLS handshake with a required
//! client certificate → the CN becomes the SAE id (a request extension) →
//! axum routes → the shared [`Store`].

use super::store::{Refusal, Site, Store};
use super::{KmeError, KmeSiteConfig};
use crate::api::{ErrorBody, KeyContainer, KeyIds, KeyRequest};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
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
}

impl SiteState {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bound, not yet serving, site.
pub(super) struct BoundSite {
    pub local_addr: SocketAddr,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    kme_id: String,
}

pub(super) async fn bind(
    cfg: &KmeSiteConfig,
    site: Site,
    store: Arc<Mutex<Store>>,
) -> Result<BoundSite, KmeError> {
    let tls = qmeta_pki::server_config(
        &cfg.cert,
        &cfg.key,
        qmeta_pki::ClientAuth::Required(&cfg.client_ca),
        &[b"http/1.1"],
    )
    .map_err(|source| KmeError::Credentials {
        kme_id: cfg.kme_id.clone(),
        source,
    })?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| KmeError::Bind {
            kme_id: cfg.kme_id.clone(),
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| KmeError::Bind {
        kme_id: cfg.kme_id.clone(),
        addr: cfg.listen,
        source,
    })?;
    let state = Arc::new(SiteState {
        site,
        kme_id: cfg.kme_id.clone(),
        store,
    });
    Ok(BoundSite {
        local_addr,
        listener,
        acceptor: TlsAcceptor::from(Arc::new(tls)),
        router: router(state),
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
                        conns.spawn(serve_conn(tcp, self.acceptor.clone(), self.router.clone()));
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

async fn serve_conn(tcp: TcpStream, acceptor: TlsAcceptor, router: Router) {
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
    let sae = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| qmeta_pki::common_name(c));
    let Some(sae) = sae else {
        tracing::warn!("KME client certificate has no CN; closing");
        return;
    };
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(SaeId(sae.clone()));
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

fn refusal(r: Refusal) -> Response {
    let err = |status, message: String| {
        json(
            status,
            serde_json::to_vec(&ErrorBody::new(message)).unwrap_or_default(),
        )
    };
    match r {
        Refusal::BadRequest(m) => err(StatusCode::BAD_REQUEST, m),
        Refusal::Unavailable(m) => err(StatusCode::SERVICE_UNAVAILABLE, m),
        Refusal::Unauthorized => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn keys_response(keys: Result<Vec<crate::Key>, Refusal>) -> Response {
    match keys {
        Ok(keys) => match serde_json::to_vec(&KeyContainer::from_keys(&keys)) {
            Ok(body) => json(StatusCode::OK, body),
            Err(_) => refusal(Refusal::Unavailable("could not encode keys".into())),
        },
        Err(r) => refusal(r),
    }
}

fn bad(m: impl Into<String>) -> Response {
    refusal(Refusal::BadRequest(m.into()))
}

async fn status(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(slave): Path<String>,
) -> Response {
    let res = s.store().status(s.site, &sae.0, &slave, Instant::now());
    match res {
        Ok(st) => json(StatusCode::OK, serde_json::to_vec(&st).unwrap_or_default()),
        Err(r) => refusal(r),
    }
}

fn enc(s: &SiteState, sae: &str, slave: &str, req: &KeyRequest) -> Response {
    let res = s.store().enc_keys(s.site, sae, slave, req, Instant::now());
    match &res {
        Ok(keys) => {
            let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
            tracing::info!(kme = %s.kme_id, master = %sae, slave = %slave, key_ids = ?ids, "enc_keys");
        }
        Err(r) => {
            tracing::info!(kme = %s.kme_id, master = %sae, slave = %slave, refusal = ?r, "enc_keys refused")
        }
    }
    keys_response(res)
}

async fn enc_post(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(slave): Path<String>,
    body: Bytes,
) -> Response {
    let req: KeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        KeyRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad(format!("request body is not a valid Key request: {e}")),
        }
    };
    enc(&s, &sae.0, &slave, &req)
}

async fn enc_get(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(slave): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut req = KeyRequest::default();
    let Some(pairs) = query_pairs(query.as_deref()) else {
        return bad("too many query parameters");
    };
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "number" => &mut req.number,
            "size" => &mut req.size,
            _ => return bad("GET enc_keys accepts only the number and size query parameters"),
        };
        if slot.is_some() {
            return bad(format!("query parameter {name} given twice"));
        }
        match value.parse::<u32>() {
            Ok(v) => *slot = Some(v),
            Err(_) => {
                return bad(format!(
                    "query parameter {name} is not a non-negative integer"
                ))
            }
        }
    }
    enc(&s, &sae.0, &slave, &req)
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
    keys_response(res)
}

async fn dec_post(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(master): Path<String>,
    body: Bytes,
) -> Response {
    let ids: KeyIds = match serde_json::from_slice(&body) {
        Ok(ids) => ids,
        Err(e) => return bad(format!("request body is not a valid Key IDs object: {e}")),
    };
    let ids: Vec<String> = ids.key_ids.into_iter().map(|e| e.key_id).collect();
    dec(&s, &sae.0, &master, &ids)
}

async fn dec_get(
    State(s): State<Arc<SiteState>>,
    Extension(sae): Extension<SaeId>,
    Path(master): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(query.as_deref()).unwrap_or_default();
    match pairs.as_slice() {
        [(name, id)] if name == "key_ID" => dec(&s, &sae.0, &master, std::slice::from_ref(id)),
        _ => bad("GET dec_keys takes exactly one key_ID query parameter"),
    }
}

/// Most query parameters a GET may carry (the spec allows two).
const MAX_QUERY_PAIRS: usize = 8;

/// `a=1&b=2` → pairs, percent-decoded (`+` is a space, as in forms);
/// `None` when there are more than [`MAX_QUERY_PAIRS`].
fn query_pairs(query: Option<&str>) -> Option<Vec<(String, String)>> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let parts: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .take(MAX_QUERY_PAIRS + 1)
        .collect();
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
            Some(vec![
                ("number".into(), "2".into()),
                ("size".into(), "256".into())
            ])
        );
        assert_eq!(
            query_pairs(Some("key_ID=a%2Db")),
            Some(vec![("key_ID".into(), "a-b".into())])
        );
        assert_eq!(query_pairs(None), Some(vec![]));
        assert_eq!(
            query_pairs(Some(&"x=1&".repeat(8))).map(|p| p.len()),
            Some(8)
        );
        assert_eq!(query_pairs(Some(&"x=1&".repeat(100))), None);
    }
}
