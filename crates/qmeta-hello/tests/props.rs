//! Property tests: capture never panics, whatever the peer sends, and
//! record boundaries never change the result.

mod common;

use common::*;
use proptest::prelude::*;
use qmeta_hello::{capture, Capture, MAX_RECORDS_LEN};

fn real() -> Vec<Vec<u8>> {
    captures().into_iter().map(|(_, r)| r).collect()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Capture::Incomplete { need_at_least }) = capture(&bytes) {
            prop_assert!(need_at_least > bytes.len() && need_at_least <= MAX_RECORDS_LEN);
        }
    }

    #[test]
    fn handshake_looking_bytes_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
        len in 0u16..2000,
    ) {
        // Starts like a ClientHello record so the parser gets past the
        // first checks and into the body.
        let mut bytes = vec![0x16, 0x03, 0x01];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.push(1);
        bytes.extend_from_slice(&tail);
        let _ = capture(&bytes);
    }

    #[test]
    fn mutated_real_hellos_never_panic(
        which in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let all = real();
        let mut bytes = all[which % all.len()].clone();
        for (at, val) in flips {
            let i = at.index(bytes.len());
            bytes[i] = val;
        }
        let _ = capture(&bytes);
        let _ = capture(&bytes[..bytes.len() / 2]);
    }

    #[test]
    fn record_boundaries_do_not_matter(
        which in 0usize..5,
        cuts in proptest::collection::btree_set(1usize..300, 0..6),
    ) {
        let all = real();
        let records = &all[which % all.len()];
        let msg = unframe(records);
        let cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < msg.len()).collect();
        let a = capture(records).unwrap();
        let b = capture(&frame(&msg, &cuts)).unwrap();
        match (a, b) {
            (Capture::Complete { hello: x, .. }, Capture::Complete { hello: y, .. }) => {
                prop_assert_eq!(x, y)
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
