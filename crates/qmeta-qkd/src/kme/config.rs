//! `kme.toml` → [`KmePairConfig`], reporting every bad key at once.
//!
//! ```toml
//! [link]                      # optional; defaults shown
//! key_rate = 1000             # keys of key_size per second
//! max_key_count = 100000
//! key_size = 256              # bits
//! min_key_size = 64
//! max_key_size = 1024
//! max_key_per_request = 128
//! # seed = 42                 # reproducible key stream (tests only)
//!
//! [a]                         # site A: the LB's KME
//! kme_id = "kme-a"            # DNS name in its certificate
//! listen = "127.0.0.1:8443"
//! cert = "kme-a.crt"          # paths are relative to this file
//! key = "kme-a.key"
//! client_ca = "ca.crt"        # SAE certificates must chain to it
//! saes = ["lb-1"]             # CNs of the SAE certificates attached here
//!
//! [b]                         # site B: the backends' KME, same keys
//! ```

use super::{KmePairConfig, KmeSiteConfig, LinkConfig};
use qmeta_config::{ConfigErrors, Document, Section};
use std::path::Path;

/// Reads and validates a KME pair config. Credential files are not
/// required to exist yet (they may be generated after loading);
/// [`super::start_pair`] reports a missing one with its path.
pub fn load_config(path: &Path) -> Result<KmePairConfig, ConfigErrors> {
    let doc = Document::load(path)?;
    from_document(&doc)
}

pub(super) fn from_document(doc: &Document) -> Result<KmePairConfig, ConfigErrors> {
    let root = doc.root();
    let link = match root.opt_table("link") {
        Some(t) => read_link(&t),
        None => Some(LinkConfig::default()),
    };
    let a = root.table("a").and_then(|t| read_site(&t));
    let b = root.table("b").and_then(|t| read_site(&t));
    let cfg = match (a, b, link) {
        (Some(a), Some(b), Some(link)) => Some(KmePairConfig { a, b, link }),
        _ => None,
    };
    if let Some(cfg) = &cfg {
        for (key, message) in cfg.site_problems() {
            root.error(&key, message);
        }
    }
    root.finish()?;
    // Every getter that returned None recorded an error, so `finish` failed.
    cfg.ok_or_else(|| {
        ConfigErrors(vec![qmeta_config::ConfigError {
            file: String::new(),
            key: String::new(),
            message: "incomplete KME configuration".into(),
        }])
    })
}

fn u32_key(
    t: &Section,
    key: &str,
    default: u32,
    range: std::ops::RangeInclusive<i64>,
) -> Option<u32> {
    if !t.has(key) {
        // Reading it marks the key as known, so deny_unknown stays quiet.
        t.opt_int(key, range);
        return Some(default);
    }
    t.opt_int(key, range).map(|v| v as u32)
}

fn read_link(t: &Section) -> Option<LinkConfig> {
    let d = LinkConfig::default();
    let key_rate = u32_key(
        t,
        "key_rate",
        d.key_rate,
        0..=i64::from(super::MAX_KEY_RATE),
    );
    let max_key_count = u32_key(
        t,
        "max_key_count",
        d.max_key_count,
        1..=i64::from(super::MAX_KEY_COUNT),
    );
    let bits = 8..=i64::from(super::MAX_KEY_SIZE_BITS);
    let key_size = u32_key(t, "key_size", d.key_size, bits.clone());
    let min_key_size = u32_key(t, "min_key_size", d.min_key_size, bits.clone());
    let max_key_size = u32_key(t, "max_key_size", d.max_key_size, bits);
    let max_key_per_request = u32_key(
        t,
        "max_key_per_request",
        d.max_key_per_request,
        1..=i64::from(super::MAX_KEYS_PER_REQUEST),
    );
    let seed = t.opt_int("seed", 0..=i64::MAX).map(|s| s as u64);
    t.deny_unknown();
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
    key_rate?;
    max_key_count?;
    key_size?;
    max_key_size?;
    min_key_size?;
    max_key_per_request?;
    Some(filled)
}

fn read_site(t: &Section) -> Option<KmeSiteConfig> {
    let kme_id = t.str("kme_id");
    if let Some(id) = &kme_id {
        if rustls_pki_types::ServerName::try_from(id.as_str()).is_err() {
            t.error("kme_id", format!("{id:?} is not a DNS name or IP address"));
        }
    }
    let listen = t.socket_addr("listen");
    let cert = t.path("cert", false);
    let key = t.path("key", false);
    let client_ca = t.path("client_ca", false);
    let saes = t.strings("saes");
    if let Some(list) = &saes {
        if list.iter().any(|s| s.is_empty() || s.len() > 255) {
            t.error("saes", "SAE ids must be 1..=255 characters");
        }
    }
    t.deny_unknown();
    Some(KmeSiteConfig {
        kme_id: kme_id?,
        listen: listen?,
        cert: cert?,
        key: key?,
        client_ca: client_ca?,
        saes: saes?,
    })
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
        let errs = from_document(&doc).unwrap_err();
        for key in [
            "link.key_size",
            "link.max_key_per_request",
            "link.colour",
            "a.listen",
            "b.cert",
            "b.saes",
        ] {
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
        let errs = from_document(&doc).unwrap_err();
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
        let cfg = from_document(&Document::parse("/etc/qmeta/kme.toml", ok).unwrap()).unwrap();
        assert_eq!(cfg.b.saes, vec!["be-1".to_string(), "be-2".into()]);
        assert_eq!(cfg.link.key_rate, 5);
        assert_eq!(cfg.link.key_size, 256, "default");
        assert_eq!(cfg.a.cert, Path::new("/etc/qmeta/a.crt"));
        assert_eq!(cfg.b.listen.port(), 8444);
    }
}
