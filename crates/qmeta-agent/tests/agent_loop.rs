//! The agent loop against an Endpoint-backed fake LB over real TCP on
//! 127.0.0.1, with an in-memory stand-in for the two KMEs.

use qmeta_agent::{load_config, run_with, KeySource};
use qmeta_dmcp::{parse_frame, reject_unparsable, ControlState, Endpoint, Limits, Scope};
use qmeta_fields::{FieldId, FieldSet};
use qmeta_qkd::Key;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

const AGENT_SAE: &str = "app1-sae";

/// Keys the agent fetched and the LB has not yet taken: like a KME pair,
/// each key is delivered to the LB once.
#[derive(Clone, Default)]
struct Kme(Arc<Mutex<Issued>>);

/// The last key number handed out, and the keys not yet taken by the LB.
type Issued = (u128, HashMap<uuid::Uuid, Vec<u8>>);

impl KeySource for Kme {
    fn sae_id(&self) -> &str {
        AGENT_SAE
    }
    async fn fresh_key(&self) -> anyhow::Result<Key> {
        let mut g = self.0.lock().unwrap();
        g.0 += 1;
        let id = uuid::Uuid::from_u128(g.0);
        let bytes: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(7).wrapping_add(g.0 as u8)).collect();
        g.1.insert(id, bytes.clone());
        Ok(Key { id, bytes: Zeroizing::new(bytes) })
    }
}

impl Kme {
    fn dec_key(&self, id: uuid::Uuid) -> Option<Vec<u8>> {
        self.0.lock().unwrap().1.remove(&id)
    }
}

struct FakeLb {
    addr: std::net::SocketAddr,
    endpoint: Arc<Mutex<Endpoint>>,
    log: Arc<Mutex<Vec<String>>>,
    kick: watch::Sender<u64>,
}

fn allowed() -> FieldSet {
    [FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::SNI, FieldId::JA4, FieldId::GEO_COUNTRY, FieldId::ALPN]
        .into_iter()
        .collect()
}

fn fresh_endpoint() -> Endpoint {
    let default: FieldSet = [FieldId::SRC_IP, FieldId::GEO_CITY].into_iter().collect();
    Endpoint::new(ControlState::new(default, allowed()), Limits::default())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

impl FakeLb {
    async fn start(kme: Kme) -> FakeLb {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoint = Arc::new(Mutex::new(fresh_endpoint()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (kick, _) = watch::channel(0u64);
        let (ep, lg, k) = (endpoint.clone(), log.clone(), kick.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let (ep, lg, kme, mut kicked) = (ep.clone(), lg.clone(), kme.clone(), k.subscribe());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some((used, inc)) = match parse_frame(&buf) {
                            Ok(x) => x,
                            Err(e) => {
                                let _ = tcp.write_all(&reject_unparsable(&e, now_ms())).await;
                                return;
                            }
                        } {
                            buf.drain(..used);
                            let key = if inc.sender() == AGENT_SAE {
                                inc.key_id().and_then(|id| kme.dec_key(id))
                            } else {
                                None
                            };
                            let h = ep.lock().unwrap().handle(inc, key.as_deref(), now_ms(), [0b0101_0101; 32]);
                            lg.lock().unwrap().push(if h.outcome.accepted {
                                h.outcome.command.clone()
                            } else {
                                format!("REFUSED {}", h.outcome.command)
                            });
                            if tcp.write_all(&h.reply).await.is_err() {
                                return;
                            }
                        }
                        tokio::select! {
                            r = tcp.read(&mut chunk) => match r {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            },
                            _ = kicked.changed() => return,
                        }
                    }
                });
            }
        });
        FakeLb { addr, endpoint, log, kick }
    }

    /// An LB restart: connections dropped, state back to the default.
    fn restart(&self) {
        *self.endpoint.lock().unwrap() = fresh_endpoint();
        self.kick.send_modify(|n| *n += 1);
    }

    fn scopes(&self) -> Vec<(Scope, FieldSet)> {
        self.endpoint.lock().unwrap().state().scopes()
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn set(names: &[&str]) -> FieldSet {
    names.iter().map(|n| FieldId::from_name(n).unwrap()).collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    policy: PathBuf,
    status: PathBuf,
    cfg: qmeta_agent::AgentConfig,
}

fn setup(lb: &FakeLb, policy_text: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for f in ["ca.crt", "a.crt", "a.key"] {
        std::fs::write(p(f), "").unwrap();
    }
    std::fs::write(p("policy.toml"), policy_text).unwrap();
    std::fs::write(
        p("agent.toml"),
        format!(
            "backend = 'app1'\nlb_control = '{}'\nlb_sae_id = 'lb-1'\npolicy = 'policy.toml'\nreconnect = '50ms'\n\
             timeout = '5s'\nstatus_file = 'status.json'\n[kme]\nurl = 'https://127.0.0.1:1'\nkme_id = 'kme-b'\n\
             ca = 'ca.crt'\ncert = 'a.crt'\nkey = 'a.key'\n",
            lb.addr
        ),
    )
    .unwrap();
    let cfg = load_config(&p("agent.toml")).unwrap();
    Setup { policy: p("policy.toml"), status: p("status.json"), cfg, _dir: dir }
}

/// Polls until `f` holds (bounded: 10 s).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn status(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[tokio::test]
async fn syncs_reloads_diffs_and_resyncs_after_lb_restart() {
    let kme = Kme::default();
    let lb = FakeLb::start(kme.clone()).await;
    let s = setup(
        &lb,
        "required = ['src_ip', 'timestamp']\npermissible = ['sni', 'geo_city']\nforbidden = ['geo_city']\n\
         [[scope]]\nsni = 'api.example.com'\nrequired = ['src_ip', 'ja4']\npermissible = []\n",
    );
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = tokio::spawn(run_with(s.cfg.clone(), kme.clone(), reload_rx, stop_rx));

    let want = vec![
        (Scope::Backend, set(&["src_ip", "timestamp", "sni"])),
        (Scope::Sni("api.example.com".into()), set(&["src_ip", "ja4"])),
    ];
    until("initial SYNC", || lb.scopes() == want).await;
    until("status after SYNC", || status(&s.status).is_some_and(|v| v["connected"] == true)).await;
    let st = status(&s.status).unwrap();
    assert_eq!(st["scopes"]["backend"], serde_json::json!(["src_ip", "timestamp", "sni"]));
    assert_eq!(st["scopes"]["sni=api.example.com"], serde_json::json!(["src_ip", "ja4"]));
    let log = lb.take_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("SYNC "), "{log:?}");
    // The LB's default had geo_city; the SYNC replaced it and never asked for it.
    assert!(!log[0].contains("geo_city"), "{log:?}");

    // Policy change + reload: only the difference is sent.
    std::fs::write(&s.policy, "required = ['src_ip', 'timestamp', 'alpn']\nforbidden = ['geo_city']\n").unwrap();
    reload_tx.send(()).await.unwrap();
    let want = vec![(Scope::Backend, set(&["src_ip", "timestamp", "alpn"]))];
    until("diff applied", || lb.scopes() == want).await;
    until("status after diff", || {
        status(&s.status).is_some_and(|v| v["scopes"]["backend"] == serde_json::json!(["src_ip", "timestamp", "alpn"]))
    })
    .await;
    let log = lb.take_log();
    assert_eq!(log, vec!["EXCLUDE backend sni", "INCLUDE backend alpn", "RESET sni=api.example.com"]);

    // A broken policy file changes nothing and sends nothing.
    std::fs::write(&s.policy, "required = ['no_such_field']\n").unwrap();
    reload_tx.send(()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lb.take_log().is_empty());
    assert_eq!(lb.scopes(), want);

    // LB restart: state back to default, connection dropped; the agent
    // reconnects and SYNCs the (still current) policy.
    std::fs::write(&s.policy, "required = ['src_ip', 'timestamp', 'alpn']\nforbidden = ['geo_city']\n").unwrap();
    lb.restart();
    assert_ne!(lb.scopes(), want);
    until("resync after restart", || lb.scopes() == want).await;
    let log = lb.take_log();
    assert!(log.iter().all(|c| c.starts_with("SYNC ")), "{log:?}");

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn refused_fields_are_dropped_and_randomize_draws_from_permissible() {
    let kme = Kme::default();
    let lb = FakeLb::start(kme.clone()).await;
    // http_host is not in the LB's allowlist.
    let s = setup(
        &lb,
        "required = ['src_ip']\npermissible = ['sni', 'ja4', 'http_host', 'geo_country']\n\
         forbidden = ['geo_country']\nrandomize = true\n",
    );
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = tokio::spawn(run_with(s.cfg.clone(), kme.clone(), reload_rx, stop_rx));
    until("SYNC and RANDOMIZE", || lb.log.lock().unwrap().len() >= 2).await;
    until("status", || status(&s.status).is_some_and(|v| v["connected"] == true)).await;
    let log = lb.take_log();
    assert_eq!(log[0], "SYNC backend=[src_ip]");
    // from = permissible - required - forbidden; http_host is simply not drawn by the LB.
    assert_eq!(log[1], "RANDOMIZE backend [sni,ja4,http_host]");
    let scopes = lb.scopes();
    let backend = &scopes[0].1;
    assert!(backend.contains(FieldId::SRC_IP));
    assert!(backend.difference(&set(&["src_ip", "sni", "ja4"])).is_empty(), "{:?}", backend.names());
    // random bytes 0b0101_0101: candidates sni (bit 0) = 1, ja4 (bit 1) = 0.
    assert_eq!(backend, &set(&["src_ip", "sni"]));

    // After an LB restart the draw is kept: SYNC carries it, no new RANDOMIZE.
    lb.restart();
    until("resync", || lb.scopes()[0].1 == set(&["src_ip", "sni"])).await;
    let log = lb.take_log();
    assert_eq!(log, vec!["SYNC backend=[src_ip,sni]"]);

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_required_field_the_lb_refuses_is_reported_and_the_rest_converges() {
    let kme = Kme::default();
    let lb = FakeLb::start(kme.clone()).await;
    let s = setup(&lb, "required = ['src_ip', 'http_host']\npermissible = ['sni']\n");
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = tokio::spawn(run_with(s.cfg.clone(), kme.clone(), reload_rx, stop_rx));
    until("converged", || lb.scopes() == vec![(Scope::Backend, set(&["src_ip", "sni"]))]).await;
    until("status", || status(&s.status).is_some_and(|v| v["refused"] == serde_json::json!(["http_host"]))).await;
    let log = lb.take_log();
    assert_eq!(log, vec!["REFUSED SYNC backend=[src_ip,sni,http_host]", "SYNC backend=[src_ip,sni]"]);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn keeps_retrying_while_the_lb_is_down_and_stops_on_shutdown() {
    // A port with nothing listening.
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let kme = Kme::default();
    let lb = FakeLb { addr, ..FakeLb::start(kme.clone()).await };
    let s = setup(&lb, "required = ['src_ip']\n");
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = tokio::spawn(run_with(s.cfg.clone(), kme, reload_rx, stop_rx));
    until("disconnected status", || status(&s.status).is_some_and(|v| v["connected"] == false)).await;
    assert!(!agent.is_finished());
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap();
}
