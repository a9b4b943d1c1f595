//! The frame envelope: header, sender, body, tag (see `docs/DMCP.md`).

use crate::wire::BodyError;
use poly1305::universal_hash::KeyInit;
use poly1305::Poly1305;
use uuid::Uuid;
use zeroize::Zeroizing;

/// `"DMCP"`.
pub const MAGIC: [u8; 4] = *b"DMCP";
/// The only protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Fixed header bytes before the sender id.
pub const HEADER_LEN: usize = 42;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Longest sender SAE id.
pub const MAX_SENDER_LEN: usize = 64;
/// Largest frame either side accepts, header and tag included.
pub const MAX_FRAME: usize = 8192;

pub(crate) const TYPE_INCLUDE: u8 = 0x01;
pub(crate) const TYPE_EXCLUDE: u8 = 0x02;
pub(crate) const TYPE_RESET: u8 = 0x03;
pub(crate) const TYPE_RANDOMIZE: u8 = 0x04;
pub(crate) const TYPE_SYNC: u8 = 0x05;
pub(crate) const TYPE_QUERY: u8 = 0x06;
pub(crate) const TYPE_ACK: u8 = 0x81;
pub(crate) const TYPE_ERROR: u8 = 0x82;
pub(crate) const TYPE_ERROR_UNAUTH: u8 = 0x83;

pub(crate) fn is_request(ty: u8) -> bool {
    (TYPE_INCLUDE..=TYPE_QUERY).contains(&ty)
}

fn known_type(ty: u8) -> bool {
    is_request(ty) || (TYPE_ACK..=TYPE_ERROR_UNAUTH).contains(&ty)
}

/// Why bytes could not be read as a DMCP frame (or a reply could not be
/// accepted). After any of these the stream cannot be trusted to be in
/// frame sync: answer with [`crate::reject_unparsable`] and close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("bad magic (not a DMCP frame)")]
    BadMagic,
    #[error("unsupported DMCP version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("reserved flags set: 0x{0:02x}")]
    BadFlags(u8),
    #[error("sender SAE id too long or not printable ASCII")]
    BadSender,
    #[error("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")]
    Oversized { len: usize },
    /// Used by the LB when the sender SAE id names no configured backend.
    #[error("unknown sender SAE id")]
    UnknownSender,
    /// A reply whose tag does not verify under the request's key.
    #[error("reply tag does not verify")]
    BadTag,
    /// A reply that does not answer the outstanding request.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(&'static str),
    /// A reply body that could not be decoded.
    #[error("bad reply body: {0}")]
    BadBody(BodyError),
}

/// One parsed frame, not yet authenticated.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub(crate) ty: u8,
    pub(crate) seq: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) key_id: Uuid,
    pub(crate) sender: String,
    /// Every byte before the tag: the MAC input.
    pub(crate) signed: Vec<u8>,
    pub(crate) body_start: usize,
    pub(crate) tag: [u8; TAG_LEN],
}

impl Incoming {
    /// The one-time key id, if the frame names one (unauthenticated ERROR
    /// frames and the nil id do not).
    pub fn key_id(&self) -> Option<Uuid> {
        (self.ty != TYPE_ERROR_UNAUTH && !self.key_id.is_nil()).then_some(self.key_id)
    }
    /// The sender's SAE id as claimed (verified only through the key).
    pub fn sender(&self) -> &str {
        &self.sender
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    /// The raw frame type byte.
    pub fn frame_type(&self) -> u8 {
        self.ty
    }
    pub(crate) fn body(&self) -> &[u8] {
        &self.signed[self.body_start..]
    }
    /// Constant-time check of the tag under a 32-byte one-time key.
    pub(crate) fn verify(&self, mac_key: &[u8]) -> bool {
        let want = tag(mac_key, &self.signed);
        want.iter().zip(self.tag.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Reads one frame from the start of `buf`. `Ok(None)`: incomplete, read
/// more. Checks every header field as soon as its bytes are present, so
/// garbage is rejected early and nothing is allocated before the declared
/// length is known to be within [`MAX_FRAME`].
pub fn parse_frame(buf: &[u8]) -> Result<Option<(usize, Incoming)>, FrameError> {
    let n = buf.len().min(MAGIC.len());
    if buf[..n] != MAGIC[..n] {
        return Err(FrameError::BadMagic);
    }
    if let Some(&v) = buf.get(4) {
        if v != VERSION {
            return Err(FrameError::UnsupportedVersion(v));
        }
    }
    if let Some(&ty) = buf.get(5) {
        if !known_type(ty) {
            return Err(FrameError::UnknownType(ty));
        }
    }
    if let Some(&flags) = buf.get(6) {
        if flags != 0 {
            return Err(FrameError::BadFlags(flags));
        }
    }
    if let Some(&sender_len) = buf.get(7) {
        if sender_len as usize > MAX_SENDER_LEN {
            return Err(FrameError::BadSender);
        }
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let sender_len = buf[7] as usize;
    let body_len = u16::from_be_bytes([buf[40], buf[41]]) as usize;
    let total = HEADER_LEN + sender_len + body_len + TAG_LEN;
    if total > MAX_FRAME {
        return Err(FrameError::Oversized { len: total });
    }
    let sender_bytes = &buf[HEADER_LEN..buf.len().min(HEADER_LEN + sender_len)];
    if !sender_bytes.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(FrameError::BadSender);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let signed_len = total - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&buf[signed_len..total]);
    let incoming = Incoming {
        ty: buf[5],
        seq: u64::from_be_bytes(arr8(&buf[8..16])),
        timestamp_ms: u64::from_be_bytes(arr8(&buf[16..24])),
        key_id: Uuid::from_bytes(buf[24..40].try_into().unwrap_or_default()),
        sender: String::from_utf8_lossy(&buf[HEADER_LEN..HEADER_LEN + sender_len]).into_owned(),
        signed: buf[..signed_len].to_vec(),
        body_start: HEADER_LEN + sender_len,
        tag,
    };
    Ok(Some((total, incoming)))
}

fn arr8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    a
}

/// Poly1305 over `data` with a 32-byte one-time key (r ‖ s).
pub(crate) fn tag(mac_key: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    let mut k = Zeroizing::new([0u8; 32]);
    let n = mac_key.len().min(32);
    k[..n].copy_from_slice(&mac_key[..n]);
    let mac = Poly1305::new(poly1305::Key::from_slice(&k[..]));
    mac.compute_unpadded(data).into()
}

/// The header fields of a frame being written.
pub(crate) struct Header<'a> {
    pub ty: u8,
    pub seq: u64,
    pub timestamp_ms: u64,
    pub key_id: Uuid,
    pub sender: &'a str,
}

/// Writes a frame. `mac_key` `None` writes an all-zero tag (unauthenticated
/// ERROR). Encoding cannot fail: a sender or body beyond the limits is
/// written as is and the receiver rejects the frame.
pub(crate) fn encode_frame(h: &Header, body: &[u8], mac_key: Option<&[u8]>) -> Vec<u8> {
    let sender = &h.sender.as_bytes()[..h.sender.len().min(255)];
    let mut out = Vec::with_capacity(HEADER_LEN + sender.len() + body.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(h.ty);
    out.push(0);
    out.push(sender.len() as u8);
    out.extend_from_slice(&h.seq.to_be_bytes());
    out.extend_from_slice(&h.timestamp_ms.to_be_bytes());
    out.extend_from_slice(h.key_id.as_bytes());
    out.extend_from_slice(&(body.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(sender);
    out.extend_from_slice(body);
    let t = match mac_key {
        Some(k) => tag(k, &out),
        None => [0u8; TAG_LEN],
    };
    out.extend_from_slice(&t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let h = Header { ty: TYPE_QUERY, seq: 1, timestamp_ms: 2, key_id: Uuid::from_u128(3), sender: "agent" };
        encode_frame(&h, &[], Some(&[7u8; 32]))
    }

    #[test]
    fn parses_what_it_writes() {
        let f = sample();
        let (used, inc) = parse_frame(&f).unwrap().unwrap();
        assert_eq!(used, f.len());
        assert_eq!((inc.seq(), inc.timestamp_ms(), inc.sender()), (1, 2, "agent"));
        assert_eq!(inc.key_id(), Some(Uuid::from_u128(3)));
        assert!(inc.verify(&[7u8; 32]));
        assert!(!inc.verify(&[8u8; 32]));
        // Followed by more bytes: consumes only the frame.
        let mut two = f.clone();
        two.extend_from_slice(&f[..10]);
        assert_eq!(parse_frame(&two).unwrap().unwrap().0, f.len());
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let f = sample();
        for cut in 0..f.len() {
            assert!(matches!(parse_frame(&f[..cut]), Ok(None)), "prefix {cut}");
        }
    }

    #[test]
    fn header_errors() {
        let f = sample();
        let mut bad = f.clone();
        bad[0] = b'X';
        assert_eq!(parse_frame(&bad[..1]).unwrap_err(), FrameError::BadMagic);
        let mut bad = f.clone();
        bad[4] = 2;
        assert_eq!(parse_frame(&bad[..5]).unwrap_err(), FrameError::UnsupportedVersion(2));
        let mut bad = f.clone();
        bad[5] = 0x42;
        assert_eq!(parse_frame(&bad).unwrap_err(), FrameError::UnknownType(0x42));
        let mut bad = f.clone();
        bad[6] = 1;
        assert_eq!(parse_frame(&bad).unwrap_err(), FrameError::BadFlags(1));
        let mut bad = f.clone();
        bad[7] = 65;
        assert_eq!(parse_frame(&bad).unwrap_err(), FrameError::BadSender);
        let mut bad = f.clone();
        bad[40..42].copy_from_slice(&(MAX_FRAME as u16).to_be_bytes());
        assert!(matches!(parse_frame(&bad[..HEADER_LEN]), Err(FrameError::Oversized { .. })));
        let mut bad = f.clone();
        bad[HEADER_LEN] = b' ';
        assert_eq!(parse_frame(&bad[..HEADER_LEN + 1]).unwrap_err(), FrameError::BadSender);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_frame(&bytes);
        }

        #[test]
        fn never_panics_after_a_valid_prefix(cut in 0usize..60, tail in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut f = sample();
            f.truncate(cut.min(f.len()));
            f.extend_from_slice(&tail);
            if let Ok(Some((used, _))) = parse_frame(&f) {
                prop_assert!(used <= f.len());
            }
        }
    }
}
