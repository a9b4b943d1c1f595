//! The operator commands: `qmeta cert inspect` and `qmeta audit verify`.

mod common;
use common::*;
use qmeta_fields::{FieldId, FieldValue};
use qmeta_qkd::client::{KmeClient, KmeClientConfig};
use std::process::Command;
use std::time::Duration;

/// Mints a certificate the way the LB does, under a fresh key from site A
/// (master = the LB's SAE, slave = app-a's SAE), and writes it as PEM.
fn mint_for_app_a(d: &Deployment) -> std::path::PathBuf {
    qmeta_pki::install_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let kme = KmeClient::new(KmeClientConfig {
        url: format!("https://127.0.0.1:{}", d.port - 2),
        kme_id: "kme-a".into(),
        ca: d.pki("qkd-ca.crt"),
        cert: d.pki("sae-lb-1.crt"),
        key: d.pki("sae-lb-1.key"),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    // A freshly started KME may not have distilled key yet (503): retry.
    let key = eventually("a key from KME A", Duration::from_secs(30), || {
        rt.block_on(kme.enc_keys("sae-app-a", 1, 256)).ok().map(|mut k| k.remove(0))
    });
    let issuer = qmeta_cert::Issuer::from_pem(
        &std::fs::read_to_string(d.pki("lb-ca.crt")).unwrap(),
        &std::fs::read_to_string(d.pki("lb-ca.key")).unwrap(),
    )
    .unwrap();
    let leaf = qmeta_cert::LeafKey::generate(qmeta_cert::LeafAlg::P256).unwrap();
    let fields = vec![
        (FieldId::SRC_IP, FieldValue::Ip("192.0.2.44".parse().unwrap())),
        (FieldId::SNI, FieldValue::Text("shop.example".into())),
    ];
    let minted = qmeta_cert::mint(
        &issuer,
        &leaf,
        &qmeta_cert::MintRequest {
            serial: [7; 16],
            now_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            validity_secs: 300,
            subject_cn: "qmeta test",
            key_id: key.id,
            qkd_key: &key.bytes,
            state_version: 3,
            fields: &fields,
        },
    )
    .unwrap();
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", base64_lines(&minted.der));
    let path = d.path("minted.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n")
}

#[test]
fn cert_inspect_prints_and_decrypts() {
    let d = Deployment::init();
    let _kme = d.kme();
    let pem = mint_for_app_a(&d);

    let out = Command::new(BIN).args(["cert", "inspect"]).arg(&pem).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state version:   3"), "{text}");
    assert!(text.contains("src_ip (1), sni (6)"), "{text}");
    assert!(!text.contains("shop.example"), "values stay encrypted without the key: {text}");

    let out = Command::new(BIN)
        .args(["cert", "inspect"])
        .arg(&pem)
        .arg("--backend-config")
        .arg(d.path("backend-a.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("192.0.2.44") && text.contains("shop.example"), "{text}");

    // openssl accepts the certificate for client authentication.
    let out = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(d.pki("lb-ca.crt"))
        .arg(&pem)
        .output()
        .expect("openssl must be installed (.ci/run installs it)");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"), "{out:?}");
}

#[test]
fn audit_verify_names_the_first_bad_line() {
    let d = Deployment::init();
    let (_kme, _a, _b, lb) = d.start_core();
    for _ in 0..3 {
        try_https_get(&d, "/").unwrap();
    }
    lb.stop();
    let log_path = d.path("audit.log");
    let out = Command::new(BIN).args(["audit", "verify"]).arg(&log_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 5, "{text}");

    // Change one record: line 3.
    let mut changed: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    changed[2] = changed[2].replacen("\"seq\":", "\"seq\": ", 1);
    std::fs::write(&log_path, changed.join("\n") + "\n").unwrap();
    let out = Command::new(BIN).args(["audit", "verify"]).arg(&log_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") || err.contains("line 4"), "{err}");

    // Remove a record.
    let mut removed: Vec<&str> = lines.clone();
    removed.remove(1);
    std::fs::write(&log_path, removed.join("\n") + "\n").unwrap();
    let out = Command::new(BIN).args(["audit", "verify"]).arg(&log_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{out:?}");

    // Swap two records.
    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(2, 3);
    std::fs::write(&log_path, swapped.join("\n") + "\n").unwrap();
    let out = Command::new(BIN).args(["audit", "verify"]).arg(&log_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"), "{out:?}");
}

#[test]
fn qkd_simulate_prints_the_table_and_writes_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("rate.svg");
    let out = Command::new(BIN)
        .args(["qkd", "simulate", "--qber", "0.02", "--blocks", "2", "--n", "10000", "--seed", "7", "--plot"])
        .arg(&plot)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2.00%"), "{text}");
    assert!(text.lines().filter(|l| l.ends_with("0/2")).count() == 2, "no block aborts at 2 %: {text}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(100)]);
    // A full intercept-resend attack produces no key.
    let out = Command::new(BIN)
        .args(["qkd", "simulate", "--qber", "0.0", "--eve", "1.0", "--blocks", "2", "--n", "10000", "--seed", "7"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().filter(|l| l.ends_with("2/2")).count() == 2, "every block aborts under attack: {text}");
}
