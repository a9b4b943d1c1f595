//! The facts the LB knows about one client connection, and their values
//! for the fields a backend asked for.

use qmeta_fields::{FieldId, FieldSet, FieldValue};
use std::net::SocketAddr;

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
}

impl ConnFacts {
    /// Values for every field of `set` this connection has a value for.
    /// Fields the LB cannot fill (e.g. SNI when the client sent none, or
    /// fields produced by features not enabled) are left out.
    pub fn values(&self, set: &FieldSet, node_id: &str) -> Vec<(FieldId, FieldValue)> {
        set.iter()
            .filter_map(|f| self.value(f, node_id).map(|v| (f, v)))
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
        }
    }

    #[test]
    fn fills_requested_fields_only() {
        let set: FieldSet = [
            FieldId::SRC_IP,
            FieldId::SNI,
            FieldId::ALPN,
            FieldId::LB_NODE_ID,
        ]
        .into_iter()
        .collect();
        let v = facts().values(&set, "lb-1");
        assert_eq!(
            v,
            vec![
                (
                    FieldId::SRC_IP,
                    FieldValue::Ip("192.0.2.9".parse().unwrap())
                ),
                (FieldId::SNI, FieldValue::Text("example.com".into())),
                (FieldId::LB_NODE_ID, FieldValue::Text("lb-1".into())),
            ]
        );
    }
}
