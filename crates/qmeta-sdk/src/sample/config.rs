use super::SampleBackendConfig;
use qmeta_config::{ConfigErrors, Document, Section};
use std::path::Path;

/// Reads a sample backend config file. Every problem is reported at once,
/// each with its dotted key; relative paths are resolved against the file's
/// directory and must exist.
///
/// ```toml
/// name = "backend-1"              # reported in every answer
/// listen = "127.0.0.1:9443"
/// cert = "backend-1.crt"          # this backend's server certificate (PEM)
/// key = "backend-1.key"
/// lb_ca = "lb-ca.crt"             # CA of the LB's per-connection certificates
/// lb_sae_id = "sae-lb"            # the LB's SAE id (master SAE of the keys)
///
/// [kme]                           # this backend's own KME (ETSI GS QKD 014)
/// url = "https://127.0.0.1:8444"
/// kme_id = "kme-b"                # name expected in the KME's certificate
/// ca = "kme-ca.crt"
/// cert = "sae-backend-1.crt"      # this backend's SAE certificate (CN = SAE id)
/// key = "sae-backend-1.key"
/// timeout = "5s"                  # optional, default 5s
/// ```
pub fn load_config(path: &Path) -> Result<SampleBackendConfig, ConfigErrors> {
    let doc = Document::load(path)?;
    let root = doc.root();
    let name = non_empty(&root, "name");
    let listen = root.socket_addr("listen");
    let cert = root.path("cert", true);
    let key = root.path("key", true);
    let lb_ca = root.path("lb_ca", true);
    let lb_sae_id = non_empty(&root, "lb_sae_id");
    let kme = root.table("kme").and_then(|t| qmeta_qkd::client::read_config_section(&t));
    root.finish()?;
    // Every getter that returned None recorded an error, so after `finish`
    // succeeded all are Some; the else branch is defensive only.
    let (Some(name), Some(listen), Some(cert), Some(key), Some(lb_ca), Some(lb_sae_id), Some(kme)) =
        (name, listen, cert, key, lb_ca, lb_sae_id, kme)
    else {
        return Err(ConfigErrors(vec![qmeta_config::ConfigError {
            file: path.display().to_string(),
            key: String::new(),
            message: "incomplete configuration".into(),
        }]));
    };
    Ok(SampleBackendConfig { name, listen, cert, key, lb_ca, kme, lb_sae_id })
}

fn non_empty(s: &Section, key: &str) -> Option<String> {
    let v = s.str(key)?;
    if v.trim().is_empty() {
        s.error(key, "must not be empty");
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_files(dir: &Path) {
        for f in ["b.crt", "b.key", "lb-ca.crt", "kme-ca.crt", "sae.crt", "sae.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
    }

    #[test]
    fn reads_a_good_file() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path());
        let text = r#"
            name = "backend-1"
            listen = "127.0.0.1:9443"
            cert = "b.crt"
            key = "b.key"
            lb_ca = "lb-ca.crt"
            lb_sae_id = "sae-lb"
            [kme]
            url = "https://127.0.0.1:8444"
            kme_id = "kme-b"
            ca = "kme-ca.crt"
            cert = "sae.crt"
            key = "sae.key"
            timeout = "2s"
        "#;
        let path = dir.path().join("backend.toml");
        std::fs::write(&path, text).unwrap();
        let c = load_config(&path).unwrap();
        assert_eq!(c.name, "backend-1");
        assert_eq!(c.listen, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(c.cert, dir.path().join("b.crt"));
        assert_eq!(c.lb_ca, dir.path().join("lb-ca.crt"));
        assert_eq!(c.lb_sae_id, "sae-lb");
        assert_eq!(c.kme.url, "https://127.0.0.1:8444");
        assert_eq!(c.kme.kme_id, "kme-b");
        assert_eq!(c.kme.key, dir.path().join("sae.key"));
        assert_eq!(c.kme.timeout, std::time::Duration::from_secs(2));
    }

    #[test]
    fn reports_every_error_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path());
        let text = r#"
            name = ""
            listen = "nope"
            cert = "missing.crt"
            key = "b.key"
            colour = "blue"
            [kme]
            url = "http://127.0.0.1:8444"
            ca = "kme-ca.crt"
            cert = "sae.crt"
            key = "sae.key"
            timeout = "soon"
            extra = 1
        "#;
        let path = dir.path().join("backend.toml");
        std::fs::write(&path, text).unwrap();
        let errs = load_config(&path).err().unwrap();
        let keys = [
            "name",
            "listen",
            "cert",
            "lb_ca",
            "lb_sae_id",
            "colour",
            "kme.url",
            "kme.kme_id",
            "kme.timeout",
            "kme.extra",
        ];
        for k in keys {
            assert!(errs.mentions(k), "no error for {k}: {errs}");
        }
        assert_eq!(errs.len(), keys.len(), "{errs}");
    }

    #[test]
    fn missing_kme_table_and_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path());
        let path = dir.path().join("backend.toml");
        let text = "name='a'\nlisten='127.0.0.1:1'\ncert='b.crt'\nkey='b.key'\nlb_ca='lb-ca.crt'\nlb_sae_id='s'\n";
        std::fs::write(&path, text).unwrap();
        let errs = load_config(&path).err().unwrap();
        assert!(errs.mentions("kme"), "{errs}");
        assert_eq!(errs.len(), 1, "{errs}");
        let errs = load_config(&dir.path().join("absent.toml")).err().unwrap();
        assert!(errs.to_string().contains("absent.toml"), "{errs}");
    }
}
