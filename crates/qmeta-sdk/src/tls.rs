use crate::SdkError;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// A rustls client-certificate verifier that requires a client certificate
/// chaining to the LB CA(s) in the PEM file `lb_ca`.
///
/// Anonymous clients and certificates from any other CA fail the handshake.
/// Built with `qmeta_pki::provider()` (aws-lc-rs), the process's one
/// provider. Unknown non-critical extensions — where the LB puts its
/// metadata — are accepted by webpki.
pub fn client_verifier(lb_ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, SdkError> {
    let mut roots = RootCertStore::empty();
    for cert in qmeta_pki::load_certs(lb_ca)? {
        roots.add(cert).map_err(|e| verifier_err(lb_ca, e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), qmeta_pki::provider())
        .build()
        .map_err(|e| verifier_err(lb_ca, e))
}

fn verifier_err(path: &Path, e: impl std::fmt::Display) -> SdkError {
    SdkError::Verifier { path: path.display().to_string(), message: e.to_string() }
}

/// A complete rustls server config for a backend: this backend's own
/// certificate chain and key, [`client_verifier`] for the LB CA, and the
/// given ALPN protocols (e.g. `&[b"http/1.1"]`).
pub fn server_config(cert: &Path, key: &Path, lb_ca: &Path, alpn: &[&[u8]]) -> Result<ServerConfig, SdkError> {
    let verifier = client_verifier(lb_ca)?;
    let certs = qmeta_pki::load_certs(cert)?;
    let key_der = qmeta_pki::load_key(key)?;
    let tls_err = |e: rustls::Error| {
        SdkError::Pki(qmeta_pki::PkiError::Invalid { path: key.display().to_string(), message: e.to_string() })
    };
    let mut cfg = ServerConfig::builder_with_provider(qmeta_pki::provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key_der)
        .map_err(tls_err)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_requires_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        let ca = qmeta_pki::Ca::generate("LB CA", qmeta_pki::KeyAlg::P256).unwrap();
        let path = dir.path().join("lb-ca.crt");
        std::fs::write(&path, &ca.credential.cert_pem).unwrap();
        let v = client_verifier(&path).unwrap();
        assert!(v.offer_client_auth());
        assert!(v.client_auth_mandatory());
        // The CA's subject is offered as an acceptable issuer.
        assert_eq!(v.root_hint_subjects().len(), 1);
    }

    #[test]
    fn missing_or_empty_ca_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.crt");
        let err = client_verifier(&missing).err().unwrap();
        assert!(err.to_string().contains("nope.crt"), "{err}");
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "").unwrap();
        let err = client_verifier(&empty).err().unwrap();
        assert!(err.to_string().contains("empty.crt"), "{err}");
    }
}
