//! The agent side: write requests, verify and decode replies.

use crate::command::{Command, Reply};
use crate::frame::{self, encode_frame, parse_frame, FrameError, Header};
use crate::wire;
use uuid::Uuid;

/// One agent's DMCP session: numbers its requests and checks that each
/// reply answers the outstanding request under that request's key.
///
/// Sequence numbers are `max(previous + 1, now_unix_ms × 1000)`, so they
/// keep increasing across agent restarts without persistent state.
#[derive(Debug)]
pub struct ClientSession {
    sender: String,
    last_seq: u64,
    pending: Option<(Uuid, u64)>,
}

impl ClientSession {
    /// `sender_sae` is the agent's SAE id (the KME `master` of its keys).
    pub fn new(sender_sae: String) -> ClientSession {
        ClientSession { sender: sender_sae, last_seq: 0, pending: None }
    }

    /// The frame for `cmd`, MACed with `key[0..32]` (`key` is the 64-byte
    /// one-time key `key_id` names). Replaces any outstanding request.
    pub fn request(&mut self, cmd: &Command, key_id: Uuid, key: &[u8], now_unix_ms: u64) -> Vec<u8> {
        let seq = self.last_seq.saturating_add(1).max(now_unix_ms.saturating_mul(1000));
        self.last_seq = seq;
        self.pending = Some((key_id, seq));
        let (ty, body) = wire::encode_command(cmd);
        let h = Header { ty, seq, timestamp_ms: now_unix_ms, key_id, sender: &self.sender };
        encode_frame(&h, &body, Some(&key[..key.len().min(32)]))
    }

    /// Reads the reply to the outstanding request from the start of `buf`
    /// (`key` is that request's 64-byte key). `Ok(None)`: incomplete.
    /// An unauthenticated ERROR is returned as advisory
    /// (`authenticated: false`) without settling the request.
    pub fn read_reply(&mut self, buf: &[u8], key: &[u8]) -> Result<Option<(usize, Reply)>, FrameError> {
        let Some((used, inc)) = parse_frame(buf)? else {
            return Ok(None);
        };
        if frame::is_request(inc.ty) {
            return Err(FrameError::UnexpectedReply("request frame from the LB"));
        }
        if inc.ty == frame::TYPE_ERROR_UNAUTH {
            // Anyone can forge these, so there is nothing to match: advisory.
            let reply = wire::decode_reply(inc.ty, inc.body()).map_err(FrameError::BadBody)?;
            return Ok(Some((used, reply)));
        }
        let Some((key_id, seq)) = self.pending else {
            return Err(FrameError::UnexpectedReply("no request outstanding"));
        };
        if inc.key_id != key_id || inc.seq != seq {
            return Err(FrameError::UnexpectedReply("reply to another request"));
        }
        if key.len() != crate::KEY_LEN || !inc.verify(&key[32..64]) {
            return Err(FrameError::BadTag);
        }
        let reply = wire::decode_reply(inc.ty, inc.body()).map_err(FrameError::BadBody)?;
        self.pending = None;
        Ok(Some((used, reply)))
    }
}
