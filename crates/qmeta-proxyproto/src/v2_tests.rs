use super::*;
use crate::{parse, ssl_sub, tlv_type};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(buf: &[u8]) -> (Header, usize) {
    match parse(buf) {
        Ok(Parsed::Complete { header, consumed }) => (header, consumed),
        other => panic!("expected Complete, got {other:?}"),
    }
}

/// A PROXY/INET/STREAM header with `extra` bytes after the addresses.
fn inet_with(extra: &[u8]) -> Vec<u8> {
    let mut h = encode_v2(Command::Proxy, Some(sa("203.0.113.7:5555")), Some(sa("192.0.2.1:443")), &[]);
    h.extend_from_slice(extra);
    let len = (h.len() - FIXED_LEN) as u16;
    h[14..16].copy_from_slice(&len.to_be_bytes());
    h
}

#[test]
fn inet_layout_is_exact() {
    let h = encode_v2(Command::Proxy, Some(sa("203.0.113.7:5555")), Some(sa("192.0.2.1:443")), &[]);
    let want = "0d0a0d0a000d0a515549540a 21 11 000c cb007107 c0000201 15b3 01bb";
    assert_eq!(hex::encode(&h), want.replace(' ', ""));
    let (header, n) = complete(&h);
    assert_eq!(n, 28);
    assert_eq!(header.source, Some(sa("203.0.113.7:5555")));
    assert_eq!(header.destination, Some(sa("192.0.2.1:443")));
    assert_eq!((header.version, header.command), (2, Command::Proxy));
}

#[test]
fn inet6_round_trip_and_mixed_families() {
    let (s, d) = (sa("[2001:db8::7]:1"), sa("[::1]:65535"));
    let h = encode_v2(Command::Proxy, Some(s), Some(d), &[]);
    assert_eq!((h[13], h.len()), (0x21, 16 + 36));
    let (header, _) = complete(&h);
    assert_eq!((header.source, header.destination), (Some(s), Some(d)));

    let h = encode_v2(Command::Proxy, Some(sa("192.0.2.9:7")), Some(d), &[]);
    let (header, _) = complete(&h);
    assert_eq!(header.source, Some(SocketAddr::new(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped().into(), 7)));
}

#[test]
fn dgram_addresses_are_reported() {
    let mut h = inet_with(&[]);
    h[13] = 0x12; // UDP over IPv4
    assert_eq!(complete(&h).0.source, Some(sa("203.0.113.7:5555")));
}

#[test]
fn local_skips_block_by_length() {
    // LOCAL with a full INET block and a TLV: all ignored, all consumed.
    let mut h = encode_v2(
        Command::Local,
        Some(sa("203.0.113.7:5555")),
        Some(sa("192.0.2.1:443")),
        &[Tlv::Authority("a.example".into())],
    );
    h.extend_from_slice(b"app");
    let (header, n) = complete(&h);
    assert_eq!(n, h.len() - 3);
    assert_eq!(header.command, Command::Local);
    assert_eq!((header.source, header.destination), (None, None));
    assert!(header.tlvs.is_empty());
    // LOCAL claiming INET with a block too short for it: still fine.
    let mut short = V2_SIGNATURE.to_vec();
    short.extend_from_slice(&[0x20, 0x11, 0x00, 0x02, 0xAA, 0xBB]);
    assert_eq!(complete(&short).1, 18);
    // The usual health check: LOCAL, UNSPEC, length 0.
    let hc = encode_v2(Command::Local, None, None, &[]);
    assert_eq!(hex::encode(&hc), "0d0a0d0a000d0a515549540a20000000");
    assert_eq!(complete(&hc).1, 16);
}

#[test]
fn unspec_is_accepted_without_addresses() {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5]);
    let (header, n) = complete(&h);
    assert_eq!(n, 21);
    assert_eq!((header.command, header.source), (Command::Proxy, None));
    // INET family with UNSPEC transport: addresses ignored as well.
    let mut h = inet_with(&[]);
    h[13] = 0x10;
    assert_eq!(complete(&h).0.source, None);
}

#[test]
fn unix_addresses_are_skipped_and_tlvs_follow() {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x31, 0, 0]);
    let mut path = [0u8; 108];
    path[..9].copy_from_slice(b"/tmp/sock");
    h.extend_from_slice(&path);
    h.extend_from_slice(&path);
    h.extend_from_slice(&[tlv_type::ALPN, 0, 2, b'h', b'2']);
    let len = (h.len() - 16) as u16;
    h[14..16].copy_from_slice(&len.to_be_bytes());
    let (header, n) = complete(&h);
    assert_eq!(n, 16 + 216 + 5);
    assert_eq!((header.source, header.destination), (None, None));
    assert_eq!(header.tlvs, vec![Tlv::Alpn(b"h2".to_vec())]);
    // UNIX datagram too.
    h[13] = 0x32;
    assert_eq!(complete(&h).1, 16 + 216 + 5);
}

#[test]
fn family_length_mismatches() {
    // (family byte, address bytes present) pairs one short of the need.
    for (fam, len) in [(0x11u8, 11usize), (0x21, 35), (0x31, 215), (0x11, 0), (0x21, 12)] {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, fam]);
        h.extend_from_slice(&(len as u16).to_be_bytes());
        h.extend(std::iter::repeat_n(0u8, len));
        assert_eq!(parse(&h), Err(ProxyError::BadAddress), "fam {fam:#x} len {len}");
    }
    // Exactly enough is fine.
    for (fam, len) in [(0x11u8, 12usize), (0x21, 36), (0x31, 216)] {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, fam]);
        h.extend_from_slice(&(len as u16).to_be_bytes());
        h.extend(std::iter::repeat_n(0u8, len));
        assert_eq!(complete(&h).1, 16 + len);
    }
}

#[test]
fn fixed_field_errors_come_early() {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x11);
    assert_eq!(parse(&h), Err(ProxyError::UnsupportedVersion(1)));
    h[12] = 0x31;
    assert_eq!(parse(&h), Err(ProxyError::UnsupportedVersion(3)));
    h[12] = 0x01;
    assert_eq!(parse(&h), Err(ProxyError::UnsupportedVersion(0)));
    h[12] = 0x22;
    assert_eq!(parse(&h), Err(ProxyError::BadCommand(2)));
    h[12] = 0x2F;
    assert_eq!(parse(&h), Err(ProxyError::BadCommand(0xF)));
    h[12] = 0x21;
    for (fam, err) in [
        (0x41u8, ProxyError::BadFamily(4)),
        (0xF1, ProxyError::BadFamily(0xF)),
        (0x13, ProxyError::BadTransport(3)),
        (0x1F, ProxyError::BadTransport(0xF)),
    ] {
        let mut b = h.clone();
        b.push(fam);
        assert_eq!(parse(&b), Err(err), "{fam:#x}");
    }
    // Bad family is rejected for LOCAL too: the byte has no valid meaning.
    let mut b = h.clone();
    b[12] = 0x20;
    b.push(0x51);
    assert_eq!(parse(&b), Err(ProxyError::BadFamily(5)));
}

#[test]
fn signature_mismatch() {
    let mut h = V2_SIGNATURE.to_vec();
    h[11] = b'X';
    assert_eq!(parse(&h), Err(ProxyError::BadSignature));
    assert_eq!(parse(b"\r\n\r\nGET"), Err(ProxyError::BadSignature));
    assert_eq!(parse(b"\r\r"), Err(ProxyError::BadSignature));
}

#[test]
fn size_cap() {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    let max_len = (V2_MAX_LEN - 16) as u16;
    h.extend_from_slice(&(max_len + 1).to_be_bytes());
    // Rejected from the 16 fixed bytes alone, before waiting for the rest.
    assert_eq!(parse(&h), Err(ProxyError::TooLong));
    h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(parse(&h), Err(ProxyError::TooLong));
    // Exactly the cap is accepted (address block + one NOOP as padding).
    h[14..16].copy_from_slice(&max_len.to_be_bytes());
    assert_eq!(parse(&h), Ok(Parsed::Incomplete { need_at_least: V2_MAX_LEN }));
    h.extend_from_slice(&[0; 12]);
    let pad = V2_MAX_LEN - h.len() - 3;
    h.extend_from_slice(&[tlv_type::NOOP]);
    h.extend_from_slice(&(pad as u16).to_be_bytes());
    h.extend(std::iter::repeat_n(0xAA, pad));
    let (header, n) = complete(&h);
    assert_eq!((n, header.tlvs), (V2_MAX_LEN, vec![Tlv::Noop]));
}

#[test]
fn every_tlv_kind_round_trips() {
    let tlvs = vec![
        Tlv::Alpn(b"h2".to_vec()),
        Tlv::Authority("www.example.com".into()),
        Tlv::Noop,
        Tlv::UniqueId(vec![7; 128]),
        Tlv::Ssl {
            client: 0x07,
            verify: 0,
            sub: vec![
                (ssl_sub::VERSION, b"TLSv1.3".to_vec()),
                (ssl_sub::CN, b"client.example".to_vec()),
                (ssl_sub::CIPHER, b"TLS_AES_128_GCM_SHA256".to_vec()),
                (ssl_sub::SIG_ALG, b"ECDSA-SHA256".to_vec()),
                (ssl_sub::KEY_ALG, b"EC256".to_vec()),
            ],
        },
        Tlv::Netns("blue".into()),
        Tlv::Custom(0xEA, b"vpce-0123456789abcdef0".to_vec()),
        Tlv::Unknown(0x06, vec![]),
        Tlv::Unknown(0xF0, b"experiment".to_vec()),
        Tlv::Crc32c(0),
    ];
    let h = encode_v2(Command::Proxy, Some(sa("[2001:db8::7]:1")), Some(sa("[::1]:2")), &tlvs);
    let (header, n) = complete(&h);
    assert_eq!(n, h.len());
    // The CRC TLV carries the computed value, the rest come back as sent.
    let crc = match header.tlvs.last() {
        Some(Tlv::Crc32c(c)) => *c,
        other => panic!("{other:?}"),
    };
    assert_ne!(crc, 0);
    assert_eq!(&header.tlvs[..tlvs.len() - 1], &tlvs[..tlvs.len() - 1]);
    assert_eq!(header.alpn(), Some(&b"h2"[..]));
    assert_eq!(header.authority(), Some("www.example.com"));
    assert_eq!(header.unique_id(), Some(&[7u8; 128][..]));
}

#[test]
fn crc_detects_any_single_bit_flip_outside_itself() {
    let h = encode_v2(
        Command::Proxy,
        Some(sa("203.0.113.7:5555")),
        Some(sa("192.0.2.1:443")),
        &[Tlv::Crc32c(0), Tlv::Authority("x.example".into())],
    );
    complete(&h);
    // Flip bits in the addresses and in the TLV values (not in fields
    // whose change makes a different error fire first).
    for at in (16..28).chain(h.len() - 9..h.len()) {
        let mut bad = h.clone();
        bad[at] ^= 0x01;
        assert_eq!(parse(&bad), Err(ProxyError::CrcMismatch), "byte {at}");
    }
    // And a wrong checksum value itself.
    let mut bad = h.clone();
    bad[28 + 3] ^= 0x80;
    assert_eq!(parse(&bad), Err(ProxyError::CrcMismatch));
}

#[test]
fn tlv_errors() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x01], "TLV overruns the header"),
        (&[0x01, 0x00], "TLV overruns the header"),
        (&[0x01, 0x00, 0x03, b'h', b'2'], "TLV overruns the header"),
        (&[0x04, 0x00, 0x00, 0x01], "TLV overruns the header"),
        (&[0x03, 0x00, 0x03, 0, 0, 0], "CRC32C value is not 4 bytes"),
        (&[0x03, 0x00, 0x05, 0, 0, 0, 0, 0], "CRC32C value is not 4 bytes"),
        (&[0x02, 0x00, 0x02, 0xC3, 0x28], "AUTHORITY is not UTF-8"),
        (&[0x30, 0x00, 0x02, b'n', 0xE9], "NETNS is not US-ASCII"),
        (&[0x20, 0x00, 0x04, 1, 0, 0, 0], "SSL TLV shorter than 5 bytes"),
        (&[0x20, 0x00, 0x07, 1, 0, 0, 0, 0, 0x21, 0x00], "SSL sub-TLV overruns the SSL TLV"),
        (&[0x20, 0x00, 0x09, 1, 0, 0, 0, 0, 0x21, 0x00, 0x02, b'x'], "SSL sub-TLV overruns the SSL TLV"),
        (&[0x01, 0, 1, b'a', 0x01, 0, 1, b'b'], "duplicate TLV"),
        (&[0x20, 0, 5, 0, 0, 0, 0, 0, 0x20, 0, 5, 0, 0, 0, 0, 0], "duplicate TLV"),
    ];
    for (tlvs, why) in cases {
        assert_eq!(parse(&inet_with(tlvs)), Err(ProxyError::BadTlv(why)), "{tlvs:x?}");
    }
    let mut long_id = vec![0x05, 0x00, 129];
    long_id.extend_from_slice(&[1; 129]);
    assert_eq!(parse(&inet_with(&long_id)), Err(ProxyError::BadTlv("UNIQUE_ID longer than 128 bytes")));
    // Two CRC TLVs: the encoder leaves the second zero; rejected either way.
    let h = encode_v2(Command::Proxy, Some(sa("1.2.3.4:1")), Some(sa("5.6.7.8:2")), &[Tlv::Crc32c(0), Tlv::Crc32c(0)]);
    assert_eq!(parse(&h), Err(ProxyError::BadTlv("duplicate TLV")));
}

#[test]
fn repeatable_tlvs_may_repeat() {
    let h = inet_with(&[0x04, 0, 0, 0x04, 0, 1, 0, 0xEA, 0, 1, 1, 0xEA, 0, 0, 0x06, 0, 0, 0x06, 0, 0]);
    let (header, _) = complete(&h);
    assert_eq!(
        header.tlvs,
        vec![
            Tlv::Noop,
            Tlv::Noop,
            Tlv::Custom(0xEA, vec![1]),
            Tlv::Custom(0xEA, vec![]),
            Tlv::Unknown(6, vec![]),
            Tlv::Unknown(6, vec![])
        ]
    );
}

#[test]
fn tlv_debug_hides_values() {
    let t = Tlv::Ssl { client: 1, verify: 0, sub: vec![(ssl_sub::CN, b"alice".to_vec())] };
    let dbg = format!("{t:?} {:?}", Tlv::Authority("bob.example".into()));
    assert!(!dbg.contains("alice") && !dbg.contains("bob"), "{dbg}");
    assert!(dbg.contains("0x22"), "{dbg}");
}
