//! Lookups through `Geo` over the sample databases written by `testdb`.

use qmeta_fields::{FieldId, FieldValue};
use qmeta_geo::testdb::{sample_asn_db, sample_city_db, write_test_db, Value};
use qmeta_geo::{reserved, Geo, GeoConfig, GeoInfo, RESERVED};
use serde_json::json;
use std::net::IpAddr;
use std::path::PathBuf;

struct Dbs {
    _dir: tempfile::TempDir,
    city: PathBuf,
    asn: PathBuf,
}

fn dbs() -> Dbs {
    let dir = tempfile::tempdir().unwrap();
    let city = dir.path().join("GeoLite2-City.mmdb");
    let asn = dir.path().join("GeoLite2-ASN.mmdb");
    std::fs::write(&city, sample_city_db()).unwrap();
    std::fs::write(&asn, sample_asn_db()).unwrap();
    Dbs { _dir: dir, city, asn }
}

fn geo(d: &Dbs) -> Geo {
    Geo::open(&GeoConfig { city_db: Some(d.city.clone()), asn_db: Some(d.asn.clone()) }).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn info(country: &str, region: Option<&str>, city: Option<&str>) -> GeoInfo {
    GeoInfo {
        country: Some(country.to_string()),
        region: region.map(str::to_string),
        city: city.map(str::to_string),
        asn: None,
        as_org: None,
    }
}

#[test]
fn v4_lookup_gives_country_region_city_and_asn() {
    let d = dbs();
    let g = geo(&d);
    let got = g.lookup(ip("81.2.69.142"));
    assert_eq!(
        got,
        GeoInfo {
            asn: Some(20712),
            as_org: Some("Andrews & Arnold Ltd".into()),
            ..info("GB", Some("ENG"), Some("London"))
        }
    );
    // Non-ASCII names survive, and the ASN comes from a wider prefix.
    let got = g.lookup(ip("89.160.20.120"));
    assert_eq!(got.country.as_deref(), Some("SE"));
    assert_eq!(got.region.as_deref(), Some("E"));
    assert_eq!(got.city.as_deref(), Some("Linköping"));
    assert_eq!(got.asn, Some(29518));
    assert_eq!(got.as_org.as_deref(), Some("Bredband2 AB"));
    // Just outside the /28: ASN only.
    let got = g.lookup(ip("89.160.20.128"));
    assert_eq!(got.country, None);
    assert_eq!(got.asn, Some(29518));
}

#[test]
fn v6_lookup_gives_country_region_city_and_asn() {
    let d = dbs();
    let g = geo(&d);
    let got = g.lookup(ip("2a02:ff0:1234::1"));
    assert_eq!(
        got,
        GeoInfo {
            asn: Some(3320),
            as_org: Some("Deutsche Telekom AG".into()),
            ..info("DE", Some("BY"), Some("Munich"))
        }
    );
    assert_eq!(g.lookup(ip("2a02:ff1::1")), GeoInfo::default());
}

#[test]
fn more_specific_prefix_wins_and_name_is_region_fallback() {
    let d = dbs();
    let g = geo(&d);
    assert_eq!(g.lookup(ip("5.145.1.1")), info("DE", None, None));
    assert_eq!(g.lookup(ip("5.145.8.77")), info("DE", Some("Saxony"), Some("Dresden")));
}

#[test]
fn registered_country_used_when_country_missing() {
    let d = dbs();
    let g = geo(&d);
    assert_eq!(g.lookup(ip("2001:218:1::1")), info("JP", None, None));
}

#[test]
fn address_not_in_the_databases_gives_none_fields() {
    let d = dbs();
    let g = geo(&d);
    for a in ["8.8.8.8", "2a00:1450:4001::1", "81.2.70.1", "::ffff:8.8.4.4"] {
        assert_eq!(g.lookup(ip(a)), GeoInfo::default(), "{a}");
    }
    assert_eq!(g.lookup_errors(), 0);
    // Only one database configured: the other's fields stay None.
    let asn_only = Geo::open(&GeoConfig { city_db: None, asn_db: Some(d.asn.clone()) }).unwrap();
    let got = asn_only.lookup(ip("1.0.0.1"));
    assert_eq!((got.country, got.asn), (None, Some(13335)));
}

#[test]
fn v4_mapped_v6_is_looked_up_as_v4() {
    let d = dbs();
    let g = geo(&d);
    assert_eq!(g.lookup(ip("::ffff:81.2.69.142")), g.lookup(ip("81.2.69.142")));
    assert_eq!(g.lookup(ip("::ffff:81.2.69.142")).city.as_deref(), Some("London"));
    assert!(g.lookup(ip("::ffff:192.168.0.1")).is_reserved());
}

#[test]
fn reserved_addresses_answer_reserved_without_the_database() {
    // A database that (wrongly) places private and loopback space: the
    // answer must still be "reserved", so the database is not consulted.
    let records = [
        ("10.0.0.0/8", "XX"),
        ("127.0.0.0/8", "XX"),
        ("100.64.0.0/10", "XX"),
        ("fc00::/7", "XX"),
        ("fe80::/10", "XX"),
        ("2001:db8::/32", "XX"),
    ]
    .map(|(p, c)| {
        let v = json!({"country": {"iso_code": c}, "city": {"names": {"en": "Nowhere"}}});
        (p.parse().unwrap(), Value::from(v))
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, write_test_db(&records, "GeoIP2-City")).unwrap();
    let g = Geo::open(&GeoConfig { city_db: Some(path), asn_db: None }).unwrap();
    let no_db = Geo::open(&GeoConfig::default()).unwrap();
    for a in [
        "10.1.2.3",
        "127.0.0.1",
        "100.64.1.1",
        "169.254.1.1",
        "192.168.1.1",
        "172.16.5.5",
        "192.0.2.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
    ] {
        let want = GeoInfo { country: Some(RESERVED.to_string()), ..GeoInfo::default() };
        assert!(reserved(ip(a)), "{a}");
        assert_eq!(g.lookup(ip(a)), want, "{a}");
        assert_eq!(no_db.lookup(ip(a)), want, "{a}");
    }
    assert_eq!(RESERVED, "reserved");
}

#[test]
fn fields_map_to_certificate_field_ids() {
    let d = dbs();
    let g = geo(&d);
    let f = g.lookup(ip("81.2.69.1")).fields();
    assert_eq!(
        f,
        vec![
            (FieldId::GEO_COUNTRY, FieldValue::Text("GB".into())),
            (FieldId::GEO_REGION, FieldValue::Text("ENG".into())),
            (FieldId::GEO_CITY, FieldValue::Text("London".into())),
            (FieldId::GEO_ASN, FieldValue::U32(20712)),
        ]
    );
    assert_eq!(g.lookup(ip("10.0.0.1")).fields(), vec![(FieldId::GEO_COUNTRY, FieldValue::Text("reserved".into()))]);
    assert!(g.lookup(ip("8.8.8.8")).fields().is_empty());
}

#[test]
fn debug_output_hides_values() {
    let d = dbs();
    let g = geo(&d);
    let shown = format!("{:?}", g.lookup(ip("81.2.69.1")));
    for secret in ["GB", "ENG", "London", "20712", "Andrews"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("<set>"), "{shown}");
    let geo_debug = format!("{g:?}");
    assert!(geo_debug.contains("GeoLite2-City.mmdb"), "{geo_debug}");
}

#[test]
fn databases_reports_types_and_geo_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Geo>();
    let d = dbs();
    let g = std::sync::Arc::new(geo(&d));
    let types: Vec<_> = g.databases().into_iter().map(|i| (i.database_type, i.ip_version, i.path)).collect();
    assert_eq!(
        types,
        vec![("GeoLite2-City".to_string(), 6, d.city.clone()), ("GeoLite2-ASN".to_string(), 6, d.asn.clone()),]
    );
    g.verify().unwrap();
    // Shared across threads, same answers.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let g = g.clone();
            std::thread::spawn(move || g.lookup(ip("2a02:ff0::1")).asn)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Some(3320));
    }
}
