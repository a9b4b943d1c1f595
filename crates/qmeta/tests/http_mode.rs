//! HTTP mode: per-request HTTP fields, one upstream connection per client
//! connection and set of values, HTTP/2 clients, spoofed headers stripped,
//! route scopes steered over DMCP.

mod common;
use common::*;
use qmeta_dmcp::{ClientSession, Command, Reply, Scope};
use qmeta_fields::FieldId;
use qmeta_qkd::client::{KmeClient, KmeClientConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A deployment whose LB runs in HTTP mode, sending `fields` by default.
fn http_deployment(fields: &str, http_section: &str) -> Deployment {
    let d = Deployment::init();
    d.edit("lb.toml", "alpn = [\"http/1.1\"]", "mode = \"http\"\nalpn = [\"h2\", \"http/1.1\"]");
    d.edit_all("lb.toml", "default_fields = [\"src_ip\", \"timestamp\"]", &format!("default_fields = {fields}"));
    if !http_section.is_empty() {
        let p = d.path("lb.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        // Top-level tables must come before the first [[backend]].
        let at = text.find("[[backend]]").unwrap();
        std::fs::write(&p, format!("{}{http_section}\n\n{}", &text[..at], &text[at..])).unwrap();
    }
    d
}

/// One keep-alive HTTP/1.1 client connection over TLS.
struct H1 {
    io: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

impl H1 {
    fn connect(d: &Deployment) -> H1 {
        qmeta_pki::install_provider();
        let mut cfg = qmeta_pki::client_config(&d.pki("frontend-ca.crt"), None).unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let tcp = TcpStream::connect(d.lb_addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        H1 { io: BufReader::new(rustls::StreamOwned::new(conn, tcp)) }
    }

    /// Sends a GET with `headers` and returns (status, backend JSON).
    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.io.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.io.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            panic!("bad status line {status_line:?}");
        });
        let (mut length, mut chunked) = (None, false);
        loop {
            let mut line = String::new();
            self.io.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(v.trim().parse::<usize>().unwrap()),
                "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                self.io.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0u8; n + 2];
                self.io.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n = length.expect("content-length or chunked");
            body.resize(n, 0);
            self.io.read_exact(&mut body).unwrap();
        }
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
        (status, json)
    }
}

fn serial(json: &Value) -> String {
    json["metadata"]["serial"].as_str().unwrap_or_else(|| panic!("no serial in {json}")).to_string()
}

#[test]
fn new_values_on_one_connection_get_a_new_certificate() {
    let d = http_deployment("[\"src_ip\", \"http_user_agent\", \"http_host\"]", "");
    let (_kme, _a, _b, _lb) = d.start_core();
    let mut c = H1::connect(&d);
    let (st, one) = c.get("/first", &[("User-Agent", "agent-one")]);
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["path"], "/first");
    assert_eq!(fields(&one)["http_user_agent"], "agent-one", "{one}");
    assert_eq!(fields(&one)["http_host"], "localhost", "{one}");
    assert_eq!(fields(&one)["src_ip"], "127.0.0.1", "{one}");
    // Same values: the same upstream connection, so the same certificate.
    let (_, again) = c.get("/second", &[("User-Agent", "agent-one")]);
    assert_eq!(again["path"], "/second");
    assert_eq!(serial(&again), serial(&one), "same values must reuse the upstream connection");
    // Different user agent on the same client connection: new certificate.
    let (_, two) = c.get("/third", &[("User-Agent", "agent-two")]);
    assert_eq!(fields(&two)["http_user_agent"], "agent-two", "{two}");
    assert_ne!(serial(&two), serial(&one));
    // Another client with the same values never shares an upstream connection.
    let mut other = H1::connect(&d);
    let (_, three) = other.get("/third", &[("User-Agent", "agent-two")]);
    assert_ne!(serial(&three), serial(&two));
    // Every certificate is on record.
    let log = d.audit_log();
    for s in [serial(&one), serial(&two), serial(&three)] {
        assert!(log.contains(&s), "serial {s} not audited");
    }
}

#[test]
fn http2_clients_are_served() {
    let d = http_deployment("[\"http_user_agent\", \"http_host\", \"alpn\"]", "");
    let (_kme, _a, _b, _lb) = d.start_core();
    let url = format!("https://localhost:{}/h2/path", d.port);
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--http2", "--max-time", "30"])
        .args(["--cacert", d.pki("frontend-ca.crt").to_str().unwrap()])
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", d.port)])
        .args(["-A", "curl-h2-test", "--write-out", "\nversion=%{http_version}\n", &url, &url])
        .output()
        .expect("curl is required for the HTTP/2 test (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("version=2\n").count(), 2, "{text}");
    let answers: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(answers.len(), 2, "{text}");
    for a in &answers {
        assert_eq!(a["path"], "/h2/path");
        let f = fields(a);
        assert_eq!(f["http_user_agent"], "curl-h2-test", "{a}");
        assert_eq!(f["http_host"], format!("localhost:{}", d.port), "{a}");
        assert_eq!(f["alpn"], "h2", "the client's ALPN: {a}");
    }
    // curl reuses its connection for the second URL: same values, same upstream.
    assert_eq!(serial(&answers[0]), serial(&answers[1]));
}

const SPOOFED: &[(&str, &str)] = &[
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Proto", "gopher"),
    ("Forwarded", "for=6.6.6.6"),
    ("X-Real-IP", "6.6.6.6"),
    ("X-Qmeta-Src", "6.6.6.6"),
    ("X-Tenant", "acme"),
];

#[test]
fn spoofed_metadata_headers_never_reach_the_backend() {
    let d = http_deployment(
        "[\"src_ip\", \"custom_1001\"]",
        "[http]\nforward_headers = true\n\n[[http.header_field]]\nheader = \"X-Tenant\"\nid = 1001",
    );
    let (_kme, _a, _b, _lb) = d.start_core();
    let mut c = H1::connect(&d);
    let (st, json) = c.get("/", SPOOFED);
    assert_eq!(st, 200, "{json}");
    let echo = &json["echo_headers"];
    assert!(!echo.to_string().contains("6.6.6.6"), "a spoofed value reached the backend: {echo}");
    assert_eq!(echo["x-forwarded-for"], serde_json::json!(["127.0.0.1"]), "{echo}");
    assert_eq!(echo["x-forwarded-proto"], serde_json::json!(["https"]), "{echo}");
    assert_eq!(echo["forwarded"], serde_json::json!(["for=127.0.0.1;proto=https"]), "{echo}");
    assert!(echo.get("x-qmeta-src").is_none() && echo.get("x-real-ip").is_none(), "{echo}");
    assert_eq!(echo["x-tenant"], serde_json::json!(["acme"]), "ordinary headers pass: {echo}");
    let f = fields(&json);
    assert_eq!(f["src_ip"], "127.0.0.1");
    assert_eq!(f["custom_1001"], "acme", "header mapped to a custom field: {json}");
}

#[test]
fn without_forward_headers_no_forwarding_header_reaches_the_backend() {
    let d = http_deployment("[\"src_ip\"]", "");
    let (_kme, _a, _b, _lb) = d.start_core();
    let mut c = H1::connect(&d);
    let (_, json) = c.get("/", SPOOFED);
    let echo = json["echo_headers"].as_object().unwrap();
    assert!(!json["echo_headers"].to_string().contains("6.6.6.6"), "{json}");
    for h in ["x-forwarded-for", "x-forwarded-proto", "forwarded", "x-real-ip", "x-qmeta-src"] {
        assert!(!echo.contains_key(h), "{h} reached the backend: {json}");
    }
}

const LB_SAE: &str = "sae-lb-1";

/// Sends one DMCP command as backend app-a's agent and expects an ACK.
fn dmcp_as_app_a(d: &Deployment, cmd: Command) {
    qmeta_pki::install_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let kme = KmeClient::new(KmeClientConfig {
        url: format!("https://127.0.0.1:{}", d.port - 1),
        kme_id: "kme-b".into(),
        ca: d.pki("qkd-ca.crt"),
        cert: d.pki("sae-app-a.crt"),
        key: d.pki("sae-app-a.key"),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let mut session = ClientSession::new("sae-app-a".into());
    let mut tcp = TcpStream::connect(("127.0.0.1", d.port - 3)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let key = rt.block_on(kme.enc_keys(LB_SAE, 1, 512)).unwrap().remove(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    tcp.write_all(&session.request(&cmd, key.id, &key.bytes, now)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let reply = loop {
        if let Some((_, reply)) = session.read_reply(&buf, &key.bytes).unwrap() {
            break reply;
        }
        let n = tcp.read(&mut chunk).expect("reply from the LB");
        assert!(n > 0, "LB closed the DMCP connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(matches!(reply, Reply::Ack { .. }), "{reply:?}");
}

/// The field names app-a receives for a request to `path` (fresh connections
/// until the balancer picks app-a).
fn fields_at_a(d: &Deployment, path: &str) -> Vec<String> {
    eventually("an answer from app-a", Duration::from_secs(20), || {
        let (_, json) = H1::connect(d).get(path, &[("User-Agent", "route-test")]);
        (json["backend"] == "app-a").then(|| fields(&json).keys().cloned().collect())
    })
}

#[test]
fn route_scope_adds_fields_for_its_paths_only() {
    let d = http_deployment("[\"src_ip\", \"timestamp\"]", "");
    let (_kme, _a, _b, _lb) = d.start_core();
    assert_eq!(fields_at_a(&d, "/api/x"), ["src_ip", "timestamp"]);
    let api = Scope::route(None, "/api").unwrap();
    dmcp_as_app_a(&d, Command::Include { scope: api, field: FieldId::HTTP_USER_AGENT });
    assert_eq!(fields_at_a(&d, "/api/x"), ["http_user_agent", "src_ip", "timestamp"]);
    assert_eq!(fields_at_a(&d, "/api"), ["http_user_agent", "src_ip", "timestamp"]);
    assert_eq!(fields_at_a(&d, "/"), ["src_ip", "timestamp"]);
    assert_eq!(fields_at_a(&d, "/apix"), ["src_ip", "timestamp"], "prefixes end on a / boundary");
    // On one client connection, switching between routes switches certificates.
    let json = eventually("app-a on one connection", Duration::from_secs(20), || {
        let mut c = H1::connect(&d);
        let (_, root) = c.get("/", &[("User-Agent", "route-test")]);
        if root["backend"] != "app-a" {
            return None;
        }
        let (_, api) = c.get("/api/y", &[("User-Agent", "route-test")]);
        Some((root, api))
    });
    let (root, api) = json;
    assert!(fields(&root).get("http_user_agent").is_none(), "{root}");
    if api["backend"] == "app-a" {
        assert_eq!(fields(&api)["http_user_agent"], "route-test", "{api}");
    }
    assert_ne!(serial(&root), serial(&api));
    assert!(d.audit_log().contains("INCLUDE route=path=/api http_user_agent"), "route command audited");
}
