//! The DMCP listener: agents connect here and steer the field sets.
//!
//! Per frame: parse (bounded), fetch the one-time key named in the frame from
//! the LB's KME (`dec_keys`, master = the sender's SAE id), let the backend's
//! `Endpoint` verify and dispatch it, write the audit record durably, then
//! answer. The state itself changes only inside `Endpoint::handle`.

use crate::runtime::Shared;
use qmeta_audit::Record;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// DMCP keys: 256 bits for the request MAC, 256 for the reply MAC.
const DMCP_KEY_BITS: u32 = 512;
/// A partial frame must complete within this time.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(&shared, tcp, peer).await {
                        tracing::info!(%peer, "DMCP connection closed: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("DMCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn session(shared: &Shared, mut tcp: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(qmeta_dmcp::MAX_FRAME);
    let mut chunk = vec![0u8; qmeta_dmcp::MAX_FRAME];
    loop {
        // Drain every complete frame already buffered.
        loop {
            match qmeta_dmcp::parse_frame(&buf) {
                Ok(Some((used, incoming))) => {
                    buf.drain(..used);
                    let reply = handle(shared, incoming, peer).await?;
                    tcp.write_all(&reply).await?;
                }
                Ok(None) => break,
                Err(err) => {
                    shared.metrics.dmcp_unparsable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%peer, "DMCP frame rejected: {err}");
                    audit(
                        shared,
                        Record::Dmcp {
                            peer: peer.to_string(),
                            sender: String::new(),
                            key_id: None,
                            seq: None,
                            command: "<unparsed>".into(),
                            accepted: false,
                            reason: Some(err.to_string()),
                            state_version: None,
                            drawn: None,
                        },
                    )
                    .await;
                    let reply = qmeta_dmcp::reject_unparsable(&err, unix_ms());
                    tcp.write_all(&reply).await?;
                    // The stream can no longer be framed: close it.
                    return Ok(());
                }
            }
        }
        let read = if buf.is_empty() {
            tcp.read(&mut chunk).await?
        } else {
            match tokio::time::timeout(FRAME_TIMEOUT, tcp.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => {
                    audit_truncated(shared, peer, "partial frame not completed in time").await;
                    return Ok(());
                }
            }
        };
        if read == 0 {
            if !buf.is_empty() {
                audit_truncated(shared, peer, "connection closed inside a frame (truncated)").await;
            }
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

async fn audit_truncated(shared: &Shared, peer: SocketAddr, reason: &str) {
    tracing::warn!(%peer, "DMCP frame rejected: {reason}");
    audit(
        shared,
        Record::Dmcp {
            peer: peer.to_string(),
            sender: String::new(),
            key_id: None,
            seq: None,
            command: "<truncated>".into(),
            accepted: false,
            reason: Some(reason.into()),
            state_version: None,
            drawn: None,
        },
    )
    .await;
}

async fn handle(shared: &Shared, incoming: qmeta_dmcp::Incoming, peer: SocketAddr) -> std::io::Result<Vec<u8>> {
    let sender = incoming.sender().to_string();
    let Some(&idx) = shared.by_sae.get(&sender) else {
        let reason = format!("unknown sender SAE {sender:?}");
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
        return Ok(qmeta_dmcp::reject_unparsable(&qmeta_dmcp::FrameError::UnknownSender, unix_ms()));
    };
    let backend = &shared.backends[idx];
    // The one-time key: the KME hands it out once, and only to us as the
    // slave named by the sender when it fetched it.
    let mut key_error = None;
    let key = match incoming.key_id() {
        Some(id) => match shared.kme.dec_keys(&sender, &[id]).await {
            Ok(mut keys) if keys.len() == 1 => {
                let k = keys.remove(0);
                if k.bytes.len() * 8 != DMCP_KEY_BITS as usize {
                    key_error = Some(format!("DMCP key {id} has {} bits, expected {DMCP_KEY_BITS}", k.bytes.len() * 8));
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
        },
        None => None,
    };
    let handled = {
        let mut ep = backend.endpoint.lock().unwrap_or_else(|e| e.into_inner());
        ep.handle(incoming, key.as_ref().map(|k| &k.bytes[..]), unix_ms(), rand::random())
    };
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
    let durable = shared
        .audit
        .record_durable(Record::Dmcp {
            peer: peer.to_string(),
            sender: o.sender.clone(),
            key_id: o.key_id.map(|k| k.to_string()),
            seq: o.seq,
            command: o.command.clone(),
            accepted: o.accepted,
            reason,
            state_version: Some(o.version),
            drawn: o.drawn.as_ref().map(|d| d.iter().map(|f| f.get()).collect()),
        })
        .await;
    if let Err(e) = durable {
        // No acknowledgement without a record: the agent resyncs on reconnect.
        tracing::error!(%peer, "audit log unavailable ({e}): closing the DMCP connection without an answer");
        return Err(std::io::Error::other("audit log unavailable"));
    }
    Ok(handled.reply)
}

/// Counts the outcome and keeps it for the admin API's recent list.
fn remember(shared: &Shared, backend: &str, o: &qmeta_dmcp::Outcome) {
    let counter = if o.accepted { &shared.metrics.dmcp_accepted } else { &shared.metrics.dmcp_rejected };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let entry = serde_json::json!({
        "at_unix_ms": unix_ms(),
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

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
