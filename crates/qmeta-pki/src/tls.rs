use crate::ca::read_file;
use crate::PkiError;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The one crypto provider of the process: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process default. Safe to call more than once.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// All certificates in a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read_file(path)?;
    parse_certs(&pem, &path.display().to_string())
}

pub(crate) fn parse_certs(pem: &str, origin: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Invalid { path: origin.into(), message: format!("bad PEM certificate: {e}") })?;
    if certs.is_empty() {
        return Err(PkiError::NoPem { path: origin.into(), what: "certificate" });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let pem = read_file(path)?;
    parse_key(&pem, &path.display().to_string())
}

pub(crate) fn parse_key(pem: &str, origin: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| PkiError::NoPem { path: origin.into(), what: "private key" })
}

/// Whether a server asks for client certificates.
pub enum ClientAuth<'a> {
    None,
    /// Require a client certificate chaining to the CA certificates in this PEM file.
    Required(&'a Path),
}

/// A TLS server config with the given certificate chain and key.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_auth: ClientAuth<'_>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, PkiError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required(ca) => {
            let roots = root_store(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| PkiError::Invalid { path: ca.display().to_string(), message: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| PkiError::Invalid { path: key.display().to_string(), message: e.to_string() })?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// A root store holding every certificate in a PEM file.
pub fn root_store(ca: &Path) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| PkiError::Invalid { path: ca.display().to_string(), message: e.to_string() })?;
    }
    Ok(roots)
}

/// A TLS client config trusting the CA file, presenting `identity`
/// (certificate file, key file) when given.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientConfig, PkiError> {
    let roots = root_store(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| PkiError::Invalid { path: key.display().to_string(), message: e.to_string() })?,
    })
}

/// The subject common name of a DER certificate (the SAE id of a KME client).
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = c.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ca;

    #[test]
    fn issues_and_loads_credentials() {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_generate(dir.path(), "ca", "test CA").unwrap();
        let server = ca.issue_server("kme-a", &["kme-a", "127.0.0.1"]).unwrap();
        let (crt, key) = server.write(dir.path(), "server").unwrap();
        let client = ca.issue_client("sae-lb").unwrap();
        let (ccrt, ckey) = client.write(dir.path(), "client").unwrap();
        let ca_path = dir.path().join("ca.crt");
        server_config(&crt, &key, ClientAuth::Required(&ca_path), &[b"http/1.1"]).unwrap();
        client_config(&ca_path, Some((&ccrt, &ckey))).unwrap();
        let der = load_certs(&ccrt).unwrap();
        assert_eq!(common_name(&der[0]).as_deref(), Some("sae-lb"));
        // Reloading reuses the same CA.
        let again = Ca::load_or_generate(dir.path(), "ca", "test CA").unwrap();
        assert_eq!(again.credential.cert_pem, ca.credential.cert_pem);
    }

    #[test]
    fn missing_file_names_path() {
        let err = load_certs(Path::new("/nonexistent/x.crt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.crt"), "{err}");
    }
}

#[cfg(all(test, unix))]
mod file_tests {
    use crate::Ca;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn planted_temp_files_and_loose_key_modes_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir(&pki).unwrap();
        // An attacker plants the old fixed temporary names as a symlink.
        let target = dir.path().join("attacker-owned");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, pki.join("ca.tmp")).unwrap();
        let _ca = Ca::load_or_generate(&pki, "ca", "CA").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x", "wrote through a planted symlink");
        let key_mode = std::fs::metadata(pki.join("ca.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        // A key whose mode was loosened is refused on reuse.
        std::fs::set_permissions(pki.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Ca::load_or_generate(&pki, "ca", "CA").err().expect("loose key accepted");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
