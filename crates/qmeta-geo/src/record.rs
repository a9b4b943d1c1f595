//! The parts of MaxMind's City/Country and ASN record schemas qmeta reads.
//! Decoding only these (borrowing strings from the database) keeps a lookup
//! cheap; every other key of a record is skipped.

use crate::geo::GeoInfo;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

#[derive(Deserialize)]
pub(crate) struct CityRecord<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    /// Where the block is registered; used when the database does not place
    /// the address itself (anycast, satellite providers).
    #[serde(borrow, default)]
    registered_country: Option<Country<'a>>,
    #[serde(borrow, default, deserialize_with = "first_subdivision")]
    subdivisions: Option<Subdivision<'a>>,
    #[serde(borrow, default)]
    city: Option<Named<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Subdivision<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

impl<'a> CityRecord<'a> {
    pub(crate) fn fill(self, info: &mut GeoInfo) {
        let iso = |c: Option<Country<'a>>| c.and_then(|c| c.iso_code);
        info.country = non_empty(iso(self.country).or(iso(self.registered_country)));
        info.region =
            self.subdivisions.and_then(|s| non_empty(s.iso_code).or_else(|| non_empty(s.names.and_then(|n| n.en))));
        info.city = non_empty(self.city.and_then(|c| c.names).and_then(|n| n.en));
    }
}

#[derive(Deserialize)]
pub(crate) struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

impl AsnRecord<'_> {
    pub(crate) fn fill(self, info: &mut GeoInfo) {
        info.asn = self.autonomous_system_number;
        info.as_org = non_empty(self.autonomous_system_organization);
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// Keeps the first (largest) subdivision and skips the rest without
/// allocating a list for them.
fn first_subdivision<'de, D>(d: D) -> Result<Option<Subdivision<'de>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct First;
    impl<'de> Visitor<'de> for First {
        type Value = Option<Subdivision<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of subdivisions")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<Subdivision<'de>>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_seq(First)
}
