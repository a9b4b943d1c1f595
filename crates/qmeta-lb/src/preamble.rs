//! What the LB reads off a client socket before TLS: an optional PROXY
//! protocol header (only from trusted peers, only when the listener expects
//! one) and the raw ClientHello, for the JA4/JA3 fingerprints.
//!
//! Both parsers are sans-IO and bounded; this module only moves bytes. The
//! bytes read past the PROXY header are replayed to rustls.

use qmeta_hello::{Capture, ClientHello};
use qmeta_proxyproto::{Header, Parsed};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub(crate) struct Preamble {
    pub proxy: Option<Header>,
    pub hello: Option<ClientHello>,
    /// Bytes read after the PROXY header, to hand to rustls.
    pub replay: Vec<u8>,
}

/// Why the preamble was refused. Never contains peer bytes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PreambleError {
    #[error("PROXY protocol header: {0}")]
    Proxy(qmeta_proxyproto::ProxyError),
    #[error("connection closed before the {0} was complete")]
    Closed(&'static str),
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) async fn read(tcp: &mut TcpStream, expect_proxy: bool) -> Result<Preamble, PreambleError> {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let mut proxy = None;
    if expect_proxy {
        loop {
            match qmeta_proxyproto::parse(&buf) {
                Ok(Parsed::Complete { header, consumed }) => {
                    buf.drain(..consumed);
                    proxy = Some(header);
                    break;
                }
                Ok(Parsed::Incomplete { .. }) => {}
                Err(e) => return Err(PreambleError::Proxy(e)),
            }
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(PreambleError::Closed("PROXY header"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let hello = loop {
        match qmeta_hello::capture(&buf) {
            Ok(Capture::Complete { hello, .. }) => break Some(hello),
            Ok(Capture::Incomplete { .. }) => {}
            // Not a hello we can fingerprint: rustls will refuse it and say why.
            Err(_) => break None,
        }
        if buf.len() >= qmeta_hello::MAX_RECORDS_LEN {
            break None;
        }
        let room = (qmeta_hello::MAX_RECORDS_LEN - buf.len()).min(chunk.len());
        let n = tcp.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(PreambleError::Closed("ClientHello"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    Ok(Preamble { proxy, hello, replay: buf })
}
