//! Weighted round robin: a precomputed, interleaved schedule in which each
//! backend appears `weight` times, walked by one atomic counter (no lock on
//! the connection path).

use super::{healthy_first, Balancer, Candidate};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) struct RoundRobin {
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(weights: &[u32]) -> RoundRobin {
        // Smooth weighted round robin (as nginx does): interleaves instead of
        // sending `weight` connections in a row to the same backend.
        let total: i64 = weights.iter().map(|&w| i64::from(w.max(1))).sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += i64::from(w.max(1));
            }
            let Some((best, _)) = current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))) else {
                break;
            };
            current[best] -= total;
            schedule.push(best);
        }
        RoundRobin { schedule, next: AtomicUsize::new(0) }
    }
}

impl Balancer for RoundRobin {
    fn order(&self, _client: IpAddr, backends: &[Candidate]) -> Vec<usize> {
        let n = backends.len();
        if n == 0 || self.schedule.is_empty() {
            return Vec::new();
        }
        let first = self.schedule[self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len()] % n;
        healthy_first((0..n).map(|i| (first + i) % n).collect(), backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::candidates;

    fn firsts(rr: &RoundRobin, c: &[Candidate], n: usize) -> Vec<usize> {
        (0..n).map(|_| rr.order("127.0.0.1".parse().unwrap(), c)[0]).collect()
    }

    #[test]
    fn equal_weights_alternate() {
        let c = candidates(&[1, 1, 1]);
        assert_eq!(firsts(&RoundRobin::new(&[1, 1, 1]), &c, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_respected_and_interleaved() {
        let c = candidates(&[3, 1]);
        let got = firsts(&RoundRobin::new(&[3, 1]), &c, 8);
        assert_eq!(got.iter().filter(|&&i| i == 0).count(), 6);
        assert_eq!(got[..4], [0, 0, 1, 0], "smooth, not 0,0,0,1");
    }

    #[test]
    fn down_backends_go_last_and_every_index_once() {
        let mut c = candidates(&[1, 1, 1]);
        c[0].healthy = false;
        let rr = RoundRobin::new(&[1, 1, 1]);
        for _ in 0..3 {
            let o = rr.order("127.0.0.1".parse().unwrap(), &c);
            assert_eq!(*o.last().unwrap(), 0);
            let mut s = o.clone();
            s.sort();
            assert_eq!(s, [0, 1, 2]);
        }
    }
}
