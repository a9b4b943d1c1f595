//! `qmeta cert inspect`: print an LB certificate's metadata extensions and,
//! with a backend's KME credentials, decrypt them.

use std::path::Path;

pub async fn run(file: &Path, backend_config: Option<&Path>) -> i32 {
    let der = match read_cert(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("qmeta: {}: {e}", file.display());
            return 1;
        }
    };
    let env = match qmeta_cert::parse(&der) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("qmeta: {}: {e}", file.display());
            return 1;
        }
    };
    println!("serial:          {}", env.serial_hex);
    println!("format version:  {}", env.format_version);
    println!("QKD key id:      {}", env.key_id);
    println!("state version:   {}", env.state_version);
    println!("valid:           {} .. {} (unix seconds)", env.not_before, env.not_after);
    let ids: Vec<String> = env.field_ids().iter().map(|f| format!("{f} ({})", f.get())).collect();
    println!("fields:          {}", if ids.is_empty() { "(none)".into() } else { ids.join(", ") });
    if !env.dropped.is_empty() {
        let d: Vec<String> = env.dropped.iter().map(|f| f.name()).collect();
        println!("dropped (size):  {}", d.join(", "));
    }
    let Some(cfg_path) = backend_config else {
        println!("values:          encrypted (pass --backend-config to fetch the key from the backend's KME)");
        return 0;
    };
    let cfg = match qmeta_sdk::sample::load_config(cfg_path) {
        Ok(c) => c,
        Err(e) => return crate::cli::config_failed(&e),
    };
    let client = match qmeta_qkd::client::KmeClient::new(cfg.kme.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qmeta: KME client: {e}");
            return 1;
        }
    };
    let keys = match client.dec_keys(&cfg.lb_sae_id, &[env.key_id]).await {
        Ok(k) => k,
        Err(e) => {
            eprintln!(
                "qmeta: fetching key {}: {e}\n  (the key can be fetched only by the backend the certificate was minted for — check that \
                 --backend-config is that backend's — and only once: a backend that already received this \
                 certificate has consumed it)",
                env.key_id
            );
            return 1;
        }
    };
    let Some(key) = keys.first() else {
        eprintln!("qmeta: the KME returned no key for {}", env.key_id);
        return 1;
    };
    match env.open(&key.bytes) {
        Ok(values) => {
            for (f, v) in values {
                println!("  {:<24} {}", f.name(), v.to_display_string());
            }
            0
        }
        Err(e) => {
            eprintln!("qmeta: {}: {e}", file.display());
            1
        }
    }
}

fn read_cert(file: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    if bytes.starts_with(b"-----BEGIN") {
        let certs = qmeta_pki::load_certs(file).map_err(|e| e.to_string())?;
        return Ok(certs[0].to_vec());
    }
    Ok(bytes)
}
