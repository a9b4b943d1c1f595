//! Reference vectors (FoxIO JA4 technical details, salesforce JA3) and
//! synthetic edge cases, built byte by byte.

mod common;

use common::*;
use qmeta_hello::{capture, Capture, ClientHello, HelloError, MAX_HELLO_LEN, MAX_RECORDS_LEN};

fn complete(records: &[u8]) -> (ClientHello, usize) {
    match capture(records) {
        Ok(Capture::Complete { hello, consumed_records_len }) => (hello, consumed_records_len),
        other => panic!("expected Complete, got {other:?}"),
    }
}

/// The JA4 spec example: wire-order lists from its text, plus GREASE in
/// every list where clients put it.
fn spec_example() -> Vec<u8> {
    let ciphers = [
        0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d,
        0x002f, 0x0035,
    ];
    let mut exts = Vec::new();
    exts.push((0x0a0a, vec![]));
    for t in [
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b,
        0x000a, 0x0015,
    ] {
        exts.push(match t {
            0x0000 => ext_sni(b"example.com"),
            0x0010 => ext_alpn(&[b"h2", b"http/1.1"]),
            0x000d => ext_u16_list16(0x000d, &[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]),
            0x002b => ext_versions(&[0x3a3a, 0x0304, 0x0303]),
            0x000a => ext_u16_list16(0x000a, &[0x4a4a, 0x001d, 0x0017, 0x0018]),
            0x000b => ext_points(&[0]),
            t => (t, vec![]),
        });
    }
    exts.push((0xfafa, vec![0]));
    frame(&hello_msg(0x0303, &ciphers, Some(&exts)), &[])
}

#[test]
fn ja4_spec_example() {
    let records = spec_example();
    let (hello, consumed) = complete(&records);
    assert_eq!(consumed, records.len());
    assert_eq!(hello.ja4(), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    assert_eq!(
        hello.ja4_r(),
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
         0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
         0403,0804,0401,0503,0805,0501,0806,0601"
    );
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(hello.supported_versions, vec![0x3a3a, 0x0304, 0x0303]);
    assert_eq!(hello.extensions.first(), Some(&0x0a0a), "GREASE kept in the raw list");
    assert_eq!(hello.extensions.len(), 18);
}

#[test]
fn grease_in_signature_algorithms_is_ignored() {
    let exts = [ext_u16_list16(0x000d, &[0x1a1a, 0x0403, 0x0804])];
    let with = complete(&frame(&hello_msg(0x0303, &[0x1301], Some(&exts)), &[])).0;
    let exts = [ext_u16_list16(0x000d, &[0x0403, 0x0804])];
    let without = complete(&frame(&hello_msg(0x0303, &[0x1301], Some(&exts)), &[])).0;
    assert_eq!(with.ja4_r(), "t12i010100_1301_000d_0403,0804");
    assert_eq!(with.ja4(), without.ja4());
}

#[test]
fn ja3_reference_vector() {
    let ciphers = [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4];
    let exts = [ext_sni(b"example.com"), ext_u16_list16(10, &[23, 24, 25]), ext_points(&[0])];
    let (hello, _) = complete(&frame(&hello_msg(0x0301, &ciphers, Some(&exts)), &[]));
    assert_eq!(hello.ja3_string(), "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0");
    assert_eq!(hello.ja3(), "ada70206e40642a3e4461f35503241d5");
}

#[test]
fn ja3_drops_grease_everywhere() {
    let exts = [(0x1a1a, vec![]), ext_u16_list16(10, &[0x2a2a, 29])];
    let (hello, _) = complete(&frame(&hello_msg(0x0303, &[0x3a3a, 4865], Some(&exts)), &[]));
    assert_eq!(hello.ja3_string(), "771,4865,10,29,");
}

#[test]
fn tls10_hello_without_extensions_or_sigalgs() {
    // No extensions block at all, as SSL 3.0 / early TLS 1.0 clients send.
    let (hello, _) = complete(&frame(&hello_msg(0x0301, &[0x002f, 0x0035], None), &[]));
    assert_eq!(hello.ja4(), "t10i020000_f54dd463d39b_000000000000");
    assert_eq!(hello.ja4_r(), "t10i020000_002f,0035_");
    assert_eq!(hello.ja3_string(), "769,47-53,,,");
    // With extensions but no signature_algorithms: no trailing `_` in `c`.
    let exts = [ext_u16_list16(10, &[23]), ext_points(&[0])];
    let (hello, _) = complete(&frame(&hello_msg(0x0301, &[0x002f], Some(&exts)), &[]));
    assert_eq!(hello.ja4_r(), "t10i010200_002f_000a,000b");
    assert_eq!(hello.ja4(), "t10i010200_ba72b8082249_33a13ba74d1c");
}

#[test]
fn sni_longer_than_255_bytes() {
    let name = format!("{}.example", "a".repeat(300));
    let exts = [ext_sni(name.as_bytes())];
    let (hello, _) = complete(&frame(&hello_msg(0x0303, &[0x1301], Some(&exts)), &[]));
    assert_eq!(hello.sni.as_deref(), Some(name.as_str()));
    assert!(hello.ja4().starts_with("t12d0101"));
}

#[test]
fn sni_with_control_bytes_is_malformed() {
    let exts = [ext_sni(b"evil\ncom")];
    let records = frame(&hello_msg(0x0303, &[0x1301], Some(&exts)), &[]);
    assert!(matches!(capture(&records), Err(HelloError::Malformed(_))));
}

#[test]
fn counts_cap_at_99() {
    let ciphers: Vec<u16> = (1..=120).collect();
    let exts: Vec<(u16, Vec<u8>)> = (0x100..0x100 + 110).map(|t| (t, vec![])).collect();
    let (hello, _) = complete(&frame(&hello_msg(0x0303, &ciphers, Some(&exts)), &[]));
    assert!(hello.ja4().starts_with("t12i999900_"), "{}", hello.ja4());
}

#[test]
fn version_mapping() {
    for (sv, legacy, want) in [
        (vec![0x0304], 0x0303, "13"),
        (vec![0x5a5a, 0x0303, 0x0302], 0x0301, "12"),
        (vec![], 0x0302, "11"),
        (vec![], 0x0300, "s3"),
        (vec![], 0x7f12, "00"),
    ] {
        let exts = [ext_versions(&sv)];
        let exts: &[(u16, Vec<u8>)] = if sv.is_empty() { &[] } else { &exts };
        let (hello, _) = complete(&frame(&hello_msg(legacy, &[0x1301], Some(exts)), &[]));
        assert_eq!(&hello.ja4()[1..3], want);
    }
}

#[test]
fn hello_split_across_two_and_three_records() {
    let msg = unframe(&spec_example());
    let whole = complete(&frame(&msg, &[])).0;
    for cuts in [vec![1], vec![3], vec![4], vec![100], vec![2, 50], vec![60, 61], vec![msg.len() - 1]] {
        let records = frame(&msg, &cuts);
        let (hello, consumed) = complete(&records);
        assert_eq!(hello, whole, "cuts {cuts:?}");
        assert_eq!(consumed, records.len());
        for n in 0..records.len() {
            match capture(&records[..n]) {
                Ok(Capture::Incomplete { need_at_least }) => {
                    assert!(need_at_least > n && need_at_least <= records.len(), "cuts {cuts:?} n {n}")
                }
                other => panic!("prefix {n} of split {cuts:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn bytes_after_the_hello_records_are_left_alone() {
    let mut records = spec_example();
    let len = records.len();
    records.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17]);
    assert_eq!(complete(&records).1, len);
}

#[test]
fn non_tls_bytes_are_not_handshake() {
    for input in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"G", b"\x16\x47", b"\x80\x2e\x01\x03\x01"] {
        assert_eq!(capture(input), Err(HelloError::NotHandshake), "{input:?}");
    }
    // PROXY v2 signature starts with 0x0d.
    assert_eq!(capture(b"\r\n\r\n\0\r\nQUIT\n"), Err(HelloError::NotHandshake));
}

#[test]
fn empty_input_needs_a_record_header() {
    assert_eq!(capture(&[]), Ok(Capture::Incomplete { need_at_least: 5 }));
    assert_eq!(capture(&[0x16, 3]), Ok(Capture::Incomplete { need_at_least: 5 }));
}

#[test]
fn other_handshake_messages_are_not_client_hello() {
    let mut msg = unframe(&spec_example());
    msg[0] = 2; // ServerHello
    assert_eq!(capture(&frame(&msg, &[])), Err(HelloError::NotClientHello));
    // Reported as soon as the type byte is in, even mid-record.
    assert_eq!(capture(&frame(&msg, &[1])[..6]), Err(HelloError::NotClientHello));
}

#[test]
fn oversized_hello_is_too_large() {
    // Declared length just past the bound, fragmented into legal records.
    let body_len = MAX_HELLO_LEN - 4 + 1;
    let mut msg = vec![1u8];
    msg.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    msg.resize(4 + body_len, 0);
    let records = frame(&msg, &[16 * 1024]);
    assert_eq!(capture(&records), Err(HelloError::TooLarge));
    assert_eq!(capture(&records[..9]), Err(HelloError::TooLarge), "known from the header");
    // A hello of legal size trickled in 1-byte records overflows MAX_RECORDS_LEN.
    let msg = hello_msg(0x0303, &vec![0x1301; 3000], None);
    let cuts: Vec<usize> = (1..msg.len()).collect();
    let records = frame(&msg, &cuts);
    assert!(records.len() > MAX_RECORDS_LEN);
    assert_eq!(capture(&records), Err(HelloError::TooLarge));
    // Near the bound, a prefix is either refused or asks for no more than
    // MAX_RECORDS_LEN bytes in total.
    for n in MAX_RECORDS_LEN - 600..MAX_RECORDS_LEN + 20 {
        match capture(&records[..n]) {
            Err(HelloError::TooLarge) => {}
            Ok(Capture::Incomplete { need_at_least }) => {
                assert!(need_at_least > n && need_at_least <= MAX_RECORDS_LEN, "{n}")
            }
            other => panic!("prefix {n}: {other:?}"),
        }
    }
}

#[test]
fn largest_allowed_hello_completes() {
    // Exactly MAX_HELLO_LEN, as two records: the bound is inclusive.
    let ext_len = MAX_HELLO_LEN - hello_msg(0x0303, &[0x1301], Some(&[(0x1234, vec![])])).len();
    let exts = [(0x1234, vec![0u8; ext_len])];
    let msg = hello_msg(0x0303, &[0x1301], Some(&exts));
    assert_eq!(msg.len(), MAX_HELLO_LEN);
    let (hello, _) = complete(&frame(&msg, &[16 * 1024]));
    assert_eq!(hello.extensions, vec![0x1234]);
}

#[test]
fn structural_violations_are_malformed() {
    let msg = unframe(&spec_example());
    // An alert record between two fragments.
    let mut records = frame(&msg[..10], &[]);
    records.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00]);
    assert!(matches!(capture(&records), Err(HelloError::Malformed(_))));
    // A second handshake message after the hello in the same record.
    let mut two = msg.clone();
    two.extend_from_slice(&[0x14, 0, 0, 0]);
    assert!(matches!(capture(&frame(&two, &[])), Err(HelloError::Malformed(_))));
    // Zero-length and over-long records.
    assert!(matches!(capture(&[0x16, 3, 1, 0, 0]), Err(HelloError::Malformed(_))));
    assert!(matches!(capture(&[0x16, 3, 1, 0x40, 1]), Err(HelloError::Malformed(_))));
    // Duplicate extension.
    let exts = [ext_points(&[0]), ext_points(&[0])];
    let dup = frame(&hello_msg(0x0303, &[0x1301], Some(&exts)), &[]);
    assert_eq!(capture(&dup), Err(HelloError::Malformed("duplicate extension")));
    // Extension data with trailing bytes.
    let exts = [(0x002b, vec![2, 3, 4, 0xff])];
    let bad = frame(&hello_msg(0x0303, &[0x1301], Some(&exts)), &[]);
    assert!(matches!(capture(&bad), Err(HelloError::Malformed(_))));
    // Declared message length longer than the extensions it holds: the
    // message is complete but short inside.
    let mut short = msg.clone();
    short[3] = short[3].wrapping_sub(1);
    short.pop();
    assert!(matches!(capture(&frame(&short, &[])), Err(HelloError::Malformed(_))));
}

#[test]
fn debug_output_hides_metadata() {
    let (hello, _) = complete(&spec_example());
    let dbg = format!("{hello:?}");
    assert!(!dbg.contains("example.com") && !dbg.contains("104, 50"), "{dbg}");
    assert!(dbg.contains("redacted"));
}
