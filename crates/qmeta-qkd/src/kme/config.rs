//! `kme.toml` → [`KmeConfig`] (or the pair part, [`KmePairConfig`]),
//! reporting every bad key at once.
//!
//! ```toml
//! # site = "a"               # run only site A here (two-process mode)
//! [link]                      # optional; defaults shown
//! kind = "bb84"               # or "generator" (random bytes at key_rate)
//! key_rate = 1000             # keys of key_size per second (BB84: at most)
//! max_key_count = 100000
//! key_size = 256              # bits
//! min_key_size = 64
//! max_key_size = 1024
//! max_key_per_request = 128
//! max_sae_id_count = 0        # > 0 allows additional_slave_SAE_IDs
//! # seed = 42                 # reproducible key stream (tests only)
//! intrinsic_qber = 0.02       # BB84 channel model
//! detection_prob = 0.5
//! eve_fraction = 0.0          # 1.0: full intercept-resend attack
//! cascade = "yan"             # or "original"
//! block_bits = 65536          # sifted bits per block
//! # psk = "hex…" / psk_file = "psk.bin"   # required in two-process mode
//! # listen = "127.0.0.1:9440" / peer = "127.0.0.1:9440"  # two-process mode
//!
//! [a]                         # site A: the LB's KME
//! kme_id = "kme-a"            # DNS name in its certificate
//! listen = "127.0.0.1:8443"
//! cert = "kme-a.crt"          # paths are relative to this file
//! key = "kme-a.key"
//! client_ca = "ca.crt"        # SAE certificates must chain to it
//! saes = ["lb-1"]             # CNs of the SAE certificates attached here
//! # quirks = ["capital_keys"] # imitate non-conforming KMEs (docs/KME.md)
//!
//! [b]                         # site B: the backends' KME, same keys
//! ```
//!
//! In two-process mode the peer's section needs only `kme_id` and `saes`.

use super::quirks::Quirks;
use super::setup::{Bb84Config, Cascade, KmeConfig, LinkKind, PairOptions, PeerChannel, PeerSite, SingleSiteConfig};
use super::store::Site;
use super::{KmePairConfig, KmeSiteConfig, LinkConfig};
use qmeta_config::{ConfigError, ConfigErrors, Document, Section};
use std::path::Path;
use zeroize::Zeroizing;

/// Reads and validates a KME pair config. Credential files are not
/// required to exist yet (they may be generated after loading);
/// [`super::start_pair`] reports a missing one with its path. A
/// single-site file is refused here: read it with [`load`].
pub fn load_config(path: &Path) -> Result<KmePairConfig, ConfigErrors> {
    match load(path)? {
        KmeConfig::Pair { pair, .. } => Ok(pair),
        KmeConfig::Site(_) => {
            Err(one_error(path, "site", "a single-site configuration: start it with qmeta_qkd::kme::start"))
        }
    }
}

/// Reads and validates any `kme.toml`: a pair, or one site of a pair.
pub fn load(path: &Path) -> Result<KmeConfig, ConfigErrors> {
    let doc = Document::load(path)?;
    // Floats are read from the raw table (the shared reader has no float getter).
    let raw: toml::Table = std::fs::read_to_string(path).ok().and_then(|t| t.parse().ok()).unwrap_or_default();
    from_parts(&doc, &raw)
}

fn one_error(path: &Path, key: &str, message: &str) -> ConfigErrors {
    ConfigErrors(vec![ConfigError { file: path.display().to_string(), key: key.into(), message: message.into() }])
}

#[cfg(test)]
pub(super) fn from_document(doc: &Document, text: &str) -> Result<KmeConfig, ConfigErrors> {
    from_parts(doc, &text.parse().unwrap_or_default())
}

fn from_parts(doc: &Document, raw: &toml::Table) -> Result<KmeConfig, ConfigErrors> {
    let root = doc.root();
    let site = match root.opt_str("site").as_deref() {
        None => None,
        Some("a") => Some(Site::A),
        Some("b") => Some(Site::B),
        Some(other) => {
            root.error("site", format!("expected \"a\" or \"b\", found {other:?}"));
            None
        }
    };
    let single = root.has("site");
    let raw_link = raw.get("link").and_then(|v| v.as_table());
    let link = match root.opt_table("link") {
        Some(t) => read_link(&t, raw_link),
        None => Some(LinkParts::default()),
    };
    let full = |name: &str| -> Option<(KmeSiteConfig, Quirks)> {
        let t = root.table(name)?;
        read_site(&t)
    };
    let cfg = if single {
        let local_name = if site == Some(Site::B) { "b" } else { "a" };
        let peer_name = if local_name == "a" { "b" } else { "a" };
        let local = full(local_name);
        let peer = root.table(peer_name).and_then(|t| read_peer(&t));
        match (site, local, peer, link) {
            (Some(site), Some((local, quirks)), Some(peer), Some(link)) => {
                single_site(&root, site, local, quirks, peer, link)
            }
            _ => None,
        }
    } else {
        let a = full("a");
        let b = full("b");
        match (a, b, link) {
            (Some((a, qa)), Some((b, qb)), Some(link)) => {
                if let Some(k) = link.channel_key {
                    root.error(&format!("link.{k}"), "only for a single site (set `site`)");
                }
                let pair = KmePairConfig { a, b, link: link.link };
                for (key, message) in pair.site_problems() {
                    root.error(&key, message);
                }
                Some(KmeConfig::Pair {
                    pair,
                    options: PairOptions {
                        kind: link.kind,
                        quirks_a: qa,
                        quirks_b: qb,
                        max_sae_id_count: link.max_sae_id_count,
                    },
                })
            }
            _ => None,
        }
    };
    root.finish()?;
    // Every getter that returned None recorded an error, so `finish` failed.
    cfg.ok_or_else(|| {
        ConfigErrors(vec![ConfigError {
            file: String::new(),
            key: String::new(),
            message: "incomplete KME configuration".into(),
        }])
    })
}

fn single_site(
    root: &Section,
    site: Site,
    local: KmeSiteConfig,
    quirks: Quirks,
    peer: PeerSite,
    link: LinkParts,
) -> Option<KmeConfig> {
    let mut ok = true;
    let mut err = |key: &str, m: &str| {
        root.error(key, m.to_string());
        ok = false;
    };
    let bb84 = match link.kind {
        LinkKind::Bb84(b) => Some(b),
        LinkKind::Generator => {
            err("link.kind", "a single site needs kind = \"bb84\"");
            None
        }
    };
    if !link.psk_given {
        err("link.psk", "a single site needs psk or psk_file (shared with the peer KME)");
    }
    if link.channel.is_none() {
        err("link.listen", "a single site needs listen or peer");
    }
    if local.saes.is_empty() || peer.saes.is_empty() {
        err("saes", "at least one SAE id is needed at each site");
    }
    if peer.kme_id == local.kme_id {
        err("kme_id", "the two sites need different kme_id");
    }
    if let Some(dup) = peer.saes.iter().find(|s| local.saes.contains(s)) {
        err("saes", &format!("SAE {dup:?} is attached to both KMEs"));
    }
    if !ok {
        return None;
    }
    Some(KmeConfig::Site(Box::new(SingleSiteConfig {
        site,
        local,
        peer,
        channel: link.channel?,
        link: link.link,
        bb84: bb84?,
        quirks,
        max_sae_id_count: link.max_sae_id_count,
    })))
}

fn u32_key(t: &Section, key: &str, default: u32, range: std::ops::RangeInclusive<i64>) -> Option<u32> {
    if !t.has(key) {
        // Reading it marks the key as known, so deny_unknown stays quiet.
        t.opt_int(key, range);
        return Some(default);
    }
    t.opt_int(key, range).map(|v| v as u32)
}

/// What `[link]` says.
#[derive(Default)]
struct LinkParts {
    link: LinkConfig,
    kind: LinkKind,
    max_sae_id_count: u32,
    channel: Option<PeerChannel>,
    /// The channel key given, if any (for "only for a single site").
    channel_key: Option<&'static str>,
    psk_given: bool,
}

const LINK_KEYS: &[&str] = &[
    "kind",
    "key_rate",
    "max_key_count",
    "key_size",
    "min_key_size",
    "max_key_size",
    "max_key_per_request",
    "max_sae_id_count",
    "seed",
    "intrinsic_qber",
    "detection_prob",
    "eve_fraction",
    "cascade",
    "block_bits",
    "psk",
    "psk_file",
    "listen",
    "peer",
];

/// Most additional slaves a request may name.
pub const MAX_SAE_ID_COUNT: u32 = 64;

fn float_key(t: &Section, raw: Option<&toml::Table>, key: &str, default: f64) -> Option<f64> {
    match raw.and_then(|r| r.get(key)) {
        None => Some(default),
        Some(toml::Value::Float(f)) => Some(*f),
        Some(toml::Value::Integer(i)) => Some(*i as f64),
        Some(_) => {
            t.error(key, "expected a number");
            None
        }
    }
}

fn read_link(t: &Section, raw: Option<&toml::Table>) -> Option<LinkParts> {
    let d = LinkConfig::default();
    let key_rate = u32_key(t, "key_rate", d.key_rate, 0..=i64::from(super::MAX_KEY_RATE));
    let max_key_count = u32_key(t, "max_key_count", d.max_key_count, 1..=i64::from(super::MAX_KEY_COUNT));
    let bits = 8..=i64::from(super::MAX_KEY_SIZE_BITS);
    let key_size = u32_key(t, "key_size", d.key_size, bits.clone());
    let min_key_size = u32_key(t, "min_key_size", d.min_key_size, bits.clone());
    let max_key_size = u32_key(t, "max_key_size", d.max_key_size, bits);
    let max_key_per_request =
        u32_key(t, "max_key_per_request", d.max_key_per_request, 1..=i64::from(super::MAX_KEYS_PER_REQUEST));
    let max_sae_id_count = u32_key(t, "max_sae_id_count", 0, 0..=i64::from(MAX_SAE_ID_COUNT));
    let seed = t.opt_int("seed", 0..=i64::MAX).map(|s| s as u64);
    let kind = t.opt_str("kind");
    let db = Bb84Config::default();
    let intrinsic_qber = float_key(t, raw, "intrinsic_qber", db.intrinsic_qber);
    let detection_prob = float_key(t, raw, "detection_prob", db.detection_prob);
    let eve_fraction = float_key(t, raw, "eve_fraction", db.eve_fraction);
    let cascade = match t.opt_str("cascade").as_deref() {
        None | Some("yan") => Some(Cascade::Yan),
        Some("original") => Some(Cascade::Original),
        Some(other) => {
            t.error("cascade", format!("expected \"yan\" or \"original\", found {other:?}"));
            None
        }
    };
    let block_bits = t
        .opt_int("block_bits", super::setup::MIN_BLOCK_BITS as i64..=super::setup::MAX_BLOCK_BITS as i64)
        .map(|v| v as usize);
    let block_bits_ok = block_bits.is_some() || !t.has("block_bits");
    let psk = read_psk(t);
    let listen = t.opt_socket_addr("listen");
    let peer = t.opt_socket_addr("peer");
    let (channel, channel_key) = match (listen, peer) {
        (Some(_), Some(_)) => {
            t.error("peer", "give either listen or peer, not both");
            (None, Some("peer"))
        }
        (Some(a), None) => (Some(PeerChannel::Listen(a)), Some("listen")),
        (None, Some(a)) => (Some(PeerChannel::Connect(a)), Some("peer")),
        (None, None) => (None, None),
    };
    // Our own unknown-key check: float keys are read from the raw table,
    // which the shared reader does not see as used.
    if let Some(raw) = raw {
        for k in raw.keys() {
            if !LINK_KEYS.contains(&k.as_str()) {
                t.error(k, "unknown key");
            }
        }
    }
    // Cross-checks run on what was readable (defaults standing in for bad
    // values) so that they are reported together with the other errors.
    let filled = LinkConfig {
        key_rate: key_rate.unwrap_or(d.key_rate),
        max_key_count: max_key_count.unwrap_or(d.max_key_count),
        key_size: key_size.unwrap_or(d.key_size),
        max_key_size: max_key_size.unwrap_or(d.max_key_size),
        min_key_size: min_key_size.unwrap_or(d.min_key_size),
        max_key_per_request: max_key_per_request.unwrap_or(d.max_key_per_request),
        seed,
    };
    for (key, message) in filled.problems() {
        t.error(key, message);
    }
    let psk_given = matches!(psk, Some(Some(_)));
    let bb84 = Bb84Config {
        intrinsic_qber: intrinsic_qber.unwrap_or(db.intrinsic_qber),
        detection_prob: detection_prob.unwrap_or(db.detection_prob),
        eve_fraction: eve_fraction.unwrap_or(db.eve_fraction),
        cascade: cascade.unwrap_or_default(),
        block_bits: block_bits.unwrap_or(db.block_bits),
        psk: psk.clone().flatten(),
    };
    for (key, message) in bb84.problems() {
        t.error(key, message);
    }
    let kind = match kind.as_deref() {
        None | Some("bb84") => Some(LinkKind::Bb84(bb84)),
        Some("generator") => Some(LinkKind::Generator),
        Some(other) => {
            t.error("kind", format!("expected \"bb84\" or \"generator\", found {other:?}"));
            None
        }
    };
    key_rate?;
    max_key_count?;
    key_size?;
    max_key_size?;
    min_key_size?;
    max_key_per_request?;
    intrinsic_qber?;
    detection_prob?;
    eve_fraction?;
    cascade?;
    psk?;
    block_bits_ok.then_some(())?;
    Some(LinkParts { link: filled, kind: kind?, max_sae_id_count: max_sae_id_count?, channel, channel_key, psk_given })
}

/// `psk` (hex) or `psk_file` (raw bytes): `Some(None)` when neither is
/// given, `None` after an error.
fn read_psk(t: &Section) -> Option<Option<Zeroizing<Vec<u8>>>> {
    let text = t.opt_str("psk").map(Zeroizing::new);
    let file = t.opt_path("psk_file", false);
    match (text, file) {
        (Some(_), Some(_)) => {
            t.error("psk_file", "give either psk or psk_file, not both");
            None
        }
        (Some(hex_text), None) => {
            let mut out = Zeroizing::new(vec![0u8; hex_text.len() / 2]);
            match hex::decode_to_slice(hex_text.trim(), &mut out[..]) {
                Ok(()) => Some(Some(out)),
                Err(_) => {
                    // Never echo the secret.
                    t.error("psk", "expected hex digits");
                    None
                }
            }
        }
        (None, Some(path)) => match std::fs::read(&path) {
            Ok(bytes) => Some(Some(Zeroizing::new(bytes))),
            Err(e) => {
                t.error("psk_file", format!("{}: {e}", path.display()));
                None
            }
        },
        (None, None) => Some(None),
    }
}

fn read_saes(t: &Section) -> Option<Vec<String>> {
    let saes = t.strings("saes");
    if let Some(list) = &saes {
        if list.iter().any(|s| s.is_empty() || s.len() > 255) {
            t.error("saes", "SAE ids must be 1..=255 characters");
        }
    }
    saes
}

fn read_kme_id(t: &Section) -> Option<String> {
    let kme_id = t.str("kme_id");
    if let Some(id) = &kme_id {
        if rustls_pki_types::ServerName::try_from(id.as_str()).is_err() {
            t.error("kme_id", format!("{id:?} is not a DNS name or IP address"));
        }
    }
    kme_id
}

fn read_site(t: &Section) -> Option<(KmeSiteConfig, Quirks)> {
    let kme_id = read_kme_id(t);
    let listen = t.socket_addr("listen");
    let cert = t.path("cert", false);
    let key = t.path("key", false);
    let client_ca = t.path("client_ca", false);
    let saes = read_saes(t);
    let quirks = read_quirks(t);
    t.deny_unknown();
    Some((
        KmeSiteConfig { kme_id: kme_id?, listen: listen?, cert: cert?, key: key?, client_ca: client_ca?, saes: saes? },
        quirks?,
    ))
}

fn read_quirks(t: &Section) -> Option<Quirks> {
    let names = t.opt_strings("quirks").unwrap_or_default();
    match Quirks::parse(&names) {
        Ok(q) => Some(q),
        Err(bad) => {
            let known: Vec<&str> = super::quirks::Quirk::ALL.iter().map(|(_, n)| *n).collect();
            t.error("quirks", format!("unknown quirk(s) {bad:?}; known: {}", known.join(", ")));
            None
        }
    }
}

/// The peer's section in single-site mode: only its id and SAEs matter;
/// the rest (the same file may serve both processes) is read and ignored.
fn read_peer(t: &Section) -> Option<PeerSite> {
    let kme_id = read_kme_id(t);
    let saes = read_saes(t);
    t.opt_socket_addr("listen");
    for k in ["cert", "key", "client_ca"] {
        t.opt_path(k, false);
    }
    t.opt_strings("quirks");
    t.deny_unknown();
    Some(PeerSite { kme_id: kme_id?, saes: saes? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_with_its_key() {
        let text = r#"
            [link]
            key_size = 100
            max_key_per_request = 0
            colour = "blue"
            [a]
            kme_id = "kme-a"
            listen = "nowhere"
            cert = "a.crt"
            key = "a.key"
            client_ca = "ca.crt"
            saes = ["lb"]
            [b]
            kme_id = "kme-b"
            listen = "127.0.0.1:8444"
            key = "b.key"
            client_ca = "ca.crt"
            saes = "be"
        "#;
        let doc = Document::parse("kme.toml", text).unwrap();
        let errs = from_document(&doc, text).unwrap_err();
        for key in ["link.key_size", "link.max_key_per_request", "link.colour", "a.listen", "b.cert", "b.saes"] {
            assert!(errs.mentions(key), "missing {key} in:\n{errs}");
        }
        assert_eq!(errs.len(), 6, "{errs}");
    }

    #[test]
    fn cross_checks_and_defaults() {
        let text = r#"
            [link]
            key_size = 100
            [a]
            kme_id = "kme"
            listen = "127.0.0.1:8443"
            cert = "a.crt"
            key = "a.key"
            client_ca = "ca.crt"
            saes = ["lb"]
            [b]
            kme_id = "kme"
            listen = "127.0.0.1:8443"
            cert = "b.crt"
            key = "b.key"
            client_ca = "ca.crt"
            saes = ["lb"]
        "#;
        let doc = Document::parse("/etc/qmeta/kme.toml", text).unwrap();
        let errs = from_document(&doc, text).unwrap_err();
        for key in ["link.key_size", "b.kme_id", "b.saes", "b.listen"] {
            assert!(errs.mentions(key), "missing {key} in:\n{errs}");
        }
        let ok = r#"
            [link]
            key_rate = 5
            [a]
            kme_id = "kme-a"
            listen = "127.0.0.1:8443"
            cert = "a.crt"
            key = "a.key"
            client_ca = "ca.crt"
            saes = ["lb"]
            [b]
            kme_id = "kme-b"
            listen = "127.0.0.1:8444"
            cert = "b.crt"
            key = "b.key"
            client_ca = "ca.crt"
            saes = ["be-1", "be-2"]
        "#;
        let cfg = match from_document(&Document::parse("/etc/qmeta/kme.toml", ok).unwrap(), ok) {
            Ok(KmeConfig::Pair { pair, options }) => {
                assert!(matches!(options.kind, LinkKind::Bb84(_)), "bb84 is the default");
                pair
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(cfg.b.saes, vec!["be-1".to_string(), "be-2".into()]);
        assert_eq!(cfg.link.key_rate, 5);
        assert_eq!(cfg.link.key_size, 256, "default");
        assert_eq!(cfg.a.cert, Path::new("/etc/qmeta/a.crt"));
        assert_eq!(cfg.b.listen.port(), 8444);
    }
}
