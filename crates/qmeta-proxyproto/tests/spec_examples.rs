//! Every example in HAProxy's `doc/proxy-protocol.txt` (2020/03/05), plus a
//! public capture of HAProxy's v2 output.

mod common;

use std::net::SocketAddr;

use common::{assert_prefixes, unhex};
use qmeta_proxyproto::{crc32c, encode_v2, parse, Command, Parsed, ProxyError, Tlv, V1_MAX_LEN, V2_SIGNATURE};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn section_2_1_example_before_http_request() {
    let buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
    let h = assert_prefixes(buf, 47);
    assert_eq!(h.source, Some(sa("192.168.0.1:56324")));
    assert_eq!(h.destination, Some(sa("192.168.0.11:443")));
    assert_eq!(&buf[47..50], b"GET");
}

#[test]
fn section_2_1_maximum_line_lengths() {
    let tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(tcp4.len(), 56);
    let h = assert_prefixes(tcp4, 56);
    assert_eq!(h.source, Some(sa("255.255.255.255:65535")));

    let ff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let tcp6 = format!("PROXY TCP6 {ff} {ff} 65535 65535\r\n");
    assert_eq!(tcp6.len(), 104);
    let h = assert_prefixes(tcp6.as_bytes(), 104);
    assert_eq!(h.destination, Some(SocketAddr::new(std::net::Ipv6Addr::from(u128::MAX).into(), 65535)));

    let short = b"PROXY UNKNOWN\r\n";
    assert_eq!(short.len(), 15);
    let h = assert_prefixes(short, 15);
    assert_eq!((h.command, h.source), (Command::Proxy, None));

    let worst = format!("PROXY UNKNOWN {ff} {ff} 65535 65535\r\n");
    assert_eq!(worst.len(), V1_MAX_LEN);
    assert_eq!(assert_prefixes(worst.as_bytes(), 107).source, None);
}

#[test]
fn section_2_1_crlf_rules() {
    // "must not tolerate a single CR or LF character to end the line"
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), Err(ProxyError::BadV1("LF without CR")));
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), Err(ProxyError::BadV1("CR not followed by LF")));
    // "If the CRLF sequence is not found in the first 107 characters, the
    // receiver should declare the line invalid."
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(200, b'x');
    assert_eq!(parse(&long), Err(ProxyError::TooLong));
    // "Heading zeroes are not permitted"
    assert_eq!(parse(b"PROXY TCP4 192.168.000.1 192.168.0.11 56324 443\r\n"), Err(ProxyError::BadAddress));
    assert_eq!(parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n"), Err(ProxyError::BadV1("bad source port")));
}

#[test]
fn section_2_2_detection_rules() {
    // v2: signature followed by version 2; v1: "PROXY"; else drop.
    let mut sig13 = V2_SIGNATURE.to_vec();
    sig13.push(0x20);
    assert_eq!(parse(&sig13), Ok(Parsed::Incomplete { need_at_least: 16 }));
    assert_eq!(parse(b"PROXY"), Ok(Parsed::Incomplete { need_at_least: 15 }));
    assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n"), Err(ProxyError::NotProxy));
    assert_eq!(parse(&[0x16, 0x03, 0x01, 0x02, 0x00]), Err(ProxyError::NotProxy));
}

#[test]
fn section_2_2_protocol_bytes_and_address_lengths() {
    // \x11 \x12 TCP/UDP over IPv4: 12; \x21 \x22 over IPv6: 36; \x31 \x32 UNIX: 216.
    for (fam, len, has_addr) in [
        (0x11u8, 12usize, true),
        (0x12, 12, true),
        (0x21, 36, true),
        (0x22, 36, true),
        (0x31, 216, false),
        (0x32, 216, false),
    ] {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, fam]);
        h.extend_from_slice(&(len as u16).to_be_bytes());
        h.extend((0..len).map(|i| i as u8 | 1));
        let header = assert_prefixes(&h, 16 + len);
        assert_eq!(header.source.is_some(), has_addr, "{fam:#x}");
    }
    // \x00 UNSPEC with LOCAL: accept and ignore any address information.
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x04, 9, 9, 9, 9]);
    let header = assert_prefixes(&h, 20);
    assert_eq!((header.command, header.source), (Command::Local, None));
}

#[test]
fn section_2_2_receivers_must_not_assume_zero_length_for_local() {
    let local = encode_v2(Command::Local, Some(sa("10.0.0.1:1")), Some(sa("10.0.0.2:2")), &[]);
    let mut buf = local.clone();
    buf.extend_from_slice(b"\x16\x03\x01");
    let h = assert_prefixes(&buf, local.len());
    assert_eq!((h.command, h.source), (Command::Local, None));
}

#[test]
fn section_2_2_3_crc32c_procedure() {
    let h = encode_v2(Command::Proxy, Some(sa("192.168.0.1:56324")), Some(sa("192.168.0.11:443")), &[Tlv::Crc32c(0)]);
    // Recompute by the text: zero the field, CRC the whole header.
    let at = 16 + 12 + 3;
    let mut zeroed = h.clone();
    zeroed[at..at + 4].fill(0);
    let sent = u32::from_be_bytes(h[at..at + 4].try_into().unwrap());
    assert_eq!(crc32c(&zeroed), sent);
    assert_prefixes(&h, h.len());
    let mut bad = h.clone();
    bad[at] ^= 0xFF;
    assert_eq!(parse(&bad), Err(ProxyError::CrcMismatch));
}

#[test]
fn section_2_2_4_noop_and_2_2_5_unique_id_bound() {
    let ok = encode_v2(
        Command::Proxy,
        Some(sa("1.1.1.1:1")),
        Some(sa("2.2.2.2:2")),
        &[Tlv::Noop, Tlv::UniqueId(vec![0xAB; 128])],
    );
    let h = assert_prefixes(&ok, ok.len());
    assert_eq!(h.tlvs, vec![Tlv::Noop, Tlv::UniqueId(vec![0xAB; 128])]);
    let too_long =
        encode_v2(Command::Proxy, Some(sa("1.1.1.1:1")), Some(sa("2.2.2.2:2")), &[Tlv::UniqueId(vec![0xAB; 129])]);
    assert_eq!(parse(&too_long), Err(ProxyError::BadTlv("UNIQUE_ID longer than 128 bytes")));
}

#[test]
fn public_capture_of_haproxy_v2_tcp4() {
    // HAProxy send-proxy-v2 in front of netcat, from the
    // seriousben/experiment-proxy-protocol README: 172.19.0.1:42578 →
    // 172.19.0.3:80, followed by an HTTP request.
    let buf = unhex(
        "0d0a0d0a000d0a515549540a2111000cac130001ac130003a652005047455420\
         2f20485454502f312e310d0a",
    );
    let h = assert_prefixes(&buf, 28);
    assert_eq!(h.source, Some(sa("172.19.0.1:42578")));
    assert_eq!(h.destination, Some(sa("172.19.0.3:80")));
    assert_eq!(&buf[28..31], b"GET");
}
