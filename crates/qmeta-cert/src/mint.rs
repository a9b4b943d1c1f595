//! Minting: request in, signed certificate DER out.

use crate::der::{self, tlv, OCTET_STRING, SEQUENCE};
use crate::keys::{extension, Issuer, LeafKey};
use crate::seal::{CertKey, MIN_QKD_KEY_LEN};
use crate::{oid, time, CertError, AEAD_AES_256_GCM, FORMAT_VERSION, MAX_CERT_LEN};
use qmeta_fields::{FieldId, FieldValue};
use zeroize::Zeroizing;

/// Seconds `notBefore` is set before `now`, to absorb clock skew.
pub const BACKDATE_SECS: u64 = 60;
/// Longest subject common name (X.520 `ub-common-name`).
pub const MAX_CN_LEN: usize = 64;

/// Everything that varies from one minted certificate to the next.
#[derive(Clone, Copy)]
pub struct MintRequest<'a> {
    /// 16 random bytes from the caller's CSPRNG; the top bit of the first
    /// byte is forced to 1 (so 127 bits stay random).
    pub serial: [u8; 16],
    /// Current Unix time, seconds.
    pub now_unix: u64,
    /// Seconds from `now_unix` to `notAfter`.
    pub validity_secs: u32,
    /// Subject CN (1 to 64 bytes), e.g. the LB node or backend name.
    pub subject_cn: &'a str,
    /// Id of the QKD key (its UUID), written into the header.
    pub key_id: uuid::Uuid,
    /// The QKD key bytes, at least [`MIN_QKD_KEY_LEN`].
    pub qkd_key: &'a [u8],
    /// DMCP state version that chose `fields`, written into the header.
    pub state_version: u64,
    /// Fields to include, any order, each id at most once.
    pub fields: &'a [(FieldId, FieldValue)],
}

impl std::fmt::Debug for MintRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u16> = self.fields.iter().map(|(id, _)| id.get()).collect();
        f.debug_struct("MintRequest")
            .field("now_unix", &self.now_unix)
            .field("validity_secs", &self.validity_secs)
            .field("key_id", &self.key_id)
            .field("state_version", &self.state_version)
            .field("field_ids", &ids)
            .finish_non_exhaustive()
    }
}

/// A minted certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Minted {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The 16 serial bytes (top bit set), lowercase hex: 32 characters.
    pub serial_hex: String,
    /// Fields sealed into the certificate, ascending id.
    pub included: Vec<FieldId>,
    /// Fields left out to keep the certificate within [`MAX_CERT_LEN`], ascending id.
    pub dropped: Vec<FieldId>,
}

/// Mints one certificate: seals each field under a key derived from the QKD
/// key and the serial, and signs with the issuer's key. Pure apart from the
/// ECDSA nonce, which aws-lc draws itself.
pub fn mint(issuer: &Issuer, leaf: &LeafKey, req: &MintRequest<'_>) -> Result<Minted, CertError> {
    if req.qkd_key.len() < MIN_QKD_KEY_LEN {
        return Err(CertError::QkdKeyTooShort { got: req.qkd_key.len() });
    }
    if req.subject_cn.is_empty() || req.subject_cn.len() > MAX_CN_LEN {
        return Err(CertError::SubjectCn { len: req.subject_cn.len() });
    }
    let not_after = req.now_unix.checked_add(u64::from(req.validity_secs)).ok_or(CertError::TimeOutOfRange)?;
    if not_after > time::MAX_UNIX {
        return Err(CertError::TimeOutOfRange);
    }
    let not_before = req.now_unix.saturating_sub(BACKDATE_SECS);

    let mut fields: Vec<&(FieldId, FieldValue)> = req.fields.iter().collect();
    fields.sort_by_key(|(id, _)| *id);
    for pair in fields.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(CertError::DuplicateField(pair[0].0));
        }
    }
    for (id, v) in &fields {
        if v.kind() != id.kind() {
            return Err(CertError::KindMismatch { field: *id, got: v.kind(), expected: id.kind() });
        }
    }

    let mut serial = req.serial;
    serial[0] |= 0x80;
    let key = CertKey::derive(req.qkd_key, &serial).map_err(CertError::Crypto)?;

    // Field extensions, ascending id, back to back; `ends[i]` is where
    // field i's extension ends, so dropping the highest ids is a truncate.
    let mut field_exts = Vec::new();
    let mut ends = Vec::with_capacity(fields.len());
    for (id, value) in &fields {
        let plain = Zeroizing::new(value.encode());
        let sealed = key.seal(*id, &plain).map_err(CertError::Crypto)?;
        let mut inner = Vec::with_capacity(sealed.len() + 4);
        tlv(&mut inner, OCTET_STRING, &sealed);
        extension(&mut field_exts, &oid::field(*id), false, &inner);
        ends.push(field_exts.len());
    }

    let prefix = tbs_prefix(issuer, leaf, req.subject_cn, &serial, not_before, not_after);
    let mut included: Vec<FieldId> = fields.iter().map(|(id, _)| *id).collect();
    let mut dropped: Vec<FieldId> = Vec::new();
    let header = loop {
        let header = header_extension(req.key_id, req.state_version, &dropped);
        let exts_len = issuer.fixed_exts.len() + header.len() + field_exts.len();
        let tbs_len = der::tlv_len(prefix.len() + der::tlv_len(der::tlv_len(exts_len)));
        let sig_len = der::tlv_len(1 + issuer.max_sig_len());
        if der::tlv_len(tbs_len + issuer.sig_alg.len() + sig_len) <= MAX_CERT_LEN {
            break header;
        }
        let Some(last) = included.pop() else {
            return Err(CertError::TooLarge);
        };
        ends.pop();
        field_exts.truncate(ends.last().copied().unwrap_or(0));
        dropped.insert(0, last);
    };

    let out = assemble(issuer, &prefix, &[&issuer.fixed_exts, &header, &field_exts])?;
    Ok(Minted { der: out, serial_hex: hex::encode(serial), included, dropped })
}

/// Signs `prefix || [3] { SEQUENCE { exts... } }` as the TBSCertificate
/// and wraps it into a Certificate.
pub(crate) fn assemble(issuer: &Issuer, prefix: &[u8], exts: &[&[u8]]) -> Result<Vec<u8>, CertError> {
    let exts_len: usize = exts.iter().map(|e| e.len()).sum();
    let tbs_content = prefix.len() + der::tlv_len(der::tlv_len(exts_len));
    let mut tbs = Vec::with_capacity(der::tlv_len(tbs_content));
    der::header(&mut tbs, SEQUENCE, tbs_content);
    tbs.extend_from_slice(prefix);
    der::header(&mut tbs, der::CTX3_CONSTRUCTED, der::tlv_len(exts_len));
    der::header(&mut tbs, SEQUENCE, exts_len);
    for e in exts {
        tbs.extend_from_slice(e);
    }
    let sig = issuer.sign(&tbs)?;
    let content = tbs.len() + issuer.sig_alg.len() + der::tlv_len(1 + sig.len());
    let mut out = Vec::with_capacity(der::tlv_len(content));
    der::header(&mut out, SEQUENCE, content);
    out.extend_from_slice(&tbs);
    out.extend_from_slice(&issuer.sig_alg);
    der::header(&mut out, der::BIT_STRING, 1 + sig.len());
    out.push(0); // no unused bits
    out.extend_from_slice(&sig);
    Ok(out)
}

/// TBSCertificate contents from `version` through `subjectPublicKeyInfo`.
pub(crate) fn tbs_prefix(issuer: &Issuer, leaf: &LeafKey, cn: &str, serial: &[u8; 16], nb: u64, na: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + issuer.subject.len() + leaf.spki.len());
    out.extend_from_slice(&[der::CTX0_CONSTRUCTED, 3, der::INTEGER, 1, 2]); // [0] { INTEGER 2 } = v3
    der::header(&mut out, der::INTEGER, 17);
    out.push(0); // keeps the INTEGER positive: the top bit of serial[0] is set
    out.extend_from_slice(serial);
    out.extend_from_slice(&issuer.sig_alg);
    out.extend_from_slice(&issuer.subject);
    der::header(&mut out, SEQUENCE, time::encoded_len(nb) + time::encoded_len(na));
    time::write(&mut out, nb);
    time::write(&mut out, na);
    subject_name(&mut out, cn);
    out.extend_from_slice(&leaf.spki);
    out
}

/// `Name` DER: `O=qmeta, CN=<cn>`, each in its own RDN, UTF8String values.
fn subject_name(out: &mut Vec<u8>, cn: &str) {
    let mut rdns = Vec::with_capacity(32 + cn.len());
    for (attr, value) in [(oid::ORGANIZATION, "qmeta"), (oid::COMMON_NAME, cn)] {
        let mut atv = Vec::with_capacity(16 + value.len());
        tlv(&mut atv, der::OID, attr);
        tlv(&mut atv, der::UTF8_STRING, value.as_bytes());
        let mut seq = Vec::with_capacity(atv.len() + 4);
        tlv(&mut seq, SEQUENCE, &atv);
        tlv(&mut rdns, der::SET, &seq);
    }
    tlv(out, SEQUENCE, &rdns);
}

/// The header extension: `SEQUENCE { formatVersion, keyId, stateVersion,
/// aead, dropped }` under OID `B.1`, non-critical.
pub(crate) fn header_extension(key_id: uuid::Uuid, state_version: u64, dropped: &[FieldId]) -> Vec<u8> {
    let mut dropped_der = Vec::with_capacity(dropped.len() * 4);
    for f in dropped {
        der::uint(&mut dropped_der, u64::from(f.get()));
    }
    let mut content = Vec::with_capacity(48 + dropped_der.len());
    der::uint(&mut content, FORMAT_VERSION);
    tlv(&mut content, OCTET_STRING, key_id.as_bytes());
    der::uint(&mut content, state_version);
    der::uint(&mut content, AEAD_AES_256_GCM);
    tlv(&mut content, SEQUENCE, &dropped_der);
    let mut value = Vec::with_capacity(content.len() + 4);
    tlv(&mut value, SEQUENCE, &content);
    let mut out = Vec::with_capacity(value.len() + 32);
    extension(&mut out, &oid::header(), false, &value);
    out
}
