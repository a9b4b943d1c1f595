use qmeta_fields::{FieldId, FieldValue};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// The metadata of one LB→backend connection, opened and authenticated.
///
/// `Debug` shows field ids but not values ([`FieldValue`]'s `Debug`
/// redacts them), so a stray `{:?}` does not leak client data to logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The certificate serial, lowercase hex (the key of the LB's audit
    /// record for this certificate).
    pub serial_hex: String,
    /// The QKD key the values were sealed under.
    pub key_id: Uuid,
    /// The DMCP state version the LB's field set had when it minted.
    pub state_version: u64,
    /// The fields, in ascending id order.
    pub fields: Vec<(FieldId, FieldValue)>,
    /// Fields the backend asked for that the LB left out because the
    /// certificate would have been too large.
    pub dropped: Vec<FieldId>,
}

impl Metadata {
    /// The value of one field, if the LB included it.
    pub fn get(&self, f: FieldId) -> Option<&FieldValue> {
        self.fields.iter().find(|(id, _)| *id == f).map(|(_, v)| v)
    }

    /// A JSON rendering: IPs and text as strings, ports, counters and
    /// timestamps (Unix milliseconds) as numbers, bytes as lowercase hex.
    ///
    /// ```text
    /// {"serial": "…", "key_id": "…", "state_version": 3,
    ///  "fields": {"src_ip": "127.0.0.1", "src_port": 54321, …},
    ///  "dropped": ["http_user_agent"]}
    /// ```
    pub fn to_json(&self) -> Value {
        let fields: Map<String, Value> = self.fields.iter().map(|(id, v)| (id.name(), value_json(v))).collect();
        let dropped: Vec<String> = self.dropped.iter().map(|f| f.name()).collect();
        json!({
            "serial": self.serial_hex,
            "key_id": self.key_id.to_string(),
            "state_version": self.state_version,
            "fields": fields,
            "dropped": dropped,
        })
    }
}

fn value_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Ip(a) => Value::String(a.to_string()),
        FieldValue::U16(n) => Value::from(*n),
        FieldValue::U32(n) => Value::from(*n),
        FieldValue::U64(n) | FieldValue::TimestampMs(n) => Value::from(*n),
        FieldValue::Text(s) => Value::String(s.clone()),
        FieldValue::Bytes(b) => Value::String(hex::encode(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            serial_hex: "80aa".into(),
            key_id: Uuid::from_u128(0x1234),
            state_version: 9,
            fields: vec![
                (FieldId::SRC_IP, FieldValue::Ip("127.0.0.1".parse().unwrap())),
                (FieldId::SRC_PORT, FieldValue::U16(54321)),
                (FieldId::DST_IP, FieldValue::Ip("2001:db8::1".parse().unwrap())),
                (FieldId::TIMESTAMP, FieldValue::TimestampMs(1_700_000_000_123)),
                (FieldId::SNI, FieldValue::Text("example.com".into())),
                (FieldId::GEO_ASN, FieldValue::U32(64496)),
                (FieldId::CLIENT_CERT_FINGERPRINT, FieldValue::Bytes(vec![0x00, 0xab, 0xff])),
                (FieldId::CONNECTION_ID, FieldValue::U64(u64::MAX)),
                (FieldId::new(1000).unwrap(), FieldValue::Text("tenant-7".into())),
            ],
            dropped: vec![FieldId::HTTP_USER_AGENT, FieldId::JA4],
        }
    }

    #[test]
    fn json_shapes() {
        let j = sample().to_json();
        assert_eq!(j["serial"], json!("80aa"));
        assert_eq!(j["key_id"], json!("00000000-0000-0000-0000-000000001234"));
        assert_eq!(j["state_version"], json!(9));
        let f = &j["fields"];
        assert_eq!(f["src_ip"], json!("127.0.0.1"));
        assert_eq!(f["src_port"], json!(54321));
        assert!(f["src_port"].is_u64());
        assert_eq!(f["dst_ip"], json!("2001:db8::1"));
        assert_eq!(f["timestamp"], json!(1_700_000_000_123u64));
        assert!(f["timestamp"].is_u64());
        assert_eq!(f["sni"], json!("example.com"));
        assert_eq!(f["geo_asn"], json!(64496));
        assert_eq!(f["client_cert_fingerprint"], json!("00abff"));
        assert_eq!(f["connection_id"], json!(u64::MAX));
        assert_eq!(f["custom_1000"], json!("tenant-7"));
        assert_eq!(f.as_object().unwrap().len(), 9);
        assert_eq!(j["dropped"], json!(["http_user_agent", "ja4"]));
        assert_eq!(j.as_object().unwrap().len(), 5);
    }

    #[test]
    fn empty_metadata_has_empty_collections() {
        let m = Metadata { fields: vec![], dropped: vec![], ..sample() };
        let j = m.to_json();
        assert_eq!(j["fields"], json!({}));
        assert_eq!(j["dropped"], json!([]));
    }

    #[test]
    fn get_finds_fields() {
        let m = sample();
        assert_eq!(m.get(FieldId::SRC_PORT), Some(&FieldValue::U16(54321)));
        assert_eq!(m.get(FieldId::ALPN), None);
    }

    #[test]
    fn debug_hides_values() {
        let s = format!("{:?}", sample());
        for secret in ["127.0.0.1", "example.com", "54321", "tenant-7", "00abff"] {
            assert!(!s.contains(secret), "{secret} leaked in {s}");
        }
        assert!(s.contains("80aa"), "{s}");
    }
}
