//! Least connections: the backend with the fewest active connections per
//! unit of weight; ties go to the lower index.

use super::{healthy_first, Balancer, Candidate};
use std::net::IpAddr;

pub(crate) struct LeastConnections;

impl Balancer for LeastConnections {
    fn order(&self, _client: IpAddr, backends: &[Candidate]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..backends.len()).collect();
        // active / weight compared without division: a.active * b.weight.
        order.sort_by(|&a, &b| {
            let (ca, cb) = (&backends[a], &backends[b]);
            let lhs = u128::from(ca.active) * u128::from(cb.weight.max(1));
            let rhs = u128::from(cb.active) * u128::from(ca.weight.max(1));
            lhs.cmp(&rhs).then(a.cmp(&b))
        });
        healthy_first(order, backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::candidates;

    #[test]
    fn picks_the_least_loaded_per_weight() {
        let mut c = candidates(&[1, 1, 2]);
        c[0].active = 5;
        c[1].active = 2;
        c[2].active = 3; // 1.5 per weight unit
        assert_eq!(LeastConnections.order("10.0.0.1".parse().unwrap(), &c), [2, 1, 0]);
        c[2].healthy = false;
        assert_eq!(LeastConnections.order("10.0.0.1".parse().unwrap(), &c), [1, 0, 2]);
    }
}
