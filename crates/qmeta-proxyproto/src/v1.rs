//! PROXY v1: one line of US-ASCII text ending in CRLF, at most 107 bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{Command, Header, Parsed, ProxyError, MIN_HEADER_LEN, V1_MAX_LEN};

const PREFIX: &[u8] = b"PROXY";

/// `buf` starts with `P`. Scans at most [`V1_MAX_LEN`] bytes for CRLF,
/// rejecting control bytes and lone CR/LF as soon as they arrive.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(ProxyError::NotProxy);
    }
    if buf.get(PREFIX.len()).is_some_and(|&b| b != b' ') {
        return Err(ProxyError::BadV1("expected one space after PROXY"));
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => {
                return match window.get(i + 1) {
                    Some(b'\n') => Ok(Parsed::Complete { header: parse_line(&window[..i])?, consumed: i + 2 }),
                    Some(_) => Err(ProxyError::BadV1("CR not followed by LF")),
                    None if i + 1 >= V1_MAX_LEN => Err(ProxyError::TooLong),
                    None => Ok(Parsed::Incomplete { need_at_least: (i + 2).max(MIN_HEADER_LEN) }),
                };
            }
            b'\n' => return Err(ProxyError::BadV1("LF without CR")),
            0x20..=0x7E => {}
            _ => return Err(ProxyError::BadV1("byte outside printable US-ASCII")),
        }
    }
    if window.len() >= V1_MAX_LEN {
        return Err(ProxyError::TooLong);
    }
    // Still need at least CR and LF.
    Ok(Parsed::Incomplete { need_at_least: (window.len() + 2).max(MIN_HEADER_LEN) })
}

/// The line without its CRLF; every byte is printable ASCII.
fn parse_line(line: &[u8]) -> Result<Header, ProxyError> {
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::BadV1("not ASCII"))?;
    let rest = line.strip_prefix("PROXY ").ok_or(ProxyError::BadV1("expected one space after PROXY"))?;
    // UNKNOWN: the receiver must ignore the rest of the line and use the
    // real endpoints.
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        return Ok(Header { version: 1, command: Command::Proxy, source: None, destination: None, tlvs: Vec::new() });
    }
    let (v6, rest) = if let Some(r) = rest.strip_prefix("TCP4 ") {
        (false, r)
    } else if let Some(r) = rest.strip_prefix("TCP6 ") {
        (true, r)
    } else {
        return Err(ProxyError::BadV1("protocol must be TCP4, TCP6 or UNKNOWN"));
    };
    // split(' ') yields empty parts for doubled spaces, which then fail to
    // parse: "exactly one space" holds without a separate check.
    let mut parts = rest.split(' ');
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProxyError::BadV1("expected source, destination and two ports"));
    };
    let src_ip = parse_ip(src, v6).ok_or(ProxyError::BadAddress)?;
    let dst_ip = parse_ip(dst, v6).ok_or(ProxyError::BadAddress)?;
    let sport = parse_port(sport).ok_or(ProxyError::BadV1("bad source port"))?;
    let dport = parse_port(dport).ok_or(ProxyError::BadV1("bad destination port"))?;
    Ok(Header {
        version: 1,
        command: Command::Proxy,
        source: Some(SocketAddr::new(src_ip, sport)),
        destination: Some(SocketAddr::new(dst_ip, dport)),
        tlvs: Vec::new(),
    })
}

fn parse_ip(s: &str, v6: bool) -> Option<IpAddr> {
    if v6 {
        parse_ipv6(s).map(IpAddr::V6)
    } else {
        parse_ipv4(s).map(IpAddr::V4)
    }
}

/// Exactly four decimal numbers 0..=255, no leading zeros (they could be
/// read as octal), one dot between each.
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        *octet = parse_decimal(parts.next()?, 3)?.try_into().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Hex groups with at most one `::`, as `inet_pton` reads them. A dotted
/// IPv4 tail (`::ffff:192.0.2.1`) is accepted because that is how
/// `inet_ntop` (and so HAProxy) prints v4-mapped addresses.
fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    // The std parser also reads nothing else (no zone ids, no brackets);
    // the explicit charset check keeps that true whatever std does later.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
        return None;
    }
    s.parse().ok()
}

/// 0..=65535 in decimal, no leading zeros beyond "0" itself.
fn parse_port(s: &str) -> Option<u16> {
    parse_decimal(s, 5)?.try_into().ok()
}

/// Plain decimal, 1..=`max_digits` digits, no sign, no leading zero.
fn parse_decimal(s: &str, max_digits: usize) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > max_digits || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

/// Writes a v1 line. Both addresses IPv4 → `TCP4`; otherwise `TCP6`, with
/// an IPv4 address written v4-mapped (HAProxy does the same), so encoding
/// cannot fail. Scope ids are not representable and are dropped.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let line = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            format!("PROXY TCP4 {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port())
        }
        _ => format!("PROXY TCP6 {} {} {} {}\r\n", as_v6(src.ip()), as_v6(dst.ip()), src.port(), dst.port()),
    };
    line.into_bytes()
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(line: &[u8]) -> (Header, usize) {
        match crate::parse(line) {
            Ok(Parsed::Complete { header, consumed }) => (header, consumed),
            other => panic!("expected Complete for {line:?}, got {other:?}"),
        }
    }

    #[test]
    fn ipv4_strict() {
        assert_eq!(parse_ipv4("0.0.0.0"), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(parse_ipv4("255.255.255.255"), Some(Ipv4Addr::BROADCAST));
        assert_eq!(parse_ipv4("10.20.30.40"), Some(Ipv4Addr::new(10, 20, 30, 40)));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "256.1.1.1",
            "1..2.3",
            "1.2.3.4.",
            ".1.2.3",
            "+1.2.3.4",
            "1.2.3.-4",
            "0x1.2.3.4",
            "1.2.3.4 ",
            "1000.1.1.1",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ipv6_forms() {
        assert_eq!(parse_ipv6("::1"), Some(Ipv6Addr::LOCALHOST));
        assert_eq!(parse_ipv6("2001:DB8::1"), Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
        assert_eq!(parse_ipv6("::ffff:192.0.2.1"), Some(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()));
        for bad in ["", "1.2.3.4", "::1%eth0", "[::1]", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::1"] {
            assert_eq!(parse_ipv6(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ports_strict() {
        assert_eq!(parse_port("0"), Some(0));
        assert_eq!(parse_port("65535"), Some(65535));
        assert_eq!(parse_port("443"), Some(443));
        for bad in ["", "00", "01", "0443", "65536", "99999", "100000", "-1", "+1", "1a", " 1"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tcp4_and_tcp6_lines() {
        let (h, n) = complete(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 65535\r\nrest");
        assert_eq!(n, 43);
        assert_eq!(h.source, Some("192.0.2.1:1".parse().unwrap()));
        assert_eq!(h.destination, Some("198.51.100.2:65535".parse().unwrap()));
        assert_eq!((h.version, h.command), (1, Command::Proxy));
        let (h, _) = complete(b"PROXY TCP6 2001:db8::1 ::1 0 443\r\n");
        assert_eq!(h.source, Some("[2001:db8::1]:0".parse().unwrap()));
        assert_eq!(h.destination, Some("[::1]:443".parse().unwrap()));
    }

    #[test]
    fn unknown_ignores_rest_of_line() {
        for line in
            [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN anything at all 1 2\r\n", b"PROXY UNKNOWN ::1 ::1 1 2\r\n"]
        {
            let (h, n) = complete(line);
            assert_eq!(n, line.len());
            assert_eq!((h.source, h.destination), (None, None));
            assert_eq!(h.command, Command::Proxy);
        }
    }

    #[test]
    fn grammar_violations() {
        let cases: &[(&[u8], ProxyError)] = &[
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyError::BadV1("LF without CR")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", ProxyError::BadV1("CR not followed by LF")),
            (b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", ProxyError::BadV1("byte outside printable US-ASCII")),
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::BadV1("protocol must be TCP4, TCP6 or UNKNOWN")),
            (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::BadV1("expected one space after PROXY")),
            (b"PROXYX", ProxyError::BadV1("expected one space after PROXY")),
            (b"PROXY\r\n", ProxyError::BadV1("expected one space after PROXY")),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::BadV1("protocol must be TCP4, TCP6 or UNKNOWN")),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::BadV1("protocol must be TCP4, TCP6 or UNKNOWN")),
            (b"PROXY UNKNOWNX\r\n", ProxyError::BadV1("protocol must be TCP4, TCP6 or UNKNOWN")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ProxyError::BadV1("expected source, destination and two ports")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", ProxyError::BadV1("expected source, destination and two ports")),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", ProxyError::BadV1("expected source, destination and two ports")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ProxyError::BadV1("bad source port")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", ProxyError::BadV1("bad destination port")),
            (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", ProxyError::BadAddress),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ProxyError::BadAddress),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ProxyError::BadAddress),
            (b"PROXY TCP6 ::1 ::1%lo 1 2\r\n", ProxyError::BadAddress),
        ];
        for (line, want) in cases {
            assert_eq!(crate::parse(line), Err(*want), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn length_limit_is_107_with_crlf() {
        // The spec's worst case is exactly 107 bytes.
        let ff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let max = format!("PROXY UNKNOWN {ff} {ff} 65535 65535\r\n");
        assert_eq!(max.len(), 107);
        assert_eq!(complete(max.as_bytes()).1, 107);
        let over = format!("PROXY UNKNOWN {ff} {ff} 65535 655355\r\n");
        assert_eq!(crate::parse(over.as_bytes()), Err(ProxyError::TooLong));
        // No CRLF within 107 bytes, no matter how much follows.
        let long = vec![b'A'; 300];
        let mut buf = b"PROXY ".to_vec();
        buf.extend_from_slice(&long);
        assert_eq!(crate::parse(&buf[..107]), Err(ProxyError::TooLong));
        assert_eq!(crate::parse(&buf[..106]), Ok(Parsed::Incomplete { need_at_least: 108 }));
        // CR as the 107th byte: the LF would be the 108th.
        let mut cr_last = buf[..106].to_vec();
        cr_last.extend_from_slice(b"\r\n");
        assert_eq!(crate::parse(&cr_last), Err(ProxyError::TooLong));
    }

    #[test]
    fn encode_round_trip() {
        let cases = [
            ("192.0.2.1:5555", "198.51.100.2:443"),
            ("[2001:db8::7]:1", "[::1]:65535"),
            ("0.0.0.0:0", "255.255.255.255:65535"),
        ];
        for (s, d) in cases {
            let (s, d): (SocketAddr, SocketAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let bytes = encode_v1(s, d);
            assert!(bytes.len() <= V1_MAX_LEN);
            let (h, n) = complete(&bytes);
            assert_eq!(n, bytes.len());
            assert_eq!((h.source, h.destination), (Some(s), Some(d)));
        }
    }

    #[test]
    fn encode_mixed_families_maps_to_v6() {
        let s: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let d: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        let bytes = encode_v1(s, d);
        assert_eq!(bytes, b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 5555 443\r\n");
        let (h, _) = complete(&bytes);
        assert_eq!(h.source.map(|a| a.ip().to_canonical()), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(h.destination, Some(d));
    }
}
