//! Per-connection upstream TLS configuration presenting a freshly minted
//! certificate.
//!
//! Building a rustls `ClientConfig` per connection is expensive; cloning a
//! base config and swapping its certificate resolver is not. Resumption is
//! disabled upstream: a resumed session would skip client authentication
//! and so present no certificate — or, with a shared resolver, another
//! client's.
//!
//! Without resumption every upstream handshake verifies the backend's
//! chain again; [`CachedVerifier`] remembers a chain it verified for a few
//! seconds (the handshake signature is still checked every time), which
//! saves one signature verification and a path build per connection.

use qmeta_cert::{Issuer, LeafAlg, LeafKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex, RwLock};
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
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), qmeta_pki::provider()).build()?;
        let mut base = ClientConfig::builder_with_provider(qmeta_pki::provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CachedVerifier::new(webpki)))
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
    /// The returned `Minted::der` is empty: the bytes moved into the config.
    pub fn mint(
        &self,
        req: &qmeta_cert::MintRequest<'_>,
        alpn: Option<&[u8]>,
    ) -> anyhow::Result<(qmeta_cert::Minted, Arc<ClientConfig>)> {
        let leaf = self.leaf()?;
        let mut minted = qmeta_cert::mint(&self.issuer, &leaf.key, req)?;
        // The DER moves into the config: callers use the serial and the
        // field lists (for the audit record), not the bytes.
        let der = std::mem::take(&mut minted.der);
        let certified = CertifiedKey::new(vec![CertificateDer::from(der)], leaf.signer.clone());
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

/// How long a verified backend chain is trusted without verifying it again.
/// Short, because an expiring certificate is accepted this much longer.
const VERIFIED_TTL_SECS: u64 = 10;
/// Chains remembered at once (a few per backend); the cache is emptied
/// when full rather than tracking recency.
const VERIFIED_MAX: usize = 256;

/// Wraps the webpki verifier: a chain (end entity + intermediates) that was
/// verified for a server name within the last [`VERIFIED_TTL_SECS`] is
/// accepted again without rebuilding the path. The TLS 1.3 handshake
/// signature, which proves the backend holds the key *now*, is always
/// verified.
pub(crate) struct CachedVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    verified: Mutex<Vec<Verified>>,
}

struct Verified {
    name: ServerName<'static>,
    chain: Vec<Vec<u8>>,
    until_unix_secs: u64,
}

impl std::fmt::Debug for CachedVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.verified.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("CachedVerifier").field("cached_chains", &n).finish_non_exhaustive()
    }
}

impl CachedVerifier {
    pub(crate) fn new(inner: Arc<dyn ServerCertVerifier>) -> CachedVerifier {
        CachedVerifier { inner, verified: Mutex::new(Vec::new()) }
    }

    fn matches(v: &Verified, ee: &CertificateDer<'_>, im: &[CertificateDer<'_>], name: &ServerName<'_>) -> bool {
        v.chain.len() == im.len() + 1
            && v.chain[0] == ee.as_ref()
            && v.chain[1..].iter().zip(im).all(|(a, b)| a.as_slice() == b.as_ref())
            && v.name == *name
    }
}

impl ServerCertVerifier for CachedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let secs = now.as_secs();
        {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache
                .iter()
                .any(|v| secs < v.until_unix_secs && Self::matches(v, end_entity, intermediates, server_name))
            {
                return Ok(ServerCertVerified::assertion());
            }
        }
        let ok = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|v| secs < v.until_unix_secs && !Self::matches(v, end_entity, intermediates, server_name));
        if cache.len() >= VERIFIED_MAX {
            cache.clear();
        }
        let mut chain = vec![end_entity.as_ref().to_vec()];
        chain.extend(intermediates.iter().map(|c| c.as_ref().to_vec()));
        cache.push(Verified { name: server_name.to_owned(), chain, until_unix_secs: secs + VERIFIED_TTL_SECS });
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Accepts chains whose end entity starts with `good`, counting calls.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl ServerCertVerifier for Counting {
        fn verify_server_cert(
            &self,
            ee: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.0.fetch_add(1, Ordering::Relaxed);
            if ee.as_ref().starts_with(b"good") {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))
            }
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("not used".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("not used".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ECDSA_NISTP256_SHA256]
        }
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn verify(v: &CachedVerifier, ee: &[u8], im: &[&[u8]], name: &str, secs: u64) -> bool {
        let ee = CertificateDer::from(ee.to_vec());
        let im: Vec<CertificateDer<'static>> = im.iter().map(|c| CertificateDer::from(c.to_vec())).collect();
        let name = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(&ee, &im, &name, &[], at(secs)).is_ok()
    }

    #[test]
    fn verified_chain_is_reused_within_ttl_only() {
        let inner = Arc::new(Counting::default());
        let v = CachedVerifier::new(inner.clone());
        assert!(verify(&v, b"good-a", &[b"ca1"], "app-a", 1000));
        assert!(verify(&v, b"good-a", &[b"ca1"], "app-a", 1000 + VERIFIED_TTL_SECS - 1));
        assert_eq!(inner.0.load(Ordering::Relaxed), 1, "second call served from the cache");
        assert!(verify(&v, b"good-a", &[b"ca1"], "app-a", 1000 + VERIFIED_TTL_SECS));
        assert_eq!(inner.0.load(Ordering::Relaxed), 2, "expired entry verified again");
    }

    #[test]
    fn any_difference_in_chain_or_name_misses() {
        let inner = Arc::new(Counting::default());
        let v = CachedVerifier::new(inner.clone());
        assert!(verify(&v, b"good-a", &[b"ca1"], "app-a", 1000));
        assert!(verify(&v, b"good-b", &[b"ca1"], "app-a", 1001));
        assert!(verify(&v, b"good-a", &[b"ca2"], "app-a", 1001));
        assert!(verify(&v, b"good-a", &[], "app-a", 1001));
        assert!(verify(&v, b"good-a", &[b"ca1"], "app-b", 1001));
        assert_eq!(inner.0.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn failures_are_not_cached() {
        let inner = Arc::new(Counting::default());
        let v = CachedVerifier::new(inner.clone());
        assert!(!verify(&v, b"bad", &[], "app-a", 1000));
        assert!(!verify(&v, b"bad", &[], "app-a", 1000));
        assert_eq!(inner.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn cache_stays_bounded() {
        let inner = Arc::new(Counting::default());
        let v = CachedVerifier::new(inner);
        for i in 0..(VERIFIED_MAX * 2) {
            assert!(verify(&v, format!("good-{i}").as_bytes(), &[], "app-a", 1000));
        }
        assert!(v.verified.lock().unwrap().len() <= VERIFIED_MAX);
    }
}
