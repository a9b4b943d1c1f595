//! ETSI GS QKD 014 client: an SAE talking to its KME over HTTPS with mutual
//! TLS.
//!
//! One TLS connection per call (HTTP/1.1 via hyper over tokio-rustls); the
//! KME certificate is checked against `ca` with server name `kme_id`; the
//! SAE presents its own certificate, whose CN is its SAE id. Every answer is
//! validated ([`crate::api::keys_from_enc`], [`crate::api::keys_from_dec`])
//! before a [`Key`] is handed out; each attempt is bounded by `timeout`.
//!
//! Retries: a retryable failure (503, 5xx, 408/429, timeout, connection or
//! non-certificate TLS failure) is retried within a small budget
//! ([`RetryPolicy`], default 3 attempts, 100 ms doubling to at most 1 s),
//! so a KME answering 503 in bursts is ridden through. `dec_keys` retries
//! only failures where the KME certainly delivered nothing (connect, TLS,
//! 503 …): after a timeout the key may already be delivered, and a strict
//! KME delivers once. 400/401 and invalid answers are never retried.

mod error;
pub use error::ClientError;

use crate::api::{self, ErrorBody, KeyContainer, KeyIds, KeyRequest, Status, ValidationError};
use crate::Key;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls_pki_types::ServerName;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Reads a `[kme]` table (`url`, `kme_id`, `ca`, `cert`, `key`, optional
/// `timeout`, default 5 s) into a client config, recording every error
/// against its key. Shared by the LB, the agent and the sample backend.
pub fn read_config_section(t: &qmeta_config::Section) -> Option<KmeClientConfig> {
    let url = t.str("url");
    if let Some(u) = &url {
        if !u.starts_with("https://") {
            t.error("url", format!("expected an https:// URL (ETSI GS QKD 014 requires TLS), found {u:?}"));
        }
    }
    let kme_id = t.str("kme_id");
    if kme_id.as_deref().is_some_and(|v| v.trim().is_empty()) {
        t.error("kme_id", "must not be empty");
    }
    let ca = t.path("ca", true);
    let cert = t.path("cert", true);
    let key = t.path("key", true);
    let timeout = t.opt_duration("timeout").unwrap_or(Duration::from_secs(5));
    if timeout.is_zero() {
        t.error("timeout", "must be greater than zero");
    }
    t.deny_unknown();
    Some(KmeClientConfig {
        url: url?,
        kme_id: kme_id.filter(|v| !v.trim().is_empty())?,
        ca: ca?,
        cert: cert?,
        key: key?,
        timeout,
    })
}

/// Where the KME is and which credentials the SAE uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmeClientConfig {
    /// Base URL, e.g. `https://127.0.0.1:8443` (a path prefix is kept).
    pub url: String,
    /// DNS name (or IP) expected in the KME's certificate.
    pub kme_id: String,
    /// CA certificate(s) the KME certificate must chain to (PEM).
    pub ca: PathBuf,
    /// The SAE's certificate (PEM); its CN is the SAE id.
    pub cert: PathBuf,
    /// The SAE's private key (PEM).
    pub key: PathBuf,
    /// Upper bound on each call (connect + TLS + request + response).
    pub timeout: Duration,
}

/// How failed calls are retried inside one client call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubles for each further one.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 3, first_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// No retry: each call makes one attempt.
    pub fn none() -> RetryPolicy {
        RetryPolicy { attempts: 1, ..RetryPolicy::default() }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.first_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_backoff)
    }
}

/// Most attempts a [`RetryPolicy`] may ask for.
pub const MAX_ATTEMPTS: u32 = 10;

/// An ETSI GS QKD 014 client. Cheap to clone (shares one TLS config).
#[derive(Clone)]
pub struct KmeClient {
    inner: Arc<Inner>,
    retry: RetryPolicy,
}

struct Inner {
    url: String,
    host: String,
    port: u16,
    authority: String,
    base_path: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    sae_id: String,
    timeout: Duration,
}

impl fmt::Debug for KmeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmeClient").field("url", &self.inner.url).field("sae_id", &self.inner.sae_id).finish()
    }
}

impl KmeClient {
    /// Loads the credentials and checks the URL; makes no connection.
    pub fn new(cfg: KmeClientConfig) -> Result<KmeClient, ClientError> {
        let invalid = |reason: String| ClientError::InvalidConfig { reason };
        let uri: hyper::Uri = cfg.url.parse().map_err(|e| invalid(format!("url {:?}: {e}", cfg.url)))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid(format!("url {:?}: scheme must be https", cfg.url)));
        }
        let authority = uri.authority().ok_or_else(|| invalid(format!("url {:?}: no host", cfg.url)))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(443);
        if uri.query().is_some() {
            return Err(invalid(format!("url {:?}: must not have a query", cfg.url)));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let server_name = ServerName::try_from(cfg.kme_id.clone())
            .map_err(|_| invalid(format!("kme_id {:?} is not a DNS name or IP address", cfg.kme_id)))?;
        let mut tls =
            qmeta_pki::client_config(&cfg.ca, Some((&cfg.cert, &cfg.key))).map_err(ClientError::Credentials)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let certs = qmeta_pki::load_certs(&cfg.cert).map_err(ClientError::Credentials)?;
        let sae_id = qmeta_pki::common_name(&certs[0])
            .ok_or_else(|| invalid(format!("{}: certificate has no subject CN (the SAE id)", cfg.cert.display())))?;
        Ok(KmeClient {
            inner: Arc::new(Inner {
                url: cfg.url.trim_end_matches('/').to_string(),
                host,
                port,
                authority: authority.as_str().to_string(),
                base_path,
                server_name,
                tls: TlsConnector::from(Arc::new(tls)),
                sae_id,
                timeout: cfg.timeout,
            }),
            retry: RetryPolicy::default(),
        })
    }

    /// The same client with another retry policy (attempts clamped to
    /// 1..=[`MAX_ATTEMPTS`]).
    pub fn with_retry(mut self, mut retry: RetryPolicy) -> KmeClient {
        retry.attempts = retry.attempts.clamp(1, MAX_ATTEMPTS);
        self.retry = retry;
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// This SAE's id: the CN of its certificate, as the KME will see it.
    pub fn sae_id(&self) -> &str {
        &self.inner.sae_id
    }

    /// The KME base URL (for logs).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// `GET /api/v1/keys/{slave}/status`.
    pub async fn status(&self, slave_sae: &str) -> Result<Status, ClientError> {
        let call = "status";
        let body = self.call(call, Method::GET, &self.path(slave_sae, "status"), None).await?;
        serde_json::from_slice(&body).map_err(|e| self.invalid(call, e))
    }

    /// `POST /api/v1/keys/{slave}/enc_keys`: `number` new keys of
    /// `size_bits` bits, shared with `slave_sae`.
    pub async fn enc_keys(&self, slave_sae: &str, number: u32, size_bits: u32) -> Result<Vec<Key>, ClientError> {
        let call = "enc_keys";
        self.check_enc_args(call, number, size_bits)?;
        let req = KeyRequest { number: Some(number), size: Some(size_bits), ..KeyRequest::default() };
        let container = self.request_keys(slave_sae, &req).await?;
        api::keys_from_enc(container, number, size_bits).map_err(|source| self.validation(call, source))
    }

    /// `GET /api/v1/keys/{slave}/enc_keys?number=..&size=..` (the spec's GET
    /// form); validated like [`KmeClient::enc_keys`].
    pub async fn enc_keys_get(&self, slave_sae: &str, number: u32, size_bits: u32) -> Result<Vec<Key>, ClientError> {
        let call = "enc_keys";
        self.check_enc_args(call, number, size_bits)?;
        let path = format!("{}?number={number}&size={size_bits}", self.path(slave_sae, "enc_keys"));
        let body = self.call(call, Method::GET, &path, None).await?;
        let container: KeyContainer = serde_json::from_slice(&body).map_err(|e| self.invalid(call, e))?;
        api::keys_from_enc(container, number, size_bits).map_err(|source| self.validation(call, source))
    }

    /// `POST .../enc_keys` with any request body, answer not validated
    /// beyond its JSON shape: for extensions and conformance tests.
    pub async fn request_keys(&self, slave_sae: &str, req: &KeyRequest) -> Result<KeyContainer, ClientError> {
        let call = "enc_keys";
        let json = serde_json::to_vec(req).map_err(|e| self.invalid(call, e))?;
        let body = self.call(call, Method::POST, &self.path(slave_sae, "enc_keys"), Some(json)).await?;
        serde_json::from_slice(&body).map_err(|e| self.invalid(call, e))
    }

    /// `POST /api/v1/keys/{master}/dec_keys`: the keys `master_sae` obtained
    /// for this SAE, exactly the ids asked, in that order.
    pub async fn dec_keys(&self, master_sae: &str, ids: &[Uuid]) -> Result<Vec<Key>, ClientError> {
        let call = "dec_keys";
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        if ids.is_empty() || ids.len() > api::MAX_KEYS_PER_CALL as usize || distinct.len() != ids.len() {
            return Err(self.argument(call, "key ids must be 1..=4096 distinct ids".into()));
        }
        let json = serde_json::to_vec(&KeyIds::from_ids(ids)).map_err(|e| self.invalid(call, e))?;
        let body = self.call(call, Method::POST, &self.path(master_sae, "dec_keys"), Some(json)).await?;
        let container: KeyContainer = serde_json::from_slice(&body).map_err(|e| self.invalid(call, e))?;
        api::keys_from_dec(container, ids).map_err(|source| self.validation(call, source))
    }

    /// `GET /api/v1/keys/{master}/dec_keys?key_ID=..` (one key).
    pub async fn dec_key_get(&self, master_sae: &str, id: Uuid) -> Result<Key, ClientError> {
        let call = "dec_keys";
        let path = format!("{}?key_ID={id}", self.path(master_sae, "dec_keys"));
        let body = self.call(call, Method::GET, &path, None).await?;
        let container: KeyContainer = serde_json::from_slice(&body).map_err(|e| self.invalid(call, e))?;
        let mut keys = api::keys_from_dec(container, &[id]).map_err(|source| self.validation(call, source))?;
        Ok(keys.remove(0))
    }

    fn check_enc_args(&self, call: &'static str, number: u32, size_bits: u32) -> Result<(), ClientError> {
        if number == 0 || number > api::MAX_KEYS_PER_CALL {
            return Err(self.argument(call, format!("number {number} not in 1..={}", api::MAX_KEYS_PER_CALL)));
        }
        if size_bits == 0 || size_bits % 8 != 0 || size_bits > api::MAX_KEY_BITS {
            return Err(self.argument(call, format!("size {size_bits} bits is not a multiple of 8 in 8..=65536")));
        }
        Ok(())
    }

    fn path(&self, sae: &str, endpoint: &str) -> String {
        format!("{}/api/v1/keys/{}/{endpoint}", self.inner.base_path, utf8_percent_encode(sae, SEGMENT))
    }

    fn argument(&self, call: &'static str, reason: String) -> ClientError {
        ClientError::InvalidArgument { url: self.inner.url.clone(), call, reason }
    }

    fn invalid(&self, call: &'static str, e: serde_json::Error) -> ClientError {
        // serde_json's message names the position and expected type, never the input.
        ClientError::InvalidResponse { url: self.inner.url.clone(), call, reason: e.to_string() }
    }

    fn validation(&self, call: &'static str, source: ValidationError) -> ClientError {
        ClientError::Validation { url: self.inner.url.clone(), call, source }
    }

    /// [`KmeClient::call_once`] with retries of retryable failures.
    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut attempt = 1;
        loop {
            let err = match self.call_once(call, method.clone(), path, body.clone()).await {
                Ok(b) => return Ok(b),
                Err(e) => e,
            };
            if !should_retry(call, &err) || attempt >= self.retry.attempts {
                return Err(err);
            }
            tracing::debug!(url = %self.inner.url, call, attempt, error = %err, "KME call failed; retrying");
            tokio::time::sleep(self.retry.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One request on a fresh connection, bounded by the timeout; returns
    /// the body of a 200 answer (zeroized on drop: it holds key text).
    async fn call_once(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let url = || self.inner.url.clone();
        let (status, body) = tokio::time::timeout(self.inner.timeout, self.exchange(call, method, path, body))
            .await
            .map_err(|_| ClientError::Timeout { url: url(), call, after: self.inner.timeout })??;
        let message = || ErrorBody::message_of(&body).unwrap_or_default();
        match status {
            StatusCode::OK => Ok(body),
            StatusCode::BAD_REQUEST => Err(ClientError::BadRequest { url: url(), call, message: message() }),
            StatusCode::UNAUTHORIZED => Err(ClientError::Unauthorized { url: url(), call }),
            StatusCode::SERVICE_UNAVAILABLE => Err(ClientError::Unavailable { url: url(), call, message: message() }),
            other => {
                Err(ClientError::UnexpectedStatus { url: url(), call, status: other.as_u16(), message: message() })
            }
        }
    }

    async fn exchange(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), ClientError> {
        let inner = &self.inner;
        let url = || inner.url.clone();
        let http = |reason: String| ClientError::Http { url: url(), call, reason };
        let tcp = TcpStream::connect((inner.host.as_str(), inner.port))
            .await
            .map_err(|source| ClientError::Connect { url: url(), call, source })?;
        let _ = tcp.set_nodelay(true);
        let tls = inner.tls.connect(inner.server_name.clone(), tcp).await.map_err(|source| ClientError::Tls {
            url: url(),
            call,
            source,
        })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| http(e.to_string()))?;
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, inner.authority.as_str())
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http(format!("building request: {e}")))?;
        let resp = sender.send_request(req).await.map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let collected = Limited::new(resp.into_body(), api::MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| http(format!("reading body: {e}")))?;
        Ok((status, Zeroizing::new(Vec::from(collected.to_bytes()))))
    }
}

/// Whether a failed call may be repeated. A dec_keys may have been
/// delivered before a timeout or a broken answer: retrying it would only
/// meet "not found", so only failures before delivery are retried.
fn should_retry(call: &str, err: &ClientError) -> bool {
    let ambiguous = matches!(err, ClientError::Timeout { .. } | ClientError::Http { .. });
    err.is_retryable() && !(call == "dec_keys" && ambiguous)
}

/// Stops the connection task when the call ends or is cancelled by the timeout.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sae_ids_are_percent_encoded() {
        let enc = utf8_percent_encode("sae a/b?c", SEGMENT).to_string();
        assert_eq!(enc, "sae%20a%2Fb%3Fc");
        assert_eq!(utf8_percent_encode("sae-lb_1.x~", SEGMENT).to_string(), "sae-lb_1.x~");
    }

    #[test]
    fn dec_keys_retries_only_unambiguous_failures() {
        let timeout = || ClientError::Timeout { url: "u".into(), call: "x", after: Duration::from_secs(1) };
        let busy = || ClientError::Unavailable { url: "u".into(), call: "x", message: String::new() };
        let refused = || ClientError::Connect {
            url: "u".into(),
            call: "x",
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let bad = ClientError::BadRequest { url: "u".into(), call: "x", message: String::new() };
        assert!(should_retry("enc_keys", &timeout()));
        assert!(!should_retry("dec_keys", &timeout()));
        assert!(should_retry("dec_keys", &busy()));
        assert!(should_retry("dec_keys", &refused()));
        assert!(!should_retry("enc_keys", &bad));
    }

    #[test]
    fn retry_backoff_is_bounded() {
        let r = RetryPolicy::default();
        assert_eq!(r.backoff(1), Duration::from_millis(100));
        assert_eq!(r.backoff(2), Duration::from_millis(200));
        assert_eq!(r.backoff(30), Duration::from_secs(1));
        assert_eq!(RetryPolicy::none().attempts, 1);
    }
}
