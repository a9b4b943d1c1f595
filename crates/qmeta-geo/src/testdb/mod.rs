//! A small MaxMind DB writer, so tests (here and in other crates) can build
//! City and ASN databases without MaxMind's files or Perl tooling.
//!
//! It follows the public "MaxMind DB File Format Specification" v2.0 and is
//! checked against the `maxminddb` reader. It is meant for small databases:
//! everything is built in memory, values are never shared through pointers
//! (identical records are written once), and the IPv4 space of an IPv6
//! database lives only at `::/96` (no `::ffff:0:0/96` or 6to4 aliases;
//! [`crate::Geo`] maps IPv4-mapped addresses to IPv4 itself).
//!
//! Call order: build `(Prefix, Value)` records, then [`write_test_db`] (or
//! [`write_db`] with [`DbOptions`]), then write the bytes to a file.

mod encode;
mod sample;
mod tree;

pub use sample::{sample_asn_db, sample_asn_records, sample_city_db, sample_city_records};

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: address plus prefix length, host bits cleared.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// A prefix that could not be parsed or is longer than its address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network prefix {0:?} (want ADDRESS/LENGTH)")]
pub struct PrefixError(pub String);

impl Prefix {
    /// `len` must be at most 32 (IPv4) or 128 (IPv6); host bits of `addr`
    /// are cleared.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        let width = width_of(addr);
        if u32::from(len) > width {
            return Err(PrefixError(format!("{addr}/{len}")));
        }
        let mask = u128::MAX.checked_shl(width - u32::from(len)).unwrap_or(0);
        let bits = addr_bits(addr) & mask;
        let addr = match addr {
            IpAddr::V4(_) => IpAddr::from((bits as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(bits.to_be_bytes()),
        };
        Ok(Prefix { addr, len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` (of the same family) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let shift = width_of(ip) - u32::from(self.len);
        let top = |v: u128| v.checked_shr(shift).unwrap_or(0);
        top(addr_bits(ip)) == top(addr_bits(self.addr))
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `"81.2.69.0/24"`, `"2a02:ff0::/32"`, or a bare address (a host route).
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let bad = || PrefixError(s.to_string());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len = match len {
            Some(l) => l.parse::<u8>().map_err(|_| bad())?,
            None => width_of(addr) as u8,
        };
        Prefix::new(addr, len).map_err(|_| bad())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn width_of(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A value in the data section: the MaxMind DB types, JSON-like.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Keys keep their order.
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
    String(String),
    Bytes(Vec<u8>),
    U16(u16),
    U32(u32),
    U64(u64),
    U128(u128),
    I32(i32),
    Double(f64),
    Float(f32),
    Bool(bool),
}

impl From<serde_json::Value> for Value {
    /// Objects become maps, whole numbers `U32` (or `U64`, or `I32` when
    /// negative; a negative number below `i32::MIN` becomes a `Double`),
    /// other numbers `Double`. MaxMind DB has no null: null members of an
    /// object are dropped, and any other null becomes an empty map.
    fn from(v: serde_json::Value) -> Value {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Map(vec![]),
            J::Bool(b) => Value::Bool(b),
            J::String(s) => Value::String(s),
            J::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            J::Object(members) => Value::Map(
                members.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, Value::from(v))).collect(),
            ),
            J::Number(n) => {
                if let Some(u) = n.as_u64() {
                    u32::try_from(u).map_or(Value::U64(u), Value::U32)
                } else if let Some(i) = n.as_i64() {
                    i32::try_from(i).map_or(Value::Double(i as f64), Value::I32)
                } else {
                    Value::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
        }
    }
}

/// The build time written by [`DbOptions::new`]: 2023-11-14T22:13:20Z.
pub const DEFAULT_BUILD_EPOCH: u64 = 1_700_000_000;

/// Everything about a database except its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbOptions {
    /// E.g. `"GeoLite2-City"`, `"GeoLite2-ASN"`.
    pub database_type: String,
    /// 6 (the default: IPv4 lives at `::/96`) or 4 (IPv4 prefixes only).
    pub ip_version: u16,
    /// 24, 28 or 32 bits; `None` picks the smallest that fits.
    pub record_size: Option<u16>,
    /// Seconds since the Unix epoch. A fixed value ([`DEFAULT_BUILD_EPOCH`]
    /// unless set) keeps output deterministic; this module never reads the
    /// clock. Must not be 0: libmaxminddb treats 0 as missing metadata.
    pub build_epoch: u64,
    pub languages: Vec<String>,
    /// Language code → description.
    pub description: Vec<(String, String)>,
}

impl DbOptions {
    pub fn new(database_type: &str) -> DbOptions {
        DbOptions {
            database_type: database_type.to_string(),
            ip_version: 6,
            record_size: None,
            build_epoch: DEFAULT_BUILD_EPOCH,
            languages: vec!["en".to_string()],
            description: vec![("en".to_string(), "qmeta test database".to_string())],
        }
    }
}

/// An IPv6 database (IPv4 records at `::/96`) of type `database_type`,
/// with default [`DbOptions`].
///
/// # Panics
/// As [`write_db`].
pub fn write_test_db(records: &[(Prefix, Value)], database_type: &str) -> Vec<u8> {
    write_db(records, &DbOptions::new(database_type))
}

/// Builds a database file. Where prefixes overlap, a later record wins for
/// the addresses it covers (so list general prefixes before specific ones).
///
/// # Panics
/// On misuse a test would want to hear about at once: `ip_version` not 4
/// or 6, `build_epoch` 0, an IPv6 prefix in an IPv4 database, a forced
/// record size that is not 24/28/32 or too small, or a single value over
/// 16 MiB.
pub fn write_db(records: &[(Prefix, Value)], options: &DbOptions) -> Vec<u8> {
    let width = match options.ip_version {
        4 => 32,
        6 => 128,
        v => panic!("ip_version must be 4 or 6, not {v}"),
    };
    assert_ne!(options.build_epoch, 0, "libmaxminddb reads build_epoch 0 as missing");
    let mut tree = tree::Tree::new(width);
    let mut data = Vec::new();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for (prefix, value) in records {
        let mut bytes = Vec::new();
        encode::encode(value, &mut bytes);
        let offset = *seen.entry(bytes).or_insert_with_key(|bytes| {
            data.extend_from_slice(bytes);
            data.len() - bytes.len()
        });
        let (key, len) = match (prefix.addr, width) {
            (IpAddr::V6(_), 32) => panic!("IPv6 prefix {prefix:?} in an IPv4 database"),
            // IPv4 inside an IPv6 tree: the ::/96 subtree.
            (IpAddr::V4(_), 128) => (addr_bits(prefix.addr), u32::from(prefix.len) + 96),
            _ => (addr_bits(prefix.addr), u32::from(prefix.len)),
        };
        tree.insert(key, len, offset);
    }
    let (tree_bytes, node_count, record_size) = tree.serialize(data.len(), options.record_size);

    let mut out = tree_bytes;
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    let s = |v: &str| Value::String(v.to_string());
    let metadata = Value::Map(vec![
        ("binary_format_major_version".into(), Value::U16(2)),
        ("binary_format_minor_version".into(), Value::U16(0)),
        ("build_epoch".into(), Value::U64(options.build_epoch)),
        ("database_type".into(), s(&options.database_type)),
        ("description".into(), Value::Map(options.description.iter().map(|(k, v)| (k.clone(), s(v))).collect())),
        ("ip_version".into(), Value::U16(options.ip_version)),
        ("languages".into(), Value::Array(options.languages.iter().map(|l| s(l)).collect())),
        ("node_count".into(), Value::U32(node_count)),
        ("record_size".into(), Value::U16(record_size)),
    ]);
    encode::encode(&metadata, &mut out);
    out
}
