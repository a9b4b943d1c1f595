//! Helpers shared by the integration tests.
#![allow(dead_code)]

use qmeta_proxyproto::{parse, Header, Parsed};

/// Asserts that `buf[..header_len]` is a complete header and that every
/// shorter prefix is `Incomplete` with a `need_at_least` that is more than
/// the prefix and no more than the real header length; returns the header.
pub fn assert_prefixes(buf: &[u8], header_len: usize) -> Header {
    for k in 0..header_len {
        match parse(&buf[..k]) {
            Ok(Parsed::Incomplete { need_at_least }) => assert!(
                k < need_at_least && need_at_least <= header_len,
                "prefix {k}: need_at_least {need_at_least}, header {header_len}"
            ),
            other => panic!("prefix {k} of {header_len}: {other:?}"),
        }
    }
    let mut last = None;
    for k in header_len..=buf.len() {
        match parse(&buf[..k]) {
            Ok(Parsed::Complete { header, consumed }) => {
                assert_eq!(consumed, header_len, "with {k} bytes");
                if let Some(prev) = &last {
                    assert_eq!(prev, &header, "trailing bytes changed the header");
                }
                last = Some(header);
            }
            other => panic!("{k} bytes: {other:?}"),
        }
    }
    last.expect("at least one complete parse")
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim()).expect("vector is hex")
}
