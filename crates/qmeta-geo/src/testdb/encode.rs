//! The MaxMind DB data section encoding (spec section "Output Data Section").

use super::Value;

const STRING: u8 = 2;
const DOUBLE: u8 = 3;
const BYTES: u8 = 4;
const UINT16: u8 = 5;
const UINT32: u8 = 6;
const MAP: u8 = 7;
const INT32: u8 = 8;
const UINT64: u8 = 9;
const UINT128: u8 = 10;
const ARRAY: u8 = 11;
const BOOLEAN: u8 = 14;
const FLOAT: u8 = 15;

/// Largest payload size the control byte can express.
pub(crate) const MAX_SIZE: usize = 65_821 + (1 << 24) - 1;

/// Appends `value` to `out`. Never emits pointers: each value is written
/// out in full, which every reader accepts.
pub(crate) fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(s) => bytes_of(STRING, s.as_bytes(), out),
        Value::Bytes(b) => bytes_of(BYTES, b, out),
        Value::Double(d) => bytes_of(DOUBLE, &d.to_be_bytes(), out),
        Value::Float(f) => bytes_of(FLOAT, &f.to_be_bytes(), out),
        Value::U16(v) => uint(UINT16, u128::from(*v), out),
        Value::U32(v) => uint(UINT32, u128::from(*v), out),
        Value::U64(v) => uint(UINT64, u128::from(*v), out),
        Value::U128(v) => uint(UINT128, *v, out),
        // Always four bytes: shorter forms of negative numbers would need
        // sign extension that not every reader does.
        Value::I32(v) => bytes_of(INT32, &v.to_be_bytes(), out),
        // A boolean's value is its size; it has no payload.
        Value::Bool(b) => control(BOOLEAN, usize::from(*b), out),
        Value::Map(entries) => {
            control(MAP, entries.len(), out);
            for (key, v) in entries {
                bytes_of(STRING, key.as_bytes(), out);
                encode(v, out);
            }
        }
        Value::Array(items) => {
            control(ARRAY, items.len(), out);
            for v in items {
                encode(v, out);
            }
        }
    }
}

fn bytes_of(type_num: u8, payload: &[u8], out: &mut Vec<u8>) {
    control(type_num, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Unsigned integers are big-endian without leading zero bytes; the size
/// is the number of bytes (0 for zero).
fn uint(type_num: u8, v: u128, out: &mut Vec<u8>) {
    let be = v.to_be_bytes();
    let skip = be.iter().take_while(|&&b| b == 0).count();
    bytes_of(type_num, &be[skip..], out);
}

/// Control byte: type in the top 3 bits (0 plus an extra byte holding
/// `type - 7` for extended types), size in the low 5 bits, with sizes of 29
/// and more spilling into 1-3 following bytes.
///
/// # Panics
/// If `size` exceeds [`MAX_SIZE`] (16 MiB): a test database never needs it.
fn control(type_num: u8, size: usize, out: &mut Vec<u8>) {
    assert!(size <= MAX_SIZE, "MaxMind DB value of {size} bytes is too large");
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    if type_num <= 7 {
        out.push(type_num << 5 | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend_from_slice(&extra);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: Value) -> Vec<u8> {
        let mut out = vec![];
        encode(&v, &mut out);
        out
    }

    // Byte strings from the examples in the MaxMind DB spec.
    #[test]
    fn spec_examples() {
        assert_eq!(enc(Value::U16(0)), [0xa0]);
        assert_eq!(enc(Value::U32(500)), [0xc2, 0x01, 0xf4]);
        assert_eq!(enc(Value::U64(1)), [0x01, 0x02, 0x01]);
        assert_eq!(enc(Value::Bool(true)), [0x01, 0x07]);
        assert_eq!(enc(Value::I32(-1)), [0x04, 0x01, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(enc(Value::String("US".into())), [0x42, b'U', b'S']);
        let s29 = "x".repeat(29);
        assert_eq!(&enc(Value::String(s29))[..2], [0x5d, 0x00]);
        let s285 = "x".repeat(285);
        assert_eq!(&enc(Value::String(s285))[..3], [0x5e, 0x00, 0x00]);
        let s65821 = "x".repeat(65_821);
        assert_eq!(&enc(Value::String(s65821))[..4], [0x5f, 0x00, 0x00, 0x00]);
        assert_eq!(enc(Value::Array(vec![Value::U16(1)])), [0x01, 0x04, 0xa1, 0x01]);
    }

    #[test]
    fn map_writes_keys_as_strings() {
        let v = Value::Map(vec![("en".into(), Value::String("Berlin".into()))]);
        let mut want = vec![0xe1, 0x42, b'e', b'n', 0x46];
        want.extend_from_slice(b"Berlin");
        assert_eq!(enc(v), want);
    }
}
