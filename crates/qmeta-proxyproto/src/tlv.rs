//! PROXY v2 TLVs (type, 16-bit big-endian length, value), decoding and
//! encoding.

use std::fmt;

use crate::crc32c::Crc32c;
use crate::{ProxyError, UNIQUE_ID_MAX_LEN};

/// Registered TLV type bytes.
pub mod tlv_type {
    pub const ALPN: u8 = 0x01;
    pub const AUTHORITY: u8 = 0x02;
    pub const CRC32C: u8 = 0x03;
    pub const NOOP: u8 = 0x04;
    pub const UNIQUE_ID: u8 = 0x05;
    pub const SSL: u8 = 0x20;
    pub const NETNS: u8 = 0x30;
    /// First of the 16 application-specific types (AWS uses 0xEA).
    pub const CUSTOM_MIN: u8 = 0xE0;
    pub const CUSTOM_MAX: u8 = 0xEF;
}

/// Sub-TLV types inside the SSL TLV.
pub mod ssl_sub {
    pub const VERSION: u8 = 0x21;
    pub const CN: u8 = 0x22;
    pub const CIPHER: u8 = 0x23;
    pub const SIG_ALG: u8 = 0x24;
    pub const KEY_ALG: u8 = 0x25;
}

/// One v2 TLV. `Debug` shows the type and value length, never the value.
#[derive(Clone, PartialEq, Eq)]
pub enum Tlv {
    /// 0x01: the ALPN protocol the client negotiated.
    Alpn(Vec<u8>),
    /// 0x02: host name the client asked for (SNI), UTF-8.
    Authority(String),
    /// 0x03: checksum of the whole header. When parsing it has been
    /// verified already; when encoding the value is ignored and computed.
    Crc32c(u32),
    /// 0x04: padding; its value is dropped.
    Noop,
    /// 0x05: opaque connection id, at most 128 bytes.
    UniqueId(Vec<u8>),
    /// 0x20: TLS facts. `client` holds the PP2_CLIENT_* bits, `verify` is
    /// 0 when a client certificate was verified; `sub` are the sub-TLVs
    /// (see [`ssl_sub`]) in wire order.
    Ssl { client: u8, verify: u32, sub: Vec<(u8, Vec<u8>)> },
    /// 0x30: network namespace name, US-ASCII.
    Netns(String),
    /// 0xE0..=0xEF: application-specific.
    Custom(u8, Vec<u8>),
    /// Any other type (unassigned, experimental, future), kept raw.
    Unknown(u8, Vec<u8>),
}

impl Tlv {
    /// The type byte this TLV has on the wire.
    pub fn kind(&self) -> u8 {
        match self {
            Tlv::Alpn(_) => tlv_type::ALPN,
            Tlv::Authority(_) => tlv_type::AUTHORITY,
            Tlv::Crc32c(_) => tlv_type::CRC32C,
            Tlv::Noop => tlv_type::NOOP,
            Tlv::UniqueId(_) => tlv_type::UNIQUE_ID,
            Tlv::Ssl { .. } => tlv_type::SSL,
            Tlv::Netns(_) => tlv_type::NETNS,
            Tlv::Custom(t, _) | Tlv::Unknown(t, _) => *t,
        }
    }
}

impl fmt::Debug for Tlv {
    // Values are client metadata (SNI, certificate CN, ...): never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tlv::Alpn(v) => write!(f, "Alpn(<{} bytes>)", v.len()),
            Tlv::Authority(v) => write!(f, "Authority(<{} bytes>)", v.len()),
            Tlv::Crc32c(_) => write!(f, "Crc32c"),
            Tlv::Noop => write!(f, "Noop"),
            Tlv::UniqueId(v) => write!(f, "UniqueId(<{} bytes>)", v.len()),
            Tlv::Ssl { client, sub, .. } => {
                let kinds: Vec<String> = sub.iter().map(|(t, _)| format!("{t:#04x}")).collect();
                write!(f, "Ssl {{ client: {client:#04x}, sub: [{}] }}", kinds.join(", "))
            }
            Tlv::Netns(v) => write!(f, "Netns(<{} bytes>)", v.len()),
            Tlv::Custom(t, v) => write!(f, "Custom({t:#04x}, <{} bytes>)", v.len()),
            Tlv::Unknown(t, v) => write!(f, "Unknown({t:#04x}, <{} bytes>)", v.len()),
        }
    }
}

/// Splits `data` into (type, value offset, value); every byte must belong
/// to a TLV, so a short tail or an overlong length yields one `Err(())`.
fn split(data: &[u8]) -> impl Iterator<Item = Result<(u8, usize, &[u8]), ()>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let rest = &data[pos..];
        let item = match rest {
            [t, hi, lo, tail @ ..] => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                match tail.get(..len) {
                    Some(value) => {
                        let at = pos + 3;
                        pos += 3 + len;
                        Ok((*t, at, value))
                    }
                    None => Err(()),
                }
            }
            _ => Err(()),
        };
        if item.is_err() {
            pos = data.len(); // stop after the first error
        }
        Some(item)
    })
}

/// Parses the TLVs in `header[start..]` (`header` is the whole v2 header)
/// and verifies the CRC32C TLV if there is one.
pub(crate) fn parse_all(header: &[u8], start: usize) -> Result<Vec<Tlv>, ProxyError> {
    let mut tlvs = Vec::new();
    let mut seen = [false; 256];
    let mut crc_at = None;
    for item in split(header.get(start..).unwrap_or_default()) {
        let (t, at, v) = item.map_err(|()| ProxyError::BadTlv("TLV overruns the header"))?;
        // A registered TLV twice would leave it ambiguous which one the LB
        // used; refuse rather than pick.
        let singleton = matches!(
            t,
            tlv_type::ALPN
                | tlv_type::AUTHORITY
                | tlv_type::CRC32C
                | tlv_type::UNIQUE_ID
                | tlv_type::SSL
                | tlv_type::NETNS
        );
        if singleton && std::mem::replace(&mut seen[usize::from(t)], true) {
            return Err(ProxyError::BadTlv("duplicate TLV"));
        }
        tlvs.push(match t {
            tlv_type::ALPN => Tlv::Alpn(v.to_vec()),
            tlv_type::AUTHORITY => {
                Tlv::Authority(String::from_utf8(v.to_vec()).map_err(|_| ProxyError::BadTlv("AUTHORITY is not UTF-8"))?)
            }
            tlv_type::CRC32C => {
                let bytes: [u8; 4] = v.try_into().map_err(|_| ProxyError::BadTlv("CRC32C value is not 4 bytes"))?;
                crc_at = Some(start + at);
                Tlv::Crc32c(u32::from_be_bytes(bytes))
            }
            tlv_type::NOOP => Tlv::Noop,
            tlv_type::UNIQUE_ID if v.len() > UNIQUE_ID_MAX_LEN => {
                return Err(ProxyError::BadTlv("UNIQUE_ID longer than 128 bytes"))
            }
            tlv_type::UNIQUE_ID => Tlv::UniqueId(v.to_vec()),
            tlv_type::SSL => parse_ssl(v)?,
            tlv_type::NETNS if !v.is_ascii() => return Err(ProxyError::BadTlv("NETNS is not US-ASCII")),
            tlv_type::NETNS => Tlv::Netns(String::from_utf8_lossy(v).into_owned()),
            tlv_type::CUSTOM_MIN..=tlv_type::CUSTOM_MAX => Tlv::Custom(t, v.to_vec()),
            _ => Tlv::Unknown(t, v.to_vec()),
        });
    }
    if let Some(at) = crc_at {
        let mut c = Crc32c::new();
        c.update(&header[..at]);
        c.update(&[0; 4]);
        c.update(&header[at + 4..]);
        let sent = u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        if c.finish() != sent {
            return Err(ProxyError::CrcMismatch);
        }
    }
    Ok(tlvs)
}

fn parse_ssl(v: &[u8]) -> Result<Tlv, ProxyError> {
    let [client, a, b, c, d, subs @ ..] = v else {
        return Err(ProxyError::BadTlv("SSL TLV shorter than 5 bytes"));
    };
    let mut sub = Vec::new();
    for item in split(subs) {
        let (t, _, value) = item.map_err(|()| ProxyError::BadTlv("SSL sub-TLV overruns the SSL TLV"))?;
        sub.push((t, value.to_vec()));
    }
    Ok(Tlv::Ssl { client: *client, verify: u32::from_be_bytes([*a, *b, *c, *d]), sub })
}

/// Appends `tlv`; returns the offset of the CRC32C value if it wrote one
/// (as zeros, for the caller to fill in).
///
/// # Panics
/// If a value is longer than 65535 bytes, which the format cannot express.
pub(crate) fn encode(out: &mut Vec<u8>, tlv: &Tlv) -> Option<usize> {
    let mut ssl_value;
    let value: &[u8] = match tlv {
        Tlv::Alpn(v) | Tlv::UniqueId(v) | Tlv::Custom(_, v) | Tlv::Unknown(_, v) => v,
        Tlv::Authority(s) | Tlv::Netns(s) => s.as_bytes(),
        Tlv::Crc32c(_) => &[0; 4],
        Tlv::Noop => &[],
        Tlv::Ssl { client, verify, sub } => {
            ssl_value = vec![*client];
            ssl_value.extend_from_slice(&verify.to_be_bytes());
            for (t, v) in sub {
                put(&mut ssl_value, *t, v);
            }
            &ssl_value
        }
    };
    put(out, tlv.kind(), value);
    matches!(tlv, Tlv::Crc32c(_)).then(|| out.len() - 4)
}

fn put(out: &mut Vec<u8>, t: u8, value: &[u8]) {
    let len = u16::try_from(value.len()).expect("PROXY v2 TLV value longer than 65535 bytes");
    out.push(t);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}
