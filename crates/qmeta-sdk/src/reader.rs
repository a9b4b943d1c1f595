use crate::{Metadata, SdkError};
use qmeta_cert::Envelope;
use qmeta_qkd::cache::DecKeyCache;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// Reads the metadata of LB connections: parse the end-entity certificate,
/// fetch its QKD key (once per key id, through the [`DecKeyCache`]), open
/// the sealed fields.
///
/// Cheap to clone: clones share one key cache, so a key the KME delivers
/// once serves every connection that carries its id.
#[derive(Clone)]
pub struct MetadataReader {
    keys: Arc<DecKeyCache>,
}

impl MetadataReader {
    /// `keys` must be built with the LB's SAE id as master SAE and this
    /// backend's own KME client.
    pub fn new(keys: DecKeyCache) -> MetadataReader {
        MetadataReader { keys: Arc::new(keys) }
    }

    /// Reads the metadata from the peer chain of a finished handshake
    /// (`peer_certs[0]` is the LB's certificate).
    ///
    /// The chain must already have been verified against the LB CA (by
    /// [`crate::client_verifier`] in the rustls config): this function does
    /// not check signatures, only the sealed values' authenticity.
    pub async fn read(&self, peer_certs: &[CertificateDer<'_>]) -> Result<Metadata, SdkError> {
        let leaf = peer_certs.first().ok_or(SdkError::NoClientCertificate)?;
        let envelope = qmeta_cert::parse(leaf.as_ref()).map_err(SdkError::NotQmeta)?;
        let key =
            self.keys.get(envelope.key_id).await.map_err(|source| SdkError::Key { key_id: envelope.key_id, source })?;
        open(&envelope, &key.bytes)
    }
}

/// Opens a parsed envelope with the QKD key it names.
pub(crate) fn open(envelope: &Envelope, qkd_key: &[u8]) -> Result<Metadata, SdkError> {
    let mut fields = envelope.open(qkd_key).map_err(SdkError::Open)?;
    fields.sort_by_key(|(id, _)| *id);
    Ok(Metadata {
        serial_hex: envelope.serial_hex.clone(),
        key_id: envelope.key_id,
        state_version: envelope.state_version,
        fields,
        dropped: envelope.dropped.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmeta_cert::{mint, Issuer, LeafAlg, LeafKey, MintRequest};
    use qmeta_fields::{FieldId, FieldValue};
    use uuid::Uuid;

    const NOW: u64 = 1_750_000_000;

    fn minted(qkd_key: &[u8], key_id: Uuid) -> (Vec<u8>, String) {
        let ca = qmeta_pki::Ca::generate("LB CA", qmeta_pki::KeyAlg::P256).unwrap();
        let issuer = Issuer::from_pem(&ca.credential.cert_pem, &ca.credential.key_pem).unwrap();
        let leaf = LeafKey::generate(LeafAlg::P256).unwrap();
        // Fields out of id order on purpose: Metadata lists them sorted.
        let fields = [
            (FieldId::SNI, FieldValue::Text("shop.example".into())),
            (FieldId::SRC_IP, FieldValue::Ip("192.0.2.7".parse().unwrap())),
            (FieldId::SRC_PORT, FieldValue::U16(54321)),
        ];
        let req = MintRequest {
            serial: [0x5a; 16],
            now_unix: NOW,
            validity_secs: 300,
            subject_cn: "qmeta-lb",
            key_id,
            qkd_key,
            state_version: 42,
            fields: &fields,
        };
        let m = mint(&issuer, &leaf, &req).unwrap();
        (m.der, m.serial_hex)
    }

    #[test]
    fn opens_a_minted_certificate() {
        let key = [7u8; 32];
        let id = Uuid::from_u128(99);
        let (der, serial_hex) = minted(&key, id);
        let env = qmeta_cert::parse(&der).unwrap();
        let m = open(&env, &key).unwrap();
        assert_eq!(m.serial_hex, serial_hex);
        assert_eq!(m.key_id, id);
        assert_eq!(m.state_version, 42);
        assert!(m.dropped.is_empty());
        let ids: Vec<FieldId> = m.fields.iter().map(|(f, _)| *f).collect();
        assert_eq!(ids, vec![FieldId::SRC_IP, FieldId::SRC_PORT, FieldId::SNI]);
        assert_eq!(m.get(FieldId::SRC_IP), Some(&FieldValue::Ip("192.0.2.7".parse().unwrap())));
        assert_eq!(m.get(FieldId::SNI), Some(&FieldValue::Text("shop.example".into())));
    }

    #[test]
    fn wrong_key_fails_to_authenticate_without_leaking() {
        let (der, _) = minted(&[7u8; 32], Uuid::from_u128(1));
        let env = qmeta_cert::parse(&der).unwrap();
        let err = open(&env, &[8u8; 32]).unwrap_err();
        assert!(matches!(err, SdkError::Open(_)), "{err:?}");
        assert!(!err.is_retryable());
        let msg = format!("{err} {err:?}");
        for secret in ["shop.example", "192.0.2.7", "0707070707"] {
            assert!(!msg.contains(secret), "{secret} leaked: {msg}");
        }
    }

    #[test]
    fn plain_client_certificate_is_not_qmeta() {
        let ca = qmeta_pki::Ca::generate("LB CA", qmeta_pki::KeyAlg::P256).unwrap();
        let cred = ca.issue_client("someone").unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cred.cert_pem.as_bytes())
            .map(|c: CertificateDer<'static>| c.to_vec())
            .unwrap();
        let err = qmeta_cert::parse(&der).map_err(SdkError::NotQmeta).err().unwrap();
        assert!(err.to_string().starts_with("not a qmeta LB certificate"), "{err}");
        assert!(!err.is_retryable());
    }
}
