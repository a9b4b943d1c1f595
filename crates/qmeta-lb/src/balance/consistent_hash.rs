//! Consistent hashing on the client address: the same client lands on the
//! same backend while the pool is unchanged, and removing a backend moves
//! only its clients. A ring of virtual nodes (100 per unit of weight).

use super::{healthy_first, Balancer, Candidate};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

const VNODES_PER_WEIGHT: u32 = 100;

pub(crate) struct ConsistentHash {
    ring: Vec<(u64, usize)>,
}

fn hash(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    u64::from_be_bytes(d[..8].try_into().unwrap_or_default())
}

impl ConsistentHash {
    pub fn new(weights: &[u32]) -> ConsistentHash {
        let mut ring = Vec::new();
        for (i, &w) in weights.iter().enumerate() {
            for v in 0..w.max(1) * VNODES_PER_WEIGHT {
                ring.push((hash(format!("{i}-{v}").as_bytes()), i));
            }
        }
        ring.sort_unstable();
        ConsistentHash { ring }
    }
}

impl Balancer for ConsistentHash {
    fn order(&self, client: IpAddr, backends: &[Candidate]) -> Vec<usize> {
        let key = match client {
            IpAddr::V4(a) => hash(&a.octets()),
            IpAddr::V6(a) => hash(&a.octets()),
        };
        let start = self.ring.partition_point(|(h, _)| *h < key);
        let mut order = Vec::with_capacity(backends.len());
        for k in 0..self.ring.len() {
            let (_, i) = self.ring[(start + k) % self.ring.len()];
            if i < backends.len() && !order.contains(&i) {
                order.push(i);
                if order.len() == backends.len() {
                    break;
                }
            }
        }
        healthy_first(order, backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::candidates;

    #[test]
    fn same_client_same_backend_and_spread() {
        let ch = ConsistentHash::new(&[1, 1, 1]);
        let c = candidates(&[1, 1, 1]);
        let mut counts = [0usize; 3];
        for i in 0..3000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let first = ch.order(ip, &c)[0];
            assert_eq!(ch.order(ip, &c)[0], first);
            counts[first] += 1;
        }
        assert!(counts.iter().all(|&n| n > 600), "uneven spread {counts:?}");
    }

    #[test]
    fn a_down_backend_moves_only_its_clients() {
        let ch = ConsistentHash::new(&[1, 1, 1]);
        let up = candidates(&[1, 1, 1]);
        let mut one_down = candidates(&[1, 1, 1]);
        one_down[1].healthy = false;
        for i in 0..2000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let before = ch.order(ip, &up)[0];
            let after = ch.order(ip, &one_down)[0];
            if before != 1 {
                assert_eq!(before, after, "client {ip} moved although its backend stayed up");
            } else {
                assert_ne!(after, 1);
            }
        }
    }
}
