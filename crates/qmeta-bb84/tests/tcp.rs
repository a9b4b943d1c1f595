//! The two ends in two threads, classical and quantum traffic framed as
//! `Packet`s on one TCP connection over 127.0.0.1 (as the KME pair runs it).

use qmeta_bb84::{Alice, Bob, Channel, DecodeError, LinkParams, Out, Packet};
use rand::SeedableRng;
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const BLOCKS: usize = 3;

fn params() -> LinkParams {
    LinkParams {
        block_bits: 20_000,
        detection_prob: 0.5,
        intrinsic_qber: 0.02,
        psk: (0..8 + 8192).map(|i| (i * 31 + 5) as u8).collect(),
        ..LinkParams::default()
    }
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn new(s: TcpStream) -> Self {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self { s, buf: Vec::new() }
    }

    fn send(&mut self, p: Packet) {
        self.s.write_all(&p.encode()).unwrap();
    }

    fn recv(&mut self) -> Packet {
        let mut chunk = [0u8; 65536];
        // Bounded: each read either completes a packet or blocks up to the
        // timeout; a stalled peer fails the test instead of hanging.
        for _ in 0..100_000 {
            match Packet::frame_len(&self.buf) {
                Ok(len) if self.buf.len() >= len => {
                    let p = Packet::decode(&self.buf[..len]).expect("valid packet");
                    self.buf.drain(..len);
                    return p;
                }
                Ok(_) | Err(DecodeError::Incomplete) => {}
                Err(e) => panic!("bad framing: {e}"),
            }
            let n = self.s.read(&mut chunk).expect("read within timeout");
            assert!(n > 0, "peer closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        panic!("no packet");
    }
}

#[test]
fn two_processes_agree_on_keys_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bob_thread = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut conn = Conn::new(s);
        let mut bob = Bob::new(params(), ChaCha20Rng::seed_from_u64(2));
        let mut keys = Vec::new();
        while keys.len() < BLOCKS {
            let outs = match conn.recv() {
                Packet::Quantum(q) => bob.on_quantum(q),
                Packet::Classical(m) => bob.on_message(m),
            };
            for o in outs {
                match o {
                    Out::Send(m) => conn.send(Packet::Classical(m)),
                    Out::Key(k) => keys.push(k.to_vec()),
                    Out::Aborted(r) => panic!("bob aborted: {r}"),
                    Out::Pulses(_) => unreachable!("bob emits no pulses"),
                }
            }
        }
        keys
    });

    let mut conn = Conn::new(TcpStream::connect(addr).unwrap());
    let p = params();
    let channel = Channel::from_params(&p);
    let mut channel_rng = ChaCha8Rng::seed_from_u64(3);
    let mut alice = Alice::new(p, ChaCha20Rng::seed_from_u64(1));
    let mut alice_keys = Vec::new();
    for _ in 0..BLOCKS {
        let mut outs = alice.start_block();
        let mut done = false;
        for _ in 0..10_000 {
            for o in outs.drain(..) {
                match o {
                    Out::Send(m) => conn.send(Packet::Classical(m)),
                    // The channel model sits at Alice's end of the fibre.
                    Out::Pulses(t) => conn.send(Packet::Quantum(channel.transmit(&t, &mut channel_rng))),
                    Out::Key(k) => {
                        alice_keys.push(k.to_vec());
                        done = true;
                    }
                    Out::Aborted(r) => panic!("alice aborted: {r}"),
                }
            }
            if done {
                break;
            }
            match conn.recv() {
                Packet::Classical(m) => outs = alice.on_message(m),
                Packet::Quantum(_) => panic!("alice receives no photons"),
            }
        }
        assert!(done, "block did not finish");
    }
    let bob_keys = bob_thread.join().unwrap();
    assert_eq!(alice_keys.len(), BLOCKS);
    assert_eq!(alice_keys, bob_keys);
    assert!(alice_keys.iter().all(|k| k.len() > 500));
}
