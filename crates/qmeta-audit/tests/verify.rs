//! The verifier against good logs and every kind of damage.

use proptest::prelude::*;
use qmeta_audit::{verify, Chain, ChainHead, Record, VerifyError, MAX_LINE_BYTES};
use sha2::{Digest, Sha256};

fn record(i: u64) -> Record {
    match i % 4 {
        0 => Record::CertIssued {
            serial: format!("{:032x}", i * 7919),
            backend: "app-1".into(),
            fields: vec![1, 3, 5],
            dropped: vec![],
            key_id: "1c3e0b6a-6f7d-4c55-9a38-2d2b5b6e7f10".into(),
            state_version: i,
            conn_id: 1_000_000 + i,
        },
        1 => Record::Dmcp {
            peer: "127.0.0.1:7000".into(),
            sender: "app-1".into(),
            key_id: Some("k-9".into()),
            seq: Some(i),
            command: "INCLUDE 3".into(),
            accepted: i % 8 == 1,
            reason: (i % 8 != 1).then(|| "replayed".into()),
            state_version: Some(i),
            drawn: None,
        },
        2 => Record::KeyRotated {
            backend: "app-1".into(),
            key_id: format!("k-{i}"),
            previous: Some(format!("k-{}", i - 1)),
        },
        _ => Record::Lifecycle { component: "lb".into(), what: "reload".into() },
    }
}

/// `n` chained lines, time stamps one millisecond apart.
fn lines(n: u64) -> (Vec<String>, ChainHead) {
    let mut chain = Chain::new();
    let lines = (0..n).map(|i| chain.append(1_700_000_000_000 + i, &record(i))).collect();
    (lines, chain.head())
}

fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn check(lines: &[String]) -> Result<qmeta_audit::VerifySummary, VerifyError> {
    verify(text(lines).as_bytes())
}

#[test]
fn ten_thousand_good_records_verify() {
    let (lines, head) = lines(10_000);
    let s = check(&lines).unwrap();
    assert_eq!(s.records, 10_000);
    assert_eq!(s.head, head);
    assert_eq!(s.head.seq, 10_000);
}

#[test]
fn empty_log_verifies_to_the_zero_head() {
    let s = verify(&b""[..]).unwrap();
    assert_eq!(s.records, 0);
    assert_eq!(s.head, ChainHead { seq: 0, hash: "0".repeat(64) });
}

#[test]
fn prev_is_sha256_of_the_previous_line_as_documented() {
    let (lines, head) = lines(3);
    for w in lines.windows(2) {
        let want = hex::encode(Sha256::digest(w[0].as_bytes()));
        assert!(w[1].contains(&format!("\"prev\":\"{want}\"")), "{}", w[1]);
    }
    assert_eq!(head.hash, hex::encode(Sha256::digest(lines[2].as_bytes())));
    assert!(lines[0].starts_with(&format!(
        "{{\"seq\":1,\"ts\":\"2023-11-14T22:13:20.000Z\",\"prev\":\"{}\",\"event\":\"cert_issued\",",
        "0".repeat(64)
    )));
}

#[test]
fn edited_value_is_reported_at_the_next_line() {
    let (mut lines, _) = lines(10);
    // Line 3 (index 2) is a key_rotated record; change a digit of its key id.
    assert!(lines[2].contains("\"key_id\":\"k-2\""));
    lines[2] = lines[2].replace("\"key_id\":\"k-2\"", "\"key_id\":\"k-7\"");
    let e = check(&lines).unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.reason.contains("line 3"), "{e}");
    assert!(e.to_string().starts_with("line 4: "));
}

#[test]
fn edit_that_breaks_the_line_is_reported_at_that_line() {
    let (mut lines, _) = lines(10);
    let mut bytes = lines[2].clone().into_bytes();
    let last = bytes.len() - 1;
    bytes[last] = b']';
    lines[2] = String::from_utf8(bytes).unwrap();
    assert_eq!(check(&lines).unwrap_err().line, 3);
}

#[test]
fn removed_line_is_reported() {
    let (mut lines, _) = lines(10);
    lines.remove(4);
    let e = check(&lines).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.reason.contains("seq 6 where 5 was expected"), "{e}");
}

#[test]
fn removed_first_line_is_reported() {
    let (mut lines, _) = lines(5);
    lines.remove(0);
    assert_eq!(check(&lines).unwrap_err().line, 1);
}

#[test]
fn swapped_lines_are_reported() {
    let (mut lines, _) = lines(10);
    lines.swap(2, 3);
    let e = check(&lines).unwrap_err();
    assert_eq!(e.line, 3, "{e}");
}

#[test]
fn swapped_lines_with_fixed_seq_still_fail_on_hash() {
    let (mut lines, _) = lines(10);
    lines.swap(2, 3);
    // An editor who also renumbers: the hash link still breaks.
    lines[2] = lines[2].replacen("\"seq\":4,", "\"seq\":3,", 1);
    lines[3] = lines[3].replacen("\"seq\":3,", "\"seq\":4,", 1);
    let e = check(&lines).unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    assert!(e.reason.contains("prev"), "{e}");
}

#[test]
fn torn_last_line_is_reported() {
    let (lines, _) = lines(10);
    let mut t = text(&lines);
    t.truncate(t.len() - 20);
    let e = verify(t.as_bytes()).unwrap_err();
    assert_eq!(e.line, 10, "{e}");
    assert!(e.reason.contains("torn"), "{e}");
    // A complete line that lost only its newline is torn too.
    let mut t = text(&lines);
    t.pop();
    assert_eq!(verify(t.as_bytes()).unwrap_err().line, 10);
}

#[test]
fn trailing_garbage_and_blank_lines_are_refused() {
    let (lines, _) = lines(3);
    let e = verify(format!("{}\n", text(&lines)).as_bytes()).unwrap_err();
    assert_eq!(e.line, 4);
    let e = verify(text(&lines).replace('\n', "\r\n").as_bytes()).unwrap_err();
    assert_eq!(e.line, 1);
}

#[test]
fn time_going_backwards_is_refused() {
    // Hand-built chain whose second line is older than the first.
    let mut c = Chain::new();
    let l1 = c.append(2_000, &record(3));
    let mut c2 = Chain::resume(&l1).unwrap();
    let l2 = c2.append(3_000, &record(3));
    let l2 = l2.replace("1970-01-01T00:00:03.000Z", "1970-01-01T00:00:01.000Z");
    // Re-chain nothing: line 2's own prev is still right, only ts is off.
    let e = check(&[l1, l2]).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("ts"), "{e}");
}

#[test]
fn overlong_line_is_refused_without_reading_it_all() {
    let big = vec![b'{'; MAX_LINE_BYTES + 1];
    let e = verify(&big[..]).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("longer"), "{e}");
}

#[test]
fn records_never_repeat_the_chain_keys() {
    for i in 0..4 {
        let v = serde_json::to_value(record(i)).unwrap();
        let obj = v.as_object().unwrap();
        for key in ["seq", "ts", "prev"] {
            assert!(!obj.contains_key(key), "record {i} has {key}");
        }
    }
    let line = Chain::new().append(0, &record(1));
    assert_eq!(line.matches("\"seq\":").count(), 1, "{line}");
    assert!(line.contains("\"dmcp_seq\":1"));
    // A line reads back as the record it came from.
    assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), record(1));
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:.-]{0,20}",
        any::<String>(),
        proptest::collection::vec(0u8..0x20, 0..50).prop_map(|v| v.into_iter().map(char::from).collect()),
    ]
}

fn arb_record() -> impl Strategy<Value = Record> {
    let ids = || proptest::collection::vec(any::<u16>(), 0..40);
    prop_oneof![
        (arb_string(), arb_string(), ids(), ids(), arb_string(), any::<u64>(), any::<u64>()).prop_map(
            |(serial, backend, fields, dropped, key_id, state_version, conn_id)| {
                Record::CertIssued { serial, backend, fields, dropped, key_id, state_version, conn_id }
            }
        ),
        (
            arb_string(),
            arb_string(),
            proptest::option::of(arb_string()),
            proptest::option::of(any::<u64>()),
            arb_string(),
            any::<bool>(),
            proptest::option::of(arb_string()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(ids()),
        )
            .prop_map(|(peer, sender, key_id, seq, command, accepted, reason, state_version, drawn)| {
                Record::Dmcp { peer, sender, key_id, seq, command, accepted, reason, state_version, drawn }
            }),
        (arb_string(), arb_string(), proptest::option::of(arb_string()))
            .prop_map(|(backend, key_id, previous)| Record::KeyRotated { backend, key_id, previous }),
        (any::<u64>(), proptest::option::of(arb_string()), arb_string())
            .prop_map(|(conn_id, backend, reason)| Record::ConnectionRefused { conn_id, backend, reason }),
        (arb_string(), arb_string()).prop_map(|(component, what)| Record::Lifecycle { component, what }),
    ]
}

proptest! {
    #[test]
    fn verify_never_panics_on_arbitrary_lines(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
        newline_at_end in any::<bool>(),
    ) {
        let mut input = lines.join(&b'\n');
        if newline_at_end {
            input.push(b'\n');
        }
        let _ = verify(&input[..]);
    }

    #[test]
    fn any_single_byte_change_before_the_last_line_is_detected(
        n in 2u64..12,
        pick in any::<prop::sample::Index>(),
        new_byte in any::<u8>(),
    ) {
        let (lines, _) = lines(n);
        let mut input = text(&lines).into_bytes();
        // Anything but the last line (changes there need an outside head).
        let limit = input.len() - lines.last().unwrap().len() - 1;
        let at = pick.index(limit);
        prop_assume!(input[at] != new_byte);
        input[at] = new_byte;
        prop_assert!(verify(&input[..]).is_err());
    }

    #[test]
    fn chained_arbitrary_records_verify_and_respect_the_size_bound(
        recs in proptest::collection::vec(arb_record(), 1..10),
        ts in proptest::collection::vec(any::<u64>(), 10),
    ) {
        let mut chain = Chain::new();
        let mut out = String::new();
        for (rec, t) in recs.iter().zip(ts) {
            let line = chain.append(t, rec);
            prop_assert!(rec.fits());
            prop_assert!(line.len() <= MAX_LINE_BYTES);
            // The bound `fits` relies on: line = variable parts + overhead.
            let min_overhead = line.len().saturating_sub(weight_of(rec));
            prop_assert!(min_overhead <= 1024, "overhead {}", min_overhead);
            prop_assert_eq!(&serde_json::from_str::<Record>(&line).unwrap(), rec);
            out.push_str(&line);
            out.push('\n');
        }
        let s = verify(out.as_bytes()).unwrap();
        prop_assert_eq!(s.records, recs.len() as u64);
        prop_assert_eq!(s.head, chain.head());
    }
}

/// Same bound as the crate's internal weight, computed from the serialized
/// strings, so the test does not trust the code it checks: every string
/// byte may escape to 6 bytes, every list element takes at most 6.
fn weight_of(rec: &Record) -> usize {
    fn walk(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => s.len() * 6,
            serde_json::Value::Array(a) => a.len() * 6,
            serde_json::Value::Object(o) => o.iter().filter(|(k, _)| k.as_str() != "event").map(|(_, v)| walk(v)).sum(),
            _ => 0,
        }
    }
    walk(&serde_json::to_value(rec).unwrap())
}

/// The example in docs/AUDIT.md, byte for byte.
#[test]
fn documented_example_is_reproduced() {
    let key = "5b1c9a1e-2f0e-4a8b-9c7d-3e2f1a0b9c8d";
    let recs = [
        Record::Lifecycle { component: "lb".into(), what: "started on 127.0.0.1:8443".into() },
        Record::Dmcp {
            peer: "127.0.0.1:40122".into(),
            sender: "app-1".into(),
            key_id: Some(key.into()),
            seq: Some(17),
            command: "INCLUDE 4".into(),
            accepted: true,
            reason: None,
            state_version: Some(3),
            drawn: None,
        },
        Record::CertIssued {
            serial: "6f1d0c9e8b7a69584736251403f2e1d0".into(),
            backend: "app-1".into(),
            fields: vec![1, 4, 5],
            dropped: vec![],
            key_id: key.into(),
            state_version: 3,
            conn_id: 42,
        },
    ];
    let mut chain = Chain::new();
    let got: Vec<String> = recs.iter().zip(0u64..).map(|(r, i)| chain.append(1_718_000_000_000 + 250 * i, r)).collect();
    let doc = include_str!("../../../docs/AUDIT.md");
    let block = doc
        .split("```\n")
        .find(|b| b.starts_with("{\"seq\":1,\"ts\":\"2024-06-10"))
        .expect("example block in docs/AUDIT.md");
    let want: Vec<&str> = block.lines().collect();
    assert_eq!(got, want);
    assert_eq!(chain.head().hash, "2339d5e5bfb593b51e8fb470931ede1fcd4f75892764e78b02bd2eb1e6d0f2fc");
    assert!(doc.contains(&chain.head().hash));
}
