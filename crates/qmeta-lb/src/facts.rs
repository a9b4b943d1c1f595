//! The facts the LB knows about one client connection, and their values
//! for the fields a backend asked for.

use qmeta_fields::{FieldId, FieldSet, FieldValue};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// What the LB learnt about a client connection during accept and the TLS
/// handshake. Values are metadata: never logged.
pub(crate) struct ConnFacts {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub accepted_unix_ms: u64,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub tls_version: Option<u16>,
    pub cipher_suite: Option<u16>,
    pub conn_id: u64,
    /// JA4 / JA3 of the raw ClientHello, when it could be parsed.
    pub ja4: Option<String>,
    pub ja3: Option<String>,
    /// "client via proxy" when a trusted PROXY header named the client.
    pub proxied_for: Option<String>,
    /// The geolocation databases, when configured; looked up at most once
    /// per connection, and only when a backend asks for a geo field.
    pub geo: Option<Arc<qmeta_geo::Geo>>,
    pub geo_info: OnceLock<qmeta_geo::GeoInfo>,
}

/// HTTP mode: what one request adds to the connection's facts. Values are
/// metadata: never logged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestFacts {
    /// Request path without the query (for route scopes; not a field).
    pub path: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub accept_language: Option<String>,
    /// `[[http.header_field]]` values found in the request.
    pub headers: Vec<(FieldId, String)>,
}

impl ConnFacts {
    /// Values for every field of `set` this connection (and, in HTTP mode,
    /// request `req`) has a value for. Fields the LB cannot fill (e.g. SNI
    /// when the client sent none, or fields produced by features not
    /// enabled) are left out. A header-mapped custom field wins over a
    /// static one with the same id.
    pub fn request_values(
        &self,
        set: &FieldSet,
        node_id: &str,
        custom: &[(FieldId, String)],
        req: Option<&RequestFacts>,
    ) -> Vec<(FieldId, FieldValue)> {
        set.iter()
            .filter_map(|f| {
                if let Some(req) = req {
                    let text = match f {
                        FieldId::HTTP_HOST => req.host.as_ref(),
                        FieldId::HTTP_USER_AGENT => req.user_agent.as_ref(),
                        FieldId::HTTP_ACCEPT_LANGUAGE => req.accept_language.as_ref(),
                        _ => req.headers.iter().find(|(id, _)| *id == f).map(|(_, v)| v),
                    };
                    if let Some(v) = text {
                        return Some((f, FieldValue::Text(v.clone())));
                    }
                }
                if f.is_custom() {
                    return custom.iter().find(|(id, _)| *id == f).map(|(_, v)| (f, FieldValue::Text(v.clone())));
                }
                self.value(f, node_id).map(|v| (f, v))
            })
            .collect()
    }

    fn value(&self, f: FieldId, node_id: &str) -> Option<FieldValue> {
        Some(match f {
            FieldId::SRC_IP => FieldValue::Ip(self.peer.ip().to_canonical()),
            FieldId::SRC_PORT => FieldValue::U16(self.peer.port()),
            FieldId::DST_IP => FieldValue::Ip(self.local.ip().to_canonical()),
            FieldId::DST_PORT => FieldValue::U16(self.local.port()),
            FieldId::TIMESTAMP => FieldValue::TimestampMs(self.accepted_unix_ms),
            FieldId::SNI => FieldValue::Text(self.sni.clone()?),
            FieldId::ALPN => FieldValue::Text(self.alpn.clone()?),
            FieldId::TLS_VERSION => FieldValue::U16(self.tls_version?),
            FieldId::CIPHER_SUITE => FieldValue::U16(self.cipher_suite?),
            FieldId::CONNECTION_ID => FieldValue::U64(self.conn_id),
            FieldId::LB_NODE_ID => FieldValue::Text(node_id.to_string()),
            FieldId::JA4 => FieldValue::Text(self.ja4.clone()?),
            FieldId::JA3 => FieldValue::Text(self.ja3.clone()?),
            FieldId::PROXIED_FOR => FieldValue::Text(self.proxied_for.clone()?),
            FieldId::GEO_COUNTRY | FieldId::GEO_REGION | FieldId::GEO_CITY | FieldId::GEO_ASN => {
                let geo = self.geo.as_ref()?;
                let info = self.geo_info.get_or_init(|| geo.lookup(self.peer.ip().to_canonical()));
                return info.fields().into_iter().find(|(id, _)| *id == f).map(|(_, v)| v);
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ConnFacts {
        ConnFacts {
            peer: "[::ffff:192.0.2.9]:40000".parse().unwrap(),
            local: "127.0.0.1:8443".parse().unwrap(),
            accepted_unix_ms: 1_700_000_000_000,
            sni: Some("example.com".into()),
            alpn: None,
            tls_version: Some(0x0304),
            cipher_suite: Some(0x1301),
            conn_id: 7,
            ja4: None,
            ja3: None,
            proxied_for: None,
            geo: None,
            geo_info: OnceLock::new(),
        }
    }

    #[test]
    fn fills_requested_fields_only() {
        let set: FieldSet = [FieldId::SRC_IP, FieldId::SNI, FieldId::ALPN, FieldId::LB_NODE_ID].into_iter().collect();
        let mut set = set;
        set.insert(FieldId::new(1000).unwrap());
        set.insert(FieldId::new(1001).unwrap());
        let custom = vec![(FieldId::new(1000).unwrap(), "eu-west-1".to_string())];
        let v = facts().request_values(&set, "lb-1", &custom, None);
        assert_eq!(
            v,
            vec![
                (FieldId::SRC_IP, FieldValue::Ip("192.0.2.9".parse().unwrap())),
                (FieldId::SNI, FieldValue::Text("example.com".into())),
                (FieldId::LB_NODE_ID, FieldValue::Text("lb-1".into())),
                (FieldId::new(1000).unwrap(), FieldValue::Text("eu-west-1".into())),
            ]
        );
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn http_fields_come_from_the_request_and_headers_win_over_static_values() {
        let facts = ConnFacts {
            peer: "192.0.2.9:40000".parse().unwrap(),
            local: "127.0.0.1:8443".parse().unwrap(),
            accepted_unix_ms: 5,
            sni: None,
            alpn: None,
            tls_version: None,
            cipher_suite: None,
            conn_id: 7,
            ja4: None,
            ja3: None,
            proxied_for: None,
            geo: None,
            geo_info: OnceLock::new(),
        };
        let (c1, c2) = (FieldId::new(1001).unwrap(), FieldId::new(1002).unwrap());
        let set: FieldSet =
            [FieldId::TIMESTAMP, FieldId::HTTP_HOST, FieldId::HTTP_USER_AGENT, FieldId::HTTP_ACCEPT_LANGUAGE, c1, c2]
                .into_iter()
                .collect();
        let custom = vec![(c1, "static-1".to_string()), (c2, "static-2".to_string())];
        let req = RequestFacts {
            path: "/x".into(),
            host: Some("h.example".into()),
            user_agent: Some("ua".into()),
            accept_language: None,
            headers: vec![(c1, "from-header".into())],
        };
        let v = facts.request_values(&set, "lb", &custom, Some(&req));
        assert_eq!(
            v,
            vec![
                (FieldId::TIMESTAMP, FieldValue::TimestampMs(5)),
                (FieldId::HTTP_HOST, FieldValue::Text("h.example".into())),
                (FieldId::HTTP_USER_AGENT, FieldValue::Text("ua".into())),
                (c1, FieldValue::Text("from-header".into())),
                (c2, FieldValue::Text("static-2".into())),
            ]
        );
        // TCP mode: no HTTP fields at all.
        let v = facts.request_values(&set, "lb", &custom, None);
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|(f, _)| *f == FieldId::TIMESTAMP || f.is_custom()));
    }
}

#[cfg(test)]
mod geo_tests {
    use super::*;

    #[test]
    fn geo_fields_come_from_the_database_and_loopback_is_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let city = dir.path().join("city.mmdb");
        let asn = dir.path().join("asn.mmdb");
        std::fs::write(&city, qmeta_geo::testdb::sample_city_db()).unwrap();
        std::fs::write(&asn, qmeta_geo::testdb::sample_asn_db()).unwrap();
        let geo =
            Arc::new(qmeta_geo::Geo::open(&qmeta_geo::GeoConfig { city_db: Some(city), asn_db: Some(asn) }).unwrap());
        let set: FieldSet = [FieldId::GEO_COUNTRY, FieldId::GEO_ASN].into_iter().collect();
        let facts = |peer: &str| ConnFacts {
            peer: peer.parse().unwrap(),
            local: "127.0.0.1:8443".parse().unwrap(),
            accepted_unix_ms: 0,
            sni: None,
            alpn: None,
            tls_version: None,
            cipher_suite: None,
            conn_id: 1,
            ja4: None,
            ja3: None,
            proxied_for: None,
            geo: Some(geo.clone()),
            geo_info: OnceLock::new(),
        };
        let v = facts("127.0.0.1:5000").request_values(&set, "lb", &[], None);
        assert_eq!(v, vec![(FieldId::GEO_COUNTRY, FieldValue::Text("reserved".into()))]);
        // Whatever the sample database says for a public address, it comes from the database.
        let public = qmeta_geo::testdb::sample_city_records()[0].0.addr();
        let expected = geo.lookup(public).fields();
        let got = facts(&std::net::SocketAddr::new(public, 1).to_string()).request_values(&set, "lb", &[], None);
        let want: Vec<_> = expected.into_iter().filter(|(f, _)| set.contains(*f)).collect();
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }
}
