//! Classical-channel messages and their bounded binary encoding.
//!
//! A body is `[type u8][fields]`; an [`AuthMsg`] is `[seq u64][tag u64][body]`
//! (big-endian), the tag computed over `seq ‖ body`. Encoding cannot fail;
//! decoding rejects short input as [`DecodeError::Incomplete`], anything
//! malformed as `Invalid`/`TooLarge`, and extra bytes as `TrailingBytes`.

use crate::bits::BitVec;
use crate::cascade::ParityQuery;
use crate::wire::{DecodeError, Reader, Writer, MAX_BITS, MAX_MESSAGE_BYTES};
use std::fmt;

/// Most detector slots in one quantum frame.
pub const MAX_FRAME_SLOTS: usize = 1 << 24;

/// Most parity queries in one message.
pub const MAX_QUERIES: usize = 1 << 22;

/// Why a block ended without key. Carried in [`ClassicalMsg::Abort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// Estimated QBER above the abort threshold (or no secret fraction left).
    QberTooHigh,
    /// Privacy amplification would leave no secret bits.
    NoSecretKey,
    /// The verification hashes differ after error correction.
    VerificationFailed,
    /// A classical message failed Wegman–Carter authentication.
    AuthenticationFailed,
    /// Too little one-time key left in the pool to authenticate.
    PoolExhausted,
    /// The peer sent a message out of order or inconsistent with the block.
    ProtocolViolation,
}

impl AbortReason {
    fn code(self) -> u8 {
        match self {
            AbortReason::QberTooHigh => 1,
            AbortReason::NoSecretKey => 2,
            AbortReason::VerificationFailed => 3,
            AbortReason::AuthenticationFailed => 4,
            AbortReason::PoolExhausted => 5,
            AbortReason::ProtocolViolation => 6,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => AbortReason::QberTooHigh,
            2 => AbortReason::NoSecretKey,
            3 => AbortReason::VerificationFailed,
            4 => AbortReason::AuthenticationFailed,
            5 => AbortReason::PoolExhausted,
            6 => AbortReason::ProtocolViolation,
            _ => return None,
        })
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            AbortReason::QberTooHigh => "QBER above abort threshold",
            AbortReason::NoSecretKey => "no secret key left after privacy amplification",
            AbortReason::VerificationFailed => "verification hash mismatch",
            AbortReason::AuthenticationFailed => "classical message failed authentication",
            AbortReason::PoolExhausted => "authentication key pool exhausted",
            AbortReason::ProtocolViolation => "protocol violation",
        };
        f.write_str(s)
    }
}

/// One classical message of the BB84 post-processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicalMsg {
    /// Bob → Alice: which slots of a frame clicked, and his basis for each.
    Detections { frame: u32, slots: u32, detected: Vec<u32>, bases: BitVec },
    /// Alice → Bob: for each detection, whether the bases matched.
    Sift { frame: u32, matches: BitVec },
    /// Alice → Bob: seed choosing the disclosed sample, and her sample bits.
    Estimate { sample_seed: u64, alice_sample: BitVec },
    /// Bob → Alice: his sample bits (both then know the estimated QBER).
    EstimateReply { bob_sample: BitVec },
    /// Alice → Bob: Cascade permutation seed and every top-level parity.
    Parities { cascade_seed: u64, parities: BitVec },
    /// Bob → Alice: one round of binary-search parity queries.
    Query { queries: Vec<ParityQuery> },
    /// Alice → Bob: the parities asked for, in order.
    Answer { parities: BitVec },
    /// Bob → Alice: universal hash (key, value) of his corrected key.
    Verify { hash_key: u64, hash: u64 },
    /// Alice → Bob: the final key length and the Toeplitz seed.
    Amplify { out_len: u32, seed: BitVec },
    /// Either way: the block is abandoned.
    Abort { reason: AbortReason },
}

impl ClassicalMsg {
    /// The binary encoding of the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.buf
    }

    fn write(&self, w: &mut Writer) {
        match self {
            ClassicalMsg::Detections { frame, slots, detected, bases } => {
                w.u8(1);
                w.varint(u64::from(*frame));
                w.varint(u64::from(*slots));
                w.varint(detected.len() as u64);
                let mut next = 0u64;
                for &d in detected {
                    // Gaps, so lossy links with sparse clicks stay small.
                    w.varint(u64::from(d) - next);
                    next = u64::from(d) + 1;
                }
                w.raw_bits(bases);
            }
            ClassicalMsg::Sift { frame, matches } => {
                w.u8(2);
                w.varint(u64::from(*frame));
                w.bits(matches);
            }
            ClassicalMsg::Estimate { sample_seed, alice_sample } => {
                w.u8(3);
                w.u64(*sample_seed);
                w.bits(alice_sample);
            }
            ClassicalMsg::EstimateReply { bob_sample } => {
                w.u8(4);
                w.bits(bob_sample);
            }
            ClassicalMsg::Parities { cascade_seed, parities } => {
                w.u8(5);
                w.u64(*cascade_seed);
                w.bits(parities);
            }
            ClassicalMsg::Query { queries } => {
                w.u8(6);
                w.varint(queries.len() as u64);
                for q in queries {
                    w.u8(q.pass);
                    w.varint(u64::from(q.start));
                    w.varint(u64::from(q.end - q.start));
                }
            }
            ClassicalMsg::Answer { parities } => {
                w.u8(7);
                w.bits(parities);
            }
            ClassicalMsg::Verify { hash_key, hash } => {
                w.u8(8);
                w.u64(*hash_key);
                w.u64(*hash);
            }
            ClassicalMsg::Amplify { out_len, seed } => {
                w.u8(9);
                w.varint(u64::from(*out_len));
                w.bits(seed);
            }
            ClassicalMsg::Abort { reason } => {
                w.u8(10);
                w.u8(reason.code());
            }
        }
    }

    /// Decodes one body, rejecting trailing and oversized input.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(buf);
        let m = Self::read(&mut r)?;
        r.finish()?;
        Ok(m)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let u32_field = |v: usize| u32::try_from(v).map_err(|_| DecodeError::TooLarge);
        Ok(match r.u8()? {
            1 => {
                let frame = u32_field(r.bounded(u32::MAX as usize)?)?;
                let slots = r.bounded(MAX_FRAME_SLOTS)?;
                let count = r.bounded(slots)?;
                // Bounded by `slots` above, itself capped, before allocating.
                let mut detected = Vec::with_capacity(count.min(r.remaining()));
                let mut next = 0usize;
                for _ in 0..count {
                    let gap = r.bounded(MAX_FRAME_SLOTS)?;
                    let d = next + gap;
                    if d >= slots {
                        return Err(DecodeError::Invalid("detection beyond frame"));
                    }
                    detected.push(d as u32);
                    next = d + 1;
                }
                let bases = r.raw_bits(count)?;
                ClassicalMsg::Detections { frame, slots: slots as u32, detected, bases }
            }
            2 => ClassicalMsg::Sift { frame: u32_field(r.bounded(u32::MAX as usize)?)?, matches: r.bits()? },
            3 => ClassicalMsg::Estimate { sample_seed: r.u64()?, alice_sample: r.bits()? },
            4 => ClassicalMsg::EstimateReply { bob_sample: r.bits()? },
            5 => ClassicalMsg::Parities { cascade_seed: r.u64()?, parities: r.bits()? },
            6 => {
                let count = r.bounded(MAX_QUERIES)?;
                let mut queries = Vec::with_capacity(count.min(r.remaining() / 3));
                for _ in 0..count {
                    let pass = r.u8()?;
                    let start = r.bounded(MAX_BITS)?;
                    let len = r.bounded(MAX_BITS)?;
                    if len == 0 {
                        return Err(DecodeError::Invalid("empty parity query"));
                    }
                    queries.push(ParityQuery { pass, start: start as u32, end: (start + len) as u32 });
                }
                ClassicalMsg::Query { queries }
            }
            7 => ClassicalMsg::Answer { parities: r.bits()? },
            8 => ClassicalMsg::Verify { hash_key: r.u64()?, hash: r.u64()? },
            9 => ClassicalMsg::Amplify { out_len: u32_field(r.bounded(MAX_BITS)?)?, seed: r.bits()? },
            10 => ClassicalMsg::Abort {
                reason: AbortReason::from_code(r.u8()?).ok_or(DecodeError::Invalid("unknown abort reason"))?,
            },
            _ => return Err(DecodeError::Invalid("unknown message type")),
        })
    }
}

/// A classical message with its sequence number and Wegman–Carter tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMsg {
    /// Position in the link's message order (both directions, all blocks).
    pub seq: u64,
    /// (h_k(seq ‖ body) + one-time pad) mod 2^61 − 1.
    pub tag: u64,
    pub msg: ClassicalMsg,
}

impl AuthMsg {
    /// `[seq][tag][body]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.seq);
        w.u64(self.tag);
        self.msg.write(&mut w);
        w.buf
    }

    /// Decodes one message, rejecting trailing and oversized input.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() > MAX_MESSAGE_BYTES + 16 {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(buf);
        let seq = r.u64()?;
        let tag = r.u64()?;
        let msg = ClassicalMsg::read(&mut r)?;
        r.finish()?;
        Ok(Self { seq, tag, msg })
    }
}
