//! A bounded FIFO of key material with stream offsets.
//!
//! Every byte the link ever put into a pool has an offset in that pool's
//! stream (dropped bytes included), so two KMEs holding copies of the same
//! stream can name a key by `(offset, len)` without sending its bytes. The
//! buffer is allocated once at its capacity and never reallocates (no stray
//! copies of key material); consumed and dropped bytes are wiped.

use zeroize::{Zeroize, Zeroizing};

/// What to do with material that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Keep the oldest material, drop what arrives (one KME owns the pool).
    DropNew,
    /// Keep the freshest, drop the oldest: two KMEs applying the same rule
    /// to the same stream keep the same window (see `docs/KME.md`).
    DropOld,
}

/// Why [`Pool::take_at`] could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeAt {
    /// The bytes have not arrived yet.
    NotYet,
    /// The bytes were consumed or dropped already.
    Gone,
}

pub struct Pool {
    buf: Zeroizing<Vec<u8>>,
    /// Index in `buf` of the oldest byte held.
    head: usize,
    len: usize,
    /// Stream offset of the oldest byte held.
    head_offset: u64,
    when_full: WhenFull,
}

impl Pool {
    pub fn new(capacity: usize, when_full: WhenFull) -> Pool {
        Pool { buf: Zeroizing::new(vec![0; capacity]), head: 0, len: 0, head_offset: 0, when_full }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn room(&self) -> usize {
        self.capacity() - self.len
    }

    /// Stream offset of the next byte [`Pool::take`] returns.
    pub fn head_offset(&self) -> u64 {
        self.head_offset
    }

    /// Stream offset just past the newest byte.
    pub fn end_offset(&self) -> u64 {
        self.head_offset + self.len as u64
    }

    /// Appends `bytes` (which the caller wipes); returns how many were kept.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let cap = self.capacity();
        if cap == 0 {
            self.head_offset += bytes.len() as u64;
            return 0;
        }
        let kept = match self.when_full {
            WhenFull::DropNew => &bytes[..bytes.len().min(self.room())],
            WhenFull::DropOld => {
                let keep = &bytes[bytes.len().saturating_sub(cap)..];
                // Bytes of `bytes` that never enter count as dropped-old too.
                let skipped = (bytes.len() - keep.len()) as u64;
                let overflow = (self.len + keep.len()).saturating_sub(cap);
                self.drop_front(overflow);
                if self.len == 0 {
                    self.head_offset += skipped;
                }
                keep
            }
        };
        for &b in kept {
            let i = (self.head + self.len) % cap;
            self.buf[i] = b;
            self.len += 1;
        }
        kept.len()
    }

    /// Drops (and wipes) the `n` oldest bytes.
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        let cap = self.capacity();
        for k in 0..n {
            self.buf[(self.head + k) % cap] = 0;
        }
        if cap > 0 {
            self.head = (self.head + n) % cap;
        }
        self.len -= n;
        self.head_offset += n as u64;
    }

    /// The `n` oldest bytes, removed from the pool; `None` if fewer are held.
    pub fn take(&mut self, n: usize) -> Option<Zeroizing<Vec<u8>>> {
        if n > self.len {
            return None;
        }
        let cap = self.capacity();
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        for k in 0..n {
            out.push(self.buf[(self.head + k) % cap]);
        }
        self.drop_front(n);
        Some(out)
    }

    /// The `n` bytes at stream offset `offset`: what a peer holding the
    /// same stream took there. Older bytes are dropped first.
    pub fn take_at(&mut self, offset: u64, n: usize) -> Result<Zeroizing<Vec<u8>>, TakeAt> {
        if offset < self.head_offset {
            return Err(TakeAt::Gone);
        }
        if offset + n as u64 > self.end_offset() {
            // Bytes before `offset` are still kept: they may be asked for by
            // a reservation that is still on its way.
            return Err(TakeAt::NotYet);
        }
        self.drop_front((offset - self.head_offset) as usize);
        self.take(n).ok_or(TakeAt::NotYet)
    }

    /// Wipes everything and restarts the stream at offset 0.
    pub fn reset(&mut self) {
        // On the slice: `Vec::zeroize` would also truncate the buffer.
        self.buf.as_mut_slice().zeroize();
        self.head = 0;
        self.len = 0;
        self.head_offset = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_offsets_and_wraparound() {
        let mut p = Pool::new(8, WhenFull::DropNew);
        assert_eq!(p.push(&[1, 2, 3, 4, 5, 6]), 6);
        assert_eq!(&p.take(4).unwrap()[..], &[1, 2, 3, 4]);
        assert_eq!(p.head_offset(), 4);
        assert_eq!(p.push(&[7, 8, 9, 10, 11, 12, 13]), 6, "room for 6");
        assert_eq!(p.len(), 8);
        assert_eq!(&p.take(8).unwrap()[..], &[5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(p.take(1).is_none());
        assert!(p.buf.iter().all(|&b| b == 0), "consumed bytes are wiped");
    }

    #[test]
    fn drop_old_keeps_the_same_window_on_both_copies() {
        let stream: Vec<u8> = (0..40).collect();
        let mut owner = Pool::new(8, WhenFull::DropOld);
        let mut copy = Pool::new(16, WhenFull::DropOld);
        for chunk in stream.chunks(5) {
            owner.push(chunk);
            copy.push(chunk);
        }
        assert_eq!((owner.head_offset(), owner.end_offset()), (32, 40));
        let off = owner.head_offset();
        let k = owner.take(3).unwrap();
        assert_eq!(&k[..], &[32, 33, 34]);
        assert_eq!(&copy.take_at(off, 3).unwrap()[..], &k[..]);
        assert_eq!(copy.take_at(off, 3), Err(TakeAt::Gone));
        assert_eq!(copy.take_at(40, 1), Err(TakeAt::NotYet));
        // A block larger than the pool keeps its freshest part.
        let mut small = Pool::new(4, WhenFull::DropOld);
        small.push(&[1, 2, 3, 4, 5, 6]);
        assert_eq!((small.head_offset(), small.len()), (2, 4));
        assert_eq!(&small.take(4).unwrap()[..], &[3, 4, 5, 6]);
        small.push(&[1, 2]);
        small.reset();
        assert_eq!((small.capacity(), small.len(), small.head_offset()), (4, 0, 0));
        assert_eq!(small.push(&[9]), 1, "usable after a reset");
    }
}
