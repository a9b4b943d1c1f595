//! The `testdb` writer's output, read back by the real `maxminddb` reader.

use maxminddb::Reader;
use proptest::prelude::*;
use qmeta_geo::testdb::{
    sample_asn_db, sample_city_db, write_db, write_test_db, DbOptions, Prefix, Value, DEFAULT_BUILD_EPOCH,
};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

fn reader(bytes: Vec<u8>) -> Reader<Vec<u8>> {
    let r = Reader::from_source(bytes).expect("reader accepts writer output");
    r.verify().expect("writer output verifies");
    r
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[derive(Deserialize, Debug, PartialEq)]
struct AllTypes<'a> {
    s: String,
    bytes: &'a [u8],
    u16: u16,
    u32: u32,
    u64: u64,
    u128: u128,
    i32: i32,
    neg: i32,
    double: f64,
    float: f32,
    yes: bool,
    no: bool,
    list: Vec<u32>,
    map: BTreeMap<String, String>,
    long: String,
    longer: String,
    longest: String,
}

#[test]
fn every_value_type_round_trips() {
    let long = |n: usize| Value::String("é".repeat(n / 2));
    let v = Value::Map(vec![
        ("s".into(), Value::String("Zürich".into())),
        ("bytes".into(), Value::Bytes(vec![0, 1, 254, 255])),
        ("u16".into(), Value::U16(65535)),
        ("u32".into(), Value::U32(4_000_000_000)),
        ("u64".into(), Value::U64(u64::MAX - 1)),
        ("u128".into(), Value::U128(u128::MAX / 3)),
        ("i32".into(), Value::I32(123_456)),
        ("neg".into(), Value::I32(i32::MIN)),
        ("double".into(), Value::Double(-51.5142)),
        ("float".into(), Value::Float(1.5)),
        ("yes".into(), Value::Bool(true)),
        ("no".into(), Value::Bool(false)),
        ("list".into(), Value::Array((0..40).map(Value::U32).collect())),
        ("map".into(), Value::Map(vec![("k".into(), Value::String("v".into()))])),
        // Sizes that need 1, 2 and 3 extra size bytes.
        ("long".into(), long(100)),
        ("longer".into(), long(1000)),
        ("longest".into(), long(70_000)),
    ]);
    let r = reader(write_test_db(&[(p("1.2.3.0/24"), v)], "Test"));
    let got: AllTypes = r.lookup(ip("1.2.3.4")).unwrap().decode().unwrap().unwrap();
    assert_eq!(
        got,
        AllTypes {
            s: "Zürich".into(),
            bytes: &[0, 1, 254, 255],
            u16: 65535,
            u32: 4_000_000_000,
            u64: u64::MAX - 1,
            u128: u128::MAX / 3,
            i32: 123_456,
            neg: i32::MIN,
            double: -51.5142,
            float: 1.5,
            yes: true,
            no: false,
            list: (0..40).collect(),
            map: BTreeMap::from([("k".into(), "v".into())]),
            long: "é".repeat(50),
            longer: "é".repeat(500),
            longest: "é".repeat(35_000),
        }
    );
}

#[test]
fn metadata_is_read_back() {
    // libmaxminddb (mmdblookup, nginx/HAProxy modules) rejects build_epoch 0.
    assert_eq!(DbOptions::new("T").build_epoch, DEFAULT_BUILD_EPOCH);
    assert_ne!(DEFAULT_BUILD_EPOCH, 0);
    let r = reader(write_test_db(&[], "T"));
    assert_eq!(r.metadata().build_epoch, DEFAULT_BUILD_EPOCH);

    let mut opts = DbOptions::new("GeoLite2-City");
    opts.build_epoch = 1_700_000_000;
    opts.languages = vec!["en".into(), "de".into()];
    let r = reader(write_db(&[], &opts));
    let m = r.metadata();
    assert_eq!(m.database_type, "GeoLite2-City");
    assert_eq!(m.build_epoch, 1_700_000_000);
    assert_eq!(m.ip_version, 6);
    assert_eq!(m.languages, vec!["en".to_string(), "de".to_string()]);
    assert_eq!(m.binary_format_major_version, 2);
    assert_eq!(m.record_size, 24);
    assert_eq!(m.description.get("en").map(String::as_str), Some("qmeta test database"));
}

#[test]
fn networks_and_prefix_lengths_match() {
    let recs = [
        (p("10.0.0.0/8"), Value::U32(1)),
        (p("10.1.0.0/16"), Value::U32(2)),
        (p("2a02:ff0::/32"), Value::U32(3)),
        (p("2a02:ff0:8000::/33"), Value::U32(4)),
    ];
    let r = reader(write_test_db(&recs, "Test"));
    let look = |a: &str| {
        let res = r.lookup(ip(a)).unwrap();
        (res.decode::<u32>().unwrap(), res.network().unwrap().to_string())
    };
    // The reader reports the tree node holding the answer: the /8 was split
    // around the /16, so 10.2.3.4 sits in 10.2.0.0/15.
    assert_eq!(look("10.2.3.4"), (Some(1), "10.2.0.0/15".into()));
    assert_eq!(look("10.128.0.1"), (Some(1), "10.128.0.0/9".into()));
    assert_eq!(look("10.1.3.4"), (Some(2), "10.1.0.0/16".into()));
    assert_eq!(look("2a02:ff0::1"), (Some(3), "2a02:ff0::/33".into()));
    assert_eq!(look("2a02:ff0:8000::1"), (Some(4), "2a02:ff0:8000::/33".into()));
    assert_eq!(look("11.0.0.1").0, None);
    assert_eq!(look("2a02:ff1::1").0, None);
}

#[test]
fn every_record_size_is_read_back() {
    let recs: Vec<_> = (0u32..300)
        .map(|i| {
            let a = Ipv4Addr::from(0x0100_0000 + (i << 8));
            (Prefix::new(a.into(), 24).unwrap(), Value::U32(i))
        })
        .collect();
    for size in [24u16, 28, 32] {
        let mut opts = DbOptions::new("Test");
        opts.record_size = Some(size);
        let r = reader(write_db(&recs, &opts));
        assert_eq!(r.metadata().record_size, size);
        for i in [0u32, 1, 150, 299] {
            let a = Ipv4Addr::from(0x0100_0000 + (i << 8) + 7);
            let got: Option<u32> = r.lookup(a.into()).unwrap().decode().unwrap();
            assert_eq!(got, Some(i), "record size {size}, record {i}");
        }
    }
}

#[test]
fn a_28_bit_tree_uses_the_high_nibbles() {
    // Enough data that record values exceed 24 bits, so the automatic size
    // is 28 and the shared nibble byte carries real bits.
    let big = Value::Bytes(vec![7; 1 << 24]);
    let recs = [(p("1.0.0.0/24"), big), (p("2.0.0.0/24"), Value::String("after".into()))];
    let r = reader(write_test_db(&recs, "Test"));
    assert_eq!(r.metadata().record_size, 28);
    let got: Option<String> = r.lookup(ip("2.0.0.1")).unwrap().decode().unwrap();
    assert_eq!(got.as_deref(), Some("after"));
}

#[test]
fn ipv4_only_database() {
    let mut opts = DbOptions::new("GeoLite2-Country");
    opts.ip_version = 4;
    let recs = [(p("81.2.69.0/24"), Value::from(json!({"country": {"iso_code": "GB"}})))];
    let bytes = write_db(&recs, &opts);
    let r = reader(bytes.clone());
    assert_eq!(r.metadata().ip_version, 4);
    let code: Option<String> =
        r.lookup(ip("81.2.69.1")).unwrap().decode_path(&maxminddb::path!["country", "iso_code"]).unwrap();
    assert_eq!(code.as_deref(), Some("GB"));

    // Through Geo: v4 answers, v6 is simply unknown (not a lookup error).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.mmdb");
    std::fs::write(&path, bytes).unwrap();
    let g = qmeta_geo::Geo::open(&qmeta_geo::GeoConfig { city_db: Some(path), asn_db: None }).unwrap();
    assert_eq!(g.lookup(ip("81.2.69.1")).country.as_deref(), Some("GB"));
    assert_eq!(g.lookup(ip("::ffff:81.2.69.1")).country.as_deref(), Some("GB"));
    assert_eq!(g.lookup(ip("2a02:ff0::1")), qmeta_geo::GeoInfo::default());
    assert_eq!(g.lookup_errors(), 0);
}

#[test]
fn whole_space_prefix_and_empty_database() {
    let r = reader(write_test_db(&[(p("::/0"), Value::U16(9))], "Test"));
    for a in ["1.1.1.1", "2a00::1", "ffff::1"] {
        assert_eq!(r.lookup(ip(a)).unwrap().decode::<u16>().unwrap(), Some(9), "{a}");
    }
    let r = reader(write_test_db(&[], "Test"));
    assert_eq!(r.lookup(ip("1.1.1.1")).unwrap().decode::<u16>().unwrap(), None);
    assert_eq!(r.metadata().node_count, 1);
}

#[test]
fn identical_values_are_stored_once_and_output_is_deterministic() {
    let v = Value::String("same".repeat(100));
    let one = write_test_db(&[(p("1.0.0.0/8"), v.clone())], "T");
    let two = write_test_db(&[(p("1.0.0.0/8"), v.clone()), (p("3.0.0.0/8"), v)], "T");
    // The second record adds tree nodes but not a second 400-byte value.
    assert!(two.len() < one.len() + 100, "{} vs {}", two.len(), one.len());
    assert_eq!(sample_city_db(), sample_city_db());
    assert_eq!(sample_asn_db(), sample_asn_db());
    reader(sample_city_db());
    reader(sample_asn_db());
}

#[test]
fn prefix_parsing() {
    assert_eq!(format!("{:?}", p("81.2.69.142/24")), "81.2.69.0/24");
    assert_eq!(format!("{:?}", p("2a02:ff0::1/32")), "2a02:ff0::/32");
    assert_eq!(p("1.2.3.4").prefix_len(), 32);
    assert_eq!(p("::1").prefix_len(), 128);
    for bad in ["1.2.3.0/33", "::/129", "1.2.3/24", "x", "1.2.3.0/-1", "1.2.3.0/"] {
        assert!(bad.parse::<Prefix>().is_err(), "{bad}");
    }
    assert!(p("10.0.0.0/8").contains(ip("10.9.9.9")));
    assert!(!p("10.0.0.0/8").contains(ip("11.0.0.0")));
    assert!(!p("10.0.0.0/8").contains(ip("::a00:1")));
    assert!(p("0.0.0.0/0").contains(ip("255.1.1.1")));
}

#[test]
fn json_conversion() {
    let v = Value::from(json!({"a": 1, "b": -2, "c": 1.5, "d": null, "e": [true], "f": 5_000_000_000u64}));
    assert_eq!(
        v,
        Value::Map(vec![
            ("a".into(), Value::U32(1)),
            ("b".into(), Value::I32(-2)),
            ("c".into(), Value::Double(1.5)),
            ("e".into(), Value::Array(vec![Value::Bool(true)])),
            ("f".into(), Value::U64(5_000_000_000)),
        ])
    );
}

fn arb_v4_prefix() -> impl Strategy<Value = Prefix> {
    // A small address space so that prefixes overlap often.
    (0u32..16, 0u8..=32).prop_map(|(hi, len)| Prefix::new(Ipv4Addr::from(hi << 28 | 0x00a5_5a00).into(), len).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The reader's answer for any address is the value of the last record
    /// whose prefix covers it — the writer's documented rule.
    #[test]
    fn lookups_match_a_last_writer_wins_model(
        prefixes in proptest::collection::vec(arb_v4_prefix(), 0..24),
        probes in proptest::collection::vec(any::<u32>(), 1..32),
        v4_only in any::<bool>(),
    ) {
        let recs: Vec<_> = prefixes
            .iter()
            .enumerate()
            .map(|(i, pr)| (*pr, Value::U32(i as u32)))
            .collect();
        let mut opts = DbOptions::new("Test");
        opts.ip_version = if v4_only { 4 } else { 6 };
        let r = reader(write_db(&recs, &opts));
        let mut addrs: Vec<IpAddr> = probes.iter().map(|&a| Ipv4Addr::from(a).into()).collect();
        addrs.extend(prefixes.iter().map(|pr| pr.addr()));
        for a in addrs {
            let want = prefixes.iter().rposition(|pr| pr.contains(a)).map(|i| i as u32);
            let got: Option<u32> = r.lookup(a).unwrap().decode().unwrap();
            prop_assert_eq!(got, want, "address {}", a);
        }
    }
}
