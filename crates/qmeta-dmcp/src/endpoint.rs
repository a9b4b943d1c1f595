//! The LB side: verify a frame, check freshness, dispatch, answer.

use crate::codes::ErrorCode;
use crate::command::Command;
use crate::frame::{self, encode_frame, FrameError, Header, Incoming};
use crate::state::{ControlState, Refusal};
use crate::wire::{self, BodyError};
use qmeta_fields::FieldSet;
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// Length of the one-time key fetched per exchange: 32 bytes request MAC
/// key, 32 bytes reply MAC key.
pub const KEY_LEN: usize = 64;

/// Freshness limits of an [`Endpoint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A frame's timestamp may differ from the LB's clock by at most this.
    pub max_clock_skew_ms: u64,
    /// How far below the highest accepted seq of a sender a not-yet-seen
    /// seq is still accepted (0..=64; 0 = strictly increasing).
    pub seq_window: u64,
    /// Most key ids remembered at once; beyond it frames are refused
    /// (BUSY) rather than forgetting a key id that could be replayed.
    pub max_remembered_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_clock_skew_ms: 30_000, seq_window: 64, max_remembered_keys: 16_384 }
    }
}

/// What one frame did, for logs, metrics and the audit log. Holds no key
/// material and no metadata values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The sender SAE id as claimed in the frame.
    pub sender: String,
    pub key_id: Option<Uuid>,
    pub seq: Option<u64>,
    /// [`Command::summary`], or `<unparsed>` when the body did not decode.
    pub command: String,
    pub accepted: bool,
    /// Why it was refused (`None` when accepted).
    pub reason: Option<String>,
    /// The state version after the frame.
    pub version: u64,
    /// What RANDOMIZE drew.
    pub drawn: Option<FieldSet>,
    /// Whether the state changed.
    pub changed: bool,
}

/// The bytes to send back and what happened.
#[derive(Clone, Debug)]
pub struct Handled {
    pub reply: Vec<u8>,
    pub outcome: Outcome,
}

/// The LB's side of DMCP for one backend: its [`ControlState`] plus the
/// replay guard. Lives as long as the LB process, across agent connections.
#[derive(Clone, Debug)]
pub struct Endpoint {
    state: ControlState,
    limits: Limits,
    guard: ReplayGuard,
}

impl Endpoint {
    pub fn new(state: ControlState, limits: Limits) -> Endpoint {
        Endpoint { state, limits, guard: ReplayGuard::default() }
    }

    pub fn state(&self) -> &ControlState {
        &self.state
    }

    /// Handles one parsed frame. `key` is the 64-byte one-time key the LB's
    /// KME returned for `incoming.key_id()` (`None` if it could not be
    /// fetched). Answers are MACed with `key[32..64]` whenever the key is
    /// known and this key id has not been answered before; otherwise the
    /// answer is an unauthenticated ERROR.
    pub fn handle(&mut self, incoming: Incoming, key: Option<&[u8]>, now_unix_ms: u64, random: [u8; 32]) -> Handled {
        let keep_ms = self.limits.max_clock_skew_ms.saturating_mul(2).saturating_add(1_000);
        self.guard.prune(now_unix_ms, keep_ms);
        let decoded: Result<Command, BodyError> = if frame::is_request(incoming.ty) {
            wire::decode_command(incoming.ty, incoming.body())
        } else {
            Err(BodyError::TrailingBytes)
        };
        let mut reply = Reply {
            incoming: &incoming,
            now: now_unix_ms,
            outcome: Outcome {
                sender: incoming.sender.clone(),
                key_id: incoming.key_id(),
                seq: Some(incoming.seq),
                command: decoded.as_ref().map(Command::summary).unwrap_or_else(|_| "<unparsed>".into()),
                accepted: false,
                reason: None,
                version: self.state.version(),
                drawn: None,
                changed: false,
            },
        };

        // Checks answered without a MAC: the reply key is unknown, or was
        // already spent on an earlier answer (a one-time MAC key must never
        // tag two messages).
        let (Some(key_id), Some(key)) = (incoming.key_id(), key) else {
            return reply.unauthenticated(ErrorCode::UnknownKey, "key id unknown to the LB's KME");
        };
        if key.len() != KEY_LEN {
            return reply.unauthenticated(ErrorCode::UnknownKey, "key is not 512 bits");
        }
        if self.guard.keys.contains_key(&key_id) {
            return reply.unauthenticated(ErrorCode::ReplayedKey, "key id already used");
        }
        if self.guard.keys.len() >= self.limits.max_remembered_keys {
            return reply.unauthenticated(ErrorCode::Busy, "too many recent key ids");
        }
        self.guard.remember(key_id, now_unix_ms);
        let reply_key = &key[32..64];

        if !incoming.verify(&key[..32]) {
            return reply.authenticated(reply_key, ErrorCode::BadTag, "bad tag");
        }
        if incoming.timestamp_ms.abs_diff(now_unix_ms) > self.limits.max_clock_skew_ms {
            return reply.authenticated(reply_key, ErrorCode::Stale, "timestamp outside the allowed clock skew");
        }
        let window = self.limits.seq_window.min(64);
        if !self.guard.seq_fresh(&incoming.sender, incoming.seq, window) {
            return reply.authenticated(reply_key, ErrorCode::BadSeq, "sequence number replayed or reordered");
        }
        self.guard.accept_seq(&incoming.sender, incoming.seq, now_unix_ms);

        if !frame::is_request(incoming.ty) {
            return reply.authenticated(reply_key, ErrorCode::UnexpectedType, "not a request type");
        }
        let cmd = match decoded {
            Ok(cmd) => cmd,
            Err(BodyError::UnknownField(_)) => {
                return reply.authenticated(reply_key, ErrorCode::UnknownField, "unknown field id")
            }
            Err(e) => return reply.authenticated(reply_key, ErrorCode::BadBody, &e.to_string()),
        };
        let before = self.state.version();
        match self.state.dispatch(&cmd, random) {
            Err(refusal) => {
                reply.outcome.version = before;
                reply.authenticated(reply_key, refusal_code(&refusal), &refusal.to_string())
            }
            Ok(applied) => {
                let scopes = match cmd.scope() {
                    None => self.state.scopes(),
                    Some(scope) => {
                        self.state.scope(scope).map(|set| vec![(scope.clone(), set.clone())]).unwrap_or_default()
                    }
                };
                let body = wire::encode_ack(applied.version, &scopes, applied.drawn.as_ref());
                reply.outcome.accepted = true;
                reply.outcome.version = applied.version;
                reply.outcome.changed = applied.version != before;
                reply.outcome.drawn = applied.drawn;
                reply.finish(frame::TYPE_ACK, &body, Some(reply_key))
            }
        }
    }
}

fn refusal_code(r: &Refusal) -> ErrorCode {
    match r {
        Refusal::NotPermitted(_) => ErrorCode::NotPermitted,
        Refusal::TooManyScopes => ErrorCode::TooManyScopes,
        Refusal::TooManyFields => ErrorCode::TooManyFields,
        Refusal::InvalidScope => ErrorCode::InvalidScope,
        Refusal::DuplicateScope(_) => ErrorCode::DuplicateScope,
    }
}

/// Builds the answer to one frame (echoing its seq and key id).
struct Reply<'a> {
    incoming: &'a Incoming,
    now: u64,
    outcome: Outcome,
}

impl Reply<'_> {
    fn finish(self, ty: u8, body: &[u8], mac_key: Option<&[u8]>) -> Handled {
        let h = Header { ty, seq: self.incoming.seq, timestamp_ms: self.now, key_id: self.incoming.key_id, sender: "" };
        Handled { reply: encode_frame(&h, body, mac_key), outcome: self.outcome }
    }
    fn refuse(mut self, code: ErrorCode, reason: &str) -> (Self, Vec<u8>) {
        self.outcome.reason = Some(format!("{}: {reason}", code.name()));
        (self, wire::encode_error(code as u16, reason))
    }
    fn unauthenticated(self, code: ErrorCode, reason: &str) -> Handled {
        let (this, body) = self.refuse(code, reason);
        this.finish(frame::TYPE_ERROR_UNAUTH, &body, None)
    }
    fn authenticated(self, mac_key: &[u8], code: ErrorCode, reason: &str) -> Handled {
        let (this, body) = self.refuse(code, reason);
        this.finish(frame::TYPE_ERROR, &body, Some(mac_key))
    }
}

/// The unauthenticated ERROR to send for bytes that are not a frame, before
/// closing the connection.
pub fn reject_unparsable(err: &FrameError, now_unix_ms: u64) -> Vec<u8> {
    let code = match err {
        FrameError::UnknownType(_) => ErrorCode::UnknownType,
        FrameError::Oversized { .. } => ErrorCode::Oversized,
        FrameError::UnknownSender => ErrorCode::UnknownSender,
        _ => ErrorCode::BadFrame,
    };
    let h = Header { ty: frame::TYPE_ERROR_UNAUTH, seq: 0, timestamp_ms: now_unix_ms, key_id: Uuid::nil(), sender: "" };
    encode_frame(&h, &wire::encode_error(code as u16, &err.to_string()), None)
}

/// Key ids seen recently and, per sender, a sliding window of sequence
/// numbers. Entries expire once the timestamp check alone rejects a replay
/// of the frame that created them, so no state needs to outlive the LB.
#[derive(Clone, Debug, Default)]
struct ReplayGuard {
    keys: HashMap<Uuid, u64>,
    order: VecDeque<(u64, Uuid)>,
    senders: HashMap<String, SeqWindow>,
}

#[derive(Clone, Debug)]
struct SeqWindow {
    top: u64,
    /// Bit `i`: seq `top - i` was accepted.
    seen: u64,
    last_ms: u64,
}

impl ReplayGuard {
    fn prune(&mut self, now: u64, keep_ms: u64) {
        while let Some(&(at, id)) = self.order.front() {
            if at.saturating_add(keep_ms) >= now {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&id);
        }
        self.senders.retain(|_, w| w.last_ms.saturating_add(keep_ms) >= now);
    }

    fn remember(&mut self, id: Uuid, now: u64) {
        self.keys.insert(id, now);
        self.order.push_back((now, id));
    }

    fn seq_fresh(&self, sender: &str, seq: u64, window: u64) -> bool {
        let Some(w) = self.senders.get(sender) else {
            return true;
        };
        if seq > w.top {
            return true;
        }
        let back = w.top - seq;
        back < window && w.seen & (1u64 << back) == 0
    }

    fn accept_seq(&mut self, sender: &str, seq: u64, now: u64) {
        match self.senders.get_mut(sender) {
            None => {
                self.senders.insert(sender.to_string(), SeqWindow { top: seq, seen: 1, last_ms: now });
            }
            Some(w) => {
                if seq > w.top {
                    let shift = seq - w.top;
                    w.seen = if shift >= 64 { 0 } else { w.seen << shift };
                    w.seen |= 1;
                    w.top = seq;
                } else {
                    w.seen |= 1u64 << (w.top - seq);
                }
                w.last_ms = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{parse_frame, TYPE_INCLUDE, TYPE_QUERY};
    use proptest::prelude::*;
    use qmeta_fields::FieldId;

    const NOW: u64 = 1_700_000_000_000;

    fn endpoint(window: u64) -> Endpoint {
        let all: FieldSet = FieldId::known().collect();
        Endpoint::new(ControlState::new(FieldSet::new(), all), Limits { seq_window: window, ..Limits::default() })
    }

    /// A QUERY with a chosen seq under key `n`.
    fn query(seq: u64, n: u8) -> (Vec<u8>, Vec<u8>) {
        let key = vec![n; 64];
        let h = Header { ty: TYPE_QUERY, seq, timestamp_ms: NOW, key_id: Uuid::from_u128(n as u128), sender: "a" };
        (encode_frame(&h, &[], Some(&key[..32])), key)
    }

    fn run(ep: &mut Endpoint, seq: u64, n: u8) -> Outcome {
        let (f, key) = query(seq, n);
        let (_, inc) = parse_frame(&f).unwrap().unwrap();
        ep.handle(inc, Some(&key), NOW, [0; 32]).outcome
    }

    #[test]
    fn seq_window() {
        let mut ep = endpoint(4);
        assert!(run(&mut ep, 10, 1).accepted);
        assert!(run(&mut ep, 8, 2).accepted, "within the window, not seen");
        assert!(!run(&mut ep, 8, 3).accepted, "seen");
        assert!(!run(&mut ep, 10, 4).accepted, "seen (top)");
        assert!(!run(&mut ep, 6, 5).accepted, "beyond the window");
        assert!(run(&mut ep, 100, 6).accepted);
        assert!(run(&mut ep, 99, 7).accepted, "one below a jump");
        let mut strict = endpoint(0);
        assert!(run(&mut strict, 10, 1).accepted);
        assert!(!run(&mut strict, 9, 2).accepted);
        assert!(run(&mut strict, 11, 3).accepted);
    }

    #[test]
    fn key_ids_expire_only_after_the_timestamp_check_covers_them() {
        let mut ep = endpoint(64);
        let (f, key) = query(1, 1);
        let (_, inc) = parse_frame(&f).unwrap().unwrap();
        assert!(ep.handle(inc.clone(), Some(&key), NOW, [0; 32]).outcome.accepted);
        let h = ep.handle(inc.clone(), Some(&key), NOW + 60_000, [0; 32]);
        assert!(h.outcome.reason.unwrap().starts_with("REPLAYED_KEY"));
        // Forgotten later, but then the timestamp is stale.
        let h = ep.handle(inc, Some(&key), NOW + 62_000, [0; 32]);
        assert!(h.outcome.reason.unwrap().starts_with("STALE"));
    }

    #[test]
    fn remembered_keys_are_bounded() {
        let mut ep = endpoint(64);
        ep.limits.max_remembered_keys = 2;
        assert!(run(&mut ep, 1, 1).accepted);
        assert!(run(&mut ep, 2, 2).accepted);
        let o = run(&mut ep, 3, 3);
        assert!(o.reason.unwrap().starts_with("BUSY"));
    }

    #[test]
    fn unexpected_type_and_bad_body_are_authenticated_errors() {
        let mut ep = endpoint(64);
        let key = vec![1u8; 64];
        // An INCLUDE whose body has a trailing byte.
        let h = Header { ty: TYPE_INCLUDE, seq: 1, timestamp_ms: NOW, key_id: Uuid::from_u128(1), sender: "a" };
        let f = encode_frame(&h, &[0, 0, 6, 9], Some(&key[..32]));
        let (_, inc) = parse_frame(&f).unwrap().unwrap();
        let out = ep.handle(inc, Some(&key), NOW, [0; 32]);
        assert_eq!(out.outcome.command, "<unparsed>");
        assert!(out.outcome.reason.unwrap().starts_with("BAD_BODY"));
        let (_, reply) = parse_frame(&out.reply).unwrap().unwrap();
        assert_eq!(reply.ty, frame::TYPE_ERROR);
        assert!(reply.verify(&key[32..]));
        // An ACK sent to the LB.
        let h = Header { ty: frame::TYPE_ACK, seq: 2, timestamp_ms: NOW, key_id: Uuid::from_u128(2), sender: "a" };
        let key = vec![2u8; 64];
        let f = encode_frame(&h, &wire::encode_ack(0, &[], None), Some(&key[..32]));
        let (_, inc) = parse_frame(&f).unwrap().unwrap();
        assert!(ep.handle(inc, Some(&key), NOW, [0; 32]).outcome.reason.unwrap().starts_with("UNEXPECTED_TYPE"));
        assert_eq!(ep.state().version(), 0);
    }

    proptest! {
        /// Any well-framed body under a valid tag: handled, never a panic,
        /// and the reply always parses.
        #[test]
        fn handle_never_panics(ty in 1u8..=6, body in proptest::collection::vec(any::<u8>(), 0..80), random in any::<[u8; 32]>()) {
            let mut ep = endpoint(64);
            let key = vec![5u8; 64];
            let h = Header { ty, seq: 1, timestamp_ms: NOW, key_id: Uuid::from_u128(9), sender: "a" };
            let f = encode_frame(&h, &body, Some(&key[..32]));
            let (_, inc) = parse_frame(&f).unwrap().unwrap();
            let out = ep.handle(inc, Some(&key), NOW, random);
            prop_assert!(parse_frame(&out.reply).unwrap().is_some());
        }
    }
}
