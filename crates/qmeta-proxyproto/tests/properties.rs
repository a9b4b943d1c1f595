//! Property tests: the parser never panics, stays within its bounds, and
//! reads back what the encoders write.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::assert_prefixes;
use proptest::prelude::*;
use qmeta_proxyproto::{encode_v1, encode_v2, parse, Command, Parsed, Tlv, MAX_HEADER_LEN, V1_MAX_LEN, V2_SIGNATURE};

fn check_bounds(buf: &[u8]) {
    match parse(buf) {
        Ok(Parsed::Complete { consumed, .. }) => {
            assert!(consumed <= buf.len() && consumed <= MAX_HEADER_LEN);
        }
        Ok(Parsed::Incomplete { need_at_least }) => {
            assert!(need_at_least > buf.len() && need_at_least <= MAX_HEADER_LEN);
        }
        Err(_) => {}
    }
}

fn addr_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u16>(), any::<u32>(), any::<u16>()).prop_map(|(a, p, b, q)| (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), q)
        )),
        (any::<u128>(), any::<u16>(), any::<u128>(), any::<u16>()).prop_map(|(a, p, b, q)| (
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), q)
        )),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// TLVs as the parser returns them (no duplicates of registered types, no
/// CRC: that one is added separately).
fn tlvs() -> impl Strategy<Value = Vec<Tlv>> {
    let repeatable = prop_oneof![
        Just(Tlv::Noop),
        (0xE0u8..=0xEF, bytes(40)).prop_map(|(t, v)| Tlv::Custom(t, v)),
        (prop_oneof![0x06u8..=0x1F, 0x21u8..=0x2F, 0x31u8..=0xDF, 0xF0u8..=0xFF], bytes(40))
            .prop_map(|(t, v)| Tlv::Unknown(t, v)),
    ];
    (
        proptest::option::of(bytes(20).prop_map(Tlv::Alpn)),
        proptest::option::of("[a-z0-9.é-]{0,40}".prop_map(Tlv::Authority)),
        proptest::option::of(bytes(129).prop_map(Tlv::UniqueId)),
        proptest::option::of(
            (any::<u8>(), any::<u32>(), proptest::collection::vec((any::<u8>(), bytes(30)), 0..5))
                .prop_map(|(client, verify, sub)| Tlv::Ssl { client, verify, sub }),
        ),
        proptest::option::of("[ -~]{0,20}".prop_map(Tlv::Netns)),
        proptest::collection::vec(repeatable, 0..6),
    )
        .prop_map(|(a, b, c, d, e, rest)| {
            let mut v: Vec<Tlv> = [a, b, c, d, e].into_iter().flatten().collect();
            v.extend(rest);
            v
        })
        .prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_bytes(buf in bytes(600)) {
        check_bounds(&buf);
    }

    #[test]
    fn never_panics_behind_a_v2_signature(tail in bytes(600), ver in any::<u8>(), fam in any::<u8>(), len in any::<u16>()) {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.extend_from_slice(&[ver, fam]);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&tail);
        check_bounds(&buf);
        // With a plausible version/command the TLV parser gets exercised.
        buf[12] = 0x21;
        buf[13] = [0x11, 0x21, 0x31, 0x00][usize::from(fam % 4)];
        let short = (tail.len() as u16).min(len);
        buf[14..16].copy_from_slice(&short.to_be_bytes());
        check_bounds(&buf);
    }

    #[test]
    fn never_panics_behind_proxy_text(tail in "[ -~\r\n]{0,120}") {
        let mut buf = b"PROXY ".to_vec();
        buf.extend_from_slice(tail.as_bytes());
        check_bounds(&buf);
    }

    #[test]
    fn mutated_valid_headers_never_panic(
        (s, d) in addr_pair(), tl in tlvs(), at in any::<prop::sample::Index>(), x in 1u8..=255
    ) {
        let mut buf = encode_v2(Command::Proxy, Some(s), Some(d), &tl);
        let i = at.index(buf.len());
        buf[i] ^= x;
        check_bounds(&buf);
    }

    #[test]
    fn v2_round_trip((s, d) in addr_pair(), tl in tlvs(), crc in any::<bool>(), app in bytes(20)) {
        let mut tl = tl;
        if crc {
            tl.insert(0, Tlv::Crc32c(0));
        }
        let header = encode_v2(Command::Proxy, Some(s), Some(d), &tl);
        let invalid = tl.iter().any(|t| matches!(t, Tlv::UniqueId(v) if v.len() > 128));
        let mut buf = header.clone();
        buf.extend_from_slice(&app);
        if invalid {
            prop_assert!(parse(&buf).is_err());
        } else {
            let got = assert_prefixes(&buf, header.len());
            prop_assert_eq!(got.source, Some(s));
            prop_assert_eq!(got.destination, Some(d));
            let got_tlvs: Vec<Tlv> =
                got.tlvs.into_iter().filter(|t| !matches!(t, Tlv::Crc32c(_))).collect();
            let want: Vec<Tlv> = tl.into_iter().filter(|t| !matches!(t, Tlv::Crc32c(_))).collect();
            prop_assert_eq!(got_tlvs, want);
        }
    }

    #[test]
    fn v1_round_trip((s, d) in addr_pair(), app in bytes(20)) {
        let line = encode_v1(s, d);
        prop_assert!(line.len() <= V1_MAX_LEN);
        let mut buf = line.clone();
        buf.extend_from_slice(&app);
        let got = assert_prefixes(&buf, line.len());
        prop_assert_eq!((got.source, got.destination), (Some(s), Some(d)));
    }
}
