//! `[listen] mode` and `[http]` parsing.

use crate::config::*;
use qmeta_config::ConfigErrors;
use qmeta_fields::FieldId;

/// Parses a minimal config plus `extra_listen` and `tail`; paths point
/// at empty files in a temporary directory (only existence is checked).
fn parse_with(extra_listen: &str, tail: &str) -> Result<LbConfig, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    for f in ["c.pem", "k.pem"] {
        std::fs::write(dir.path().join(f), "").unwrap();
    }
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:1\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n{extra_listen}\n\
         [control]\naddress = \"127.0.0.1:2\"\n\
         [kme]\nurl = \"https://127.0.0.1:3\"\nkme_id = \"k\"\nca = \"c.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [certificates]\nca_cert = \"c.pem\"\nca_key = \"k.pem\"\n\
         [upstream]\nca = \"c.pem\"\n[audit]\npath = \"audit.log\"\n{tail}\n\
         [[backend]]\nname = \"a\"\naddress = \"127.0.0.1:4\"\nsae_id = \"sae-a\"\n"
    );
    parse(dir.path().join("lb.toml").to_str().unwrap(), &text)
}

#[test]
fn tcp_is_the_default_mode() {
    let cfg = parse_with("", "").unwrap();
    assert_eq!(cfg.listen.mode, ListenMode::Tcp);
    assert_eq!(cfg.listen.alpn, ["http/1.1"]);
    assert!(!cfg.http.forward_headers);
    assert!(cfg.http.header_fields.is_empty());
}

#[test]
fn http_mode_and_header_fields() {
    let cfg = parse_with(
        "mode = \"http\"",
        "[http]\nforward_headers = true\n[[http.header_field]]\nheader = \"X-Tenant\"\nid = 1001\n",
    )
    .unwrap();
    assert_eq!(cfg.listen.mode, ListenMode::Http);
    assert_eq!(cfg.listen.alpn, ["h2", "http/1.1"]);
    assert!(cfg.http.forward_headers);
    assert_eq!(cfg.http.header_fields, vec![("x-tenant".to_string(), FieldId::new(1001).unwrap())]);
}

#[test]
fn bad_http_settings_are_all_reported() {
    let e = parse_with(
        "mode = \"quic\"",
        "[http]\nforward = 1\n[[http.header_field]]\nheader = \"X-Forwarded-For\"\nid = 1001\n\
         [[http.header_field]]\nheader = \"bad name\"\nid = 1002\n\
         [[http.header_field]]\nheader = \"a\"\nid = 5\n\
         [[http.header_field]]\nheader = \"b\"\nid = 1003\n[[http.header_field]]\nheader = \"c\"\nid = 1003\n",
    )
    .unwrap_err()
    .to_string();
    for key in [
        "listen.mode",
        "http.forward",
        "http.header_field[0].header",
        "http.header_field[1].header",
        "http.header_field[2].id",
        "http.header_field[4].id",
    ] {
        assert!(e.contains(key), "{key} missing from:\n{e}");
    }
    let e = parse_with("mode = \"http\"\nalpn = [\"spdy/3\"]", "").unwrap_err().to_string();
    assert!(e.contains("listen.alpn"), "{e}");
}
