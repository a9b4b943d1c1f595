//! DMCP over the wire: a backend's commands steer the next certificates;
//! forged, replayed and truncated frames change nothing and are audited.

mod common;
use common::*;
use qmeta_dmcp::{ClientSession, Command, Reply, Scope};
use qmeta_fields::{FieldId, FieldSet};
use qmeta_qkd::client::{KmeClient, KmeClientConfig};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LB_SAE: &str = "sae-lb-1";

/// A hand-driven agent for backend app-a.
struct Agent {
    rt: tokio::runtime::Runtime,
    kme: KmeClient,
    session: ClientSession,
    tcp: TcpStream,
}

impl Agent {
    fn connect(d: &Deployment) -> Agent {
        qmeta_pki::install_provider();
        let kme = KmeClient::new(KmeClientConfig {
            url: format!("https://127.0.0.1:{}", d.port - 1),
            kme_id: "kme-b".into(),
            ca: d.pki("qkd-ca.crt"),
            cert: d.pki("sae-app-a.crt"),
            key: d.pki("sae-app-a.key"),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", d.port - 3)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Agent { rt, kme, session: ClientSession::new("sae-app-a".into()), tcp }
    }

    fn key(&self) -> qmeta_qkd::Key {
        // The simulated link may still be distilling (503, retryable): wait for it.
        eventually("a DMCP key from KME B", Duration::from_secs(30), || {
            self.rt.block_on(self.kme.enc_keys(LB_SAE, 1, 512)).ok().map(|mut k| k.remove(0))
        })
    }

    /// A valid request frame and the key that authenticates it.
    fn frame(&mut self, cmd: &Command) -> (Vec<u8>, qmeta_qkd::Key) {
        let key = self.key();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        (self.session.request(cmd, key.id, &key.bytes, now), key)
    }

    fn send_raw(&mut self, bytes: &[u8], key: &qmeta_qkd::Key) -> Reply {
        self.tcp.write_all(bytes).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((_, reply)) = self.session.read_reply(&buf, &key.bytes).unwrap() {
                return reply;
            }
            let n = self.tcp.read(&mut chunk).expect("reply from the LB");
            assert!(n > 0, "LB closed the DMCP connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, cmd: Command) -> Reply {
        let (bytes, key) = self.frame(&cmd);
        self.send_raw(&bytes, &key)
    }

    fn version(&mut self) -> u64 {
        match self.send(Command::Query) {
            Reply::Ack { version, .. } => version,
            other => panic!("QUERY refused: {other:?}"),
        }
    }
}

fn acked(reply: Reply) -> (u64, Option<FieldSet>) {
    match reply {
        Reply::Ack { version, drawn, .. } => (version, drawn),
        other => panic!("expected ACK, got {other:?}"),
    }
}

/// The field names in the certificate of the next connection to app-a.
fn fields_at_a(d: &Deployment, sni: &str) -> Vec<String> {
    eventually("an answer from app-a", Duration::from_secs(20), || {
        let (json, _) = https_get(d, sni, "/");
        (json["backend"] == "app-a").then(|| fields(&json).keys().cloned().collect())
    })
}

#[test]
fn commands_steer_the_next_certificate() {
    let d = Deployment::init();
    let (_kme, _a, _b, _lb) = d.start_core();
    assert_eq!(fields_at_a(&d, "localhost"), ["src_ip", "timestamp"], "the default set");
    let mut agent = Agent::connect(&d);

    let (v1, _) = acked(agent.send(Command::Include { scope: Scope::Backend, field: FieldId::SNI }));
    assert_eq!(fields_at_a(&d, "localhost"), ["sni", "src_ip", "timestamp"]);
    let (json, _) = https_get(&d, "localhost", "/");
    if json["backend"] == "app-a" {
        assert_eq!(fields(&json)["sni"], "localhost");
    }

    let (v2, _) = acked(agent.send(Command::Exclude { scope: Scope::Backend, field: FieldId::SNI }));
    assert!(v2 > v1);
    assert_eq!(fields_at_a(&d, "localhost"), ["src_ip", "timestamp"]);

    acked(agent.send(Command::Include { scope: Scope::Backend, field: FieldId::DST_PORT }));
    acked(agent.send(Command::Reset { scope: Scope::Backend }));
    assert_eq!(fields_at_a(&d, "localhost"), ["src_ip", "timestamp"], "RESET returns to the default set");

    let from: FieldSet = [FieldId::SNI, FieldId::ALPN, FieldId::DST_PORT, FieldId::TLS_VERSION].into_iter().collect();
    let (_, drawn) = acked(agent.send(Command::Randomize { scope: Scope::Backend, from: from.clone() }));
    let drawn = drawn.expect("RANDOMIZE reports what it drew");
    assert!(drawn.iter().all(|f| from.contains(f)), "drawn {drawn:?} outside {from:?}");
    let mut expected: Vec<String> = drawn.names();
    expected.extend(["src_ip".to_string(), "timestamp".to_string()]);
    expected.sort();
    assert_eq!(fields_at_a(&d, "localhost"), expected);

    // SNI scope: only connections with that SNI get the extra field.
    acked(agent.send(Command::Reset { scope: Scope::Backend }));
    let api = Scope::sni("api.localhost").unwrap();
    acked(agent.send(Command::Include { scope: api, field: FieldId::CONNECTION_ID }));
    assert_eq!(fields_at_a(&d, "localhost"), ["src_ip", "timestamp"]);
    assert_eq!(fields_at_a(&d, "api.localhost"), ["connection_id", "src_ip", "timestamp"]);

    // The audit log holds every command, accepted.
    let log = d.audit_log();
    for cmd in ["INCLUDE backend sni", "EXCLUDE backend sni", "RESET backend", "RANDOMIZE backend"] {
        assert!(log.lines().any(|l| l.contains(cmd) && l.contains("\"accepted\":true")), "{cmd} not audited:\n{log}");
    }
}

#[test]
fn forged_replayed_and_truncated_frames_change_nothing() {
    let d = Deployment::init();
    let (_kme, _a, _b, lb) = d.start_core();
    let mut agent = Agent::connect(&d);
    let v0 = agent.version();

    // Bad tag: answered, then the LB closes that connection (an honest agent
    // never sends a frame the LB cannot authenticate).
    let mut forger = Agent::connect(&d);
    let (mut bytes, key) = forger.frame(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    match forger.send_raw(&bytes, &key) {
        Reply::Error { reason, .. } => assert!(reason.to_lowercase().contains("tag"), "{reason}"),
        other => panic!("forged frame accepted: {other:?}"),
    }
    let mut rest = Vec::new();
    assert_eq!(forger.tcp.read_to_end(&mut rest).unwrap_or(0), 0, "connection closed after a forged frame");
    assert_eq!(agent.version(), v0, "a forged frame must not change the state");

    // Replay: the same valid frame twice.
    let (bytes, key) = agent.frame(&Command::Include { scope: Scope::Backend, field: FieldId::ALPN });
    let (v1, _) = acked(agent.send_raw(&bytes, &key));
    assert_eq!(v1, v0 + 1);
    let mut replayer = Agent::connect(&d);
    replayer.tcp.write_all(&bytes).unwrap();
    let mut buf = [0u8; 4096];
    let n = replayer.tcp.read(&mut buf).unwrap();
    assert!(n > 0, "the LB answers a replay with an error");
    assert_eq!(agent.version(), v1, "a replayed frame must not change the state");
    assert_eq!(fields_at_a(&d, "localhost"), ["alpn", "src_ip", "timestamp"]);

    // Truncated: half a frame, then the connection closes.
    let (bytes, _key) = agent.frame(&Command::Include { scope: Scope::Backend, field: FieldId::SNI });
    let mut t = TcpStream::connect(("127.0.0.1", d.port - 3)).unwrap();
    t.write_all(&bytes[..bytes.len() / 2]).unwrap();
    drop(t);
    lb.wait_log("truncated", Duration::from_secs(10));
    assert_eq!(agent.version(), v1);

    // Garbage and an oversized length are refused and audited too.
    let mut g = TcpStream::connect(("127.0.0.1", d.port - 3)).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    g.write_all(b"HELLO I AM NOT DMCP\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    let _ = g.read_to_end(&mut resp);
    assert!(!resp.is_empty(), "garbage gets an (unauthenticated) error answer");
    assert_eq!(agent.version(), v1);

    let log = eventually("rejections audited", Duration::from_secs(5), || {
        let log = d.audit_log();
        (log.matches("\"accepted\":false").count() >= 4).then_some(log)
    });
    assert!(log.contains("<truncated>"), "{log}");
    assert!(log.contains("bad magic"), "{log}");
}
