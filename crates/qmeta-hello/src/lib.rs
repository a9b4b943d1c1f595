//! ClientHello capture, parsing and TLS client fingerprints (JA4, JA4_r,
//! JA3) — sans-IO.
//!
//! The load balancer reads the first bytes a client sends *before* rustls
//! sees them, because rustls' `ClientHello` view does not expose what JA4
//! needs (extension order, GREASE, raw lists). This crate turns those bytes
//! into a [`ClientHello`] and its fingerprints.
//!
//! What it is not: it does no I/O, reads no clock, keeps no state between
//! calls and never terminates TLS. It does not validate anything the TLS
//! stack will validate again (key shares, PSK binders, cipher support); it
//! only checks the structure it needs and rejects what is malformed.
//!
//! Call order, driven by the caller's read loop:
//! 1. read bytes from the socket into a buffer;
//! 2. call [`capture`] with *all* bytes read so far;
//!    - [`Capture::Incomplete`]: read more (at least until the buffer holds
//!      `need_at_least` bytes) and call again;
//!    - [`Capture::Complete`]: the hello is parsed; the first
//!      `consumed_records_len` bytes are the records that carried it;
//!    - `Err(`[`HelloError`]`)`: close the connection (or, for
//!      [`HelloError::NotHandshake`], answer as a non-TLS listener would);
//! 3. compute [`ClientHello::ja4`] / [`ClientHello::ja3`] as needed;
//! 4. hand every byte read so far (not only the consumed records) to the
//!    TLS stack, which parses the hello again for itself.
//!
//! Bounds: the reassembled handshake message is at most [`MAX_HELLO_LEN`]
//! bytes and the records carrying it at most [`MAX_RECORDS_LEN`] bytes, so
//! the caller's buffer never needs to grow past [`MAX_RECORDS_LEN`].
//!
//! Privacy: the SNI, ALPN and fingerprints are client metadata. The `Debug`
//! output of [`ClientHello`] shows only counts, and error messages never
//! carry bytes from the peer.
#![forbid(unsafe_code)]

mod capture;
mod fingerprint;
mod hello;
mod reader;

pub use capture::{capture, Capture};
pub use hello::ClientHello;

/// Largest handshake message accepted, header included: one full plaintext
/// record's worth (2^14 bytes) of ClientHello body plus the 4-byte
/// handshake header. Real hellos, post-quantum key shares included, stay
/// well under 4 KiB.
pub const MAX_HELLO_LEN: usize = 16 * 1024 + 4;

/// Largest number of record bytes (5-byte record headers included) that
/// [`capture`] will buffer while reassembling one hello. It leaves room for
/// a [`MAX_HELLO_LEN`] hello split into several records, while refusing a
/// peer that trickles a hello in tiny fragments to inflate the buffer.
pub const MAX_RECORDS_LEN: usize = 32 * 1024;

/// Largest plaintext record fragment TLS allows (RFC 8446 §5.1).
pub const MAX_FRAGMENT_LEN: usize = 16 * 1024;

/// True for the 16 GREASE values (RFC 8701): `0x0a0a`, `0x1a1a`, …,
/// `0xfafa`. Fingerprints ignore them.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Why bytes could not be captured as a ClientHello. No variant carries
/// peer bytes, so these are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// The first bytes are not a TLS handshake record (plain HTTP, an
    /// SSLv2-format hello, a PROXY header that was not stripped, noise).
    #[error("not a TLS handshake record")]
    NotHandshake,
    /// A TLS handshake record whose first message is not a ClientHello.
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// The hello exceeds [`MAX_HELLO_LEN`], or reassembling it would need
    /// more than [`MAX_RECORDS_LEN`] bytes of records.
    #[error("ClientHello exceeds the capture bound")]
    TooLarge,
    /// The bytes violate the record or ClientHello structure; the text
    /// names the part (it never contains peer data).
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_exactly_the_sixteen() {
        let all: Vec<u16> = (0..=u16::MAX).filter(|v| is_grease(*v)).collect();
        let want: Vec<u16> = (0..16u16).map(|i| (i << 12) | 0x0a00 | (i << 4) | 0x0a).collect();
        assert_eq!(all, want);
        assert!(is_grease(0x0a0a) && is_grease(0xfafa));
        assert!(!is_grease(0x0a1a) && !is_grease(0x1301));
    }
}
