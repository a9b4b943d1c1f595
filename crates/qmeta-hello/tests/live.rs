//! Live captures: curl and openssl s_client connect to a listener on
//! 127.0.0.1, the crate fingerprints their ClientHello, and a second,
//! deliberately plain implementation in this file must agree. Fails loudly
//! when curl or openssl is missing.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qmeta_hello::{capture, Capture, ClientHello};
use sha2::{Digest, Sha256};

const HOST: &str = "qmeta.test";

fn spawn(tool: &str, args: &[String]) -> Child {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} is required for this test and could not be run: {e}"))
}

/// Accepts one connection (bounded wait), feeds the bytes to `capture`
/// read by read, and returns the hello plus the records that carried it.
fn live_hello(tool: &str, args: impl Fn(u16) -> Vec<String>) -> (ClientHello, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = spawn(tool, &args(port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream: TcpStream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => {
                let _ = child.kill();
                panic!("{tool} did not connect: {e}");
            }
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let result = loop {
        match capture(&buf).unwrap() {
            Capture::Complete { hello, consumed_records_len } => break (hello, buf[..consumed_records_len].to_vec()),
            Capture::Incomplete { need_at_least } => {
                assert!(need_at_least > buf.len());
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).expect("read ClientHello");
                assert!(n > 0, "{tool} closed before a full ClientHello");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    };
    drop(stream);
    // The clients give up once the connection closes; reap them (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    result
}

// ---- the independent implementation: plain index arithmetic ----

fn be16(b: &[u8], i: usize) -> usize {
    (b[i] as usize) << 8 | b[i + 1] as usize
}

fn grease(v: usize) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

fn plain_ja4(records: &[u8]) -> String {
    let mut hs = Vec::new();
    let mut p = 0;
    while p < records.len() {
        let n = be16(records, p + 3);
        hs.extend_from_slice(&records[p + 5..p + 5 + n]);
        p += 5 + n;
    }
    let body = &hs[4..];
    let legacy = be16(body, 0);
    let mut i = 34;
    i += 1 + body[i] as usize;
    let nc = be16(body, i);
    let mut ciphers: Vec<usize> = (0..nc / 2).map(|k| be16(body, i + 2 + 2 * k)).filter(|c| !grease(*c)).collect();
    i += 2 + nc;
    i += 1 + body[i] as usize;
    let (mut exts, mut sigs, mut versions, mut alpn) = (vec![], vec![], vec![], None::<Vec<u8>>);
    if i < body.len() {
        i += 2;
        while i < body.len() {
            let t = be16(body, i);
            let n = be16(body, i + 2);
            let d = &body[i + 4..i + 4 + n];
            i += 4 + n;
            if !grease(t) {
                exts.push(t);
            }
            match t {
                0x0d => sigs = (1..d.len() / 2).map(|k| be16(d, 2 * k)).filter(|s| !grease(*s)).collect(),
                0x2b => versions = (0..d[0] as usize / 2).map(|k| be16(d, 1 + 2 * k)).filter(|v| !grease(*v)).collect(),
                0x10 => alpn = Some(d[3..3 + d[2] as usize].to_vec()),
                _ => {}
            }
        }
    }
    let version = versions.iter().copied().max().unwrap_or(legacy);
    let ver = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        _ => "00",
    };
    let alpn = match alpn {
        None => "00".to_string(),
        Some(a) => {
            let (f, l) = (a[0] as char, a[a.len() - 1] as char);
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{f}{l}")
            } else {
                let h: String = a.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}{}", &h[..1], &h[h.len() - 1..])
            }
        }
    };
    let a = format!(
        "t{ver}{}{:02}{:02}{alpn}",
        if exts.contains(&0) { "d" } else { "i" },
        ciphers.len().min(99),
        exts.len().min(99)
    );
    ciphers.sort();
    let mut ext_sorted: Vec<usize> = exts.into_iter().filter(|e| *e != 0 && *e != 0x10).collect();
    ext_sorted.sort();
    let join = |v: &[usize]| v.iter().map(|x| format!("{x:04x}")).collect::<Vec<_>>().join(",");
    let mut c = join(&ext_sorted);
    if !sigs.is_empty() {
        c = format!("{c}_{}", join(&sigs));
    }
    let h12 = |s: &str| {
        if s.is_empty() {
            "000000000000".to_string()
        } else {
            Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()[..12].to_string()
        }
    };
    format!("{a}_{}_{}", h12(&join(&ciphers)), h12(&c))
}

#[test]
fn curl_hello_matches_plain_implementation() {
    let (hello, records) = live_hello("curl", |port| {
        ["-sk", "--max-time", "5", "--resolve", &format!("{HOST}:{port}:127.0.0.1"), &format!("https://{HOST}:{port}/")]
            .map(String::from)
            .to_vec()
    });
    assert_eq!(hello.sni.as_deref(), Some(HOST));
    assert!(hello.ja4().starts_with("t13d"), "{}", hello.ja4());
    assert_eq!(hello.ja4(), plain_ja4(&records));
}

#[test]
fn openssl_hellos_match_plain_implementation() {
    let variants: [&[&str]; 3] = [
        &["-servername", HOST],
        &["-servername", HOST, "-tls1_2", "-alpn", "http/1.1"],
        &["-noservername", "-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
    ];
    let prefixes = ["t13d", "t12d", "t10i"];
    for (extra, prefix) in variants.iter().zip(prefixes) {
        let (hello, records) = live_hello("openssl", |port| {
            let mut a = vec!["s_client".to_string(), "-connect".into(), format!("127.0.0.1:{port}")];
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        });
        let ja4 = hello.ja4();
        assert!(ja4.starts_with(prefix), "{extra:?}: {ja4}");
        assert_eq!(ja4, plain_ja4(&records), "{extra:?}");
    }
}
