//! Backend selection: one file per algorithm behind [`Balancer`].
//!
//! A balancer returns the order in which backends are tried for one client
//! connection: the first is the choice, the rest are failover candidates
//! (tried only when nothing has been sent to the previous ones). Backends
//! marked down by health checks are moved to the end, so they are tried only
//! when every healthy one failed.

mod consistent_hash;
mod least_conn;
mod round_robin;

pub(crate) use consistent_hash::ConsistentHash;
pub(crate) use least_conn::LeastConnections;
pub(crate) use round_robin::RoundRobin;

use std::net::IpAddr;

/// What a balancer may know about a backend.
pub(crate) struct Candidate {
    pub weight: u32,
    pub active: u64,
    pub healthy: bool,
}

pub(crate) trait Balancer: Send + Sync {
    /// Indices into `backends`, best first; every index exactly once.
    fn order(&self, client: IpAddr, backends: &[Candidate]) -> Vec<usize>;
}

/// Which algorithm a pool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastConnections,
    ConsistentHash,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "round_robin" => Some(Algorithm::RoundRobin),
            "least_connections" => Some(Algorithm::LeastConnections),
            "consistent_hash" => Some(Algorithm::ConsistentHash),
            _ => None,
        }
    }

    pub(crate) fn build(self, weights: &[u32]) -> Box<dyn Balancer> {
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::new(weights)),
            Algorithm::LeastConnections => Box::new(LeastConnections),
            Algorithm::ConsistentHash => Box::new(ConsistentHash::new(weights)),
        }
    }
}

/// Stable partition: healthy backends first, order otherwise kept.
pub(crate) fn healthy_first(order: Vec<usize>, backends: &[Candidate]) -> Vec<usize> {
    let (mut up, down): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|&i| backends[i].healthy);
    up.extend(down);
    up
}

#[cfg(test)]
pub(crate) fn candidates(weights: &[u32]) -> Vec<Candidate> {
    weights.iter().map(|&w| Candidate { weight: w, active: 0, healthy: true }).collect()
}
