//! Key rotation and failing closed, end to end.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[test]
fn connections_across_rotations_all_decrypt() {
    let d = Deployment::init();
    d.edit("lb.toml", "rotation = \"60s\"", "rotation = \"1s\"");
    d.edit("lb.toml", "grace = \"30s\"", "grace = \"3s\"");
    let (_kme, _a, _b, lb) = d.start_core();
    let mut keys = BTreeSet::new();
    let mut n = 0;
    let start = Instant::now();
    // Bounded: at most 200 connections or 8 seconds.
    while start.elapsed() < Duration::from_secs(8) && n < 200 {
        let json = try_https_get(&d, "/").unwrap_or_else(|e| panic!("connection {n} failed: {e}\n{}", lb.logs()));
        assert_eq!(fields(&json)["src_ip"], "127.0.0.1", "{json}");
        keys.insert((
            json["backend"].as_str().unwrap().to_string(),
            json["metadata"]["key_id"].as_str().unwrap().to_string(),
        ));
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let per_backend = |b: &str| keys.iter().filter(|(k, _)| k == b).count();
    assert!(per_backend("app-a") >= 3 && per_backend("app-b") >= 3, "expected several rotations, saw {keys:?}");
    eventually("rotations on record", Duration::from_secs(5), || {
        (d.audit_log().matches("\"event\":\"key_rotated\"").count() >= 4).then_some(())
    });
}

#[test]
fn no_key_means_no_connection_until_the_kme_is_back() {
    let d = Deployment::init();
    d.edit("lb.toml", "rotation = \"60s\"", "rotation = \"1s\"");
    d.edit("lb.toml", "grace = \"30s\"", "grace = \"1s\"");
    let (kme, _a, _b, lb) = d.start_core();
    let json = try_https_get(&d, "/").unwrap();
    assert_eq!(fields(&json)["src_ip"], "127.0.0.1");

    kme.stop();
    let refused =
        eventually("connections refused once keys expire", Duration::from_secs(15), || try_https_get(&d, "/").err());
    assert!(!refused.is_empty());
    lb.wait_log("connection refused: no backend usable", Duration::from_secs(5));
    lb.wait_log("no valid QKD key (fail closed)", Duration::from_secs(5));
    // The audit writer is off the connection path: give it a moment.
    eventually("refusal and expiry audited", Duration::from_secs(5), || {
        let log = d.audit_log();
        (log.contains("\"event\":\"connection_refused\"") && log.contains("\"event\":\"key_unavailable\""))
            .then_some(())
    });

    let metrics = http_get(&format!("127.0.0.1:{}", d.port + 3), "/metrics").unwrap();
    assert!(!metrics.contains("qmeta_kme_errors_total{backend=\"app-a\"} 0"), "{metrics}");
    assert!(
        metrics.contains("qmeta_connections_refused_total") && !metrics.contains("qmeta_connections_refused_total 0")
    );

    let _kme = d.kme();
    let json = eventually("connections succeed again", Duration::from_secs(30), || try_https_get(&d, "/").ok());
    assert_eq!(fields(&json)["src_ip"], "127.0.0.1");
}

#[test]
fn an_intercept_resend_attack_drains_the_kme_and_the_lb_fails_closed() {
    let d = Deployment::init();
    d.edit("kme.toml", "max_key_count = 100000", "max_key_count = 100000\neve_fraction = 1.0");
    let _kme = d.kme();
    let _a = d.backend('a');
    let _b = d.backend('b');
    // The LB starts (it cannot get keys) and refuses every connection.
    let lb_cfg = d.path("lb.toml");
    let lb = Proc::spawn("lb", &["lb", "--config", lb_cfg.to_str().unwrap()], "qmeta lb:");
    assert!(try_https_get(&d, "/").is_err(), "a connection was served without a QKD key");
    lb.wait_log("no valid QKD key (fail closed)", Duration::from_secs(10));
    lb.wait_log("503", Duration::from_secs(10));
    eventually("refusal audited", Duration::from_secs(5), || {
        d.audit_log().contains("\"event\":\"connection_refused\"").then_some(())
    });
    assert!(!d.audit_log().contains("\"event\":\"cert_issued\""), "no certificate may be issued under attack");
    // The KME reports why: the link's QBER is about 25 %.
    let status = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(d.pki("qkd-ca.crt"))
        .arg("--cert")
        .arg(d.pki("sae-lb-1.crt"))
        .arg("--key")
        .arg(d.pki("sae-lb-1.key"))
        .args(["--resolve", &format!("kme-a:{}:127.0.0.1", d.port - 2)])
        .arg(format!("https://kme-a:{}/api/v1/keys/sae-app-a/status", d.port - 2))
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&status.stdout);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(json["stored_key_count"], 0, "{json}");
    let qber = json["status_extension"]["qmeta_qber"].as_f64().unwrap();
    assert!((qber - 0.25).abs() < 0.03, "intercept-resend should show QBER ≈ 25 %, got {qber}");
    assert_eq!(json["status_extension"]["qmeta_blocks_ok"], 0, "{json}");
    eprintln!("KME status under attack: {json}");
}
