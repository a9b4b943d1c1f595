//! Per-connection upstream TLS configuration presenting a freshly minted
//! certificate.
//!
//! Building a rustls `ClientConfig` per connection is expensive; cloning a
//! base config and swapping its certificate resolver is not. Resumption is
//! disabled upstream: a resumed session would skip client authentication
//! and so present no certificate — or, with a shared resolver, another
//! client's.

use qmeta_cert::{Issuer, LeafAlg, LeafKey};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{ClientConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long one leaf key pair signs minted certificates before it is replaced.
const LEAF_LIFETIME: Duration = Duration::from_secs(3600);

struct Leaf {
    key: LeafKey,
    signer: Arc<dyn SigningKey>,
    born: Instant,
}

pub(crate) struct Minter {
    pub issuer: Issuer,
    alg: LeafAlg,
    leaf: RwLock<Arc<Leaf>>,
    base: ClientConfig,
}

impl Minter {
    pub fn new(issuer: Issuer, alg: LeafAlg, upstream_ca: &std::path::Path) -> anyhow::Result<Minter> {
        let roots = qmeta_pki::root_store(upstream_ca)?;
        let mut base = ClientConfig::builder_with_provider(qmeta_pki::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(NoCert));
        base.resumption = Resumption::disabled();
        Ok(Minter { issuer, alg, leaf: RwLock::new(Arc::new(new_leaf(alg)?)), base })
    }

    /// The current leaf key (rotated every [`LEAF_LIFETIME`]).
    fn leaf(&self) -> anyhow::Result<Arc<Leaf>> {
        let leaf = self.leaf.read().unwrap_or_else(|e| e.into_inner()).clone();
        if leaf.born.elapsed() < LEAF_LIFETIME {
            return Ok(leaf);
        }
        let fresh = Arc::new(new_leaf(self.alg)?);
        *self.leaf.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Mints the certificate and returns the upstream config presenting it.
    pub fn mint(
        &self,
        req: &qmeta_cert::MintRequest<'_>,
        alpn: Option<&[u8]>,
    ) -> anyhow::Result<(qmeta_cert::Minted, Arc<ClientConfig>)> {
        let leaf = self.leaf()?;
        let minted = qmeta_cert::mint(&self.issuer, &leaf.key, req)?;
        let certified = CertifiedKey::new(vec![CertificateDer::from(minted.der.clone())], leaf.signer.clone());
        let mut cfg = self.base.clone();
        cfg.client_auth_cert_resolver = Arc::new(OneCert(Arc::new(certified)));
        cfg.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        Ok((minted, Arc::new(cfg)))
    }
}

fn new_leaf(alg: LeafAlg) -> anyhow::Result<Leaf> {
    let key = LeafKey::generate(alg)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    let signer = qmeta_pki::provider().key_provider.load_private_key(der)?;
    Ok(Leaf { key, signer, born: Instant::now() })
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// The base config's placeholder: never used for a real connection.
#[derive(Debug)]
struct NoCert;

impl ResolvesClientCert for NoCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        None
    }
    fn has_certs(&self) -> bool {
        false
    }
}
