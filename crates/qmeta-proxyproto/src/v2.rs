//! PROXY v2: 16 fixed bytes (signature, version/command, family/transport,
//! length), an address block, then TLVs up to the length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{tlv, Command, Header, Parsed, ProxyError, Tlv, V2_MAX_LEN, V2_SIGNATURE};

const FIXED_LEN: usize = 16;
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;
const UNIX_LEN: usize = 216;

/// `buf` starts with `\r`. Fields are checked as soon as their byte has
/// arrived, so a bad header fails before the rest of it is waited for.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::BadSignature);
    }
    let command = match buf.get(12) {
        None => None,
        Some(&b) if b >> 4 != 2 => return Err(ProxyError::UnsupportedVersion(b >> 4)),
        Some(&b) => Some(match b & 0x0F {
            0 => Command::Local,
            1 => Command::Proxy,
            other => return Err(ProxyError::BadCommand(other)),
        }),
    };
    if let Some(&b) = buf.get(13) {
        if b >> 4 > 3 {
            return Err(ProxyError::BadFamily(b >> 4));
        }
        if b & 0x0F > 2 {
            return Err(ProxyError::BadTransport(b & 0x0F));
        }
    }
    let (Some(command), Some(&fam), Some(len)) = (command, buf.get(13), buf.get(14..16)) else {
        return Ok(Parsed::Incomplete { need_at_least: FIXED_LEN });
    };
    let total = FIXED_LEN + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if total > V2_MAX_LEN {
        return Err(ProxyError::TooLong);
    }
    let Some(header) = buf.get(..total) else {
        return Ok(Parsed::Incomplete { need_at_least: total });
    };
    let block = &header[FIXED_LEN..];
    let (source, destination, tlvs) = match command {
        // LOCAL: the endpoints are the real ones; the block is skipped by
        // its length whatever the family says (HAProxy does the same).
        Command::Local => (None, None, Vec::new()),
        Command::Proxy => proxy_block(header, block, fam)?,
    };
    Ok(Parsed::Complete { header: Header { version: 2, command, source, destination, tlvs }, consumed: total })
}

type Addrs = (Option<SocketAddr>, Option<SocketAddr>, Vec<Tlv>);

fn proxy_block(header: &[u8], block: &[u8], fam: u8) -> Result<Addrs, ProxyError> {
    let (family, transport) = (fam >> 4, fam & 0x0F);
    // UNSPEC family or transport: the spec says to ignore the address
    // information, and without a known layout TLVs cannot be located.
    if family == 0 || transport == 0 {
        return Ok((None, None, Vec::new()));
    }
    let need = match family {
        1 => INET_LEN,
        2 => INET6_LEN,
        _ => UNIX_LEN,
    };
    let Some(addr) = block.get(..need) else {
        return Err(ProxyError::BadAddress);
    };
    let ports =
        |at: usize| (u16::from_be_bytes([addr[at], addr[at + 1]]), u16::from_be_bytes([addr[at + 2], addr[at + 3]]));
    let (source, destination) = match family {
        1 => {
            let (sp, dp) = ports(8);
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(addr[at], addr[at + 1], addr[at + 2], addr[at + 3]));
            (Some(SocketAddr::new(ip(0), sp)), Some(SocketAddr::new(ip(4), dp)))
        }
        2 => {
            let (sp, dp) = ports(32);
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&addr[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            (Some(SocketAddr::new(ip(0), sp)), Some(SocketAddr::new(ip(16), dp)))
        }
        // UNIX paths are not socket addresses: skipped, the real peer applies.
        _ => (None, None),
    };
    let tlvs = tlv::parse_all(header, FIXED_LEN + need)?;
    Ok((source, destination, tlvs))
}

/// Writes a v2 header (transport STREAM).
///
/// Family: both addresses IPv4 → INET; both present otherwise → INET6 with
/// IPv4 written v4-mapped; either missing → UNSPEC with no address block.
/// `cmd` is written as given, so `Command::Local` with addresses encodes a
/// LOCAL header that still carries them (receivers must skip them). TLVs are
/// written in order; a [`Tlv::Crc32c`] gets the checksum of the finished
/// header whatever value it holds (only the first one; later ones stay
/// zero, which a receiver rejects as duplicates — useful in tests).
///
/// # Panics
/// If the header would exceed the format's 16 + 65535 bytes.
pub fn encode_v2(cmd: Command, src: Option<SocketAddr>, dst: Option<SocketAddr>, tlvs: &[Tlv]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(match cmd {
        Command::Local => 0x20,
        Command::Proxy => 0x21,
    });
    out.extend_from_slice(&[0, 0, 0]); // family, length: filled below
    match (src, dst) {
        (Some(SocketAddr::V4(s)), Some(SocketAddr::V4(d))) => {
            out[13] = 0x11;
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        (Some(s), Some(d)) => {
            out[13] = 0x21;
            out.extend_from_slice(&as_v6(s.ip()).octets());
            out.extend_from_slice(&as_v6(d.ip()).octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {}
    }
    let mut crc_at = None;
    for t in tlvs {
        let at = tlv::encode(&mut out, t);
        crc_at = crc_at.or(at);
    }
    let len = u16::try_from(out.len() - FIXED_LEN).expect("PROXY v2 header longer than 16 + 65535");
    out[14..16].copy_from_slice(&len.to_be_bytes());
    if let Some(at) = crc_at {
        let crc = crate::crc32c(&out);
        out[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
#[path = "v2_tests.rs"]
mod tests;
