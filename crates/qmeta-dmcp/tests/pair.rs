//! An in-memory agent ↔ LB pair with simulated time.

use qmeta_dmcp::*;
use qmeta_fields::{FieldId, FieldSet};
use uuid::Uuid;

const T0: u64 = 1_700_000_000_000;

fn set(ids: &[FieldId]) -> FieldSet {
    ids.iter().copied().collect()
}

fn allowed() -> FieldSet {
    set(&[FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::SNI, FieldId::JA4, FieldId::ALPN, FieldId::GEO_COUNTRY])
}

fn default_set() -> FieldSet {
    set(&[FieldId::SRC_IP, FieldId::TIMESTAMP])
}

/// Stands in for the two KMEs: hands out fresh 64-byte keys by id.
struct Pair {
    client: ClientSession,
    lb: Endpoint,
    now: u64,
    next_key: u128,
}

struct Sent {
    key_id: Uuid,
    key: Vec<u8>,
    frame: Vec<u8>,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            client: ClientSession::new("agent-sae".into()),
            lb: Endpoint::new(ControlState::new(default_set(), allowed()), Limits::default()),
            now: T0,
            next_key: 1,
        }
    }

    fn key(&mut self) -> (Uuid, Vec<u8>) {
        let id = Uuid::from_u128(self.next_key);
        let key: Vec<u8> = (0..64).map(|i| (i as u8).wrapping_mul(31).wrapping_add(self.next_key as u8)).collect();
        self.next_key += 1;
        (id, key)
    }

    fn send(&mut self, cmd: &Command) -> Sent {
        let (key_id, key) = self.key();
        let frame = self.client.request(cmd, key_id, &key, self.now);
        Sent { key_id, key, frame }
    }

    /// Delivers `bytes` to the LB (with the key the LB's KME would return)
    /// and the LB's answer back to the agent.
    fn deliver(&mut self, bytes: &[u8], key: Option<&[u8]>, reply_key: &[u8]) -> (Outcome, Reply) {
        let (used, incoming) = parse_frame(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let handled = self.lb.handle(incoming, key, self.now, [0b1010_0110; 32]);
        let (used, reply) = self.client.read_reply(&handled.reply, reply_key).unwrap().unwrap();
        assert_eq!(used, handled.reply.len());
        (handled.outcome, reply)
    }

    fn exchange(&mut self, cmd: &Command) -> (Outcome, Reply) {
        let s = self.send(cmd);
        self.deliver(&s.frame, Some(&s.key), &s.key)
    }
}

fn error_code(r: &Reply) -> (u16, bool) {
    match r {
        Reply::Error { code, authenticated, .. } => (*code, *authenticated),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn every_command_over_the_wire() {
    let mut p = Pair::new();
    let (o, r) = p.exchange(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    assert!(o.accepted && o.changed);
    assert_eq!(o.command, "INCLUDE backend sni");
    assert_eq!(o.sender, "agent-sae");
    let with_sni = set(&[FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::SNI]);
    assert_eq!(r, Reply::Ack { version: 1, scopes: vec![(Scope::Backend, with_sni.clone())], drawn: None });

    let api = Scope::Sni("api.example".into());
    let (_, r) = p.exchange(&Command::Exclude { scope: api.clone(), field: FieldId::SRC_IP });
    let api_set = set(&[FieldId::TIMESTAMP, FieldId::SNI]);
    assert_eq!(r, Reply::Ack { version: 2, scopes: vec![(api.clone(), api_set.clone())], drawn: None });

    let (o, r) = p.exchange(&Command::Query);
    assert!(!o.changed);
    assert_eq!(
        r,
        Reply::Ack { version: 2, scopes: vec![(Scope::Backend, with_sni), (api.clone(), api_set)], drawn: None }
    );

    let (_, r) = p.exchange(&Command::Reset { scope: api.clone() });
    assert_eq!(r, Reply::Ack { version: 3, scopes: vec![], drawn: None });
    let (_, r) = p.exchange(&Command::Reset { scope: Scope::Backend });
    assert_eq!(r, Reply::Ack { version: 4, scopes: vec![(Scope::Backend, default_set())], drawn: None });

    let from = set(&[FieldId::SNI, FieldId::JA4, FieldId::GEO_CITY]);
    let (o, r) = p.exchange(&Command::Randomize { scope: Scope::Backend, from });
    // random byte 0b1010_0110: candidates sni(bit0)=0, ja4(bit1)=1.
    let drawn = set(&[FieldId::JA4]);
    assert_eq!(o.drawn, Some(drawn.clone()));
    assert_eq!(
        r,
        Reply::Ack { version: 5, scopes: vec![(Scope::Backend, default_set().union(&drawn))], drawn: Some(drawn) }
    );

    let want = vec![(Scope::Backend, set(&[FieldId::SRC_IP])), (api.clone(), set(&[FieldId::ALPN]))];
    let (_, r) = p.exchange(&Command::Sync { scopes: want.clone() });
    assert_eq!(r, Reply::Ack { version: 6, scopes: want.clone(), drawn: None });
    assert_eq!(p.lb.state().scopes(), want);
    assert_eq!(p.lb.state().fields_for(Some("api.example")), &set(&[FieldId::ALPN]));
}

#[test]
fn not_permitted_is_an_authenticated_error_and_changes_nothing() {
    let mut p = Pair::new();
    let before = p.lb.state().clone();
    let (o, r) = p.exchange(&Command::Include { scope: Scope::Backend, field: FieldId::GEO_CITY });
    assert!(!o.accepted);
    assert_eq!(error_code(&r), (ErrorCode::NotPermitted as u16, true));
    assert_eq!(r.not_permitted_field(), Some(FieldId::GEO_CITY));
    assert_eq!(p.lb.state(), &before);
}

#[test]
fn bad_tag_is_rejected() {
    let mut p = Pair::new();
    let before = p.lb.state().clone();
    let mut s = p.send(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    let last = s.frame.len() - 1;
    s.frame[last] ^= 1;
    let (o, r) = p.deliver(&s.frame, Some(&s.key), &s.key);
    assert_eq!(error_code(&r), (ErrorCode::BadTag as u16, true));
    assert!(!o.accepted);
    assert_eq!(p.lb.state(), &before);

    // A flipped body byte fails the same way.
    let mut s = p.send(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    let body_at = HEADER_LEN + "agent-sae".len() + 1;
    s.frame[body_at + 1] ^= 0x01;
    let (_, r) = p.deliver(&s.frame, Some(&s.key), &s.key);
    assert_eq!(error_code(&r), (ErrorCode::BadTag as u16, true));
    assert_eq!(p.lb.state(), &before);

    // A key other than the one the KME holds for this id.
    let s = p.send(&Command::Query);
    let wrong = vec![9u8; 64];
    let (used, incoming) = parse_frame(&s.frame).unwrap().unwrap();
    assert_eq!(used, s.frame.len());
    let h = p.lb.handle(incoming, Some(&wrong), p.now, [0; 32]);
    // The agent cannot verify an answer MACed with a key it does not hold.
    assert_eq!(p.client.read_reply(&h.reply, &s.key), Err(FrameError::BadTag));
}

#[test]
fn replayed_frame_is_rejected_without_spending_the_reply_key_twice() {
    let mut p = Pair::new();
    let s = p.send(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    let (o, _) = p.deliver(&s.frame, Some(&s.key), &s.key);
    assert!(o.accepted);
    let after_first = p.lb.state().clone();
    let (used, incoming) = parse_frame(&s.frame).unwrap().unwrap();
    assert_eq!(used, s.frame.len());
    let h = p.lb.handle(incoming, Some(&s.key), p.now + 10, [0; 32]);
    assert!(!h.outcome.accepted);
    assert_eq!(h.outcome.key_id, Some(s.key_id));
    assert!(h.outcome.reason.as_deref().unwrap().starts_with("REPLAYED_KEY"));
    let (_, r) = p.client.read_reply(&h.reply, &s.key).unwrap().unwrap();
    assert_eq!(error_code(&r), (ErrorCode::ReplayedKey as u16, false));
    assert_eq!(p.lb.state(), &after_first);
}

#[test]
fn reordered_seq_beyond_the_window_is_rejected() {
    let mut p = Pair::new();
    // A second session of the same sender whose clock is one second behind.
    let mut late = ClientSession::new("agent-sae".into());
    p.now = T0 + 1_000;
    let (o, _) = p.exchange(&Command::Query);
    assert!(o.accepted);
    let (key_id, key) = p.key();
    let frame = late.request(&Command::Include { scope: Scope::Backend, field: FieldId::SNI }, key_id, &key, T0);
    let before = p.lb.state().clone();
    let (_, incoming) = parse_frame(&frame).unwrap().unwrap();
    let h = p.lb.handle(incoming, Some(&key), p.now, [0; 32]);
    let (_, r) = late.read_reply(&h.reply, &key).unwrap().unwrap();
    assert_eq!(error_code(&r), (ErrorCode::BadSeq as u16, true));
    assert_eq!(p.lb.state(), &before);
}

#[test]
fn stale_timestamps_are_rejected() {
    let mut p = Pair::new();
    let before = p.lb.state().clone();
    for (skew, ok) in [(29_999i64, true), (-30_000, true), (30_001, false), (-31_000, false)] {
        let s = p.send(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
        let lb_now = (p.now as i64 + skew) as u64;
        let (_, incoming) = parse_frame(&s.frame).unwrap().unwrap();
        let h = p.lb.handle(incoming, Some(&s.key), lb_now, [0; 32]);
        let (_, r) = p.client.read_reply(&h.reply, &s.key).unwrap().unwrap();
        if ok {
            assert!(matches!(r, Reply::Ack { .. }), "skew {skew}: {r:?}");
        } else {
            assert_eq!(error_code(&r), (ErrorCode::Stale as u16, true), "skew {skew}");
        }
        p.now += 1;
    }
    // Only the accepted ones changed state (the first INCLUDE; the second was idempotent).
    assert_eq!(p.lb.state().version(), before.version() + 1);
}

#[test]
fn truncated_frames_are_incomplete_and_never_panic() {
    let mut p = Pair::new();
    let s = p.send(&Command::Sync {
        scopes: vec![(Scope::Backend, allowed()), (Scope::Sni("a.example".into()), default_set())],
    });
    for cut in 0..s.frame.len() {
        assert!(matches!(parse_frame(&s.frame[..cut]), Ok(None)), "prefix {cut}");
    }
    // A reply cut short is incomplete for the agent too.
    let (_, incoming) = parse_frame(&s.frame).unwrap().unwrap();
    let h = p.lb.handle(incoming, Some(&s.key), p.now, [0; 32]);
    for cut in 0..h.reply.len() {
        assert_eq!(p.client.read_reply(&h.reply[..cut], &s.key), Ok(None), "reply prefix {cut}");
    }
}

#[test]
fn oversized_and_unknown_types_get_an_unauthenticated_error() {
    let mut p = Pair::new();
    let s = p.send(&Command::Query);
    let mut big = s.frame.clone();
    big[40..42].copy_from_slice(&(MAX_FRAME as u16).to_be_bytes());
    let err = parse_frame(&big[..HEADER_LEN]).unwrap_err();
    assert!(matches!(err, FrameError::Oversized { .. }));
    let reply = reject_unparsable(&err, p.now);
    let (_, r) = p.client.read_reply(&reply, &s.key).unwrap().unwrap();
    assert_eq!(error_code(&r), (ErrorCode::Oversized as u16, false));

    let mut odd = s.frame.clone();
    odd[5] = 0x7e;
    let err = parse_frame(&odd).unwrap_err();
    assert_eq!(err, FrameError::UnknownType(0x7e));
    let (_, r) = p.client.read_reply(&reject_unparsable(&err, p.now), &s.key).unwrap().unwrap();
    assert_eq!(error_code(&r), (ErrorCode::UnknownType as u16, false));
    assert_eq!(p.lb.state().version(), 0);
}

#[test]
fn unknown_key_gets_an_unauthenticated_error() {
    let mut p = Pair::new();
    let s = p.send(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    let (o, r) = p.deliver(&s.frame, None, &s.key);
    assert_eq!(error_code(&r), (ErrorCode::UnknownKey as u16, false));
    assert_eq!(o.command, "INCLUDE backend sni");
    assert_eq!(p.lb.state().version(), 0);
    // The agent's request is still outstanding: the real answer is accepted.
    let (used, incoming) = parse_frame(&s.frame).unwrap().unwrap();
    assert_eq!(used, s.frame.len());
    let h = p.lb.handle(incoming, Some(&s.key), p.now, [0; 32]);
    assert!(matches!(p.client.read_reply(&h.reply, &s.key), Ok(Some((_, Reply::Ack { version: 1, .. })))));
}

#[test]
fn agent_rejects_replies_to_other_requests() {
    let mut p = Pair::new();
    let first = p.send(&Command::Query);
    let (_, incoming) = parse_frame(&first.frame).unwrap().unwrap();
    let old_reply = p.lb.handle(incoming, Some(&first.key), p.now, [0; 32]).reply;
    let second = p.send(&Command::Query);
    assert_eq!(
        p.client.read_reply(&old_reply, &second.key),
        Err(FrameError::UnexpectedReply("reply to another request"))
    );
}

#[test]
fn sync_after_lb_restart_converges() {
    let mut p = Pair::new();
    let api = Scope::Sni("api.example".into());
    p.exchange(&Command::Include { scope: Scope::Backend, field: FieldId::JA4 });
    let (_, r) = p.exchange(&Command::Include { scope: api.clone(), field: FieldId::ALPN });
    assert!(matches!(r, Reply::Ack { .. }));
    let (_, Reply::Ack { scopes: acked, .. }) = p.exchange(&Command::Query) else { panic!("query refused") };
    let before = p.lb.state().scopes();
    assert_eq!(acked, before);

    // LB restart: a fresh Endpoint with the configured default.
    p.lb = Endpoint::new(ControlState::new(default_set(), allowed()), Limits::default());
    assert_ne!(p.lb.state().scopes(), before);
    p.now += 5_000;
    let (o, r) = p.exchange(&Command::Sync { scopes: acked.clone() });
    assert!(o.accepted);
    assert_eq!(r, Reply::Ack { version: 1, scopes: acked.clone(), drawn: None });
    assert_eq!(p.lb.state().scopes(), before);
    // Frames from before the restart are still refused: stale by now.
    assert!(diff(&p.lb.state().scopes(), &acked).is_empty());
}

#[test]
fn agent_restart_keeps_sequence_numbers_increasing() {
    let mut p = Pair::new();
    p.exchange(&Command::Query);
    p.exchange(&Command::Query);
    // New process, same sender, a millisecond later.
    p.client = ClientSession::new("agent-sae".into());
    p.now += 1;
    let (o, r) = p.exchange(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    assert!(o.accepted, "{r:?}");
}

#[test]
fn the_largest_state_fits_in_one_frame() {
    let fields: FieldSet = (1000..1000 + MAX_SET_LEN as u16).filter_map(FieldId::new).collect();
    let mut p = Pair::new();
    p.lb = Endpoint::new(ControlState::new(FieldSet::new(), fields.clone()), Limits::default());
    let mut scopes = vec![(Scope::Backend, fields.clone())];
    for i in 0..MAX_SCOPES - 1 {
        let name = format!("{i:02}{}", "x".repeat(MAX_SNI_LEN - 2));
        scopes.push((Scope::Sni(name), fields.clone()));
    }
    let (key_id, key) = p.key();
    let client = &mut ClientSession::new("s".repeat(MAX_SENDER_LEN));
    let frame = client.request(&Command::Sync { scopes: scopes.clone() }, key_id, &key, p.now);
    assert!(frame.len() <= MAX_FRAME, "{}", frame.len());
    let (_, incoming) = parse_frame(&frame).unwrap().unwrap();
    let h = p.lb.handle(incoming, Some(&key), p.now, [0xff; 32]);
    assert!(h.reply.len() <= MAX_FRAME, "{}", h.reply.len());
    let (_, r) = client.read_reply(&h.reply, &key).unwrap().unwrap();
    assert_eq!(r, Reply::Ack { version: 1, scopes, drawn: None });
}
