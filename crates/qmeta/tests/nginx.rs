//! nginx as a real backend: it verifies the LB's per-connection certificate
//! against the LB CA and hands it (URL-escaped PEM) to the application, which
//! decodes it with the SDK exactly as `docs/SDK.md` tells a non-Rust backend
//! behind nginx to do. nginx must be installed (`.ci/run` installs it).

mod common;
use common::*;
use qmeta_fields::{FieldId, FieldValue};
use qmeta_qkd::cache::DecKeyCache;
use qmeta_qkd::client::{KmeClient, KmeClientConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The nginx binary: on PATH, or Debian's `/usr/sbin/nginx` (not on every
/// user's PATH). Missing nginx is a failure, never a skip.
fn nginx_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).find(|p| p.is_file()))
        .unwrap_or_default();
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file())).unwrap_or_else(|| {
        panic!(
            "nginx is not installed (not on PATH, no /usr/sbin/nginx): `.ci/run` installs it (apt-get install nginx)"
        )
    })
}

/// A running nginx (single process, foreground); killed on drop.
struct Nginx {
    child: Child,
    error_log: PathBuf,
}

impl Nginx {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes an nginx.conf that keeps every file nginx writes inside `prefix`
/// (nothing under /etc or /var), and serves the backend-a role on `port`.
fn nginx_conf(d: &Deployment, prefix: &Path, port: u16) -> PathBuf {
    for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join(sub)).unwrap();
    }
    let p = |name: &str| prefix.join(name).to_str().unwrap().to_string();
    let pki = |name: &str| d.pki(name).to_str().unwrap().to_string();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 64; }}
http {{
    access_log {access_log};
    client_body_temp_path {client_body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        # Only the LB's per-connection certificates are accepted.
        ssl_client_certificate {lb_ca};
        ssl_verify_client on;
        ssl_verify_depth 1;
        # Each LB connection carries its own certificate: no resumption.
        ssl_session_tickets off;
        ssl_session_cache off;
        location / {{
            default_type text/plain;
            add_header X-Qmeta-Verify $ssl_client_verify always;
            return 200 "$ssl_client_escaped_cert";
        }}
    }}
}}
"#,
        pid = p("nginx.pid"),
        error_log = p("error.log"),
        access_log = p("access.log"),
        client_body = p("client_body"),
        proxy = p("proxy"),
        fastcgi = p("fastcgi"),
        uwsgi = p("uwsgi"),
        scgi = p("scgi"),
        cert = pki("app-a.crt"),
        key = pki("app-a.key"),
        lb_ca = pki("lb-ca.crt"),
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// Starts nginx on `port` and waits (bounded) until it accepts connections.
fn start_nginx(d: &Deployment, port: u16) -> Nginx {
    let bin = nginx_bin();
    let prefix = d.tmp.path().join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let conf = nginx_conf(d, &prefix, port);
    let error_log = prefix.join("error.log");
    // `-e`: the error log nginx uses before it has read the config, so
    // nothing is opened under /var/log either.
    let child = Command::new(&bin)
        .arg("-p")
        .arg(format!("{}/", prefix.display()))
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&error_log)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(prefix.join("stdout.log")).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(prefix.join("stderr.log")).unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e} (`.ci/run` installs nginx)", bin.display()));
    let mut nginx = Nginx { child, error_log };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let stderr = std::fs::read_to_string(prefix.join("stderr.log")).unwrap_or_default();
            panic!("nginx exited ({status}); stderr:\n{stderr}\nerror log:\n{}", nginx.logs());
        }
        if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).is_ok() {
            return nginx;
        }
        assert!(Instant::now() < deadline, "nginx not listening on {port} after 20 s; error log:\n{}", nginx.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTPS GET through the LB; returns the response head, the body as
/// text (nginx answers plain text, not JSON) and the client's local address.
fn get_raw(d: &Deployment) -> (String, String, SocketAddr) {
    qmeta_pki::install_provider();
    let mut cfg = qmeta_pki::client_config(&d.pki("frontend-ca.crt"), None).unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tcp = TcpStream::connect(d.lb_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let local = tcp.local_addr().unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    write!(tls, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (head.to_string(), body.to_string(), local)
}

/// Runs curl straight at nginx (not through the LB); returns the body and
/// the status code curl saw (0 when there was no HTTP answer), and stderr.
fn curl_nginx(d: &Deployment, port: u16, extra: &[&str]) -> (String, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(d.pki("backend-ca.crt"))
        .args(["--resolve", &format!("app-a:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://app-a:{port}/"))
        .output()
        .expect("curl must be installed (`.ci/run` installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (body.to_string(), code.trim().parse().unwrap_or(0), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn nginx_verifies_the_lb_certificate_and_the_sdk_decodes_it() {
    let d = Deployment::init();
    d.edit_all(
        "lb.toml",
        "default_fields = [\"src_ip\", \"timestamp\"]",
        "default_fields = [\"src_ip\", \"src_port\", \"timestamp\"]",
    );
    let nginx_port = d.port + 1; // backend a's address in lb.toml
    let nginx = start_nginx(&d, nginx_port);
    let _kme = d.kme();
    let _b = d.backend('b');
    let lb = d.lb();

    // Round robin alternates nginx (URL-escaped PEM) with the sample backend b (JSON).
    let mut from_nginx = None;
    for _ in 0..10 {
        let (head, body, local) = get_raw(&d);
        if body.starts_with("-----BEGIN") {
            from_nginx = Some((head, body, local));
            break;
        }
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("neither PEM nor JSON ({e}): {head}\n{body}"));
        assert_eq!(json["backend"], "app-b", "{json}");
    }
    let (head, body, local) = from_nginx
        .unwrap_or_else(|| panic!("no answer from nginx in 10 requests\nnginx:\n{}\nlb:\n{}", nginx.logs(), lb.logs()));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-qmeta-verify: success"), "nginx did not verify the chain: {head}");
    assert!(body.contains("%0A"), "nginx escapes the PEM's newlines: {body}");

    let pem = percent_encoding::percent_decode_str(&body).decode_utf8().unwrap().into_owned();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap_or_else(|e| panic!("{e:?}: {pem}"));
    assert_eq!(
        qmeta_pki::common_name(cert.as_ref()).as_deref(),
        Some("qmeta lb-1"),
        "the LB's minted certificate, not a health check's"
    );

    // What the application behind nginx does: its own KME client (SAE app-a,
    // backend site KME), a key cache whose master SAE is the LB's.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meta = rt
        .block_on(async {
            let kme = KmeClient::new(KmeClientConfig {
                url: format!("https://127.0.0.1:{}", d.port - 1),
                kme_id: "kme-b".into(),
                ca: d.pki("qkd-ca.crt"),
                cert: d.pki("sae-app-a.crt"),
                key: d.pki("sae-app-a.key"),
                timeout: Duration::from_secs(10),
            })
            .unwrap();
            let reader = qmeta_sdk::MetadataReader::new(DecKeyCache::new(kme, "sae-lb-1".into(), 16));
            tokio::time::timeout(Duration::from_secs(30), reader.read(&[cert])).await
        })
        .expect("SDK read timed out")
        .unwrap_or_else(|e| panic!("SDK could not read the certificate nginx passed on: {e}"));
    assert_eq!(meta.get(FieldId::SRC_IP), Some(&FieldValue::Ip("127.0.0.1".parse().unwrap())), "{}", meta.to_json());
    assert_eq!(meta.get(FieldId::SRC_PORT), Some(&FieldValue::U16(local.port())), "{}", meta.to_json());
    let ts = meta.to_json()["fields"]["timestamp"].as_u64().expect("timestamp is a number");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(ts <= now_ms && now_ms - ts < 300_000, "timestamp {ts} is not recent (now {now_ms})");
    assert!(meta.dropped.is_empty(), "{}", meta.to_json());
}

#[test]
fn nginx_refuses_clients_without_an_lb_certificate() {
    let d = Deployment::init();
    let port = d.port + 1;
    let nginx = start_nginx(&d, port);

    // No client certificate at all.
    let (body, code, stderr) = curl_nginx(&d, port, &[]);
    assert_eq!(code, 400, "body {body:?}, curl: {stderr}\nnginx:\n{}", nginx.logs());
    assert!(body.contains("No required SSL certificate was sent"), "{body}");
    assert!(!body.contains("BEGIN"), "{body}");

    // A certificate from another CA (the QKD CA's SAE certificate).
    let (cert, key) = (d.pki("sae-app-a.crt"), d.pki("sae-app-a.key"));
    let (body, code, stderr) =
        curl_nginx(&d, port, &["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    assert_eq!(code, 400, "body {body:?}, curl: {stderr}\nnginx:\n{}", nginx.logs());
    assert!(body.contains("The SSL certificate error"), "{body}");
    assert!(!body.contains("BEGIN"), "{body}");
}
