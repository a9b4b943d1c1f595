//! Load balancer features beyond the basic path: fingerprints, PROXY
//! protocol from trusted peers, balancing, passive health.

mod common;
use common::*;
use qmeta_proxyproto::{encode_v2, Command as ProxyCommand};
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn ja4_and_ja3_reach_the_backend() {
    let d = Deployment::init();
    d.edit_all(
        "lb.toml",
        "default_fields = [\"src_ip\", \"timestamp\"]",
        "default_fields = [\"src_ip\", \"ja4\", \"ja3\"]",
    );
    let (_kme, _a, _b, _lb) = d.start_core();
    let (json, _) = https_get(&d, "localhost", "/");
    let f = fields(&json);
    let ja4 = f["ja4"].as_str().unwrap();
    // rustls client: TLS 1.3, SNI present, ALPN http/1.1 ("h1").
    assert!(ja4.starts_with("t13d") && ja4[..10].ends_with("h1"), "{ja4}");
    assert_eq!(ja4.len(), 36, "{ja4}");
    assert_eq!(f["ja3"].as_str().unwrap().len(), 32, "{json}");
    // The same client software gets the same JA4 on the next connection.
    let (again, _) = https_get(&d, "localhost", "/");
    assert_eq!(fields(&again)["ja4"], f["ja4"]);
}

#[test]
fn proxy_protocol_from_a_trusted_peer_sets_the_client() {
    let d = Deployment::init();
    d.edit(
        "lb.toml",
        "handshake_timeout = \"10s\"",
        "handshake_timeout = \"10s\"\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    d.edit_all(
        "lb.toml",
        "default_fields = [\"src_ip\", \"timestamp\"]",
        "default_fields = [\"src_ip\", \"src_port\", \"proxied_for\"]",
    );
    let (_kme, _a, _b, _lb) = d.start_core();
    let header = encode_v2(
        ProxyCommand::Proxy,
        Some("203.0.113.7:5555".parse().unwrap()),
        Some(d.lb_addr()),
        &[qmeta_proxyproto::Tlv::Crc32c(0)],
    );
    let (json, local) = https_get_with_prefix(&d, "localhost", "/", &header);
    let f = fields(&json);
    assert_eq!(f["src_ip"], "203.0.113.7", "{json}");
    assert_eq!(f["src_port"], 5555, "{json}");
    assert_eq!(f["proxied_for"], format!("203.0.113.7:5555 via 127.0.0.1:{}", local.port()), "{json}");
}

#[test]
fn proxy_headers_from_untrusted_peers_are_refused() {
    let d = Deployment::init();
    d.edit(
        "lb.toml",
        "handshake_timeout = \"10s\"",
        "handshake_timeout = \"10s\"\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]",
    );
    let (_kme, _a, _b, lb) = d.start_core();
    let header = encode_v2(ProxyCommand::Proxy, Some("203.0.113.7:5555".parse().unwrap()), Some(d.lb_addr()), &[]);
    let mut s = std::net::TcpStream::connect(d.lb_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&header);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "an untrusted peer gets nothing back");
    lb.wait_log("peer is not in trusted_proxies", Duration::from_secs(5));
    assert!(try_https_get(&d, "/").is_err(), "plain clients are not trusted either on a PROXY listener");
}

#[test]
fn a_dead_backend_is_skipped_and_traffic_continues() {
    let d = Deployment::init();
    let (_kme, a, _b, lb) = d.start_core();
    a.stop();
    for _ in 0..6 {
        let json = try_https_get(&d, "/").unwrap_or_else(|e| panic!("{e}\n{}", lb.logs()));
        assert_eq!(json["backend"], "app-b");
    }
    lb.wait_log("backend unusable, trying the next", Duration::from_secs(5));
}

#[test]
fn consistent_hash_keeps_a_client_on_one_backend() {
    let d = Deployment::init();
    d.edit("lb.toml", "node_id = \"lb-1\"", "node_id = \"lb-1\"\nbalance = \"consistent_hash\"");
    let (_kme, _a, _b, _lb) = d.start_core();
    let first = try_https_get(&d, "/").unwrap()["backend"].clone();
    for _ in 0..5 {
        assert_eq!(try_https_get(&d, "/").unwrap()["backend"], first);
    }
}

fn admin_post(d: &Deployment, path: &str) -> (u16, serde_json::Value) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-X", "POST", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{}{path}", d.port + 3))
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")))
}

#[test]
fn reload_applies_good_config_refuses_bad_and_keeps_dmcp_state() {
    let d = Deployment::init();
    let (_kme, _a, _b, lb) = d.start_core();
    let _agent = d.agent('a');
    // policy-a asks for sni: wait until app-a's certificates carry it.
    eventually("policy in force", Duration::from_secs(30), || {
        let (json, _) = https_get(&d, "localhost", "/");
        (json["backend"] == "app-a" && fields(&json).contains_key("sni")).then_some(())
    });

    // A bad file changes nothing.
    let good = std::fs::read_to_string(d.path("lb.toml")).unwrap();
    d.write("lb.toml", &format!("{good}\nbogus_key = 1\n"));
    let (code, body) = admin_post(&d, "/api/v1/reload");
    assert_eq!(code, 409, "{body}");
    assert!(body["errors"].as_str().unwrap().contains("bogus_key`: unknown key"), "{body}");
    let (json, _) = https_get(&d, "localhost", "/");
    assert!(json["backend"] == "app-a" || json["backend"] == "app-b");

    // Removing app-b by SIGHUP: everything goes to app-a, whose DMCP state survived.
    let without_b = good.split("\n[[backend]]\nname = \"app-b\"").next().unwrap().to_string();
    assert!(!without_b.contains("app-b"), "{without_b}");
    d.write("lb.toml", &without_b);
    lb.signal("HUP");
    lb.wait_log("reloaded", Duration::from_secs(10));
    for _ in 0..4 {
        let (json, _) = https_get(&d, "localhost", "/");
        assert_eq!(json["backend"], "app-a", "{json}");
        assert!(fields(&json).contains_key("sni"), "DMCP state lost across reload: {json}");
    }
    // Settings that need a restart are refused, with the reason.
    d.write("lb.toml", &without_b.replace("node_id = \"lb-1\"", "node_id = \"lb-2\""));
    let (code, body) = admin_post(&d, "/api/v1/reload");
    assert_eq!(code, 409);
    assert!(body["errors"].as_str().unwrap().contains("node_id cannot change on reload"), "{body}");
}

#[test]
fn active_health_checks_mark_a_dead_backend_down_and_back_up() {
    let d = Deployment::init();
    d.edit("lb.toml", "check = \"http\"\ninterval = \"5s\"", "check = \"http\"\ninterval = \"300ms\"");
    d.edit("lb.toml", "timeout = \"2s\"\neject_for", "timeout = \"250ms\"\nrise = 1\nfall = 1\neject_for");
    let (_kme, a, _b, _lb) = d.start_core();
    let up = |d: &Deployment| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{}/metrics", d.port + 3))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    eventually("app-a up", Duration::from_secs(10), || {
        up(&d).contains("qmeta_backend_up{backend=\"app-a\"} 1").then_some(())
    });
    a.stop();
    eventually("app-a down", Duration::from_secs(10), || {
        up(&d).contains("qmeta_backend_up{backend=\"app-a\"} 0").then_some(())
    });
    // Traffic goes to app-b without even trying app-a first.
    for _ in 0..4 {
        assert_eq!(try_https_get(&d, "/").unwrap()["backend"], "app-b");
    }
    let _a = d.backend('a');
    eventually("app-a up again", Duration::from_secs(10), || {
        up(&d).contains("qmeta_backend_up{backend=\"app-a\"} 1").then_some(())
    });
}

#[test]
fn static_custom_fields_reach_the_backend() {
    let d = Deployment::init();
    d.edit_all(
        "lb.toml",
        "default_fields = [\"src_ip\", \"timestamp\"]",
        "default_fields = [\"src_ip\", \"custom_1000\"]",
    );
    let text = std::fs::read_to_string(d.path("lb.toml")).unwrap();
    d.write("lb.toml", &format!("{text}\n[[custom_field]]\nid = 1000\nvalue = \"eu-west-1\"\n"));
    let (_kme, _a, _b, _lb) = d.start_core();
    let (json, _) = https_get(&d, "localhost", "/");
    assert_eq!(fields(&json)["custom_1000"], "eu-west-1", "{json}");
}

#[test]
fn geolocation_of_the_proxied_client_via_proxy_v1() {
    let d = Deployment::init();
    let city = d.path("city.mmdb");
    let asn = d.path("asn.mmdb");
    std::fs::write(&city, qmeta_geo::testdb::sample_city_db()).unwrap();
    std::fs::write(&asn, qmeta_geo::testdb::sample_asn_db()).unwrap();
    d.edit(
        "lb.toml",
        "handshake_timeout = \"10s\"",
        "handshake_timeout = \"10s\"\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    d.edit_all(
        "lb.toml",
        "default_fields = [\"src_ip\", \"timestamp\"]",
        "default_fields = [\"src_ip\", \"geo_country\", \"geo_region\", \"geo_city\", \"geo_asn\"]",
    );
    let text = std::fs::read_to_string(d.path("lb.toml")).unwrap();
    d.write("lb.toml", &format!("{text}\n[geo]\ncity_db = \"city.mmdb\"\nasn_db = \"asn.mmdb\"\n"));
    let (_kme, _a, _b, _lb) = d.start_core();

    // A public client from the sample database, announced by a trusted proxy (v1 header).
    let client = qmeta_geo::testdb::sample_city_records()[0].0.addr();
    let geo = qmeta_geo::Geo::open(&qmeta_geo::GeoConfig { city_db: Some(city), asn_db: Some(asn) }).unwrap();
    let want = geo.lookup(client);
    assert!(want.country.is_some(), "sample record has a country");
    let header = qmeta_proxyproto::encode_v1(std::net::SocketAddr::new(client, 40000), d.lb_addr());
    let (json, _) = https_get_with_prefix(&d, "localhost", "/", &header);
    let f = fields(&json);
    assert_eq!(f["src_ip"], client.to_string(), "{json}");
    assert_eq!(f["geo_country"].as_str(), want.country.as_deref(), "{json}");
    assert_eq!(f.get("geo_city").and_then(|v| v.as_str()), want.city.as_deref(), "{json}");
    assert_eq!(f.get("geo_asn").and_then(|v| v.as_u64()), want.asn.map(u64::from), "{json}");

    // Loopback clients are "reserved", not an error.
    let header = qmeta_proxyproto::encode_v1("127.0.0.1:5000".parse().unwrap(), d.lb_addr());
    let (json, _) = https_get_with_prefix(&d, "localhost", "/", &header);
    assert_eq!(fields(&json)["geo_country"], "reserved", "{json}");
}

#[test]
fn shutdown_lets_open_connections_finish() {
    let d = Deployment::init();
    let (_kme, _a, _b, lb) = d.start_core();
    // A client that has connected (TLS done, upstream open) but not yet sent its request.
    let cfg = qmeta_pki::client_config(&d.pki("frontend-ca.crt"), None).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(d.lb_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    lb.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    // New clients are no longer accepted…
    assert!(try_https_get(&d, "/").is_err(), "accepted a new connection while draining");
    // …but the open one is still served.
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET /late HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("\"path\":\"/late\""), "{text}");
    eventually("the LB stops once drained", Duration::from_secs(15), || {
        d.audit_log().contains("\"what\":\"stopped\"").then_some(())
    });
    drop(lb);
}
