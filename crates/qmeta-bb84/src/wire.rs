//! Bounded binary reader/writer shared by the message codecs.
//!
//! Integers are fixed big-endian or minimal LEB128 varints; bit strings are a
//! varint bit count followed by ⌈count/8⌉ bytes whose unused high bits must
//! be zero (so every value has exactly one encoding and re-encoding a decoded
//! message gives the bytes the tag was computed over).

use crate::bits::BitVec;
use thiserror::Error;

/// Largest encoded message accepted (bytes).
pub const MAX_MESSAGE_BYTES: usize = 48 << 20;

/// Largest bit string accepted in any message (bits).
pub const MAX_BITS: usize = 1 << 26;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// More bytes are needed; read more and retry.
    #[error("message incomplete")]
    Incomplete,
    /// A length or count exceeds the crate's limits.
    #[error("message exceeds size limits")]
    TooLarge,
    /// The bytes can never form a valid message.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
    /// A complete message was followed by extra bytes.
    #[error("trailing bytes after message")]
    TrailingBytes,
}

/// Appends encodings to a byte vector.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Bytes of a bit string whose length the reader already knows.
    pub fn raw_bits(&mut self, b: &BitVec) {
        self.buf.extend_from_slice(&b.to_bytes());
    }

    pub fn bits(&mut self, b: &BitVec) {
        self.varint(b.len() as u64);
        self.raw_bits(b);
    }
}

/// Reads encodings from a byte slice, never past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Incomplete);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(DecodeError::Invalid("varint overflow"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::Invalid("non-minimal varint"));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid("varint too long"))
    }

    /// A varint that must be at most `max`.
    pub fn bounded(&mut self, max: usize) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        if v > max as u64 {
            return Err(DecodeError::TooLarge);
        }
        Ok(v as usize)
    }

    /// `len` bits stored as ⌈len/8⌉ bytes with zero padding.
    pub fn raw_bits(&mut self, len: usize) -> Result<BitVec, DecodeError> {
        let bytes = self.take(len.div_ceil(8))?;
        if len % 8 != 0 {
            let last = bytes[bytes.len() - 1];
            if last >> (len % 8) != 0 {
                return Err(DecodeError::Invalid("non-zero padding bits"));
            }
        }
        Ok(BitVec::from_bytes(bytes, len))
    }

    pub fn bits(&mut self) -> Result<BitVec, DecodeError> {
        let len = self.bounded(MAX_BITS)?;
        self.raw_bits(len)
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_minimality() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut w = Writer::default();
            w.varint(v);
            let mut r = Reader::new(&w.buf);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.finish(), Ok(()));
            for cut in 0..w.buf.len() {
                assert_eq!(Reader::new(&w.buf[..cut]).varint(), Err(DecodeError::Incomplete));
            }
        }
        assert!(matches!(Reader::new(&[0x80, 0x00]).varint(), Err(DecodeError::Invalid(_))));
        assert!(matches!(Reader::new(&[0xff; 10]).varint(), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn padding_bits_must_be_zero() {
        assert!(Reader::new(&[3, 0b0000_0101]).bits().is_ok());
        assert!(matches!(Reader::new(&[3, 0b0000_1101]).bits(), Err(DecodeError::Invalid(_))));
        assert_eq!(Reader::new(&[0x80, 0x80, 0x80, 0x40]).bits(), Err(DecodeError::TooLarge));
    }
}
