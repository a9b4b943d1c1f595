//! Errors of KME calls, classified by whether a retry may help.

use crate::api::ValidationError;
use std::time::Duration;

/// Errors of a KME call. Each names the KME URL and the call; none carries
/// key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client configuration is unusable (URL, KME id, certificate CN).
    #[error("KME client configuration: {reason}")]
    InvalidConfig { reason: String },
    /// A credential file could not be read or parsed.
    #[error("KME client credentials: {0}")]
    Credentials(#[source] qmeta_pki::PkiError),
    /// The caller asked for something the client refuses to send.
    #[error("KME {url} {call}: invalid argument: {reason}")]
    InvalidArgument { url: String, call: &'static str, reason: String },
    /// TCP connection failed (retryable).
    #[error("KME {url} {call}: connect: {source}")]
    Connect { url: String, call: &'static str, source: std::io::Error },
    /// TLS handshake failed; retryable unless the certificates were refused.
    #[error("KME {url} {call}: TLS: {source}")]
    Tls { url: String, call: &'static str, source: std::io::Error },
    /// HTTP-level failure (connection closed, malformed response; retryable).
    #[error("KME {url} {call}: HTTP: {reason}")]
    Http { url: String, call: &'static str, reason: String },
    /// The call did not finish in time (retryable).
    #[error("KME {url} {call}: no answer within {after:?}")]
    Timeout { url: String, call: &'static str, after: Duration },
    /// 400: the KME refused the request (permanent).
    #[error("KME {url} {call}: 400 Bad Request: {message}")]
    BadRequest { url: String, call: &'static str, message: String },
    /// 401: this SAE may not make this call (permanent).
    #[error("KME {url} {call}: 401 Unauthorized")]
    Unauthorized { url: String, call: &'static str },
    /// 503: the KME cannot serve now, e.g. its key pool is empty (retryable).
    #[error("KME {url} {call}: 503 Service Unavailable: {message}")]
    Unavailable { url: String, call: &'static str, message: String },
    /// Another HTTP status (5xx, 408 and 429 are retryable).
    #[error("KME {url} {call}: HTTP status {status}: {message}")]
    UnexpectedStatus { url: String, call: &'static str, status: u16, message: String },
    /// The body was not the JSON the spec describes.
    #[error("KME {url} {call}: invalid response: {reason}")]
    InvalidResponse { url: String, call: &'static str, reason: String },
    /// The keys returned failed validation (count, size, ids).
    #[error("KME {url} {call}: refused keys: {source}")]
    Validation { url: String, call: &'static str, source: ValidationError },
}

impl ClientError {
    /// True when the same call may succeed later (503, timeouts, connection
    /// errors); false for 400/401, validation and configuration errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Http { .. }
            | ClientError::Timeout { .. }
            | ClientError::Unavailable { .. } => true,
            ClientError::Tls { source, .. } => !is_certificate_error(source),
            ClientError::UnexpectedStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            ClientError::InvalidConfig { .. }
            | ClientError::Credentials(_)
            | ClientError::InvalidArgument { .. }
            | ClientError::BadRequest { .. }
            | ClientError::Unauthorized { .. }
            | ClientError::InvalidResponse { .. }
            | ClientError::Validation { .. } => false,
        }
    }

    /// The HTTP status the KME answered, if the call got that far.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::BadRequest { .. } => Some(400),
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::Unavailable { .. } => Some(503),
            ClientError::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn is_certificate_error(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::AlertReceived(
                    rustls::AlertDescription::BadCertificate
                        | rustls::AlertDescription::UnknownCA
                        | rustls::AlertDescription::CertificateRequired
                        | rustls::AlertDescription::CertificateUnknown
                        | rustls::AlertDescription::CertificateRevoked
                        | rustls::AlertDescription::CertificateExpired
                        | rustls::AlertDescription::AccessDenied
                )
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        let url = String::from("https://k");
        let call = "enc_keys";
        assert!(ClientError::Unavailable { url: url.clone(), call, message: String::new() }.is_retryable());
        assert!(ClientError::Timeout { url: url.clone(), call, after: Duration::from_secs(1) }.is_retryable());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(ClientError::Connect { url: url.clone(), call, source: refused }.is_retryable());
        assert!(!ClientError::BadRequest { url: url.clone(), call, message: String::new() }.is_retryable());
        assert!(!ClientError::Unauthorized { url: url.clone(), call }.is_retryable());
        let bad_cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(!ClientError::Tls { url: url.clone(), call, source: bad_cert }.is_retryable());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(ClientError::Tls { url: url.clone(), call, source: reset }.is_retryable());
        let e = ClientError::UnexpectedStatus { url, call, status: 404, message: String::new() };
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("https://k enc_keys"), "{e}");
    }
}
