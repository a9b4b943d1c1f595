//! The sample backend: an HTTP/1.1 server over TLS that requires the LB's
//! client certificate and answers every request with the metadata of the
//! connection it came on, as JSON. Used by `qmeta demo`, `qmeta backend`
//! and the end-to-end tests; also the reference for wiring the SDK into a
//! real server.
//!
//! Per TLS connection it reads the metadata once, before serving requests
//! (the certificate, and so the metadata, cannot change on a connection),
//! then answers each request with
//! `200 {"backend": name, "path": "/…", "metadata": {…}, "echo_headers": {…}}`,
//! or `502 {"backend": name, "path": "/…", "error": "…", "retryable": bool,
//! "echo_headers": {…}}` when the metadata could not be read.
//! `echo_headers` maps each request header name (lowercase) to its values,
//! so tests can see exactly what the LB forwarded.

mod config;

pub use config::load_config;

use crate::{server_config, MetadataReader, SdkError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use qmeta_qkd::cache::DecKeyCache;
use qmeta_qkd::client::{KmeClient, KmeClientConfig};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How many QKD keys the backend keeps (one per key id; the LB rotates
/// about once a minute, so this covers hours of certificates).
pub const KEY_CACHE_CAPACITY: usize = 1024;
/// A peer that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request whose headers have not arrived by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the sample backend needs. [`load_config`] reads it from TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleBackendConfig {
    /// Reported in every answer, so a test can tell backends apart.
    pub name: String,
    pub listen: SocketAddr,
    /// This backend's own server certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs the LB's per-connection certificates (PEM).
    pub lb_ca: PathBuf,
    /// This backend's own KME, reached with this backend's SAE credentials.
    pub kme: KmeClientConfig,
    /// The LB's SAE id: the master SAE that fetched the keys with enc_keys.
    pub lb_sae_id: String,
}

/// A running sample backend. Dropping it stops the server too;
/// [`SampleBackend::shutdown`] also waits until it has stopped.
pub struct SampleBackend {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SampleBackend {
    /// The bound address (useful when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes open connections and waits for the server
    /// task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Shared {
    name: String,
    reader: MetadataReader,
    acceptor: TlsAcceptor,
}

/// Loads credentials, builds the KME client, binds `cfg.listen` now and
/// serves in a spawned task.
pub async fn start(cfg: SampleBackendConfig) -> Result<SampleBackend, SdkError> {
    let tls = server_config(&cfg.cert, &cfg.key, &cfg.lb_ca, &[b"http/1.1"])?;
    let client = KmeClient::new(cfg.kme).map_err(SdkError::KmeClient)?;
    let reader = MetadataReader::new(DecKeyCache::new(client, cfg.lb_sae_id, KEY_CACHE_CAPACITY));
    let bind_err = |source| SdkError::Bind { addr: cfg.listen, source };
    let listener = TcpListener::bind(cfg.listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let shared = Arc::new(Shared { name: cfg.name, reader, acceptor: TlsAcceptor::from(Arc::new(tls)) });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, shared, stopped));
    tracing::info!(%addr, "sample backend listening");
    Ok(SampleBackend { addr, stop, task })
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Fires on an explicit stop and when the handle is dropped.
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    conns.spawn(connection(tcp, peer, shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// The outcome of reading a connection's metadata, shared by its requests.
enum Answer {
    Metadata(Value),
    Error { reason: String, retryable: bool },
}

async fn connection(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // Expected for anyone without an LB certificate: not worth a warning.
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let read = {
        let certs = tls.get_ref().1.peer_certificates().unwrap_or(&[]);
        shared.reader.read(certs).await
    };
    let answer = Arc::new(match read {
        Ok(m) => {
            tracing::debug!(backend = %shared.name, %peer, serial = %m.serial_hex, "metadata read");
            Answer::Metadata(m.to_json())
        }
        Err(e) => {
            // SdkError messages carry no values or key bytes, so they can be logged and sent.
            tracing::warn!(backend = %shared.name, %peer, error = %e, retryable = e.is_retryable(),
                "cannot read LB metadata; answering 502");
            // The client of the LB sees this answer: a short category only;
            // the details (KME address, key id) stay in the backend's log.
            Answer::Error { reason: public_reason(&e).to_string(), retryable: e.is_retryable() }
        }
    });
    let name = shared.name.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(&name, req.uri().path(), req.headers(), &answer);
        async move { Ok::<_, Infallible>(response) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), svc)
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn respond(name: &str, path: &str, headers: &hyper::HeaderMap, answer: &Answer) -> Response<Full<Bytes>> {
    let mut echo = serde_json::Map::new();
    for key in headers.keys() {
        let values: Vec<Value> =
            headers.get_all(key).iter().map(|v| Value::from(String::from_utf8_lossy(v.as_bytes()))).collect();
        echo.insert(key.as_str().to_string(), Value::Array(values));
    }
    let (status, body) = match answer {
        Answer::Metadata(m) => {
            (StatusCode::OK, json!({"backend": name, "path": path, "metadata": m, "echo_headers": echo}))
        }
        Answer::Error { reason, retryable } => (
            StatusCode::BAD_GATEWAY,
            json!({"backend": name, "path": path, "error": reason, "retryable": retryable, "echo_headers": echo}),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What the sample backend tells the (untrusted) client about a failure.
fn public_reason(e: &SdkError) -> &'static str {
    match e {
        SdkError::NotQmeta(_) => "not a qmeta LB certificate",
        SdkError::Key { .. } => "the metadata key could not be fetched from the KME",
        SdkError::Open(_) => "metadata fields failed to authenticate",
        SdkError::NoClientCertificate => "no client certificate",
        _ => "cannot read LB metadata",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(r: Response<Full<Bytes>>) -> Value {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn ok_answer_shape() {
        let mut h = hyper::HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let r = respond("b1", "/x", &h, &Answer::Metadata(json!({"serial": "ab"})));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(r).await,
            json!({"backend": "b1", "path": "/x", "metadata": {"serial": "ab"}, "echo_headers": {"x-a": ["1", "2"]}})
        );
    }

    #[tokio::test]
    async fn error_answer_shape() {
        let a = Answer::Error { reason: "not a qmeta LB certificate".into(), retryable: false };
        let r = respond("b1", "/", &hyper::HeaderMap::new(), &a);
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(r).await,
            json!({"backend": "b1", "path": "/", "error": "not a qmeta LB certificate", "retryable": false,
                "echo_headers": {}})
        );
    }
}
