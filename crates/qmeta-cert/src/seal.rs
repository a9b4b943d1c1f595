//! Per-certificate value key and AEAD sealing of field values.
//!
//! key   = HKDF-SHA256(IKM = QKD key, salt = 16 serial bytes,
//!                     info = "qmeta cert v1 value key", L = 32)
//! nonce = 00 * 10 || field id (u16 BE)
//! aad   = "qmeta field v1" || field id (u16 BE)
//! AES-256-GCM, 16-byte tag appended.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use hkdf::Hkdf;
use qmeta_fields::FieldId;
use sha2::Sha256;
use zeroize::Zeroizing;

/// HKDF `info` for the per-certificate value key.
pub const KEY_INFO: &[u8] = b"qmeta cert v1 value key";
/// Prefix of every value's associated data; the field id follows.
pub const AAD_LABEL: &[u8] = b"qmeta field v1";
/// Shortest QKD key accepted as HKDF input keying material.
pub const MIN_QKD_KEY_LEN: usize = 32;
/// AES-256-GCM tag length.
pub const TAG_LEN: usize = 16;

/// The AEAD nonce of field `f`: ten zero bytes, then the id big-endian.
/// Unique because each certificate has its own key and holds a field once.
pub fn nonce_bytes(f: FieldId) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[10..].copy_from_slice(&f.get().to_be_bytes());
    n
}

/// The associated data of field `f`: binds a value to its field.
pub fn aad_bytes(f: FieldId) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..14].copy_from_slice(AAD_LABEL);
    a[14..].copy_from_slice(&f.get().to_be_bytes());
    a
}

/// The per-certificate AES-256-GCM key.
pub(crate) struct CertKey(LessSafeKey);

impl CertKey {
    /// Derives the key for the certificate with these serial bytes.
    /// The caller checked `qkd_key.len() >= MIN_QKD_KEY_LEN`.
    pub(crate) fn derive(qkd_key: &[u8], serial: &[u8; 16]) -> Result<CertKey, &'static str> {
        let mut okm = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(serial), qkd_key).expand(KEY_INFO, okm.as_mut()).map_err(|_| "HKDF expand")?;
        let key = UnboundKey::new(&AES_256_GCM, okm.as_ref()).map_err(|_| "AES-256-GCM key")?;
        Ok(CertKey(LessSafeKey::new(key)))
    }

    /// Seals field `f`'s canonical encoding; returns `ciphertext || tag`.
    pub(crate) fn seal(&self, f: FieldId, plaintext: &[u8]) -> Result<Vec<u8>, &'static str> {
        // Sized up front so appending the tag never reallocates (which would
        // leave a freed copy of the plaintext behind).
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(f));
        match self.0.seal_in_place_append_tag(nonce, Aad::from(aad_bytes(f)), &mut buf) {
            Ok(()) => Ok(buf),
            Err(_) => {
                zeroize::Zeroize::zeroize(&mut buf);
                Err("AES-256-GCM seal")
            }
        }
    }

    /// Opens `ciphertext || tag` of field `f`. `None` if it does not authenticate.
    pub(crate) fn open(&self, f: FieldId, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(sealed.to_vec());
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(f));
        let len = self.0.open_in_place(nonce, Aad::from(aad_bytes(f)), buf.as_mut_slice()).ok()?.len();
        buf.truncate(len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_and_aad_layout() {
        let f = FieldId::new(1234).unwrap();
        assert_eq!(nonce_bytes(f), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0xd2]);
        assert_eq!(&aad_bytes(f), b"qmeta field v1\x04\xd2");
    }

    #[test]
    fn seal_open_and_binding() {
        let k = CertKey::derive(&[7u8; 32], &[0x80; 16]).unwrap();
        let sealed = k.seal(FieldId::SNI, b"example.com").unwrap();
        assert_eq!(sealed.len(), 11 + TAG_LEN);
        assert_eq!(k.open(FieldId::SNI, &sealed).unwrap().as_slice(), b"example.com");
        // Same bytes under another field id: the nonce and AAD differ.
        assert!(k.open(FieldId::ALPN, &sealed).is_none());
        // Another serial gives another key.
        let k2 = CertKey::derive(&[7u8; 32], &[0x81; 16]).unwrap();
        assert!(k2.open(FieldId::SNI, &sealed).is_none());
        assert!(k.open(FieldId::SNI, &sealed[..TAG_LEN - 1]).is_none());
    }
}
