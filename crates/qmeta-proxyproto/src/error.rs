//! The one error type of this crate.

/// Why a PROXY protocol header was rejected.
///
/// Every variant means "drop the connection": the spec allows no recovery
/// from a bad header. The variants exist so that logs and metrics can say
/// whether the peer does not speak PROXY at all (misconfigured sender), or
/// sent a header this receiver refuses. No variant carries peer addresses
/// or TLV values, so an error can be logged as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The input starts with neither the v1 text `PROXY` nor the first byte
    /// of the v2 binary signature: the peer sent application data (TLS,
    /// HTTP, ...) to a listener that expects a PROXY header.
    #[error("connection does not start with a PROXY protocol header")]
    NotProxy,
    /// The input began like the v2 binary signature (`\r`) but diverges
    /// within its 12 bytes.
    #[error("malformed PROXY v2 signature")]
    BadSignature,
    /// The v2 version nibble is not 2.
    #[error("unsupported PROXY protocol version {0}")]
    UnsupportedVersion(u8),
    /// The v2 command nibble is neither LOCAL (0) nor PROXY (1).
    #[error("unsupported PROXY v2 command {0:#x}")]
    BadCommand(u8),
    /// The v2 address family nibble is not UNSPEC, INET, INET6 or UNIX.
    #[error("unsupported PROXY v2 address family {0:#x}")]
    BadFamily(u8),
    /// The v2 transport nibble is not UNSPEC, STREAM or DGRAM.
    #[error("unsupported PROXY v2 transport protocol {0:#x}")]
    BadTransport(u8),
    /// A v1 line without CRLF in its first 107 bytes, or a v2 header longer
    /// than [`crate::V2_MAX_LEN`].
    #[error("PROXY header exceeds the size limit")]
    TooLong,
    /// A v1 line that does not match the grammar exactly; the text says
    /// which rule failed.
    #[error("malformed PROXY v1 line: {0}")]
    BadV1(&'static str),
    /// An address that does not parse (v1), or a v2 length too short for
    /// the address block its family requires.
    #[error("malformed or truncated address in PROXY header")]
    BadAddress,
    /// A v2 TLV that is truncated, overruns the header, is duplicated or
    /// has a value its type forbids; the text says which.
    #[error("malformed PROXY v2 TLV: {0}")]
    BadTlv(&'static str),
    /// The CRC32C TLV does not match the header.
    #[error("PROXY v2 CRC32C checksum mismatch")]
    CrcMismatch,
}
