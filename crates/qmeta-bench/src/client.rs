//! The load generator's TLS client: one shared config with resumption
//! disabled (so every connection is a full handshake, unlike wrk), and the
//! connect → handshake → one request → read to the end → close exchange.

use crate::http::{self, HeadError};
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::kx_group;
use rustls::{ClientConfig, HandshakeKind};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Key exchange offered to the proxy (HAProxy 2.6 on OpenSSL 3.0 has no
/// ML-KEM, so the side-by-side runs use X25519 for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kx {
    X25519,
    P256,
    /// X25519MLKEM768 hybrid, falling back to X25519.
    Hybrid,
}

/// TLS 1.3 only, one key-exchange group, no resumption, ALPN http/1.1.
pub fn tls_config(ca: &Path, kx: Kx) -> anyhow::Result<Arc<ClientConfig>> {
    let mut provider = (*qmeta_pki::provider()).clone();
    provider.kx_groups = match kx {
        Kx::X25519 => vec![kx_group::X25519],
        Kx::P256 => vec![kx_group::SECP256R1],
        Kx::Hybrid => vec![kx_group::X25519MLKEM768, kx_group::X25519],
    };
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(qmeta_pki::root_store(ca)?)
        .with_no_client_auth();
    // wrk and most tools resume; a proxy that only sees resumptions skips
    // the expensive half of its work.
    cfg.resumption = Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub connector: TlsConnector,
    pub timeout: Duration,
}

/// One completed exchange.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// Response body bytes received.
    pub body_bytes: u64,
    /// The handshake was a resumption (must never happen: counted to prove it).
    pub resumed: bool,
    /// The server asked for another key share (HelloRetryRequest).
    pub retried: bool,
    /// Connect to end of handshake.
    pub handshake: Duration,
}

impl Target {
    /// TCP connect and full TLS handshake.
    pub async fn open(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let fut = async {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            let tls = self.connector.connect(self.server_name.clone(), tcp).await?;
            anyhow::Ok(tls)
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| anyhow::anyhow!("handshake timed out"))?
    }

    /// Connect, handshake, send `req`, read the whole response, close.
    /// `buf` is the caller's read buffer (reused across exchanges).
    pub async fn exchange(&self, req: &[u8], buf: &mut Vec<u8>) -> anyhow::Result<Exchange> {
        let start = Instant::now();
        let mut tls = self.open().await?;
        let handshake = start.elapsed();
        let kind = tls.get_ref().1.handshake_kind();
        let fut = async {
            tls.write_all(req).await?;
            tls.flush().await?;
            read_response(&mut tls, buf).await
        };
        let body_bytes =
            tokio::time::timeout(self.timeout, fut).await.map_err(|_| anyhow::anyhow!("response timed out"))??;
        Ok(Exchange {
            body_bytes,
            resumed: kind == Some(HandshakeKind::Resumed),
            retried: kind == Some(HandshakeKind::FullWithHelloRetryRequest),
            handshake,
        })
    }
}

/// Reads a `Connection: close` response to its end; returns the body length.
/// Only the head is kept in `buf`; the body is counted, not stored.
async fn read_response(tls: &mut TlsStream<TcpStream>, buf: &mut Vec<u8>) -> anyhow::Result<u64> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head = loop {
        let n = match tls.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => anyhow::bail!("reading the response head: {e}"),
        };
        if n == 0 {
            anyhow::bail!("connection closed before the response head");
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_head(buf) {
            Ok(h) => break h,
            Err(HeadError::Incomplete) => continue,
            Err(HeadError::Invalid) => anyhow::bail!("not an HTTP/1.1 response"),
        }
    };
    anyhow::ensure!(head.status == 200, "status {}", head.status);
    let mut body = (buf.len() - head.head_len) as u64;
    loop {
        if head.content_length.is_some_and(|l| body >= l) {
            break;
        }
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => body += n as u64,
            // A peer that closes without close_notify after the whole body
            // is fine for us; anything short of the body is not.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => anyhow::bail!("reading the body: {e}"),
        }
    }
    if let Some(l) = head.content_length {
        anyhow::ensure!(body == l, "body {body} bytes, expected {l}");
    }
    let _ = tls.shutdown().await;
    Ok(body)
}
