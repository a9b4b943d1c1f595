//! The simulated quantum channel and what crosses it.
//!
//! Alice emits a [`PulseTrain`] (basis and value of every prepared photon);
//! [`Channel::transmit`] applies loss, an optional intercept-resend
//! eavesdropper and intrinsic noise, and yields the [`QuantumFrame`] Bob's
//! detectors see: for each slot that clicked, the basis and value of the
//! photon as it arrives. Bob then measures it in a basis of his own choice.
//!
//! [`Packet`] frames both kinds of traffic on one byte stream, for running
//! the two ends in two processes.

use crate::bits::BitVec;
use crate::msg::{AuthMsg, MAX_FRAME_SLOTS};
use crate::wire::{DecodeError, Reader, Writer, MAX_MESSAGE_BYTES};
use rand::Rng;

/// Photons prepared by Alice for one frame (0 = rectilinear basis / bit 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulseTrain {
    pub block: u64,
    pub frame: u32,
    pub basis: BitVec,
    pub value: BitVec,
}

impl PulseTrain {
    /// Number of pulses.
    pub fn slots(&self) -> usize {
        self.basis.len()
    }
}

/// What reaches Bob's detectors for one frame: the slots that clicked, and
/// the state (basis, value) of each detected photon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantumFrame {
    pub block: u64,
    pub frame: u32,
    pub slots: u32,
    /// Strictly increasing slot indices below `slots`.
    pub detected: Vec<u32>,
    pub basis: BitVec,
    pub value: BitVec,
}

impl QuantumFrame {
    /// `[block u64][frame varint][slots varint][count varint][gaps…][basis][value]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.buf
    }

    fn write(&self, w: &mut Writer) {
        w.u64(self.block);
        w.varint(u64::from(self.frame));
        w.varint(u64::from(self.slots));
        w.varint(self.detected.len() as u64);
        let mut next = 0u64;
        for &d in &self.detected {
            w.varint(u64::from(d) - next);
            next = u64::from(d) + 1;
        }
        w.raw_bits(&self.basis);
        w.raw_bits(&self.value);
    }

    /// Decodes one frame, rejecting trailing and oversized input.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(buf);
        let block = r.u64()?;
        let frame = r.bounded(u32::MAX as usize)? as u32;
        let slots = r.bounded(MAX_FRAME_SLOTS)?;
        let count = r.bounded(slots)?;
        let mut detected = Vec::with_capacity(count.min(r.remaining()));
        let mut next = 0usize;
        for _ in 0..count {
            let d = next + r.bounded(MAX_FRAME_SLOTS)?;
            if d >= slots {
                return Err(DecodeError::Invalid("detection beyond frame"));
            }
            detected.push(d as u32);
            next = d + 1;
        }
        let basis = r.raw_bits(count)?;
        let value = r.raw_bits(count)?;
        r.finish()?;
        Ok(Self { block, frame, slots: slots as u32, detected, basis, value })
    }
}

/// Channel model: loss, intercept-resend eavesdropping, intrinsic errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Channel {
    /// Probability that a pulse is detected at all (transmittance × detector
    /// efficiency).
    pub detection_prob: f64,
    /// Probability that a detected photon's value is flipped (misalignment,
    /// detector errors): the QBER without an eavesdropper.
    pub intrinsic_qber: f64,
    /// Fraction of photons Eve measures in a random basis and resends
    /// (adds ≈ fraction/4 to the QBER).
    pub eve_fraction: f64,
}

impl Channel {
    /// The model from the link parameters.
    pub fn from_params(p: &crate::LinkParams) -> Self {
        Self { detection_prob: p.detection_prob, intrinsic_qber: p.intrinsic_qber, eve_fraction: p.eve_fraction }
    }

    /// Sends `train` through the channel. Eve acts on every photon she
    /// targets, but only detected photons matter to the protocol, so loss is
    /// drawn first (same distribution, fewer random draws).
    pub fn transmit<R: Rng + ?Sized>(&self, train: &PulseTrain, rng: &mut R) -> QuantumFrame {
        let slots = train.slots();
        let d = self.detection_prob.clamp(0.0, 1.0);
        let mut detected = Vec::with_capacity((slots as f64 * d * 1.05) as usize + 16);
        if d >= 1.0 {
            detected.extend(0..slots as u32);
        } else if d > 0.0 {
            // Geometric gaps between clicks: exact for independent losses,
            // and cheap on very lossy links.
            let ln_miss = (1.0 - d).ln();
            let mut i = 0usize;
            loop {
                let u: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
                let gap = (u.ln() / ln_miss).floor();
                if !gap.is_finite() || gap >= (slots - i) as f64 {
                    break;
                }
                i += gap as usize;
                detected.push(i as u32);
                i += 1;
                if i >= slots {
                    break;
                }
            }
        }
        let mut basis = BitVec::zeros(detected.len());
        let mut value = BitVec::zeros(detected.len());
        let eve = self.eve_fraction.clamp(0.0, 1.0);
        let noise = self.intrinsic_qber.clamp(0.0, 1.0);
        for (k, &s) in detected.iter().enumerate() {
            let mut b = train.basis.get(s as usize);
            let mut v = train.value.get(s as usize);
            if eve > 0.0 && rng.gen_bool(eve) {
                // Intercept-resend: measure in a random basis, resend what
                // was seen, in that basis.
                let eb: bool = rng.gen();
                if eb != b {
                    v = rng.gen();
                }
                b = eb;
            }
            if noise > 0.0 && rng.gen_bool(noise) {
                v = !v;
            }
            basis.set(k, b);
            value.set(k, v);
        }
        QuantumFrame { block: train.block, frame: train.frame, slots: slots as u32, detected, basis, value }
    }
}

/// One unit of traffic between the two processes of a split link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Classical(AuthMsg),
    Quantum(QuantumFrame),
}

impl Packet {
    /// `[kind u8][length u32 BE][payload]`: kind 1 = classical, 2 = quantum.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload) = match self {
            Packet::Classical(m) => (1u8, m.encode()),
            Packet::Quantum(q) => (2u8, q.encode()),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Total length of the packet at the start of `buf` (read until
    /// `buf.len()` reaches it, then [`Packet::decode`] that many bytes).
    pub fn frame_len(buf: &[u8]) -> Result<usize, DecodeError> {
        let mut r = Reader::new(buf);
        let kind = r.u8()?;
        if kind != 1 && kind != 2 {
            return Err(DecodeError::Invalid("unknown packet kind"));
        }
        let len = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes")) as usize;
        if len > MAX_MESSAGE_BYTES + 16 {
            return Err(DecodeError::TooLarge);
        }
        Ok(5 + len)
    }

    /// Decodes exactly one packet.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let total = Self::frame_len(buf)?;
        if buf.len() < total {
            return Err(DecodeError::Incomplete);
        }
        if buf.len() > total {
            return Err(DecodeError::TrailingBytes);
        }
        let payload = &buf[5..];
        match buf[0] {
            1 => Ok(Packet::Classical(AuthMsg::decode(payload).map_err(inner)?)),
            _ => Ok(Packet::Quantum(QuantumFrame::decode(payload).map_err(inner)?)),
        }
    }
}

/// Inside a length-delimited packet, running short is malformation, not
/// a reason to wait for more bytes.
fn inner(e: DecodeError) -> DecodeError {
    match e {
        DecodeError::Incomplete => DecodeError::Invalid("payload shorter than its fields"),
        other => other,
    }
}
