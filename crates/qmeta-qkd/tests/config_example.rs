//! The checked-in example parses with this crate's loader.

use std::path::Path;

#[test]
fn examples_kme_toml_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kme.toml");
    assert!(path.exists(), "{} is missing", path.display());
    let cfg = qmeta_qkd::kme::load_config(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.a.kme_id, "kme-a");
    assert_eq!(cfg.b.kme_id, "kme-b");
    assert!(cfg.a.listen.ip().is_loopback() && cfg.b.listen.ip().is_loopback());
    assert_ne!(cfg.a.listen, cfg.b.listen);
    assert!(!cfg.a.saes.is_empty() && !cfg.b.saes.is_empty());
    // Credential paths are resolved against the file's directory.
    assert!(cfg.a.cert.starts_with(path.parent().unwrap()), "{}", cfg.a.cert.display());
    assert!(cfg.link.problems().is_empty());
}

#[test]
fn load_config_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kme.toml");
    std::fs::write(
        &path,
        "[link]\nkey_size = 100\nmin_key_size = 7\n[a]\nkme_id = \"kme a\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let errs = qmeta_qkd::kme::load_config(&path).unwrap_err();
    for key in ["link.key_size", "link.min_key_size", "a.kme_id", "a.cert", "a.key", "a.client_ca", "a.saes", "b"] {
        assert!(errs.mentions(key), "missing {key} in:\n{errs}");
    }
    assert!(errs.to_string().contains("kme.toml"), "{errs}");
    let missing = qmeta_qkd::kme::load_config(&dir.path().join("nope.toml")).unwrap_err();
    assert_eq!(missing.len(), 1);
}
