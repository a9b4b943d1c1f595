//! JA4 of real clients, end to end: the fingerprint the LB computes for a
//! curl or `openssl s_client` connection (read back from the backend's
//! decrypted certificate) equals the JA4 this file computes, with its own
//! plain parser (not `qmeta_hello`), from the same client's ClientHello
//! captured on a bare TCP listener.
//!
//! JA4 sorts ciphers and extensions and drops GREASE, so the per-connection
//! randomness of a client (random, key shares, GREASE values) does not
//! change it: two runs of the same command must agree.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---- an independent JA4 (FoxIO technical_details/JA4.md) ----

fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// What JA4 needs from a ClientHello, lists in wire order, GREASE kept.
#[derive(Debug, Default)]
struct Hello {
    legacy_version: u16,
    ciphers: Vec<u16>,
    extensions: Vec<u16>,
    alpn: Vec<Vec<u8>>,
    supported_versions: Vec<u16>,
    sig_algs: Vec<u16>,
}

/// A cursor over trusted-enough bytes (a local client's hello): panics with
/// a message on anything short, which fails the test.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "hello truncated: need {n}, have {}", self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> usize {
        self.take(1)[0] as usize
    }
    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_be_bytes([b[0], b[1]])
    }
    fn u24(&mut self) -> usize {
        let b = self.take(3);
        (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize
    }
    fn vec8(&mut self) -> Cur<'a> {
        let n = self.u8();
        Cur(self.take(n))
    }
    fn vec16(&mut self) -> Cur<'a> {
        let n = self.u16() as usize;
        Cur(self.take(n))
    }
    fn u16s(mut self) -> Vec<u16> {
        assert!(self.0.len().is_multiple_of(2), "odd-length u16 list");
        let mut out = Vec::new();
        while !self.0.is_empty() {
            out.push(self.u16());
        }
        out
    }
}

/// The ClientHello handshake message (4-byte header included) carried by the
/// TLS records at the start of `stream`, or None while more bytes are needed.
fn hello_message(stream: &[u8]) -> Option<Vec<u8>> {
    let mut msg = Vec::new();
    let mut rest = stream;
    loop {
        if msg.len() >= 4 {
            let len = 4 + ((msg[1] as usize) << 16 | (msg[2] as usize) << 8 | msg[3] as usize);
            if msg.len() >= len {
                assert_eq!(msg.len(), len, "bytes after the ClientHello in its record");
                return Some(msg);
            }
        }
        if rest.len() < 5 {
            return None;
        }
        assert_eq!(rest[0], 0x16, "not a TLS handshake record");
        let n = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if rest.len() < 5 + n {
            return None;
        }
        msg.extend_from_slice(&rest[5..5 + n]);
        rest = &rest[5 + n..];
    }
}

fn parse_hello(msg: &[u8]) -> Hello {
    let mut c = Cur(msg);
    assert_eq!(c.u8(), 1, "handshake type is not ClientHello");
    let len = c.u24();
    assert_eq!(len, c.0.len(), "ClientHello length");
    let mut h = Hello { legacy_version: c.u16(), ..Hello::default() };
    c.take(32); // random
    c.vec8(); // session id
    h.ciphers = c.vec16().u16s();
    c.vec8(); // compression methods
    if c.0.is_empty() {
        return h; // no extensions block at all
    }
    let mut exts = c.vec16();
    assert!(c.0.is_empty(), "bytes after the extensions");
    while !exts.0.is_empty() {
        let typ = exts.u16();
        let mut body = exts.vec16();
        h.extensions.push(typ);
        match typ {
            0x0010 => {
                let mut names = body.vec16();
                while !names.0.is_empty() {
                    h.alpn.push(names.vec8().0.to_vec());
                }
            }
            0x002b => h.supported_versions = body.vec8().u16s(),
            0x000d => h.sig_algs = body.vec16().u16s(),
            _ => {}
        }
    }
    h
}

/// First 12 hex digits of SHA-256, or twelve zeros for an empty string.
fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "0".repeat(12);
    }
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()[..12].to_string()
}

fn hex_list(v: impl Iterator<Item = u16>) -> String {
    v.map(|x| format!("{x:04x}")).collect::<Vec<_>>().join(",")
}

fn ja4(h: &Hello) -> String {
    let version = h.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(h.legacy_version);
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    };
    let sni = if h.extensions.contains(&0x0000) { 'd' } else { 'i' };
    let ciphers: Vec<u16> = h.ciphers.iter().copied().filter(|v| !is_grease(*v)).collect();
    let exts: Vec<u16> = h.extensions.iter().copied().filter(|v| !is_grease(*v)).collect();
    let alpn = match h.alpn.first() {
        None => "00".to_string(),
        Some(name) if name.is_empty() => "00".to_string(),
        Some(name) => {
            let (f, l) = (name[0], name[name.len() - 1]);
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{}{}", f as char, l as char)
            } else {
                let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}{}", &hex[..1], &hex[hex.len() - 1..])
            }
        }
    };
    let a = format!("t{version}{sni}{:02}{:02}{alpn}", ciphers.len().min(99), exts.len().min(99));

    let mut sorted_ciphers = ciphers.clone();
    sorted_ciphers.sort_unstable();
    let b = hash12(&hex_list(sorted_ciphers.into_iter()));

    let mut sorted_exts: Vec<u16> = exts.into_iter().filter(|e| *e != 0x0000 && *e != 0x0010).collect();
    sorted_exts.sort_unstable();
    let mut c = hex_list(sorted_exts.into_iter());
    let sigs: Vec<u16> = h.sig_algs.iter().copied().filter(|v| !is_grease(*v)).collect();
    if !sigs.is_empty() {
        c = format!("{c}_{}", hex_list(sigs.into_iter()));
    }
    format!("{a}_{b}_{}", hash12(&c))
}

#[test]
fn the_independent_ja4_matches_the_spec_vectors() {
    assert_eq!(hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"), "8daaf6152771");
    let exts = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
    assert_eq!(hash12(&format!("{exts}_0403,0804,0401,0503,0805,0501,0806,0601")), "e5627efa2ab1");
    assert_eq!(hash12(exts), "6d807ffa2a79");
    assert_eq!(hash12(""), "000000000000");
    // The spec's example hello, in scrambled order and with GREASE added.
    let h = Hello {
        legacy_version: 0x0303,
        ciphers: vec![
            0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
            0x009d, 0x002f, 0x0035,
        ],
        extensions: vec![
            0x3a3a, 0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0012, 0x0033, 0x002d,
            0x002b, 0x001b, 0x4469, 0x0015, 0x4a4a,
        ],
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        supported_versions: vec![0x7a7a, 0x0304, 0x0303],
        sig_algs: vec![0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
    };
    assert_eq!(ja4(&h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    // ALPN names that do not start and end alphanumeric use hex digits.
    let alpn_part = |name: &[u8]| ja4(&Hello { alpn: vec![name.to_vec()], ..Hello::default() })[8..10].to_string();
    assert_eq!(alpn_part(b"@bc"), "43");
    assert_eq!(alpn_part(&[0x30, 0xab]), "3b");
    assert_eq!(alpn_part(b"x"), "xx");
}

// ---- the real clients ----

/// Runs `cmd` with `stdin`, killing it after `timeout`.
fn run(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e} (`.ci/run` installs curl and openssl)"));
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("{what} still running after {timeout:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn curl(ca: &Path, port: u16) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--cacert"]).arg(ca);
    // SNI "localhost", but only ever a connection to 127.0.0.1.
    c.args(["--resolve", &format!("localhost:{port}:127.0.0.1")]).arg(format!("https://localhost:{port}/"));
    c
}

fn s_client(ca: &Path, port: u16) -> Command {
    let mut c = Command::new("openssl");
    c.args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"]);
    // -quiet: only the application data on stdout, and wait for the server
    // to close instead of quitting at the end of stdin.
    c.args(["-alpn", "http/1.1", "-quiet", "-CAfile"]).arg(ca);
    c
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Runs the client made by `client(port)` against a bare listener and
/// returns the ClientHello message it sent (the handshake then fails).
fn capture_hello(client: impl FnOnce(u16) -> Command) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sock = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return tx.send(Err(format!("no client connected: {e}"))).unwrap(),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let res = loop {
            if let Some(msg) = hello_message(&buf) {
                break Ok(msg);
            }
            match sock.read(&mut chunk) {
                Ok(0) => break Err(format!("client closed after {} bytes", buf.len())),
                Ok(n) if buf.len() + n <= 65_536 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => break Err("more than 64 KiB without a complete hello".into()),
                Err(e) => break Err(format!("read after {} bytes: {e}", buf.len())),
            }
        };
        // Dropping the socket ends the client's handshake.
        let _ = tx.send(res);
    });
    let out = run(client(port), b"", Duration::from_secs(30));
    let hello = rx.recv_timeout(Duration::from_secs(30)).expect("capture thread did not answer");
    hello.unwrap_or_else(|e| panic!("{e}; client stderr:\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// The first JSON value after the HTTP head in a client's output.
fn json_body(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(&text);
    let first = serde_json::Deserializer::from_str(body).into_iter::<serde_json::Value>().next();
    match first {
        Some(Ok(v)) => v,
        _ => panic!("no JSON body in:\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn lb_ja4(out: &Output) -> String {
    let json = json_body(out);
    assert!(json["backend"] == "app-a" || json["backend"] == "app-b", "{json}");
    fields(&json)["ja4"].as_str().unwrap_or_else(|| panic!("no ja4 in {json}")).to_string()
}

#[test]
fn ja4_of_curl_and_openssl_through_the_lb_matches_an_independent_computation() {
    let d = Deployment::init();
    d.edit_all("lb.toml", "default_fields = [\"src_ip\", \"timestamp\"]", "default_fields = [\"src_ip\", \"ja4\"]");
    let (_kme, _a, _b, lb) = d.start_core();
    let ca = d.pki("frontend-ca.crt");

    // curl (OpenSSL backend): TLS 1.3, SNI, ALPN h2 first.
    let out = run(curl(&ca, d.port), b"", Duration::from_secs(30));
    assert!(
        out.status.success(),
        "curl through the LB failed: {}\nlb:\n{}",
        String::from_utf8_lossy(&out.stderr),
        lb.logs()
    );
    let via_lb = lb_ja4(&out);
    let expected = ja4(&parse_hello(&capture_hello(|port| curl(&ca, port))));
    assert!(expected.starts_with("t13d"), "{expected}");
    assert_eq!(via_lb, expected, "curl: the LB's JA4 vs the test's own");

    // openssl s_client: TLS 1.3, SNI, ALPN http/1.1 ("h1").
    let out = run(s_client(&ca, d.port), REQUEST, Duration::from_secs(30));
    let via_lb = lb_ja4(&out);
    let expected = ja4(&parse_hello(&capture_hello(|port| s_client(&ca, port))));
    assert!(expected.starts_with("t13d") && expected[..10].ends_with("h1"), "{expected}");
    assert_eq!(via_lb, expected, "openssl s_client: the LB's JA4 vs the test's own");
}
