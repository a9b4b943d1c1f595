//! Opening bad files: every error names the file and says what is wrong.

use qmeta_geo::testdb::{sample_asn_db, sample_city_db, write_test_db, Value};
use qmeta_geo::{Geo, GeoConfig, GeoError};
use serde_json::json;
use std::path::{Path, PathBuf};

fn city(path: &Path) -> GeoConfig {
    GeoConfig { city_db: Some(path.to_path_buf()), asn_db: None }
}

fn asn(path: &Path) -> GeoConfig {
    GeoConfig { city_db: None, asn_db: Some(path.to_path_buf()) }
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn open_err(cfg: &GeoConfig) -> GeoError {
    Geo::open(cfg).expect_err("open must fail")
}

#[test]
fn missing_file_is_an_open_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope-City.mmdb");
    let err = open_err(&city(&p));
    assert!(matches!(&err, GeoError::Open { path, .. } if *path == p), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&*p.to_string_lossy()), "{text}");
    assert!(text.to_lowercase().contains("no such file"), "{text}");
    // A directory is not a database either.
    let err = open_err(&asn(dir.path()));
    assert!(matches!(&err, GeoError::Open { .. }), "{err:?}");
}

#[test]
fn garbage_and_truncated_files_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write(&dir, "garbage.mmdb", &[0x5a; 4096]);
    let empty = write(&dir, "empty.mmdb", b"");
    let good = sample_city_db();
    // Cut inside the metadata: the marker or the metadata map is incomplete.
    let truncated = write(&dir, "truncated.mmdb", &good[..good.len() - 20]);
    // Cut before the metadata marker: no metadata at all.
    let headless = write(&dir, "headless.mmdb", &good[..good.len() / 2]);
    for p in [garbage, empty, truncated, headless] {
        let err = open_err(&city(&p));
        match &err {
            GeoError::Invalid { path, message } => {
                assert_eq!(*path, p);
                assert!(!message.is_empty());
            }
            other => panic!("{}: {other:?}", p.display()),
        }
        let text = err.to_string();
        assert!(text.contains(&*p.to_string_lossy()), "{text}");
        assert!(text.contains("not a valid MaxMind DB"), "{text}");
    }
}

#[test]
fn wrong_database_type_is_refused_in_either_slot() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(&dir, "city.mmdb", &sample_city_db());
    let a = write(&dir, "asn.mmdb", &sample_asn_db());
    let anon = write(
        &dir,
        "anon.mmdb",
        &write_test_db(
            &[("1.2.3.0/24".parse().unwrap(), Value::from(json!({"is_anonymous": true})))],
            "GeoIP2-Anonymous-IP",
        ),
    );

    let err = open_err(&city(&a));
    match &err {
        GeoError::WrongType { path, expected, found } => {
            assert_eq!(*path, a);
            assert_eq!(*expected, "a City or Country");
            assert_eq!(found, "GeoLite2-ASN");
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("asn.mmdb") && text.contains("GeoLite2-ASN"), "{text}");

    let err = open_err(&asn(&c));
    assert!(
        matches!(&err, GeoError::WrongType { path, expected: "an ASN", found } if *path == c && found == "GeoLite2-City"),
        "{err:?}"
    );
    assert!(matches!(open_err(&city(&anon)), GeoError::WrongType { .. }));
    assert!(matches!(open_err(&asn(&anon)), GeoError::WrongType { .. }));

    // The other City/Country/ASN editions are accepted.
    for t in ["GeoIP2-Country", "GeoLite2-Country", "DBIP-City-Lite", "GeoIP2-Enterprise"] {
        let p = write(&dir, "x.mmdb", &write_test_db(&[], t));
        Geo::open(&city(&p)).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    for t in ["DBIP-ASN-Lite", "GeoIP2-ISP"] {
        let p = write(&dir, "y.mmdb", &write_test_db(&[], t));
        Geo::open(&asn(&p)).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn a_bad_second_file_fails_the_whole_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(&dir, "city.mmdb", &sample_city_db());
    let err = open_err(&GeoConfig { city_db: Some(c), asn_db: Some(dir.path().join("missing-asn.mmdb")) });
    assert!(err.to_string().contains("missing-asn.mmdb"), "{err}");
}

#[test]
fn corrupt_record_yields_none_counts_an_error_and_fails_verify() {
    let mut db = sample_city_db();
    // Break the UTF-8 of the city name "London" (both occurrences: en, de).
    let needle = b"London";
    let mut hits = 0;
    for i in 0..db.len() - needle.len() {
        if &db[i..i + needle.len()] == needle {
            db[i] = 0xff;
            hits += 1;
        }
    }
    assert!(hits >= 1);
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "broken-City.mmdb", &db);
    // The metadata is intact, so opening works...
    let g = Geo::open(&city(&p)).unwrap();
    // ...the damaged record answers None, and the damage is counted...
    let got = g.lookup("81.2.69.142".parse().unwrap());
    assert_eq!(got.country, None);
    assert_eq!(g.lookup_errors(), 1);
    // ...undamaged records still answer.
    let ok = g.lookup("2a02:ff0::1".parse().unwrap());
    assert_eq!(ok.city.as_deref(), Some("Munich"));
    assert_eq!(g.lookup_errors(), 1);
    // ...and a full verification finds it, naming the file.
    let err = g.verify().expect_err("verify must fail");
    assert!(matches!(&err, GeoError::Invalid { path, .. } if *path == p), "{err:?}");
}
