//! The two-ended API: tampering, key-pool accounting, codecs on real
//! captures, and a run over TCP on 127.0.0.1.

use qmeta_bb84::{
    AbortReason, Alice, AuthMsg, Bob, Channel, ClassicalMsg, DecodeError, LinkParams, Out, Packet, QuantumFrame,
};
use rand::SeedableRng;
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use std::collections::VecDeque;
use zeroize::Zeroizing;

fn params(psk_pool_bytes: usize) -> LinkParams {
    LinkParams {
        block_bits: 20_000,
        detection_prob: 1.0,
        intrinsic_qber: 0.02,
        psk: (0..8 + psk_pool_bytes).map(|i| (i * 13 + 1) as u8).collect(),
        ..LinkParams::default()
    }
}

struct Ends {
    alice: Alice,
    bob: Bob,
    channel: Channel,
    rng: ChaCha8Rng,
}

fn ends(p: LinkParams) -> Ends {
    Ends {
        channel: Channel::from_params(&p),
        alice: Alice::new(p.clone(), ChaCha20Rng::seed_from_u64(1)),
        bob: Bob::new(p, ChaCha20Rng::seed_from_u64(2)),
        rng: ChaCha8Rng::seed_from_u64(3),
    }
}

#[derive(Default)]
struct Outcome {
    /// Every classical message as encoded on the wire, in order.
    wire: Vec<Vec<u8>>,
    frames: Vec<QuantumFrame>,
    alice_key: Option<Zeroizing<Vec<u8>>>,
    bob_key: Option<Zeroizing<Vec<u8>>>,
    alice_abort: Option<AbortReason>,
    bob_abort: Option<AbortReason>,
}

enum Item {
    Q(QuantumFrame),
    ToBob(Vec<u8>),
    ToAlice(Vec<u8>),
}

/// Runs one block, every classical message going through encode → `hook`
/// (message index, bytes) → decode; undecodable messages are dropped.
fn run(e: &mut Ends, hook: &mut dyn FnMut(usize, Vec<u8>) -> Vec<u8>) -> Outcome {
    let mut o = Outcome::default();
    let mut queue: VecDeque<Item> = VecDeque::new();
    let mut pending = e.alice.start_block();
    let mut from_alice = true;
    for _ in 0..100_000 {
        for out in pending.drain(..) {
            match out {
                Out::Send(m) => {
                    let bytes = hook(o.wire.len(), m.encode());
                    o.wire.push(bytes.clone());
                    queue.push_back(if from_alice { Item::ToBob(bytes) } else { Item::ToAlice(bytes) });
                }
                Out::Pulses(t) => {
                    let q = e.channel.transmit(&t, &mut e.rng);
                    o.frames.push(q.clone());
                    queue.push_back(Item::Q(q));
                }
                Out::Key(k) if from_alice => o.alice_key = Some(k),
                Out::Key(k) => o.bob_key = Some(k),
                Out::Aborted(r) if from_alice => o.alice_abort = Some(r),
                Out::Aborted(r) => o.bob_abort = Some(r),
            }
        }
        match queue.pop_front() {
            None => break,
            Some(Item::Q(q)) => {
                from_alice = false;
                pending = e.bob.on_quantum(q);
            }
            Some(Item::ToBob(b)) => {
                from_alice = false;
                if let Ok(m) = AuthMsg::decode(&b) {
                    pending = e.bob.on_message(m);
                }
            }
            Some(Item::ToAlice(b)) => {
                from_alice = true;
                if let Ok(m) = AuthMsg::decode(&b) {
                    pending = e.alice.on_message(m);
                }
            }
        }
    }
    o
}

fn clean_run() -> Outcome {
    run(&mut ends(params(4096)), &mut |_, b| b)
}

#[test]
fn untouched_block_yields_identical_keys() {
    let o = clean_run();
    assert_eq!(o.alice_abort, None);
    assert_eq!(o.bob_abort, None);
    let (a, b) = (o.alice_key.unwrap(), o.bob_key.unwrap());
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn every_altered_byte_of_a_message_is_rejected() {
    let clean = clean_run();
    // Message 2 is Alice's Estimate (after Detections and Sift); flip one bit
    // in each header byte and in every 5th byte of the body.
    assert!(matches!(AuthMsg::decode(&clean.wire[2]).unwrap().msg, ClassicalMsg::Estimate { .. }));
    let len = clean.wire[2].len();
    let mut rejected_by_tag = 0;
    let positions: Vec<usize> = (0..len).filter(|&p| p < 40 || p % 5 == 0).collect();
    for &pos in &positions {
        let mut e = ends(params(4096));
        let o = run(&mut e, &mut |i, mut b| {
            if i == 2 {
                b[pos] ^= 0x01;
            }
            b
        });
        assert!(o.alice_key.is_none() && o.bob_key.is_none(), "byte {pos}: key despite tampering");
        if AuthMsg::decode(&o.wire[2]).is_ok() {
            assert_eq!(o.bob_abort, Some(AbortReason::AuthenticationFailed), "byte {pos}");
            rejected_by_tag += 1;
        }
    }
    assert!(rejected_by_tag > positions.len() / 2, "{rejected_by_tag} of {}", positions.len());
}

#[test]
fn altered_reply_is_rejected_by_alice() {
    // Message 3 is Bob's EstimateReply: flip a bit of its tag.
    let mut e = ends(params(4096));
    let o = run(&mut e, &mut |i, mut b| {
        if i == 3 {
            b[12] ^= 0x80;
        }
        b
    });
    assert_eq!(o.alice_abort, Some(AbortReason::AuthenticationFailed));
    assert!(o.alice_key.is_none());
}

#[test]
fn pool_is_spent_per_message_and_refilled_from_key() {
    let bootstrap_bits = 4096 * 8;
    let mut e = ends(params(4096));
    assert_eq!(e.alice.pool_bits(), bootstrap_bits);
    for _ in 0..3 {
        let o = run(&mut e, &mut |_, b| b);
        assert!(o.alice_key.is_some());
        let (sa, sb) = (e.alice.stats().clone(), e.bob.stats().clone());
        assert_eq!(sa.messages, o.wire.len());
        assert_eq!(sa.auth_bits_consumed, 64 * o.wire.len());
        assert_eq!(sb.auth_bits_consumed, sa.auth_bits_consumed);
        // Refilled back to the bootstrap size from the final key; the rest
        // is delivered.
        assert_eq!(e.alice.pool_bits(), bootstrap_bits);
        assert_eq!(e.bob.pool_bits(), bootstrap_bits);
        let refill_bytes = sa.auth_bits_consumed / 8;
        assert_eq!(sa.delivered_bits, (sa.final_key_bits / 8 - refill_bytes) * 8);
        assert_eq!(o.alice_key.unwrap().len() * 8, sa.delivered_bits);
    }
}

#[test]
fn exhausted_pool_stops_the_block() {
    // Five tags' worth of pool: the sixth message cannot be authenticated.
    let mut e = ends(params(5 * 8));
    let o = run(&mut e, &mut |_, b| b);
    assert_eq!(o.wire.len(), 5);
    assert!(o.alice_key.is_none() && o.bob_key.is_none());
    assert!(o.alice_abort == Some(AbortReason::PoolExhausted) || o.bob_abort == Some(AbortReason::PoolExhausted));
    assert_eq!(e.alice.pool_bits() + e.bob.pool_bits(), 0);
}

#[test]
fn every_captured_message_round_trips_and_every_prefix_is_incomplete() {
    // A short block keeps the quadratic every-prefix loop fast; it still
    // produces every message type.
    // (A larger sample keeps the QBER estimate, hence Cascade, on target.)
    let p = LinkParams { block_bits: 2_000, sample_fraction: 0.25, ..params(4096) };
    let o = run(&mut ends(p), &mut |_, b| b);
    assert!(o.alice_key.is_some(), "{:?} {:?}", o.alice_abort, o.bob_abort);
    let mut kinds = std::collections::BTreeSet::new();
    let mut wire = o.wire.clone();
    wire.push(AuthMsg { seq: 9, tag: 7, msg: ClassicalMsg::Abort { reason: AbortReason::NoSecretKey } }.encode());
    for bytes in &wire {
        let m = AuthMsg::decode(bytes).expect("captured message decodes");
        assert_eq!(&m.encode(), bytes);
        kinds.insert(bytes[16]);
        let body = &bytes[16..];
        assert_eq!(ClassicalMsg::decode(body).unwrap(), m.msg);
        for cut in 0..bytes.len() {
            assert_eq!(AuthMsg::decode(&bytes[..cut]), Err(DecodeError::Incomplete), "cut {cut}");
        }
        for cut in 0..body.len() {
            assert_eq!(ClassicalMsg::decode(&body[..cut]), Err(DecodeError::Incomplete));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(AuthMsg::decode(&longer), Err(DecodeError::TrailingBytes));
        let packet = Packet::Classical(m).encode();
        assert_eq!(Packet::frame_len(&packet), Ok(packet.len()));
        for cut in 0..packet.len() {
            assert_eq!(Packet::decode(&packet[..cut]), Err(DecodeError::Incomplete));
        }
    }
    // Detections, Sift, Estimate, EstimateReply, Parities, Query, Answer,
    // Verify, Amplify, Abort.
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), (1..=10).collect::<Vec<u8>>());
    for q in &o.frames {
        let bytes = q.encode();
        assert_eq!(&QuantumFrame::decode(&bytes).unwrap(), q);
        for cut in 0..bytes.len() {
            assert_eq!(QuantumFrame::decode(&bytes[..cut]), Err(DecodeError::Incomplete));
        }
    }
}

#[test]
fn malformed_messages_are_invalid_or_too_large() {
    assert!(matches!(ClassicalMsg::decode(&[0]), Err(DecodeError::Invalid(_))));
    assert!(matches!(ClassicalMsg::decode(&[10, 99]), Err(DecodeError::Invalid(_))));
    // Query claiming 2^30 entries.
    assert_eq!(ClassicalMsg::decode(&[6, 0x80, 0x80, 0x80, 0x80, 0x04]), Err(DecodeError::TooLarge));
    // Empty parity range.
    assert!(matches!(ClassicalMsg::decode(&[6, 1, 0, 5, 0]), Err(DecodeError::Invalid(_))));
    // Detection index beyond the frame.
    assert!(matches!(ClassicalMsg::decode(&[1, 0, 4, 1, 4, 0]), Err(DecodeError::Invalid(_))));
    assert!(matches!(Packet::frame_len(&[3, 0, 0, 0, 0]), Err(DecodeError::Invalid(_))));
    assert_eq!(Packet::frame_len(&[1, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::TooLarge));
    // A packet whose payload is cut short inside is malformed, not incomplete.
    let mut p =
        Packet::Classical(AuthMsg { seq: 0, tag: 0, msg: ClassicalMsg::Verify { hash_key: 1, hash: 2 } }).encode();
    p.truncate(p.len() - 1);
    p[4] -= 1;
    assert!(matches!(Packet::decode(&p), Err(DecodeError::Invalid(_))));
}

#[test]
fn replayed_or_reordered_message_is_rejected() {
    let clean = clean_run();
    // Alice's Sift carries seq 1; a fresh Bob expects seq 0 first.
    let sift = AuthMsg::decode(&clean.wire[1]).unwrap();
    let mut e = ends(params(4096));
    let _ = e.alice.start_block();
    let out = e.bob.on_message(sift);
    assert!(matches!(out.last(), Some(Out::Aborted(AbortReason::AuthenticationFailed))));
}
