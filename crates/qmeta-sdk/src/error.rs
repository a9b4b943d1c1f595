use uuid::Uuid;

/// Why the SDK could not set up or read a connection's metadata.
///
/// Messages name causes, key ids and files — never metadata values or key
/// bytes (the wrapped errors from `qmeta-cert` and `qmeta-qkd` keep the same
/// rule), so a `SdkError` can be logged or returned to a peer as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The peer presented no client certificate. With [`crate::client_verifier`]
    /// in the server config rustls refuses such a handshake, so this means
    /// the server was configured without it.
    #[error("the peer presented no client certificate")]
    NoClientCertificate,

    /// The certificate chains to the LB CA but is not a qmeta LB certificate
    /// (no header, unknown format version, malformed extension, …). Not
    /// retryable: the same certificate will fail the same way.
    #[error("not a qmeta LB certificate: {0}")]
    NotQmeta(#[source] qmeta_cert::ParseError),

    /// The backend's KME did not deliver the QKD key named in the
    /// certificate. [`SdkError::is_retryable`] tells whether trying again
    /// later may help (KME busy or unreachable) or not (key unknown to the
    /// KME, already delivered, or this SAE not authorised for it).
    #[error("fetching QKD key {key_id} from the KME: {source}")]
    Key {
        key_id: Uuid,
        #[source]
        source: qmeta_qkd::client::ClientError,
    },

    /// The sealed fields failed to authenticate under the key: tampered
    /// certificate, or the KME delivered a different key than the LB used.
    #[error("metadata fields failed to authenticate: {0}")]
    Open(#[source] qmeta_cert::OpenError),

    /// Loading the LB CA or this backend's own credentials failed.
    #[error("{0}")]
    Pki(#[from] qmeta_pki::PkiError),

    /// The LB CA file loaded but rustls could not build a verifier from it.
    #[error("LB CA {path}: {message}")]
    Verifier { path: String, message: String },

    /// The KME client could not be built (bad credential files or URL).
    #[error("KME client: {0}")]
    KmeClient(#[source] qmeta_qkd::client::ClientError),

    /// The sample backend could not bind its listen address.
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl SdkError {
    /// True when the same certificate may succeed later: only KME errors
    /// the KME client itself marks retryable (503, timeouts, connection
    /// failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            SdkError::Key { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}
