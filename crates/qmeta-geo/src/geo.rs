//! Opening the databases and looking addresses up.

use crate::record::{AsnRecord, CityRecord};
use crate::reserved::{canonical, reserved};
use crate::GeoError;
use maxminddb::Reader;
use qmeta_fields::{FieldId, FieldValue};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The country value given to special-purpose addresses (private, loopback,
/// link-local, documentation, CGNAT, ULA, ...): see [`reserved`].
pub const RESERVED: &str = "reserved";

/// Which databases to open. Either may be absent: with neither, [`Geo`]
/// still answers [`RESERVED`] for special-purpose addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoConfig {
    /// A City or Country database (GeoLite2-City, GeoIP2-City,
    /// GeoLite2-Country, GeoIP2-Country, GeoIP2-Enterprise, DBIP-City-Lite,
    /// ...): gives country, region and city.
    pub city_db: Option<PathBuf>,
    /// An ASN database (GeoLite2-ASN, DBIP-ASN-Lite, GeoIP2-ISP): gives the
    /// AS number and organisation.
    pub asn_db: Option<PathBuf>,
}

/// What the databases say about one address. Fields the databases do not
/// know are `None`.
///
/// `Debug` shows which fields are set, never their values: they describe a
/// client and must not reach logs through a stray `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2 code, e.g. `"DE"`; [`RESERVED`] for
    /// special-purpose addresses.
    pub country: Option<String>,
    /// First-level subdivision: its ISO 3166-2 code as the database stores it
    /// (without the country part, e.g. `"BY"`), else its English name.
    pub region: Option<String>,
    /// City name in English.
    pub city: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Organisation holding the autonomous system.
    pub as_org: Option<String>,
}

impl GeoInfo {
    /// The answer for a special-purpose address: country [`RESERVED`],
    /// nothing else.
    pub fn reserved() -> GeoInfo {
        GeoInfo { country: Some(RESERVED.to_string()), ..GeoInfo::default() }
    }

    /// True when this is the answer for a special-purpose address.
    pub fn is_reserved(&self) -> bool {
        self.country.as_deref() == Some(RESERVED)
    }

    /// The known facts as certificate fields (`geo_country`, `geo_region`,
    /// `geo_city`, `geo_asn`), in that order; unknown ones are left out.
    /// `as_org` has no field id and is not included.
    pub fn fields(&self) -> Vec<(FieldId, FieldValue)> {
        let text = |id, v: &Option<String>| v.clone().map(|s| (id, FieldValue::Text(s)));
        [
            text(FieldId::GEO_COUNTRY, &self.country),
            text(FieldId::GEO_REGION, &self.region),
            text(FieldId::GEO_CITY, &self.city),
            self.asn.map(|a| (FieldId::GEO_ASN, FieldValue::U32(a))),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl fmt::Debug for GeoInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |present: bool| if present { "<set>" } else { "<none>" };
        f.debug_struct("GeoInfo")
            .field("country", &set(self.country.is_some()))
            .field("region", &set(self.region.is_some()))
            .field("city", &set(self.city.is_some()))
            .field("asn", &set(self.asn.is_some()))
            .field("as_org", &set(self.as_org.is_some()))
            .finish()
    }
}

/// Facts about one opened database, for logs and the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    pub path: PathBuf,
    /// `database_type` from the file's metadata, e.g. `"GeoLite2-City"`.
    pub database_type: String,
    /// When the database was built, seconds since the Unix epoch.
    pub build_epoch: u64,
    /// 4 for IPv4-only databases, 6 for databases covering both.
    pub ip_version: u16,
}

struct Db {
    path: PathBuf,
    reader: Reader<Vec<u8>>,
}

impl Db {
    /// Reads the whole file: the reader's mmap mode needs `unsafe`, and a
    /// copy in memory cannot change under us when the operator replaces the
    /// file (reload opens a new [`Geo`]).
    fn open(path: &Path, expected: &'static str, accepts: &[&str]) -> Result<Db, GeoError> {
        let buf =
            std::fs::read(path).map_err(|e| GeoError::Open { path: path.to_path_buf(), message: e.to_string() })?;
        let reader = Reader::from_source(buf)
            .map_err(|e| GeoError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
        let found = &reader.metadata().database_type;
        let kind_ok =
            found.split(['-', '_', ' ', '.']).any(|token| accepts.iter().any(|a| token.eq_ignore_ascii_case(a)));
        if !kind_ok {
            return Err(GeoError::WrongType { path: path.to_path_buf(), expected, found: found.clone() });
        }
        Ok(Db { path: path.to_path_buf(), reader })
    }

    fn info(&self) -> DbInfo {
        let m = self.reader.metadata();
        DbInfo {
            path: self.path.clone(),
            database_type: m.database_type.clone(),
            build_epoch: m.build_epoch,
            ip_version: m.ip_version,
        }
    }

    /// An IPv6 address cannot be in an IPv4-only database: not an error.
    fn covers(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() || self.reader.metadata().ip_version == 6
    }
}

/// Geolocation databases, opened once and shared by every worker
/// (`Send + Sync`; wrap in an `Arc`). Lookups never fail: what the
/// databases do not know comes back as `None`.
pub struct Geo {
    city: Option<Db>,
    asn: Option<Db>,
    lookup_errors: AtomicU64,
}

impl fmt::Debug for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Geo")
            .field("city_db", &self.city.as_ref().map(|d| &d.path))
            .field("asn_db", &self.asn.as_ref().map(|d| &d.path))
            .finish_non_exhaustive()
    }
}

impl Geo {
    /// Reads and checks the configured databases: each must be a MaxMind DB
    /// file of the right kind. Only the metadata is validated here; see
    /// [`Geo::verify`] for a full check.
    pub fn open(cfg: &GeoConfig) -> Result<Geo, GeoError> {
        let city = cfg
            .city_db
            .as_deref()
            .map(|p| Db::open(p, "a City or Country", &["city", "country", "enterprise"]))
            .transpose()?;
        let asn = cfg.asn_db.as_deref().map(|p| Db::open(p, "an ASN", &["asn", "isp"])).transpose()?;
        Ok(Geo { city, asn, lookup_errors: AtomicU64::new(0) })
    }

    /// Walks every node and record of every database. Slow on full-size
    /// databases (seconds): meant for `check-config` style commands and
    /// after downloading an update, not the startup path.
    pub fn verify(&self) -> Result<(), GeoError> {
        for db in self.city.iter().chain(self.asn.iter()) {
            db.reader.verify().map_err(|e| GeoError::Invalid { path: db.path.clone(), message: e.to_string() })?;
        }
        Ok(())
    }

    /// What the opened databases are (city first, then ASN).
    pub fn databases(&self) -> Vec<DbInfo> {
        self.city.iter().chain(self.asn.iter()).map(Db::info).collect()
    }

    /// Looks `ip` up. Special-purpose addresses get [`GeoInfo::reserved`]
    /// without consulting the databases; an IPv4-mapped IPv6 address is
    /// looked up as its IPv4 address.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let ip = canonical(ip);
        if reserved(ip) {
            return GeoInfo::reserved();
        }
        let mut info = GeoInfo::default();
        if let Some(db) = self.city.as_ref().filter(|db| db.covers(ip)) {
            match db.reader.lookup(ip).and_then(|r| r.decode::<CityRecord>()) {
                Ok(Some(rec)) => rec.fill(&mut info),
                Ok(None) => {}
                Err(_) => self.note_error(),
            }
        }
        if let Some(db) = self.asn.as_ref().filter(|db| db.covers(ip)) {
            match db.reader.lookup(ip).and_then(|r| r.decode::<AsnRecord>()) {
                Ok(Some(rec)) => rec.fill(&mut info),
                Ok(None) => {}
                Err(_) => self.note_error(),
            }
        }
        info
    }

    /// How many lookups hit a corrupt record since [`Geo::open`]. Such a
    /// lookup answers `None` for that database; a rising count means the
    /// file is damaged (run [`Geo::verify`]). Exported as a metric, since
    /// the error itself is not logged per connection.
    pub fn lookup_errors(&self) -> u64 {
        self.lookup_errors.load(Ordering::Relaxed)
    }

    fn note_error(&self) {
        self.lookup_errors.fetch_add(1, Ordering::Relaxed);
    }
}
