//! The DMCP listener: agents connect here and steer the field sets.
//!
//! Per frame: parse (bounded), fetch the one-time key named in the frame from
//! the LB's KME (`dec_keys`, master = the sender's SAE id), let the backend's
//! `Endpoint` verify and dispatch it on a copy of the state, write the audit
//! record durably, and only then commit the new state and answer. The state
//! itself changes only inside `Endpoint::handle`.
//!
//! Unauthenticated peers are cheap to turn away: connections are capped in
//! number (overall and per source address), a connection that has not
//! delivered one authenticated frame is closed after [`UNAUTHENTICATED_IDLE`],
//! every frame must complete within [`FRAME_TIMEOUT`] of its first byte, a
//! frame that could not be authenticated closes the connection, and key
//! look-ups at the KME run with bounded concurrency.

use crate::runtime::Shared;
use qmeta_audit::Record;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// DMCP keys: 256 bits for the request MAC, 256 for the reply MAC.
const DMCP_KEY_BITS: u32 = 512;
/// A frame must be complete this long after its first byte arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection must deliver an authenticated frame within this time.
const UNAUTHENTICATED_IDLE: Duration = Duration::from_secs(30);
/// Concurrent DMCP connections, overall and from one source address.
const MAX_CONNECTIONS: usize = 64;
const MAX_PER_ADDRESS: usize = 8;
/// Concurrent `dec_keys` calls made on behalf of DMCP frames.
const MAX_KEY_LOOKUPS: usize = 4;

struct Limits {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    lookups: Semaphore,
    /// Serialises DMCP processing so a state copy is never committed over
    /// a newer one (DMCP is a low-rate protocol).
    dispatch: tokio::sync::Mutex<()>,
}

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let limits = Arc::new(Limits {
        total: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        per_ip: Mutex::new(HashMap::new()),
        lookups: Semaphore::new(MAX_KEY_LOOKUPS),
        dispatch: tokio::sync::Mutex::new(()),
    });
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("DMCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limits.total.clone().try_acquire_owned() else {
            tracing::warn!("DMCP connection refused: {MAX_CONNECTIONS} connections open");
            continue;
        };
        {
            let mut per_ip = limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(peer.ip()).or_insert(0);
            if *n >= MAX_PER_ADDRESS {
                tracing::warn!(%peer, "DMCP connection refused: {MAX_PER_ADDRESS} connections open from this address");
                continue;
            }
            *n += 1;
        }
        let shared = shared.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            if let Err(e) = session(&shared, &limits, tcp, peer).await {
                tracing::info!(%peer, "DMCP connection closed: {e}");
            }
            let mut per_ip = limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_ip.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&peer.ip());
                }
            }
            drop(permit);
        });
    }
}

async fn session(shared: &Shared, limits: &Limits, mut tcp: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(qmeta_dmcp::MAX_FRAME);
    let mut chunk = vec![0u8; qmeta_dmcp::MAX_FRAME];
    let mut authenticated = false;
    let connected = Instant::now();
    let mut frame_started: Option<Instant> = None;
    loop {
        // Drain every complete frame already buffered.
        loop {
            match qmeta_dmcp::parse_frame(&buf) {
                Ok(Some((used, incoming))) => {
                    buf.drain(..used);
                    frame_started = (!buf.is_empty()).then(Instant::now);
                    let (reply, verified) = handle(shared, limits, incoming, peer).await?;
                    tcp.write_all(&reply).await?;
                    if !verified {
                        // Honest agents never send a frame we cannot
                        // authenticate: do not let a peer make us fetch keys
                        // and write audit records in a loop.
                        return Ok(());
                    }
                    authenticated = true;
                }
                Ok(None) => break,
                Err(err) => {
                    shared.metrics.dmcp_unparsable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    reject(shared, peer, "<unparsed>", &err.to_string()).await;
                    let reply = qmeta_dmcp::reject_unparsable(&err, crate::unix_ms());
                    tcp.write_all(&reply).await?;
                    // The stream can no longer be framed: close it.
                    return Ok(());
                }
            }
        }
        let deadline = match (frame_started, authenticated) {
            (Some(start), _) => Some(start + FRAME_TIMEOUT),
            (None, false) => Some(connected + UNAUTHENTICATED_IDLE),
            (None, true) => None,
        };
        let read = match deadline {
            Some(d) => match tokio::time::timeout_at(d, tcp.read(&mut chunk)).await {
                Ok(r) => r,
                Err(_) if frame_started.is_some() => {
                    reject(shared, peer, "<truncated>", "frame not completed within 10 s of its first byte").await;
                    return Ok(());
                }
                Err(_) => {
                    tracing::info!(%peer, "DMCP connection closed: no authenticated frame within {UNAUTHENTICATED_IDLE:?}");
                    return Ok(());
                }
            },
            None => tcp.read(&mut chunk).await,
        };
        let read = match read {
            Ok(n) => n,
            Err(e) => {
                if !buf.is_empty() {
                    reject(shared, peer, "<truncated>", &format!("connection failed inside a frame ({e})")).await;
                }
                return Err(e);
            }
        };
        if read == 0 {
            if !buf.is_empty() {
                reject(shared, peer, "<truncated>", "connection closed inside a frame (truncated)").await;
            }
            return Ok(());
        }
        if buf.is_empty() {
            frame_started = Some(Instant::now());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Logs and audits a frame refused before it reached a backend's endpoint.
async fn reject(shared: &Shared, peer: SocketAddr, command: &str, reason: &str) {
    tracing::warn!(%peer, "DMCP frame rejected: {reason}");
    audit(
        shared,
        Record::Dmcp {
            peer: peer.to_string(),
            sender: String::new(),
            key_id: None,
            seq: None,
            command: command.into(),
            accepted: false,
            reason: Some(reason.into()),
            state_version: None,
            drawn: None,
        },
    )
    .await;
}

/// Handles one frame; returns the reply and whether the frame was
/// authenticated (its one-time key was obtained and its tag checked).
async fn handle(
    shared: &Shared,
    limits: &Limits,
    incoming: qmeta_dmcp::Incoming,
    peer: SocketAddr,
) -> std::io::Result<(Vec<u8>, bool)> {
    let gen = shared.gen();
    let sender = incoming.sender().to_string();
    let Some(&idx) = gen.by_sae.get(&sender) else {
        let reason = format!("unknown sender SAE {sender:?}");
        shared.metrics.dmcp_rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%peer, "DMCP frame rejected: {reason}");
        audit(
            shared,
            Record::Dmcp {
                peer: peer.to_string(),
                sender,
                key_id: incoming.key_id().map(|k| k.to_string()),
                seq: Some(incoming.seq()),
                command: "<unverified>".into(),
                accepted: false,
                reason: Some(reason),
                state_version: None,
                drawn: None,
            },
        )
        .await;
        return Ok((qmeta_dmcp::reject_unparsable(&qmeta_dmcp::FrameError::UnknownSender, crate::unix_ms()), false));
    };
    let backend = &gen.backends[idx];
    // The one-time key: the KME hands it out once, and only to us as the
    // slave named by the sender when it fetched it.
    let mut key_error = None;
    let key = match incoming.key_id() {
        Some(id) => {
            let _slot = limits.lookups.acquire().await;
            match shared.kme.dec_keys(&sender, &[id]).await {
                Ok(mut keys) if keys.len() == 1 => {
                    let k = keys.remove(0);
                    if k.bytes.len() * 8 != DMCP_KEY_BITS as usize {
                        key_error =
                            Some(format!("DMCP key {id} has {} bits, expected {DMCP_KEY_BITS}", k.bytes.len() * 8));
                        None
                    } else {
                        Some(k)
                    }
                }
                Ok(_) => None,
                Err(e) => {
                    key_error = Some(format!("key {id}: {e}"));
                    None
                }
            }
        }
        None => None,
    };
    let _serial = limits.dispatch.lock().await;
    // Dispatch on a copy; commit it only once the audit record is durable.
    let mut next = backend.endpoint.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let handled = next.handle(incoming, key.as_ref().map(|k| &k.bytes[..]), crate::unix_ms(), rand::random());
    let o = handled.outcome;
    remember(shared, &backend.cfg.name, &o);
    let reason = match (&o.reason, key_error) {
        (Some(r), Some(k)) => Some(format!("{r} ({k})")),
        (r, k) => r.clone().or(k),
    };
    if o.accepted {
        tracing::info!(%peer, backend = %backend.cfg.name, version = o.version, "DMCP {}", o.command);
    } else {
        tracing::warn!(%peer, backend = %backend.cfg.name, "DMCP {} rejected: {}", o.command, reason.as_deref().unwrap_or("?"));
    }
    let verified = key.is_some() && !o.reason.as_deref().is_some_and(|r| r.contains("tag"));
    let durable = shared
        .audit
        .record_durable(Record::Dmcp {
            peer: peer.to_string(),
            sender: o.sender.clone(),
            key_id: o.key_id.map(|k| k.to_string()),
            seq: o.seq,
            command: if verified { o.command.clone() } else { format!("<unverified> {}", o.command) },
            accepted: o.accepted,
            reason,
            state_version: Some(o.version),
            drawn: o.drawn.as_ref().map(|d| d.iter().map(|f| f.get()).collect()),
        })
        .await;
    if let Err(e) = durable {
        // No state change and no acknowledgement without a record.
        tracing::error!(%peer, "audit log unavailable ({e}): DMCP frame not applied; closing the connection");
        return Err(std::io::Error::other("audit log unavailable"));
    }
    *backend.endpoint.lock().unwrap_or_else(|e| e.into_inner()) = next;
    Ok((handled.reply, verified))
}

/// Counts the outcome and keeps it for the admin API's recent list.
fn remember(shared: &Shared, backend: &str, o: &qmeta_dmcp::Outcome) {
    let counter = if o.accepted { &shared.metrics.dmcp_accepted } else { &shared.metrics.dmcp_rejected };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let entry = serde_json::json!({
        "at_unix_ms": crate::unix_ms(),
        "backend": backend,
        "sender": o.sender,
        "command": o.command,
        "accepted": o.accepted,
        "reason": o.reason,
        "state_version": o.version,
        "drawn": o.drawn.as_ref().map(|d| d.names()),
    });
    let mut recent = shared.recent_dmcp.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() >= crate::admin::RECENT_DMCP {
        recent.pop_front();
    }
    recent.push_back(entry);
}

async fn audit(shared: &Shared, rec: Record) {
    if let Err(e) = shared.audit.record_durable(rec).await {
        tracing::error!("audit log: {e}");
    }
}
