//! Real ClientHellos from curl and openssl s_client (captured by
//! captures/capture.py), checked against fingerprints computed by that
//! script's independent Python implementation.

mod common;

use common::*;
use qmeta_hello::{capture, Capture, ClientHello};

fn complete(name: &str, records: &[u8]) -> ClientHello {
    match capture(records) {
        Ok(Capture::Complete { hello, consumed_records_len }) => {
            assert_eq!(consumed_records_len, records.len(), "{name}");
            hello
        }
        other => panic!("{name}: expected Complete, got {other:?}"),
    }
}

#[test]
fn fingerprints_match_the_independent_python_implementation() {
    let captures = captures();
    for (row, (name, records)) in expected().iter().zip(&captures) {
        let hello = complete(name, records);
        assert_eq!(hello.ja4(), row[1], "{name} ja4");
        assert_eq!(hello.ja4_r(), row[2], "{name} ja4_r");
        assert_eq!(hello.ja3_string(), row[3], "{name} ja3 string");
        assert_eq!(hello.ja3(), row[4], "{name} ja3");
    }
}

#[test]
fn captured_fields_are_as_the_clients_were_told() {
    let all: Vec<(String, ClientHello)> = captures().iter().map(|(n, r)| (n.clone(), complete(n, r))).collect();
    let get = |name: &str| &all.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(get("curl").sni.as_deref(), Some("qmeta.test"));
    assert_eq!(get("curl").alpn[0], b"h2");
    assert_eq!(get("curl-tls12-http11").alpn, vec![b"http/1.1".to_vec()]);
    assert!(get("curl-tls12-http11").supported_versions.is_empty());
    assert_eq!(get("openssl-tls10-nosni").sni, None);
    assert!(get("openssl-tls10-nosni").signature_algorithms.is_empty());
    assert_eq!(get("openssl-tls10-nosni").legacy_version, 0x0301);
    assert_eq!(get("openssl-alpn-hex").alpn[0], b"@bc");
    // The TLS 1.0 capture has no sigalgs, so its raw `c` part has no `_`.
    let ja4_r = get("openssl-tls10-nosni").ja4_r();
    assert_eq!(ja4_r.matches('_').count(), 2, "{ja4_r}");
    assert!(ja4_r.starts_with("t10i"));
}

#[test]
fn every_prefix_is_incomplete() {
    for (name, records) in captures() {
        for n in 0..records.len() {
            match capture(&records[..n]) {
                Ok(Capture::Incomplete { need_at_least }) => {
                    assert!(need_at_least > n, "{name} prefix {n}");
                    assert!(need_at_least <= records.len(), "{name} prefix {n}");
                }
                other => panic!("{name} prefix {n}: {other:?}"),
            }
        }
    }
}

#[test]
fn split_into_two_and_three_records() {
    for (name, records) in captures() {
        let whole = complete(&name, &records);
        let msg = unframe(&records);
        let third = msg.len() / 3;
        for cuts in [vec![2], vec![msg.len() / 2], vec![third, 2 * third], vec![1, 5]] {
            let split = frame(&msg, &cuts);
            assert_eq!(complete(&name, &split), whole, "{name} {cuts:?}");
            for n in 0..split.len() {
                assert!(matches!(capture(&split[..n]), Ok(Capture::Incomplete { .. })), "{name} {cuts:?} prefix {n}");
            }
        }
    }
}
