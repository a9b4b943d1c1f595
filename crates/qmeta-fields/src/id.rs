use std::fmt;

/// Lowest id of an operator-defined custom field.
pub const CUSTOM_MIN: u16 = 1000;
/// Highest id of an operator-defined custom field.
pub const CUSTOM_MAX: u16 = 1999;

/// How a field's value is encoded on the wire (see `docs/FORMAT.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// 4 bytes (IPv4) or 16 bytes (IPv6), network order.
    Ip,
    /// 2 bytes, big-endian.
    U16,
    /// 8 bytes, big-endian.
    U64,
    /// 4 bytes, big-endian.
    U32,
    /// Unix time in milliseconds, 8 bytes, big-endian.
    TimestampMs,
    /// UTF-8 text, at most [`crate::MAX_VALUE_LEN`] bytes.
    Text,
    /// Raw bytes, at most [`crate::MAX_VALUE_LEN`] bytes.
    Bytes,
}

/// A field id: a known field (1..=23) or a custom field (1000..=1999).
///
/// Validating newtype: a `FieldId` value always names a field the format
/// defines, so code holding one never needs to re-check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(u16);

/// The known fields: id, name, kind. Ids are stable forever; a retired id is
/// never reused. Ids 10..=19 and 22..=23 are produced by the LB's HTTP mode,
/// fingerprinting, geolocation and PROXY-protocol support.
pub const KNOWN: &[(u16, &str, FieldKind)] = &[
    (1, "src_ip", FieldKind::Ip),
    (2, "src_port", FieldKind::U16),
    (3, "dst_ip", FieldKind::Ip),
    (4, "dst_port", FieldKind::U16),
    (5, "timestamp", FieldKind::TimestampMs),
    (6, "sni", FieldKind::Text),
    (7, "alpn", FieldKind::Text),
    (8, "tls_version", FieldKind::U16),
    (9, "cipher_suite", FieldKind::U16),
    (10, "ja4", FieldKind::Text),
    (11, "ja3", FieldKind::Text),
    (12, "geo_country", FieldKind::Text),
    (13, "geo_region", FieldKind::Text),
    (14, "geo_asn", FieldKind::U32),
    (15, "client_cert_subject", FieldKind::Text),
    (16, "client_cert_fingerprint", FieldKind::Bytes),
    (17, "http_host", FieldKind::Text),
    (18, "http_user_agent", FieldKind::Text),
    (19, "http_accept_language", FieldKind::Text),
    (20, "connection_id", FieldKind::U64),
    (21, "lb_node_id", FieldKind::Text),
    (22, "proxied_for", FieldKind::Text),
    (23, "geo_city", FieldKind::Text),
];

impl FieldId {
    pub const SRC_IP: FieldId = FieldId(1);
    pub const SRC_PORT: FieldId = FieldId(2);
    pub const DST_IP: FieldId = FieldId(3);
    pub const DST_PORT: FieldId = FieldId(4);
    pub const TIMESTAMP: FieldId = FieldId(5);
    pub const SNI: FieldId = FieldId(6);
    pub const ALPN: FieldId = FieldId(7);
    pub const TLS_VERSION: FieldId = FieldId(8);
    pub const CIPHER_SUITE: FieldId = FieldId(9);
    pub const JA4: FieldId = FieldId(10);
    pub const JA3: FieldId = FieldId(11);
    pub const GEO_COUNTRY: FieldId = FieldId(12);
    pub const GEO_REGION: FieldId = FieldId(13);
    pub const GEO_ASN: FieldId = FieldId(14);
    pub const CLIENT_CERT_SUBJECT: FieldId = FieldId(15);
    pub const CLIENT_CERT_FINGERPRINT: FieldId = FieldId(16);
    pub const HTTP_HOST: FieldId = FieldId(17);
    pub const HTTP_USER_AGENT: FieldId = FieldId(18);
    pub const HTTP_ACCEPT_LANGUAGE: FieldId = FieldId(19);
    pub const CONNECTION_ID: FieldId = FieldId(20);
    pub const LB_NODE_ID: FieldId = FieldId(21);
    pub const PROXIED_FOR: FieldId = FieldId(22);
    pub const GEO_CITY: FieldId = FieldId(23);

    /// Validates a raw id. `None` for ids the format does not define.
    pub fn new(raw: u16) -> Option<FieldId> {
        let known = KNOWN.iter().any(|(id, _, _)| *id == raw);
        (known || (CUSTOM_MIN..=CUSTOM_MAX).contains(&raw)).then_some(FieldId(raw))
    }

    /// The raw numeric id.
    pub fn get(self) -> u16 {
        self.0
    }

    /// True for operator-defined fields (1000..=1999).
    pub fn is_custom(self) -> bool {
        self.0 >= CUSTOM_MIN
    }

    /// The field's name: `src_ip`, …, or `custom_1000` for custom fields.
    pub fn name(self) -> String {
        match KNOWN.iter().find(|(id, _, _)| *id == self.0) {
            Some((_, name, _)) => (*name).to_string(),
            None => format!("custom_{}", self.0),
        }
    }

    /// Parses a name (`sni`, `custom_1000`) or a decimal id (`6`).
    pub fn from_name(s: &str) -> Option<FieldId> {
        if let Some((id, _, _)) = KNOWN.iter().find(|(_, name, _)| *name == s) {
            return Some(FieldId(*id));
        }
        if let Some(rest) = s.strip_prefix("custom_") {
            return rest.parse().ok().and_then(FieldId::new).filter(|f| f.is_custom());
        }
        s.parse().ok().and_then(FieldId::new)
    }

    /// How this field's value is encoded. Custom fields are UTF-8 text.
    pub fn kind(self) -> FieldKind {
        KNOWN.iter().find(|(id, _, _)| *id == self.0).map(|(_, _, k)| *k).unwrap_or(FieldKind::Text)
    }

    /// All known (non-custom) fields in id order.
    pub fn known() -> impl Iterator<Item = FieldId> {
        KNOWN.iter().map(|(id, _, _)| FieldId(*id))
    }
}

impl fmt::Display for FieldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl serde::Serialize for FieldId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for FieldId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FieldId::from_name(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown field `{s}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in FieldId::known() {
            assert_eq!(FieldId::from_name(&f.name()), Some(f));
        }
        let c = FieldId::new(1234).unwrap();
        assert_eq!(c.name(), "custom_1234");
        assert_eq!(FieldId::from_name("custom_1234"), Some(c));
        assert_eq!(FieldId::from_name("6"), Some(FieldId::SNI));
    }

    #[test]
    fn rejects_undefined_ids() {
        assert_eq!(FieldId::new(0), None);
        assert_eq!(FieldId::new(24), None);
        assert_eq!(FieldId::new(999), None);
        assert_eq!(FieldId::new(2000), None);
        assert_eq!(FieldId::from_name("custom_5"), None);
        assert_eq!(FieldId::from_name("nope"), None);
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let ids: Vec<u16> = KNOWN.iter().map(|k| k.0).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }
}
