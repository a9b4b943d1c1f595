use crate::PkiError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// Signature algorithm of a generated key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256 (default: every peer, OpenSSL 3.0 included, loads it).
    #[default]
    P256,
    /// Ed25519.
    Ed25519,
}

impl KeyAlg {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Credential {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

impl Credential {
    /// Writes `<dir>/<stem>.crt` and `<dir>/<stem>.key` (key mode 0600).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let crt = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&crt, self.cert_pem.as_bytes(), false)?;
        write_file(&key, self.key_pem.as_bytes(), true)?;
        Ok((crt, key))
    }

    /// Reads `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
    pub fn read(dir: &Path, stem: &str) -> Result<Credential, PkiError> {
        check_private(&dir.join(format!("{stem}.key")))?;
        Ok(Credential {
            cert_pem: read_file(&dir.join(format!("{stem}.crt")))?,
            key_pem: read_file(&dir.join(format!("{stem}.key")))?,
        })
    }
}

/// A certificate authority that issues server and client certificates.
pub struct Ca {
    pub credential: Credential,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA, valid ten years.
    pub fn generate(common_name: &str, alg: KeyAlg) -> Result<Ca, PkiError> {
        let key = KeyPair::generate_for(alg.rcgen())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
        params.use_authority_key_identifier_extension = false;
        let cert = params.self_signed(&key)?;
        let credential = Credential { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ca::from_credential(credential, "<generated>")
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_credential(credential: Credential, origin: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(&credential.key_pem)
            .map_err(|e| PkiError::Invalid { path: origin.into(), message: format!("CA key: {e}") })?;
        let issuer = Issuer::from_ca_cert_pem(&credential.cert_pem, key)
            .map_err(|e| PkiError::Invalid { path: origin.into(), message: format!("CA certificate: {e}") })?;
        Ok(Ca { credential, issuer })
    }

    /// Loads `<dir>/<stem>.crt` + `.key`, or generates and writes them when absent.
    pub fn load_or_generate(dir: &Path, stem: &str, common_name: &str) -> Result<Ca, PkiError> {
        if dir.join(format!("{stem}.crt")).exists() {
            let cred = Credential::read(dir, stem)?;
            return Ca::from_credential(cred, &dir.join(format!("{stem}.key")).display().to_string());
        }
        let ca = Ca::generate(common_name, KeyAlg::P256)?;
        ca.credential.write(dir, stem)?;
        Ok(ca)
    }

    /// A server certificate for DNS names and/or IP addresses, valid one year.
    pub fn issue_server(&self, common_name: &str, names: &[&str]) -> Result<Credential, PkiError> {
        let mut params = self.leaf_params(common_name, names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate whose subject CN (and DNS SAN) is `common_name`
    /// — for SAEs this is the SAE id the KME reads from the certificate.
    pub fn issue_client(&self, common_name: &str) -> Result<Credential, PkiError> {
        let mut params = self.leaf_params(common_name, &[common_name])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn leaf_params(&self, common_name: &str, names: &[&str]) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        for n in names {
            params.subject_alt_names.push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into()?),
            });
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Credential, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Credential { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "qmeta");
    dn.push(DnType::CommonName, cn);
    dn
}

pub(crate) fn read_file(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.display().to_string(), source })
}

fn write_file(path: &Path, data: &[u8], private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.display().to_string(), source };
    if let Some(parent) = path.parent() {
        create_private_dir(parent).map_err(io)?;
    }
    // A fresh, unpredictable temporary name opened with create_new (and
    // O_NOFOLLOW): a file or symlink planted in the directory cannot be
    // written through, and the final rename replaces whatever was there.
    let tmp = path.with_extension(format!("tmp.{:016x}", rand_u64()));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
            opts.custom_flags(libc_o_nofollow());
        }
        let _ = private;
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(data).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Creates the directory (and parents) readable by the owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(target_os = "linux")]
fn libc_o_nofollow() -> i32 {
    0o400000 // O_NOFOLLOW on Linux
}

#[cfg(all(unix, not(target_os = "linux")))]
fn libc_o_nofollow() -> i32 {
    0
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

/// Refuses a private key file that others can read or write, or that is a
/// symlink: reusing such a key would silently trust whoever changed it.
pub(crate) fn check_private(path: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)
            .map_err(|source| PkiError::Io { path: path.display().to_string(), source })?;
        if meta.file_type().is_symlink() {
            return Err(PkiError::Invalid {
                path: path.display().to_string(),
                message: "is a symlink; refusing to use it as a private key".into(),
            });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(PkiError::Invalid {
                path: path.display().to_string(),
                message: format!(
                    "mode {:o} lets others read or change this private key; run chmod 600",
                    meta.mode() & 0o777
                ),
            });
        }
    }
    let _ = path;
    Ok(())
}
