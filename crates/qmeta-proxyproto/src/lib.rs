//! PROXY protocol v1 and v2 (HAProxy `doc/proxy-protocol.txt`), inbound
//! side: parse the header a trusted proxy puts in front of a connection.
//!
//! What it is: a sans-IO decoder. [`parse`] takes the bytes received so far
//! and answers [`Parsed::Incomplete`] (read more), [`Parsed::Complete`]
//! (the header and how many bytes it used; the rest of the buffer is
//! application data) or a [`ProxyError`] (drop the connection). It never
//! reads a socket or a clock, never panics on peer input, and never looks
//! at more than [`V1_MAX_LEN`] (v1) or [`V2_MAX_LEN`] (v2) bytes, so a
//! caller can bound its read buffer by [`MAX_HEADER_LEN`]. [`TrustedPeers`]
//! is the CIDR list that decides whose headers are honoured;
//! [`encode_v1`] / [`encode_v2`] write headers for tests and tooling.
//!
//! What it is not: it does not decide *whether* a header is present. The
//! spec forbids guessing, so a listener is configured to expect one, and
//! the caller checks the peer against [`TrustedPeers`] before calling
//! [`parse`]. Only the outermost header is parsed; a second header behind
//! it is application data. It does not send PROXY headers to backends.
//!
//! Call order, per accepted connection on a PROXY-expecting listener:
//! 1. `if !trusted.contains(peer.ip())` → refuse the connection;
//! 2. read into a buffer of at most [`MAX_HEADER_LEN`] bytes and call
//!    [`parse`] after each read until it returns `Complete` or an error;
//! 3. use [`Header::client`] as the client address for every field and
//!    [`Header::proxied_for`] for the `proxied_for` field; hand
//!    `buf[consumed..]` to the TLS layer as the first bytes of the stream.
//!
//! ```
//! use qmeta_proxyproto::{encode_v2, parse, Command, Parsed, TrustedPeers};
//!
//! let trusted = TrustedPeers::parse(&["127.0.0.0/8".to_string()]).unwrap();
//! let peer = "127.0.0.1:40000".parse().unwrap();
//! assert!(trusted.contains("::ffff:127.0.0.1".parse().unwrap()));
//!
//! let client = "203.0.113.7:5555".parse().unwrap();
//! let mut wire = encode_v2(Command::Proxy, Some(client), Some("192.0.2.1:443".parse().unwrap()), &[]);
//! wire.extend_from_slice(&[0x16, 0x03, 0x01]); // the ClientHello follows
//!
//! assert_eq!(parse(&wire[..10]).unwrap(), Parsed::Incomplete { need_at_least: 16 });
//! let Parsed::Complete { header, consumed } = parse(&wire).unwrap() else { panic!() };
//! assert_eq!(header.client(peer), client);
//! assert_eq!(header.proxied_for(peer).unwrap(), "203.0.113.7:5555 via 127.0.0.1:40000");
//! assert_eq!(&wire[consumed..], &[0x16, 0x03, 0x01]);
//! ```
#![forbid(unsafe_code)]

mod crc32c;
mod error;
mod tlv;
mod trusted;
mod v1;
mod v2;

use std::fmt;
use std::net::SocketAddr;

pub use crc32c::crc32c;
pub use error::ProxyError;
pub use tlv::{ssl_sub, tlv_type, Tlv};
pub use trusted::TrustedPeers;
pub use v1::encode_v1;
pub use v2::encode_v2;

/// Longest v1 line, CRLF included (the spec's worst case, `PROXY UNKNOWN`
/// with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;

/// Shortest possible header: `PROXY UNKNOWN\r\n`.
pub const MIN_HEADER_LEN: usize = 15;

/// The 12-byte v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Largest v2 header accepted, the 16 fixed bytes included. The wire format
/// allows 16 + 65535; real senders stay far below (addresses plus a few
/// TLVs: HAProxy's largest is a few hundred bytes), and a bound this size
/// keeps the per-connection buffer small. Longer → [`ProxyError::TooLong`].
pub const V2_MAX_LEN: usize = 4096;

/// Largest header of either version: the read buffer a caller needs.
pub const MAX_HEADER_LEN: usize = V2_MAX_LEN;

/// Largest UNIQUE_ID TLV value the spec allows.
pub const UNIQUE_ID_MAX_LEN: usize = 128;

/// What the sending proxy says the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// v2 LOCAL: the proxy opened the connection itself (health check);
    /// the real socket endpoints apply.
    Local,
    /// Relayed on behalf of a client; the header's addresses apply when
    /// present (v1 `UNKNOWN` and v2 UNSPEC carry none).
    Proxy,
}

/// A parsed PROXY header.
///
/// `source` / `destination` are `None` for LOCAL, v1 `UNKNOWN`, v2 UNSPEC
/// and v2 UNIX (a Unix path is not a `SocketAddr`): the caller then uses
/// the real socket endpoints. `tlvs` is empty for v1 and for v2 headers
/// whose address block was skipped (LOCAL, UNSPEC).
///
/// `Debug` prints no addresses or TLV values (they are client metadata).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// 1 (text) or 2 (binary).
    pub version: u8,
    pub command: Command,
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    pub tlvs: Vec<Tlv>,
}

impl Header {
    /// The original client: the header's source when it has one, else the
    /// socket peer (`peer`).
    pub fn client(&self, peer: SocketAddr) -> SocketAddr {
        self.source.unwrap_or(peer)
    }

    /// The `proxied_for` field value, `"<client> via <peer>"` (e.g.
    /// `"203.0.113.7:5555 via 127.0.0.1:40000"`), or `None` when the header
    /// carries no source and the connection is therefore not proxied for
    /// anyone.
    pub fn proxied_for(&self, peer: SocketAddr) -> Option<String> {
        self.source.map(|src| format!("{src} via {peer}"))
    }

    /// The first ALPN TLV's value.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tlvs.iter().find_map(|t| match t {
            Tlv::Alpn(v) => Some(v.as_slice()),
            _ => None,
        })
    }

    /// The AUTHORITY TLV (the client's SNI when the proxy terminated TLS).
    pub fn authority(&self) -> Option<&str> {
        self.tlvs.iter().find_map(|t| match t {
            Tlv::Authority(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The UNIQUE_ID TLV.
    pub fn unique_id(&self) -> Option<&[u8]> {
        self.tlvs.iter().find_map(|t| match t {
            Tlv::UniqueId(v) => Some(v.as_slice()),
            _ => None,
        })
    }
}

impl fmt::Debug for Header {
    // Addresses and TLV values are client metadata: show only their shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = |a: &Option<SocketAddr>| match a {
            None => "none",
            Some(SocketAddr::V4(_)) => "<ipv4 redacted>",
            Some(SocketAddr::V6(_)) => "<ipv6 redacted>",
        };
        f.debug_struct("Header")
            .field("version", &self.version)
            .field("command", &self.command)
            .field("source", &format_args!("{}", shape(&self.source)))
            .field("destination", &format_args!("{}", shape(&self.destination)))
            .field("tlvs", &self.tlvs)
            .finish()
    }
}

/// Result of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet. `need_at_least` is a lower bound on the total
    /// buffer length (not the additional bytes) before the header can be
    /// complete; it never exceeds the header's real length, so reading up
    /// to it never reads application data the peer has not sent yet. For
    /// v2, once the 16 fixed bytes are in, it is the exact header length.
    Incomplete { need_at_least: usize },
    /// A valid header occupying `buf[..consumed]`.
    Complete { header: Header, consumed: usize },
}

/// Parses the PROXY header at the start of `buf` (v1 or v2, told apart by
/// the signature). Bytes after the header are ignored (they are the
/// application stream). Errors are final: drop the connection.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete { need_at_least: MIN_HEADER_LEN }),
        Some(&b'\r') => v2::parse(buf),
        Some(&b'P') => v1::parse(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_incomplete() {
        assert_eq!(parse(b"").unwrap(), Parsed::Incomplete { need_at_least: MIN_HEADER_LEN });
    }

    #[test]
    fn tls_and_http_are_not_proxy() {
        assert_eq!(parse(&[0x16, 0x03, 0x01]), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::NotProxy));
        // Starts with P but is HTTP, not a broken PROXY header.
        assert_eq!(parse(b"POST / HTTP/1.1\r\n"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PRI * HTTP/2.0\r\n"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn debug_redacts_addresses_and_values() {
        let header = Header {
            version: 2,
            command: Command::Proxy,
            source: Some("203.0.113.7:5555".parse().unwrap()),
            destination: Some("[2001:db8::1]:443".parse().unwrap()),
            tlvs: vec![Tlv::Authority("secret.example".into()), Tlv::UniqueId(b"uid-xyz".to_vec())],
        };
        let dbg = format!("{:?}", Parsed::Complete { header, consumed: 9 });
        for secret in ["203.0.113", "5555", "2001", "secret.example", "uid-xyz"] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
        assert!(dbg.contains("<ipv4 redacted>") && dbg.contains("<ipv6 redacted>"));
        assert!(dbg.contains("Authority"), "{dbg}");
    }

    #[test]
    fn client_and_proxied_for() {
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut header = Header {
            version: 1,
            command: Command::Proxy,
            source: Some("203.0.113.7:5555".parse().unwrap()),
            destination: Some("198.51.100.1:443".parse().unwrap()),
            tlvs: vec![],
        };
        assert_eq!(header.client(peer), "203.0.113.7:5555".parse().unwrap());
        assert_eq!(header.proxied_for(peer).as_deref(), Some("203.0.113.7:5555 via 127.0.0.1:40000"));
        header.source = None;
        assert_eq!(header.client(peer), peer);
        assert_eq!(header.proxied_for(peer), None);
    }
}
