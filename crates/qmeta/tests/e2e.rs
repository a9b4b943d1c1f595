//! End to end over loopback: real `qmeta` processes (KME pair, sample
//! backends, LB, agents) and real clients (rustls, curl).

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Waits until both agents' policies are in force (src_port is only sent
/// once the agents asked for it).
fn wait_for_policies(d: &Deployment) {
    for backend in ["app-a", "app-b"] {
        eventually(&format!("{backend} policy in force"), Duration::from_secs(30), || {
            let (json, _) = https_get(d, "localhost", "/");
            (json["backend"] == backend && fields(&json).contains_key("src_port")).then_some(())
        });
    }
}

#[test]
fn clients_get_their_own_socket_in_the_certificate() {
    let d = Deployment::init();
    let (_kme, _a, _b, lb) = d.start_core();
    let _agent_a = d.agent('a');
    let _agent_b = d.agent('b');
    wait_for_policies(&d);

    // rustls client: the decrypted source port is this socket's port.
    let mut seen = std::collections::BTreeSet::new();
    let mut client_ports = Vec::new();
    for _ in 0..4 {
        let before = now_ms();
        let (json, local) = https_get(&d, "localhost", "/hello");
        client_ports.push(local.port());
        let f = fields(&json);
        assert_eq!(f["src_ip"], "127.0.0.1", "{json}");
        assert_eq!(f["src_port"], local.port() as u64, "{json}");
        let ts = f["timestamp"].as_u64().unwrap();
        assert!(ts >= before.saturating_sub(1000) && ts <= now_ms() + 1000, "timestamp {ts} not now: {json}");
        assert_eq!(json["path"], "/hello");
        let md = &json["metadata"];
        assert_eq!(md["serial"].as_str().unwrap().len(), 32, "{json}");
        assert!(uuid::Uuid::parse_str(md["key_id"].as_str().unwrap()).is_ok(), "{json}");
        assert!(md["state_version"].as_u64().unwrap() >= 1, "{json}");
        seen.insert(json["backend"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "round robin should reach both backends: {seen:?}");

    // curl: same, with curl's own socket.
    for _ in 0..2 {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(d.pki("frontend-ca.crt"))
            .args(["-w", "\n%{local_port}", &format!("https://localhost:{}/curl", d.port)])
            .output()
            .expect("curl must be installed (.ci/run installs it)");
        assert!(out.status.success(), "curl failed: {}\n{}", String::from_utf8_lossy(&out.stderr), lb.logs());
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, port) = text.rsplit_once('\n').unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(fields(&json)["src_port"], port.trim().parse::<u64>().unwrap(), "{json}");
        assert_eq!(fields(&json)["src_ip"], "127.0.0.1");
    }

    // Every certificate issued is on record, and the chain verifies.
    let log = eventually("six certificates on record", Duration::from_secs(5), || {
        let log = d.audit_log();
        (log.lines().filter(|l| l.contains("\"event\":\"cert_issued\"")).count() >= 6).then_some(log)
    });
    for port in &client_ports {
        let addr = format!("127.0.0.1:{port}");
        assert!(!log.contains(&addr), "the audit log must not hold client address {addr}:\n{log}");
    }
    let out = Command::new(BIN).args(["audit", "verify"]).arg(d.path("audit.log")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn policy_change_by_sighup_reaches_the_certificate() {
    let d = Deployment::init();
    let (_kme, _a, _b, _lb) = d.start_core();
    let agent = d.agent('a');
    let _agent_b = d.agent('b');
    wait_for_policies(&d);
    let from_a = |d: &Deployment, sni: &str| {
        eventually("an answer from app-a", Duration::from_secs(20), || {
            let (json, _) = https_get(d, sni, "/");
            (json["backend"] == "app-a").then_some(json)
        })
    };
    let json = from_a(&d, "localhost");
    assert!(fields(&json).contains_key("sni"), "policy-a includes sni: {json}");
    assert_eq!(fields(&json)["sni"], "localhost");

    // Forbid SNI and ask for the destination port instead.
    d.write(
        "policy-a.toml",
        "required = [\"src_ip\", \"src_port\", \"timestamp\", \"dst_port\"]\npermissible = []\nforbidden = [\"sni\"]\n",
    );
    agent.signal("HUP");
    let json = eventually("policy reload applied", Duration::from_secs(20), || {
        let json = from_a(&d, "localhost");
        // The reload is a diff (EXCLUDE sni, INCLUDE dst_port, …): wait for all of it.
        let f = fields(&json);
        (!f.contains_key("sni") && f.contains_key("dst_port") && !f.contains_key("alpn")).then_some(json)
    });
    assert_eq!(fields(&json)["dst_port"], d.port as u64, "{json}");
    assert!(!fields(&json).contains_key("alpn"), "{json}");
}

#[test]
fn bad_clients_are_dropped_and_others_served() {
    let d = Deployment::init();
    let (_kme, _a, _b, lb) = d.start_core();
    // Non-TLS bytes.
    let mut s = std::net::TcpStream::connect(d.lb_addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"), "plaintext must not be proxied");
    // A client that closes mid-handshake: half a ClientHello.
    let mut s = std::net::TcpStream::connect(d.lb_addr()).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]).unwrap();
    drop(s);
    // A client that stalls: connects and sends nothing (left open).
    let _stalled = std::net::TcpStream::connect(d.lb_addr()).unwrap();
    lb.wait_log("client TLS handshake failed", Duration::from_secs(10));
    // Others are still served.
    let (json, _) = https_get(&d, "localhost", "/");
    assert_eq!(fields(&json)["src_ip"], "127.0.0.1");
}

#[test]
fn bad_config_names_every_wrong_key_and_exits_64() {
    let d = Deployment::init();
    let cfg = |f: &str| d.path(f).to_str().unwrap().to_string();
    let lb_listen = format!("address = \"127.0.0.1:{}\"", d.port);
    d.edit("lb.toml", &lb_listen, "address = \"nowhere\"");
    d.edit("lb.toml", "rotation = \"60s\"", "rotation = \"90s\"");
    d.edit("lb.toml", "leaf_alg = \"p256\"", "leaf_alg = \"rsa\"\ncolour = \"blue\"");
    let out = run_bounded(&["lb", "--config", &cfg("lb.toml")]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["`listen.address`", "`keys.rotation`", "`certificates.leaf_alg`", "`certificates.colour`"] {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }

    d.edit("kme.toml", "saes = [\"sae-lb-1\"]", "saes = \"sae-lb-1\"");
    let out = run_bounded(&["kme", "--config", &cfg("kme.toml")]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`a.saes`"), "{out:?}");

    d.edit("agent-a.toml", "lb_control = \"127.0.0.1:", "lb_control = \"127.0.0.1:no-port-");
    let out = run_bounded(&["agent", "--config", &cfg("agent-a.toml")]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`lb_control`"), "{out:?}");

    d.edit("backend-a.toml", "lb_sae_id = \"sae-lb-1\"", "lb_sae_id = 7");
    let out = run_bounded(&["backend", "--config", &cfg("backend-a.toml")]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`lb_sae_id`"), "{out:?}");

    // A missing file is a config error too.
    let out = run_bounded(&["lb", "--config", "/nonexistent/lb.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/lb.toml"));
}

#[test]
fn admin_api_reports_state_without_secrets() {
    let d = Deployment::init();
    let (_kme, _a, _b, _lb) = d.start_core();
    let _agent = d.agent('a');
    for _ in 0..4 {
        try_https_get(&d, "/").unwrap();
    }
    let admin = format!("http://127.0.0.1:{}", d.port + 3);
    let get = |path: &str| {
        let out =
            Command::new("curl").args(["-sS", "--max-time", "10"]).arg(format!("{admin}{path}")).output().unwrap();
        assert!(out.status.success(), "{path}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let metrics = get("/metrics");
    assert!(metrics.contains("qmeta_connections_accepted_total 4"), "{metrics}");
    assert!(metrics.contains("qmeta_certificates_minted_total{backend=\"app-a\"} 2"), "{metrics}");
    assert!(metrics.contains("qmeta_mint_seconds_count 4"), "{metrics}");
    assert!(metrics.contains("qmeta_backend_up{backend=\"app-b\"} 1"), "{metrics}");
    let backends: serde_json::Value = serde_json::from_str(&get("/api/v1/backends")).unwrap();
    let a = &backends["backends"][0];
    assert_eq!(a["name"], "app-a");
    assert_eq!(a["certificates_minted"], 2);
    assert!(a["key_id"].as_str().is_some(), "{backends}");
    let keys = get("/api/v1/keys");
    let keys_json: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys_json["keys"].as_array().unwrap().len(), 2, "{keys}");
    // Key ids only: no base64 key material anywhere.
    assert!(!keys.contains("\"key\""), "{keys}");
    let recent: serde_json::Value = eventually("agent SYNC listed", Duration::from_secs(20), || {
        let r: serde_json::Value = serde_json::from_str(&get("/api/v1/dmcp/recent")).unwrap();
        (!r["recent"].as_array().unwrap().is_empty()).then_some(r)
    });
    assert!(recent["recent"][0]["command"].as_str().unwrap().starts_with("SYNC"), "{recent}");
    // DNS rebinding / cross-site: a foreign Host or an Origin on POST is refused.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: evil.example"])
        .arg(format!("{admin}/api/v1/backends"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Origin: http://evil.example"])
        .arg(format!("{admin}/api/v1/reload"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let audit: serde_json::Value = serde_json::from_str(&get("/api/v1/audit")).unwrap();
    assert_eq!(audit["head"].as_str().unwrap().len(), 64, "{audit}");
}
