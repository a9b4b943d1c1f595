//! End-to-end harness: real `qmeta` processes on loopback sockets, with the
//! configs `qmeta init` writes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_qmeta");

/// A running `qmeta` subprocess; killed on drop. Its stderr (logs) is kept.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout: mpsc::Receiver<String>,
    pub stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], ready: &str) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env("QMETA_LOG", "info,qmeta=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut p = Proc { name: name.into(), child, stdout: rx, stderr };
        if !ready.is_empty() {
            p.wait_stdout(ready, Duration::from_secs(60));
        }
        p
    }

    /// Waits for a stdout line containing `needle`; panics with the logs on timeout.
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "{}: no stdout line containing {needle:?} within {timeout:?} (exit status {status:?}); stderr:\n{}",
                        self.name,
                        self.stderr.lock().unwrap()
                    );
                }
            }
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{}: no log line containing {needle:?} within {timeout:?}; logs:\n{}", self.name, self.logs());
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").args(["-s", sig, &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
    }

    pub fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a base port P such that P-3 ..= P+3 are all free on 127.0.0.1.
pub fn free_port_block() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::SeqCst) == 0 {
        // Below the kernel's ephemeral range (32768+), so outgoing
        // connections cannot take a port between the check and the bind.
        let seed = (std::process::id() % 190) as u16 * 100 + 10_000;
        let _ = NEXT.compare_exchange(0, seed, Ordering::SeqCst, Ordering::SeqCst);
    }
    for _ in 0..200 {
        let base = NEXT.fetch_add(10, Ordering::SeqCst);
        let ok = (base - 3..=base + 3).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no free block of ports on 127.0.0.1");
}

/// A deployment written by `qmeta init` into a temporary directory.
pub struct Deployment {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub port: u16,
}

impl Deployment {
    pub fn init() -> Deployment {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let port = free_port_block();
        let out = Command::new(BIN)
            .args(["init", "--state-dir", dir.to_str().unwrap(), "--port", &port.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "qmeta init failed: {}", String::from_utf8_lossy(&out.stderr));
        Deployment { tmp, dir, port }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn pki(&self, name: &str) -> PathBuf {
        self.dir.join("pki").join(name)
    }

    pub fn lb_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Replaces `from` with `to` in a generated config file (must match once).
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.path(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.matches(from).count(), 1, "{file}: {from:?} should occur once in:\n{text}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }

    /// Replaces every occurrence (at least one) of `from` with `to`.
    pub fn edit_all(&self, file: &str, from: &str, to: &str) {
        let p = self.path(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file}: {from:?} not found in:\n{text}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.path(file), text).unwrap();
    }

    fn run(&self, what: &str, cfg: &str, ready: &str) -> Proc {
        let cfg = self.path(cfg);
        Proc::spawn(what, &[what, "--config", cfg.to_str().unwrap()], ready)
    }

    pub fn kme(&self) -> Proc {
        self.run("kme", "kme.toml", "qmeta kme:")
    }
    pub fn backend(&self, which: char) -> Proc {
        self.run("backend", &format!("backend-{which}.toml"), "qmeta backend:")
    }
    /// Starts the LB and waits until it holds a valid key for every
    /// backend (a freshly started KME distils its first keys in a moment).
    pub fn lb(&self) -> Proc {
        let lb = self.run("lb", "lb.toml", "qmeta lb:");
        let admin = format!("127.0.0.1:{}", self.port + 3);
        eventually("the LB's first keys", Duration::from_secs(60), || {
            let body = http_get(&admin, "/api/v1/keys")?;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            let keys = json["keys"].as_array()?;
            (keys.len() == 2 && keys.iter().all(|k| k["valid"] == true)).then_some(())
        });
        lb
    }
    pub fn agent(&self, which: char) -> Proc {
        self.run("agent", &format!("agent-{which}.toml"), "")
    }

    /// KME pair, both backends and the LB (no agents).
    pub fn start_core(&self) -> (Proc, Proc, Proc, Proc) {
        let kme = self.kme();
        let a = self.backend('a');
        let b = self.backend('b');
        let lb = self.lb();
        (kme, a, b, lb)
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.path("audit.log")).unwrap_or_default()
    }
}

/// One HTTPS GET through the LB with a rustls client; returns the backend's
/// JSON answer and the client socket's local address.
pub fn https_get(d: &Deployment, sni: &str, path: &str) -> (serde_json::Value, SocketAddr) {
    https_get_with_prefix(d, sni, path, &[])
}

/// [`https_get`], writing `prefix` (e.g. a PROXY protocol header) before TLS.
pub fn https_get_with_prefix(d: &Deployment, sni: &str, path: &str, prefix: &[u8]) -> (serde_json::Value, SocketAddr) {
    qmeta_pki::install_provider();
    let cfg = qmeta_pki::client_config(&d.pki("frontend-ca.crt"), None).unwrap();
    let mut cfg = cfg;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(d.lb_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.write_all(prefix).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("no HTTP body in {text:?}"));
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (json, local)
}

/// Like [`https_get`] but returns an error instead of panicking when the LB
/// refuses the connection.
pub fn try_https_get(d: &Deployment, path: &str) -> Result<serde_json::Value, String> {
    let cfg = qmeta_pki::client_config(&d.pki("frontend-ca.crt"), None).map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let mut tcp = std::net::TcpStream::connect(d.lb_addr()).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let body = text.split("\r\n\r\n").nth(1).ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {text}"))
}

/// Waits until `f` returns Some, polling; panics after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn fields(json: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    json["metadata"]["fields"].as_object().unwrap_or_else(|| panic!("no metadata.fields in {json}"))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Runs `qmeta args…` to completion, killing it after 30 s (a config that
/// should have been refused must not leave a server running).
pub fn run_bounded(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("qmeta {args:?} still running after 30 s; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A plain HTTP/1.1 GET (for the admin API); None on any failure.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}
