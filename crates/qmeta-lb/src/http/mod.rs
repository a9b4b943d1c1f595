//! HTTP mode (`[listen] mode = "http"`): the client connection is served
//! with hyper (HTTP/1.1 or HTTP/2, by ALPN) and every request is forwarded
//! over an upstream connection whose certificate carries that request's
//! field values (connection facts plus host, user agent, accept-language
//! and configured header fields, for the scope the request's SNI and path
//! select).
//!
//! Each client connection owns at most one upstream connection, never
//! shared with another client: a request whose values equal those of the
//! current upstream connection reuses it; one whose values differ replaces
//! it with a new connection and a new certificate. The request timestamp
//! field is the client connection's accept time, so it does not by itself
//! force a new upstream connection per request.
//!
//! Upstream speaks HTTP/1.1 (offered by ALPN), which every backend serves.

#[cfg(test)]
mod config_tests;
mod headers;

pub(crate) use headers::is_stripped;

use crate::facts::ConnFacts;
use crate::proxy::Values;
use crate::runtime::{Generation, Shared};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

type Body = BoxBody<Bytes, hyper::Error>;

/// Bounds on one request head from a client (hyper answers 431 beyond them).
const MAX_HEADERS: usize = 100;
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The upstream protocol offered to backends.
const UPSTREAM_ALPN: &[u8] = b"http/1.1";

/// One client connection's state.
struct Conn {
    shared: Arc<Shared>,
    gen: Arc<Generation>,
    facts: ConnFacts,
    hash_ip: IpAddr,
    /// The one upstream connection of this client connection. Held across
    /// a request's send so two multiplexed HTTP/2 requests never race to
    /// replace it.
    upstream: tokio::sync::Mutex<Option<Upstream>>,
}

struct Upstream {
    backend: usize,
    values: Values,
    sender: SendRequest<Incoming>,
}

/// Serves one TLS-terminated client connection until it closes.
pub(crate) async fn serve_client<S>(
    shared: Arc<Shared>,
    gen: Arc<Generation>,
    client: S,
    facts: ConnFacts,
    hash_ip: IpAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_id = facts.conn_id;
    let idle = gen.cfg.listen.handshake_timeout;
    let idle_timeout = gen.cfg.upstream.idle_timeout;
    let max_total = gen.cfg.listen.max_connection_duration;
    let conn = Arc::new(Conn { shared, gen, facts, hash_ip, upstream: tokio::sync::Mutex::new(None) });
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.forward(req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Header limits bound what a client can make us buffer; a client that
    // sends no complete request head for `idle` is dropped.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(64).max_header_list_size(MAX_HEAD_BYTES as u32);
    // Idle: no bytes either way for upstream.idle_timeout (HTTP/2 clients
    // holding an empty connection included); total: max_connection_duration.
    let activity = crate::activity::Activity::new();
    let client = crate::activity::Tracked::new(client, activity.clone());
    let served = builder.serve_connection(TokioIo::new(client), svc);
    let total = max_duration(&max_total);
    tokio::select! {
        r = served => if let Err(e) = r {
            tracing::debug!(conn_id, "HTTP connection ended: {e}");
        },
        _ = activity.idle_for(idle_timeout) => tracing::debug!(conn_id, "HTTP connection idle: closed"),
        _ = total => tracing::debug!(conn_id, "HTTP connection reached max_connection_duration: closed"),
    }
}

impl Conn {
    async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        let conn_id = self.facts.conn_id;
        let cfg = &self.gen.cfg;
        if req.method() == hyper::Method::CONNECT {
            // Tunnels would carry bytes the certificate says nothing about.
            return error(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported");
        }
        let rf = headers::request_facts(&req, &cfg.http);
        if !normal_path(&rf.path) {
            // Route scopes match on the path: a client must not be able to
            // pick another route's field set with `..`, `//` or %-escapes
            // that a backend would normalise away.
            return error(StatusCode::BAD_REQUEST, "request path is not in normal form");
        }
        headers::rewrite_request(&mut req, &cfg.http, self.facts.peer.ip());
        let mut slot = self.upstream.lock().await;
        if let Some(up) = slot.as_ref() {
            let backend = &self.gen.backends[up.backend];
            let fields = {
                let ep = backend.endpoint.lock().unwrap_or_else(|e| e.into_inner());
                ep.state()
                    .fields_for_request(self.facts.sni.as_deref(), Some(&rf.path))
                    .intersection(&backend.cfg.allowed_fields)
            };
            let values = self.facts.request_values(&fields, &cfg.node_id, &cfg.custom_fields, Some(&rf));
            if values != up.values || up.sender.is_closed() {
                // Different facts need a different certificate: a new connection.
                *slot = None;
            }
        }
        if slot.is_none() {
            let opened = crate::proxy::open_upstream(
                &self.shared,
                &self.gen,
                &self.facts,
                Some(UPSTREAM_ALPN),
                Some(&rf),
                self.hash_ip,
            )
            .await;
            let Some((backend, tls, values)) = opened else {
                return error(StatusCode::BAD_GATEWAY, "no backend available");
            };
            let index = self.gen.backends.iter().position(|b| std::ptr::eq(b, backend)).unwrap_or(0);
            let (sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(conn_id, backend = %backend.cfg.name, "upstream HTTP setup failed: {e}");
                    return error(StatusCode::BAD_GATEWAY, "backend connection failed");
                }
            };
            let metrics = backend.metrics.clone();
            metrics.connections.fetch_add(1, Ordering::Relaxed);
            metrics.active.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                // Ends when the sender is dropped (values changed, client gone) and the last response is done.
                if let Err(e) = connection.await {
                    tracing::debug!(conn_id, "upstream connection ended: {e}");
                }
                metrics.active.fetch_sub(1, Ordering::Relaxed);
            });
            tracing::debug!(conn_id, backend = %backend.cfg.name, "new upstream connection");
            *slot = Some(Upstream { backend: index, values, sender });
        }
        let Some(up) = slot.as_mut() else {
            return error(StatusCode::BAD_GATEWAY, "no backend available");
        };
        if up.sender.ready().await.is_err() {
            *slot = None;
            return error(StatusCode::BAD_GATEWAY, "backend connection closed");
        }
        let sent = up.sender.send_request(req).await;
        drop(slot);
        match sent {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                headers::remove_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => {
                tracing::info!(conn_id, "upstream request failed: {e}");
                error(StatusCode::BAD_GATEWAY, "backend request failed")
            }
        }
    }
}

fn error(status: StatusCode, text: &'static str) -> Response<Body> {
    let body = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    r
}

/// Sleeps for `d`, or forever when it is zero (no limit).
pub(crate) async fn max_duration(d: &std::time::Duration) {
    if d.is_zero() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(*d).await;
}

/// True for a path without dot segments, empty segments or %-escaped
/// unreserved characters (RFC 3986 §6.2.2), i.e. one a backend will not
/// rewrite into a different route.
fn normal_path(path: &str) -> bool {
    let segments_ok = path.split('/').skip(1).enumerate().all(|(i, seg)| {
        let last = i + 2 == path.split('/').count();
        seg != "." && seg != ".." && (!seg.is_empty() || last)
    });
    let bytes = path.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        if b != b'%' {
            return true;
        }
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            (Some(h), Some(l)) => {
                let c = (h * 16 + l) as u8;
                !(c.is_ascii_alphanumeric() || b"-._~".contains(&c))
            }
            _ => false,
        }
    });
    path.starts_with('/') && segments_ok && escapes_ok
}

#[cfg(test)]
mod path_tests {
    use super::normal_path;

    #[test]
    fn only_normal_paths_pass() {
        for ok in ["/", "/api", "/api/", "/api/admin", "/a%2Fb", "/caf%C3%A9", "/x?y=../z"] {
            assert!(normal_path(ok.split('?').next().unwrap()), "{ok}");
        }
        for bad in
            ["//api", "/./api", "/x/../api", "/api/..", "/api/.", "/%61pi", "/api//admin", "/a%2", "/a%zz", "api"]
        {
            assert!(!normal_path(bad), "{bad}");
        }
    }
}
