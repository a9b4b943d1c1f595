//! The configuration beyond [`super::KmePairConfig`]: which link feeds the
//! KMEs, quirk modes, multicast, and the single-site (two-process) mode.
//!
//! These live in their own types because `KmePairConfig`, `KmeSiteConfig`
//! and `LinkConfig` are built field by field in other crates.

use super::quirks::Quirks;
use super::store::Site;
use super::{KmePairConfig, KmeSiteConfig, LinkConfig};
use std::fmt;
use std::net::SocketAddr;
use zeroize::Zeroizing;

/// Cascade parameter set (reference: Martinez-Mateo et al.).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cascade {
    /// k1 = ⌈0.73/Q⌉, doubling, 4 passes.
    Original,
    /// k1 = ⌈0.80/Q⌉, ×5, n/2, 10 passes.
    #[default]
    Yan,
}

/// Parameters of the simulated BB84 link.
#[derive(Clone, PartialEq)]
pub struct Bb84Config {
    /// Error rate of the channel without an eavesdropper (0..=0.5).
    pub intrinsic_qber: f64,
    /// Probability that Bob detects a photon (0 < p ≤ 1).
    pub detection_prob: f64,
    /// Fraction of photons an intercept-resend attacker measures (0..=1).
    pub eve_fraction: f64,
    pub cascade: Cascade,
    /// Sifted bits per block entering error correction.
    pub block_bits: usize,
    /// Pre-shared secret bootstrapping Wegman–Carter authentication.
    /// `None` in pair mode: a random one (both ends live in this process).
    pub psk: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for Bb84Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bb84Config")
            .field("intrinsic_qber", &self.intrinsic_qber)
            .field("detection_prob", &self.detection_prob)
            .field("eve_fraction", &self.eve_fraction)
            .field("cascade", &self.cascade)
            .field("block_bits", &self.block_bits)
            .field("psk", &self.psk.as_ref().map(|p| format!("<{} bytes>", p.len())))
            .finish()
    }
}

impl Default for Bb84Config {
    fn default() -> Self {
        Bb84Config {
            intrinsic_qber: 0.02,
            detection_prob: 0.5,
            eve_fraction: 0.0,
            cascade: Cascade::Yan,
            block_bits: 1 << 16,
            psk: None,
        }
    }
}

/// Bounds of `block_bits` (the simulation accepts up to 2^22).
pub const MIN_BLOCK_BITS: usize = 1024;
pub const MAX_BLOCK_BITS: usize = 1 << 20;

/// Shortest accepted pre-shared secret.
pub const MIN_PSK_BYTES: usize = 32;

impl Bb84Config {
    /// Every out-of-range value, as (key, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut check = |key, v: f64, ok: bool, range: &str| {
            if !ok || !v.is_finite() {
                out.push((key, format!("{v} must be in {range}")));
            }
        };
        let q = self.intrinsic_qber;
        check("intrinsic_qber", q, (0.0..=0.5).contains(&q), "0..=0.5");
        let d = self.detection_prob;
        check("detection_prob", d, d > 0.0 && d <= 1.0, "(0, 1]");
        let e = self.eve_fraction;
        check("eve_fraction", e, (0.0..=1.0).contains(&e), "0..=1");
        if !(MIN_BLOCK_BITS..=MAX_BLOCK_BITS).contains(&self.block_bits) {
            out.push(("block_bits", format!("{} must be in {MIN_BLOCK_BITS}..={MAX_BLOCK_BITS}", self.block_bits)));
        }
        if let Some(p) = &self.psk {
            if p.len() < MIN_PSK_BYTES {
                out.push(("psk", format!("at least {MIN_PSK_BYTES} bytes are needed, got {}", p.len())));
            }
        }
        out
    }
}

/// What produces the key material.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkKind {
    /// Uniformly random bytes at `key_rate` (a stand-in for a link).
    Generator,
    /// The BB84 simulation, paced to at most `key_rate` keys per second.
    Bb84(Bb84Config),
}

impl Default for LinkKind {
    fn default() -> Self {
        LinkKind::Bb84(Bb84Config::default())
    }
}

/// Everything a pair needs beyond [`KmePairConfig`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairOptions {
    pub kind: LinkKind,
    pub quirks_a: Quirks,
    pub quirks_b: Quirks,
    /// Most `additional_slave_SAE_IDs` per request (0: no multicast).
    pub max_sae_id_count: u32,
}

/// How the two single-site KMEs reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerChannel {
    /// Accept the peer KME's connection here.
    Listen(SocketAddr),
    /// Connect to the peer KME there (and reconnect when it drops).
    Connect(SocketAddr),
}

/// The other site, as a single-site KME needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSite {
    /// Its KME id: the name its certificate must carry.
    pub kme_id: String,
    /// SAEs attached to it (the slaves this site's masters may name).
    pub saes: Vec<String>,
}

/// One site of a pair running in its own process (`site = "a"`).
#[derive(Debug, Clone, PartialEq)]
pub struct SingleSiteConfig {
    /// A runs Alice, B runs Bob.
    pub site: Site,
    pub local: KmeSiteConfig,
    pub peer: PeerSite,
    pub channel: PeerChannel,
    pub link: LinkConfig,
    /// Single-site mode always runs BB84 (both ends must distil the same
    /// stream); `psk` is required.
    pub bb84: Bb84Config,
    pub quirks: Quirks,
    pub max_sae_id_count: u32,
}

/// A whole `kme.toml`.
#[derive(Debug, Clone, PartialEq)]
// Built once at start-up: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum KmeConfig {
    /// Both sites in this process.
    Pair { pair: KmePairConfig, options: PairOptions },
    /// One site; the other runs in another process.
    Site(Box<SingleSiteConfig>),
}
