//! qmeta-geo: the geolocation facts the load balancer can forward
//! (`geo_country`, `geo_region`, `geo_city`, `geo_asn`), read from
//! MaxMind-format databases (GeoLite2 / GeoIP2 City, Country and ASN, or
//! compatible ones such as DB-IP Lite).
//!
//! What it is: a thin, allocation-light lookup layer over the `maxminddb`
//! reader, an explicit [`RESERVED`] answer for special-purpose addresses
//! (private, loopback, link-local, documentation, CGNAT, ULA, multicast, ...
//! see [`reserved`]), and, in [`testdb`], a small MaxMind DB *writer* so
//! tests need neither MaxMind's files nor Perl tooling.
//!
//! What it is not: it does not download or update databases (operators use
//! `geoipupdate` or similar), does not watch files (a reload opens a new
//! [`Geo`]), and never does network I/O. Lookups never fail: what the
//! databases do not know is `None`.
//!
//! Call order: [`Geo::open`] once at startup or reload (reads and checks
//! the files; wrap the result in an `Arc` and share it among workers), then
//! [`Geo::lookup`] per connection, then [`GeoInfo::fields`] to get
//! certificate fields. [`Geo::verify`] does a full (slow) file check for
//! `check-config` style commands. Format and semantics:
//! `docs/GEOLOCATION.md`.
#![forbid(unsafe_code)]

mod error;
mod geo;
mod record;
mod reserved;
pub mod testdb;

pub use error::GeoError;
pub use geo::{DbInfo, Geo, GeoConfig, GeoInfo, RESERVED};
pub use reserved::reserved;
