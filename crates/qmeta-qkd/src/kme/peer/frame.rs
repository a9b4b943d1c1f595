//! Frames between two single-site KMEs (sans-IO codec).
//!
//! ```text
//! frame  = len:u32be kind:u8 body        (len counts kind + body, ≤ MAX_FRAME)
//! Hello  = 0x01 version:u8 site:u8 nonce:[16]   ('A' or 'B'; first frame
//!                                        each way; the nonces salt the session)
//! Bb84   = 0x02 message                  (a qmeta-bb84 message, opaque here)
//! Relay  = 0x03 seq:u64 site:u8 offset:u64 each:u32 n:u16 id:[16]×n
//!               master:str nslaves:u8 slave:str×nslaves   (str = len:u16 utf8)
//! Ack    = 0x04 seq:u64 ok:u8
//! ```
//!
//! A Relay names keys issued at `site` by stream position only; key bytes
//! never cross this channel.

use crate::kme::store::{Relay, Site};
use uuid::Uuid;

/// Largest frame accepted (a BB84 block message is well below this).
pub const MAX_FRAME: usize = 16 << 20;
/// Version of this framing.
pub const VERSION: u8 = 1;
const MAX_STR: usize = 255;
const MAX_IDS: usize = 4096;
const MAX_SLAVES: usize = 65;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello { version: u8, site: Site, nonce: [u8; 16] },
    Bb84(Vec<u8>),
    Relay { seq: u64, relay: Relay },
    Ack { seq: u64, ok: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More bytes are needed.
    #[error("incomplete frame")]
    Incomplete,
    /// The bytes are not a valid frame.
    #[error("invalid peer frame: {0}")]
    Invalid(&'static str),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(MAX_STR)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn site_byte(s: Site) -> u8 {
    match s {
        Site::A => b'A',
        Site::B => b'B',
    }
}

/// Encodes a frame. Strings longer than 255 bytes are cut (the KME
/// config allows no longer SAE ids).
pub fn encode(f: &Frame) -> Vec<u8> {
    let mut body = Vec::new();
    match f {
        Frame::Hello { version, site, nonce } => {
            body.extend_from_slice(&[0x01, *version, site_byte(*site)]);
            body.extend_from_slice(nonce);
        }
        Frame::Bb84(m) => {
            body.push(0x02);
            body.extend_from_slice(m);
        }
        Frame::Relay { seq, relay } => {
            body.push(0x03);
            body.extend_from_slice(&seq.to_be_bytes());
            body.push(site_byte(relay.issued_at));
            body.extend_from_slice(&relay.offset.to_be_bytes());
            body.extend_from_slice(&relay.each.to_be_bytes());
            body.extend_from_slice(&(relay.ids.len() as u16).to_be_bytes());
            for id in &relay.ids {
                body.extend_from_slice(id.as_bytes());
            }
            put_str(&mut body, &relay.master);
            body.push(relay.slaves.len() as u8);
            for s in &relay.slaves {
                put_str(&mut body, s);
            }
        }
        Frame::Ack { seq, ok } => {
            body.push(0x04);
            body.extend_from_slice(&seq.to_be_bytes());
            body.push(u8::from(*ok));
        }
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A bounded reader over one frame body; short reads are `Invalid` (the
/// length prefix said the body was complete).
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::Invalid("truncated body"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn site(&mut self) -> Result<Site, FrameError> {
        match self.u8()? {
            b'A' => Ok(Site::A),
            b'B' => Ok(Site::B),
            _ => Err(FrameError::Invalid("bad site")),
        }
    }
    fn str(&mut self) -> Result<String, FrameError> {
        let n = self.u16()? as usize;
        if n > MAX_STR {
            return Err(FrameError::Invalid("string too long"));
        }
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| FrameError::Invalid("bad utf-8"))
    }
}

/// Decodes the first frame of `buf`: the frame and the bytes it used.
pub fn decode(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    if buf.len() < 4 {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4")) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Invalid("frame length"));
    }
    if buf.len() < 4 + len {
        return Err(FrameError::Incomplete);
    }
    let mut r = Reader { b: &buf[4..4 + len] };
    let frame = match r.u8()? {
        0x01 => Frame::Hello { version: r.u8()?, site: r.site()?, nonce: r.take(16)?.try_into().expect("16") },
        0x02 => Frame::Bb84(r.take(r.b.len())?.to_vec()),
        0x03 => {
            let seq = r.u64()?;
            let issued_at = r.site()?;
            let offset = r.u64()?;
            let each = r.u32()?;
            let n = r.u16()? as usize;
            if n == 0 || n > MAX_IDS {
                return Err(FrameError::Invalid("key id count"));
            }
            // Bounded before allocating: the ids must be in the body.
            let raw = r.take(16 * n)?;
            let ids = raw.chunks(16).map(|c| Uuid::from_bytes(c.try_into().expect("16"))).collect();
            let master = r.str()?;
            let ns = r.u8()? as usize;
            if ns == 0 || ns > MAX_SLAVES {
                return Err(FrameError::Invalid("slave count"));
            }
            let mut slaves = Vec::with_capacity(ns);
            for _ in 0..ns {
                slaves.push(r.str()?);
            }
            Frame::Relay { seq, relay: Relay { issued_at, offset, each, ids, master, slaves } }
        }
        0x04 => Frame::Ack {
            seq: r.u64()?,
            ok: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(FrameError::Invalid("ack value")),
            },
        },
        _ => return Err(FrameError::Invalid("unknown frame kind")),
    };
    if !r.b.is_empty() {
        return Err(FrameError::Invalid("trailing bytes"));
    }
    Ok((frame, 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Hello { version: VERSION, site: Site::B, nonce: [3; 16] },
            Frame::Bb84(vec![1, 2, 3]),
            Frame::Relay {
                seq: 7,
                relay: Relay {
                    issued_at: Site::A,
                    offset: 1 << 40,
                    each: 32,
                    ids: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
                    master: "sae-lb".into(),
                    slaves: vec!["sae-be1".into(), "sae-be2".into()],
                },
            },
            Frame::Ack { seq: 7, ok: true },
        ]
    }

    #[test]
    fn round_trip_every_prefix_and_trailing_bytes() {
        for f in samples() {
            let bytes = encode(&f);
            assert_eq!(decode(&bytes), Ok((f.clone(), bytes.len())));
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), Err(FrameError::Incomplete), "{f:?} {cut}");
            }
            // Two frames back to back: the first is returned with its length.
            let mut two = bytes.clone();
            two.extend_from_slice(&bytes);
            assert_eq!(decode(&two).unwrap().1, bytes.len());
            // A body longer than its content is refused.
            let mut long = bytes.clone();
            long.push(0);
            let n = (long.len() - 4) as u32;
            long[..4].copy_from_slice(&n.to_be_bytes());
            if !matches!(f, Frame::Bb84(_)) {
                assert!(matches!(decode(&long), Err(FrameError::Invalid(_))), "{f:?}");
            }
        }
    }

    #[test]
    fn invalid_frames_are_refused_without_panicking() {
        assert!(matches!(decode(&[0, 0, 0, 0]), Err(FrameError::Invalid(_))));
        assert!(matches!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(FrameError::Invalid(_))));
        assert!(matches!(decode(&[0, 0, 0, 1, 9]), Err(FrameError::Invalid(_))));
        // A relay claiming 4096 ids in a short body.
        let mut b = vec![0x03];
        b.extend_from_slice(&[0; 8]);
        b.push(b'A');
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&4096u16.to_be_bytes());
        let mut f = (b.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&b);
        assert!(matches!(decode(&f), Err(FrameError::Invalid(_))));
        // Fuzz-ish: every byte flipped in a valid relay never panics.
        let good = encode(&samples()[2]);
        for i in 0..good.len() {
            let mut x = good.clone();
            x[i] ^= 0xff;
            let _ = decode(&x);
        }
    }
}
