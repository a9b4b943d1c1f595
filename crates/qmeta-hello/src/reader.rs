//! A bounded cursor over a complete handshake message. Running out of bytes
//! here means the message lied about its own lengths, so every short read
//! is [`HelloError::Malformed`], never "incomplete".

use crate::HelloError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if n > self.buf.len() {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a 1-byte length prefix.
    pub(crate) fn vec8(&mut self, what: &'static str) -> Result<Reader<'a>, HelloError> {
        let n = self.u8(what)? as usize;
        Ok(Reader::new(self.take(n, what)?))
    }

    /// A vector with a 2-byte length prefix.
    pub(crate) fn vec16(&mut self, what: &'static str) -> Result<Reader<'a>, HelloError> {
        let n = self.u16(what)? as usize;
        Ok(Reader::new(self.take(n, what)?))
    }

    /// The rest as big-endian u16 values; odd length is malformed.
    pub(crate) fn u16_list(self, what: &'static str) -> Result<Vec<u16>, HelloError> {
        let pairs = self.buf.chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return Err(HelloError::Malformed(what));
        }
        Ok(pairs.map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }

    /// Rejects trailing bytes.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), HelloError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(HelloError::Malformed(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_and_trailing_bytes_are_malformed() {
        let mut r = Reader::new(&[0, 3, 1, 2]);
        assert_eq!(r.vec16("v").err(), Some(HelloError::Malformed("v")));
        let mut r = Reader::new(&[0, 1, 9, 7]);
        let mut v = r.vec16("v").unwrap();
        assert_eq!(v.u8("b").unwrap(), 9);
        assert!(v.is_empty());
        assert_eq!(r.finish("trail"), Err(HelloError::Malformed("trail")));
        assert_eq!(Reader::new(&[1, 2, 3]).u16_list("odd"), Err(HelloError::Malformed("odd")));
        assert_eq!(Reader::new(&[1, 2, 3, 4]).u16_list("x").unwrap(), vec![0x0102, 0x0304]);
    }
}
