//! Small City and ASN databases with made-up but plausible contents, shared
//! by this crate's tests, other crates' tests and `docs/GEOLOCATION.md`.
//!
//! | network            | city database                                         | ASN database                |
//! |--------------------|-------------------------------------------------------|-----------------------------|
//! | `81.2.69.0/24`     | GB, ENG (then WBK), London                            | 20712 Andrews & Arnold Ltd  |
//! | `89.160.20.112/28` | SE, E, Linköping                                      | (in `89.160.0.0/17`)        |
//! | `89.160.0.0/17`    | —                                                     | 29518 Bredband2 AB          |
//! | `5.145.0.0/16`     | DE (country only)                                     | —                           |
//! | `5.145.8.0/24`     | DE, subdivision with a name only (Saxony), Dresden    | —                           |
//! | `2a02:ff0::/32`    | DE, BY, Munich                                        | 3320 Deutsche Telekom AG    |
//! | `2001:218::/32`    | registered country JP only                            | —                           |
//! | `1.0.0.0/24`       | —                                                     | 13335 Cloudflare, Inc.      |

use super::{write_test_db, Prefix, Value};
use serde_json::json;

fn rec(prefix: &str, v: serde_json::Value) -> (Prefix, Value) {
    (prefix.parse().expect("sample prefix"), Value::from(v))
}

/// The City records in the table above, general prefixes first.
pub fn sample_city_records() -> Vec<(Prefix, Value)> {
    vec![
        rec(
            "81.2.69.0/24",
            json!({
                "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
                "country": {"geoname_id": 2635167, "iso_code": "GB",
                            "names": {"en": "United Kingdom", "de": "Vereinigtes Königreich"}},
                "location": {"accuracy_radius": 100, "latitude": 51.5142, "longitude": -0.0931,
                             "time_zone": "Europe/London"},
                "subdivisions": [
                    {"geoname_id": 6269131, "iso_code": "ENG", "names": {"en": "England"}},
                    {"iso_code": "WBK", "names": {"en": "West Berkshire"}}
                ],
                "city": {"geoname_id": 2643743, "names": {"en": "London", "de": "London"}}
            }),
        ),
        rec(
            "89.160.20.112/28",
            json!({
                "country": {"iso_code": "SE", "names": {"en": "Sweden"}},
                "subdivisions": [{"iso_code": "E", "names": {"en": "Östergötland County"}}],
                "city": {"names": {"en": "Linköping"}}
            }),
        ),
        rec("5.145.0.0/16", json!({"country": {"iso_code": "DE"}})),
        rec(
            "5.145.8.0/24",
            json!({
                "country": {"iso_code": "DE"},
                "subdivisions": [{"names": {"en": "Saxony"}}],
                "city": {"names": {"en": "Dresden"}}
            }),
        ),
        rec(
            "2a02:ff0::/32",
            json!({
                "country": {"iso_code": "DE"},
                "subdivisions": [{"iso_code": "BY", "names": {"en": "Bavaria"}}],
                "city": {"names": {"en": "Munich", "de": "München"}}
            }),
        ),
        rec("2001:218::/32", json!({"registered_country": {"iso_code": "JP"}, "traits": {"is_anycast": true}})),
    ]
}

/// The ASN records in the table above.
pub fn sample_asn_records() -> Vec<(Prefix, Value)> {
    let asn = |n: u32, org: &str| json!({"autonomous_system_number": n, "autonomous_system_organization": org});
    vec![
        rec("81.2.69.0/24", asn(20712, "Andrews & Arnold Ltd")),
        rec("89.160.0.0/17", asn(29518, "Bredband2 AB")),
        rec("2a02:ff0::/32", asn(3320, "Deutsche Telekom AG")),
        rec("1.0.0.0/24", asn(13335, "Cloudflare, Inc.")),
    ]
}

/// [`sample_city_records`] as a `GeoLite2-City` database file.
pub fn sample_city_db() -> Vec<u8> {
    write_test_db(&sample_city_records(), "GeoLite2-City")
}

/// [`sample_asn_records`] as a `GeoLite2-ASN` database file.
pub fn sample_asn_db() -> Vec<u8> {
    write_test_db(&sample_asn_records(), "GeoLite2-ASN")
}
