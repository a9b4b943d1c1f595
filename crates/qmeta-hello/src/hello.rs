//! The parsed ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) and its
//! parser. Only the parts fingerprints and routing need are kept.

use std::fmt;

use crate::reader::Reader;
use crate::{is_grease, HelloError};

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
const EXT_EC_POINT_FORMATS: u16 = 0x000b;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// What a client offered in its ClientHello. Every list is in wire order
/// and still contains any GREASE values; the fingerprint methods drop them.
///
/// `Debug` shows counts only: SNI, ALPN and the lists are client metadata.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// `legacy_version` (`client_version` before TLS 1.3), e.g. `0x0303`.
    pub legacy_version: u16,
    pub cipher_suites: Vec<u16>,
    /// Extension types in wire order.
    pub extensions: Vec<u16>,
    /// The first `host_name` entry of the server_name extension. `None`
    /// when the extension is absent or carries no host name; use
    /// `extensions` to tell an empty extension from a missing one.
    pub sni: Option<String>,
    /// ALPN protocol names in wire order.
    pub alpn: Vec<Vec<u8>>,
    pub supported_versions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
    pub supported_groups: Vec<u16>,
    pub ec_point_formats: Vec<u8>,
}

impl fmt::Debug for ClientHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHello")
            .field("cipher_suites", &self.cipher_suites.len())
            .field("extensions", &self.extensions.len())
            .field("sni", &self.sni.as_ref().map(|_| "<redacted>"))
            .field("alpn", &self.alpn.len())
            .finish_non_exhaustive()
    }
}

impl ClientHello {
    /// Parses a ClientHello body: the handshake message without its 4-byte
    /// header. The slice must hold exactly one message (trailing bytes are
    /// malformed).
    pub fn parse_body(body: &[u8]) -> Result<Self, HelloError> {
        let mut r = Reader::new(body);
        let legacy_version = r.u16("truncated legacy_version")?;
        r.take(32, "truncated random")?;
        let session_id = r.vec8("truncated session_id")?;
        if session_id.len() > 32 {
            return Err(HelloError::Malformed("session_id longer than 32 bytes"));
        }
        let suites = r.vec16("truncated cipher_suites")?;
        if suites.is_empty() {
            return Err(HelloError::Malformed("empty cipher_suites"));
        }
        let cipher_suites = suites.u16_list("odd-length cipher_suites")?;
        if r.vec8("truncated compression_methods")?.is_empty() {
            return Err(HelloError::Malformed("empty compression_methods"));
        }
        let mut hello = ClientHello { legacy_version, cipher_suites, ..ClientHello::default() };
        // SSL 3.0 / early TLS 1.0 hellos may end here without extensions.
        if r.is_empty() {
            return Ok(hello);
        }
        let mut exts = r.vec16("truncated extensions")?;
        r.finish("bytes after extensions")?;
        while !exts.is_empty() {
            let typ = exts.u16("truncated extension type")?;
            let data = exts.vec16("truncated extension data")?;
            hello.extensions.push(typ);
            hello.read_extension(typ, data)?;
        }
        reject_duplicates(&hello.extensions)?;
        Ok(hello)
    }

    fn read_extension(&mut self, typ: u16, mut data: Reader<'_>) -> Result<(), HelloError> {
        match typ {
            EXT_SERVER_NAME => {
                // An empty server_name extension is what servers echo; from a
                // client it carries nothing, which is harmless.
                if data.is_empty() {
                    return Ok(());
                }
                let mut list = data.vec16("truncated server_name list")?;
                data.finish("bytes after server_name list")?;
                while !list.is_empty() {
                    let name_type = list.u8("truncated server_name entry")?;
                    let name = list.vec16("truncated server_name entry")?.rest();
                    if name_type == 0 && self.sni.is_none() {
                        self.sni = Some(host_name(name)?);
                    }
                }
            }
            EXT_ALPN => {
                let mut list = data.vec16("truncated ALPN list")?;
                data.finish("bytes after ALPN list")?;
                if list.is_empty() {
                    return Err(HelloError::Malformed("empty ALPN list"));
                }
                while !list.is_empty() {
                    let proto = list.vec8("truncated ALPN protocol")?.rest();
                    if proto.is_empty() {
                        return Err(HelloError::Malformed("empty ALPN protocol name"));
                    }
                    self.alpn.push(proto.to_vec());
                }
            }
            EXT_SUPPORTED_VERSIONS => {
                let list = data.vec8("truncated supported_versions")?;
                data.finish("bytes after supported_versions")?;
                self.supported_versions = list.u16_list("odd-length supported_versions")?;
            }
            EXT_SIGNATURE_ALGORITHMS => {
                let list = data.vec16("truncated signature_algorithms")?;
                data.finish("bytes after signature_algorithms")?;
                self.signature_algorithms = list.u16_list("odd-length signature_algorithms")?;
            }
            EXT_SUPPORTED_GROUPS => {
                let list = data.vec16("truncated supported_groups")?;
                data.finish("bytes after supported_groups")?;
                self.supported_groups = list.u16_list("odd-length supported_groups")?;
            }
            EXT_EC_POINT_FORMATS => {
                let list = data.vec8("truncated ec_point_formats")?;
                data.finish("bytes after ec_point_formats")?;
                self.ec_point_formats = list.rest().to_vec();
            }
            _ => {}
        }
        Ok(())
    }
}

/// A host name is printable ASCII (A-labels, RFC 6066 §3). Anything else is
/// refused rather than passed on, since the SNI ends up in logs and
/// certificates. Length is only bounded by the message.
fn host_name(name: &[u8]) -> Result<String, HelloError> {
    if name.is_empty() {
        return Err(HelloError::Malformed("empty server_name host_name"));
    }
    if !name.iter().all(u8::is_ascii_graphic) {
        return Err(HelloError::Malformed("server_name host_name is not printable ASCII"));
    }
    Ok(name.iter().map(|&b| char::from(b)).collect())
}

/// RFC 8446 §4.2: at most one extension of each type. GREASE values are
/// exempt because clients draw them at random and a repeat is not an
/// error worth failing a connection over.
fn reject_duplicates(extensions: &[u16]) -> Result<(), HelloError> {
    let mut sorted: Vec<u16> = extensions.iter().copied().filter(|e| !is_grease(*e)).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(HelloError::Malformed("duplicate extension"));
    }
    Ok(())
}
