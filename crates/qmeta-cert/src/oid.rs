//! Object identifiers, as DER content bytes (what follows the 0x06 tag and
//! length), so that minting copies bytes and parsing compares them.

use crate::der;
use qmeta_fields::FieldId;

/// The qmeta base arc `2.25.124070837015947442550821970482993388561`
/// (UUID 5d572c8c-cc82-440b-af6c-2d640ac55c11).
pub const OID_BASE: &str = "2.25.124070837015947442550821970482993388561";

/// The UUID under `2.25` as an integer.
#[cfg(test)]
pub(crate) const BASE_UUID: u128 = 0x5d57_2c8c_cc82_440b_af6c_2d64_0ac5_5c11;

/// Content bytes of [`OID_BASE`]: `2.25` is 2*40+25 = 0x69, then the UUID
/// in base-128. Checked against `BASE_UUID` in the tests below.
pub(crate) const BASE: [u8; 20] = [
    0x69, 0x81, 0xba, 0xd7, 0x96, 0xa3, 0x99, 0xc8, 0x92, 0x90, 0x97, 0xaf, 0xb6, 0x8b, 0xac, 0xc0, 0xd6, 0x95, 0xb8,
    0x11,
];

/// Arc under the base that holds the header extension (`B.1`).
pub(crate) const HEADER_ARC: u8 = 1;
/// Arc under the base whose children are the field extensions (`B.2.N`).
pub(crate) const FIELDS_ARC: u8 = 2;

pub(crate) const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13]; // 2.5.29.19
pub(crate) const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f]; // 2.5.29.15
pub(crate) const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25]; // 2.5.29.37
pub(crate) const AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23]; // 2.5.29.35
pub(crate) const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02]; // 1.3.6.1.5.5.7.3.2
pub(crate) const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a]; // 2.5.4.10
pub(crate) const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3
pub(crate) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
pub(crate) const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // 1.2.840.10045.3.1.7
pub(crate) const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]; // 1.2.840.10045.4.3.2
pub(crate) const ED25519: &[u8] = &[0x2b, 0x65, 0x70]; // 1.3.101.112

/// Content bytes of the header extension OID `B.1`.
pub(crate) fn header() -> Vec<u8> {
    let mut v = BASE.to_vec();
    v.push(HEADER_ARC);
    v
}

/// Content bytes of field `f`'s extension OID `B.2.N`.
pub(crate) fn field(f: FieldId) -> Vec<u8> {
    let mut v = Vec::with_capacity(BASE.len() + 3);
    v.extend_from_slice(&BASE);
    v.push(FIELDS_ARC);
    der::oid_arc(&mut v, u128::from(f.get()));
    v
}

/// Where an extension OID falls relative to the qmeta arc.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Not under the qmeta base: somebody else's extension.
    Foreign,
    /// `B.1`.
    Header,
    /// `B.2.N` (N as read, not yet validated as a field id).
    Field(u64),
    /// Under the base but not defined by format version 1.
    Unknown,
}

/// Classifies extension OID content bytes.
pub(crate) fn classify(oid: &[u8]) -> Class {
    let Some(rest) = oid.strip_prefix(&BASE[..]) else {
        return Class::Foreign;
    };
    match rest {
        [HEADER_ARC] => Class::Header,
        [FIELDS_ARC, n @ ..] => der::parse_arc(n).map_or(Class::Unknown, Class::Field),
        _ => Class::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_matches_uuid_and_decimal() {
        let mut v = vec![0x69];
        der::oid_arc(&mut v, BASE_UUID);
        assert_eq!(v, BASE);
        assert_eq!(format!("2.25.{BASE_UUID}"), OID_BASE);
        let uuid = uuid::Uuid::parse_str("5d572c8c-cc82-440b-af6c-2d640ac55c11").unwrap();
        assert_eq!(uuid.as_u128(), BASE_UUID);
    }

    #[test]
    fn classifies() {
        assert_eq!(classify(&header()), Class::Header);
        assert_eq!(classify(&field(FieldId::SNI)), Class::Field(6));
        assert_eq!(classify(&field(FieldId::new(1999).unwrap())), Class::Field(1999));
        assert_eq!(classify(BASIC_CONSTRAINTS), Class::Foreign);
        assert_eq!(classify(&BASE), Class::Unknown);
        let mut b3 = BASE.to_vec();
        b3.push(3);
        assert_eq!(classify(&b3), Class::Unknown);
        let mut bad = BASE.to_vec();
        bad.extend_from_slice(&[2, 0x80, 0x06]);
        assert_eq!(classify(&bad), Class::Unknown);
    }
}
