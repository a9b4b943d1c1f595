//! The connection path: accept, terminate TLS, pick a backend, mint,
//! connect with mTLS, copy bytes both ways.

use crate::balance::Candidate;
use crate::facts::{ConnFacts, RequestFacts};
use crate::runtime::{Backend, Generation, Shared};
use qmeta_audit::Record;
use qmeta_fields::{FieldId, FieldValue};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(shared.gen().cfg.listen.max_connections));
    loop {
        // At max_connections, stop accepting: new clients wait in the
        // kernel's backlog, as with HAProxy's maxconn.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    handle(shared, tcp, peer).await
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a backend could not be used for this connection.
enum Refused {
    /// Nothing was sent to the backend: the next one may be tried.
    Retry(String),
    /// Fail closed for the whole connection (e.g. the audit log is down).
    Fatal(String),
}

async fn handle(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let gen = shared.gen();
    handle_in(&shared, &gen, tcp, peer).await;
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}

async fn handle_in(shared: &Arc<Shared>, gen: &Arc<Generation>, mut tcp: TcpStream, peer: SocketAddr) {
    let conn_id = shared.conn_ids.fetch_add(1, Ordering::Relaxed);
    shared.metrics.accepted.fetch_add(1, Ordering::Relaxed);
    let accepted_unix_ms = crate::unix_ms();
    let _ = tcp.set_nodelay(true);
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let listen = &gen.cfg.listen;
    if listen.proxy_protocol && !listen.trusted_proxies.as_ref().is_some_and(|t| t.contains(peer.ip())) {
        // Never parse a PROXY header (or anything) from an untrusted peer.
        tracing::warn!(
            conn_id,
            "refused: this listener expects a PROXY protocol header and the peer is not in trusted_proxies"
        );
        return;
    }
    // One deadline for the PROXY header, the ClientHello and the handshake:
    // a slow client cannot hold a handshake slot longer than this.
    let deadline = tokio::time::Instant::now() + listen.handshake_timeout;
    let preamble = match tokio::time::timeout_at(deadline, crate::preamble::read(&mut tcp, listen.proxy_protocol)).await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            shared.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn_id, "client dropped before TLS: {e}");
            return;
        }
        Err(_) => {
            shared.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn_id, "client TLS handshake timed out");
            return;
        }
    };
    let (client_addr, local, proxied_for) = match &preamble.proxy {
        Some(h) => (h.client(peer), h.destination.unwrap_or(local), h.proxied_for(peer)),
        None => (peer, local, None),
    };
    let stream = crate::rewind::Rewind::new(preamble.replay, tcp);
    let handshake = tokio::time::timeout_at(deadline, gen.acceptor.accept(stream)).await;
    let client = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn_id, "client TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            shared.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn_id, "client TLS handshake timed out");
            return;
        }
    };
    let (_, conn) = client.get_ref();
    let facts = ConnFacts {
        peer: client_addr,
        local,
        accepted_unix_ms,
        sni: conn.server_name().map(str::to_string),
        alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
        tls_version: conn.protocol_version().map(u16::from),
        cipher_suite: conn.negotiated_cipher_suite().map(|s| u16::from(s.suite())),
        conn_id,
        ja4: preamble.hello.as_ref().map(|h| h.ja4()),
        ja3: preamble.hello.as_ref().map(|h| h.ja3()),
        proxied_for,
        geo: gen.geo.clone(),
        geo_info: Default::default(),
    };
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    if gen.cfg.listen.mode == crate::config::ListenMode::Http {
        // Hash on the original client (behind a trusted PROXY peer too).
        crate::http::serve_client(shared.clone(), gen.clone(), client, facts, client_addr.ip()).await;
        return;
    }
    let Some((backend, up, _)) = open_upstream(shared, gen, &facts, alpn.as_deref(), None, client_addr.ip()).await
    else {
        let mut client = client;
        let _ = client.shutdown().await;
        return;
    };
    tracing::debug!(conn_id, backend = %backend.cfg.name, "proxying");
    backend.metrics.connections.fetch_add(1, Ordering::Relaxed);
    backend.metrics.active.fetch_add(1, Ordering::Relaxed);
    let total = crate::http::max_duration(&gen.cfg.listen.max_connection_duration);
    tokio::select! {
        r = pipe(client, up, gen.cfg.upstream.idle_timeout) => if let Err(e) = r {
            tracing::debug!(conn_id, "connection ended: {e}");
        },
        _ = total => tracing::debug!(conn_id, "connection reached max_connection_duration: closed"),
    }
    backend.metrics.active.fetch_sub(1, Ordering::Relaxed);
}

/// The field values sent in one certificate.
pub(crate) type Values = Vec<(FieldId, FieldValue)>;

/// Picks a backend (balancer order from `hash_ip`, failing over while
/// nothing was sent), mints and connects. On failure the refusal is
/// counted, logged and audited, and `None` is returned.
pub(crate) async fn open_upstream<'g>(
    shared: &Shared,
    gen: &'g Generation,
    facts: &ConnFacts,
    alpn: Option<&[u8]>,
    req: Option<&RequestFacts>,
    hash_ip: IpAddr,
) -> Option<(&'g Backend, tokio_rustls::client::TlsStream<TcpStream>, Values)> {
    let conn_id = facts.conn_id;
    let candidates: Vec<Candidate> = gen
        .backends
        .iter()
        .map(|b| Candidate {
            weight: b.cfg.weight,
            active: b.metrics.active.load(Ordering::Relaxed),
            healthy: crate::health::is_up(b),
        })
        .collect();
    let mut reasons = Vec::new();
    let mut upstream = None;
    for i in gen.balancer.order(hash_ip.to_canonical(), &candidates) {
        let backend = &gen.backends[i];
        match connect(shared, gen, backend, facts, alpn, req).await {
            Ok((s, values)) => {
                upstream = Some((backend, s, values));
                break;
            }
            Err(Refused::Retry(r)) => {
                tracing::warn!(conn_id, backend = %backend.cfg.name, "backend unusable, trying the next: {r}");
                reasons.push(format!("{}: {r}", backend.cfg.name));
            }
            Err(Refused::Fatal(r)) => {
                reasons.push(format!("{}: {r}", backend.cfg.name));
                break;
            }
        }
    }
    if upstream.is_none() {
        let reason = reasons.join("; ");
        shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
        tracing::error!(conn_id, "connection refused: no backend usable ({reason})");
        let _ = shared.audit.record(Record::ConnectionRefused { conn_id, backend: None, reason });
    }
    upstream
}

/// Connects to `backend`, mints a certificate for it and completes the
/// upstream mTLS handshake presenting that certificate.
async fn connect(
    shared: &Shared,
    gen: &Generation,
    backend: &Backend,
    facts: &ConnFacts,
    alpn: Option<&[u8]>,
    req: Option<&RequestFacts>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Values), Refused> {
    let name = &backend.cfg.name;
    let key = shared
        .ring
        .current(name, Instant::now())
        .ok_or_else(|| Refused::Retry("no valid QKD key (fail closed)".into()))?;
    let timeout = gen.cfg.upstream.connect_timeout;
    let addr = backend.cfg.address;
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(backend_failed(gen, backend, format!("connect {addr}: {e}"))),
        Err(_) => return Err(backend_failed(gen, backend, format!("connect {addr}: timed out"))),
    };
    let _ = tcp.set_nodelay(true);
    // The backend failed earlier and is reachable again: it may be a new
    // process, which cannot fetch the current key (the KME delivers a key
    // once). Give it a fresh one first.
    let key = if backend.metrics.stale_key.load(Ordering::Relaxed) == 1 {
        match crate::health::fresh_key(shared, backend).await {
            Ok(()) => shared.ring.current(name, Instant::now()).unwrap_or(key),
            Err(e) => {
                tracing::warn!(backend = %name, "could not rotate the key of a recovered backend: {e}");
                key
            }
        }
    } else {
        key
    };
    let (fields, version) = {
        let ep = backend.endpoint.lock().unwrap_or_else(|e| e.into_inner());
        let state = ep.state();
        let fields = match req {
            Some(r) => state.fields_for_request(facts.sni.as_deref(), Some(&r.path)),
            None => state.fields_for(facts.sni.as_deref()),
        };
        // Second guard: never beyond what the operator allows now.
        (fields.intersection(&backend.cfg.allowed_fields), state.version())
    };
    let values = facts.request_values(&fields, &gen.cfg.node_id, &gen.cfg.custom_fields, req);
    let serial: [u8; 16] = rand::random();
    let subject = format!("qmeta {}", gen.cfg.node_id);
    let req = qmeta_cert::MintRequest {
        serial,
        now_unix: facts.accepted_unix_ms / 1000,
        validity_secs: gen.cfg.certificates.validity.as_secs() as u32,
        subject_cn: &subject,
        key_id: key.id,
        qkd_key: &key.bytes,
        state_version: version,
        fields: &values,
    };
    let started = Instant::now();
    let (minted, tls_cfg) =
        shared.minter.mint(&req, alpn).map_err(|e| Refused::Fatal(format!("minting failed: {e}")))?;
    shared.metrics.mint.observe(started.elapsed());
    // Fail closed: a certificate that is not on record is never presented.
    shared
        .audit
        .record(Record::CertIssued {
            serial: minted.serial_hex.clone(),
            backend: name.clone(),
            fields: minted.included.iter().map(|f| f.get()).collect(),
            dropped: minted.dropped.iter().map(|f| f.get()).collect(),
            key_id: key.id.to_string(),
            state_version: version,
            conn_id: facts.conn_id,
        })
        .map_err(|e| {
            shared.metrics.audit_errors.fetch_add(1, Ordering::Relaxed);
            Refused::Fatal(format!("audit log unavailable ({e}): not issuing certificates"))
        })?;
    backend.metrics.certificates.fetch_add(1, Ordering::Relaxed);
    let server_name = rustls_pki_types::ServerName::try_from(backend.cfg.server_name.clone())
        .map_err(|e| Refused::Retry(format!("server name: {e}")))?;
    let tls = TlsConnector::from(tls_cfg).connect(server_name, tcp);
    match tokio::time::timeout(timeout, tls).await {
        Ok(Ok(s)) => {
            crate::health::succeeded(backend);
            Ok((s, values))
        }
        Ok(Err(e)) => Err(backend_failed(gen, backend, format!("TLS to {addr}: {e}"))),
        Err(_) => Err(backend_failed(gen, backend, format!("TLS to {addr}: timed out"))),
    }
}

/// Passive health: a failed connect ejects the backend for `eject_for`
/// (it is then tried last) or until a connection to it succeeds.
fn backend_failed(gen: &Generation, backend: &Backend, reason: String) -> Refused {
    backend.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
    // It may come back as a new process that never saw the current key.
    backend.metrics.stale_key.store(1, Ordering::Relaxed);
    crate::health::eject(backend, gen.cfg.health.eject_for);
    Refused::Retry(reason)
}

/// Copies both ways until both sides are done, or nothing moved for `idle`.
async fn pipe<A, B>(a: A, b: B, idle: Duration) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let copy = async {
        tokio::try_join!(copy_half(&mut ar, &mut bw, &last, start), copy_half(&mut br, &mut aw, &last, start))
    };
    let watchdog = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = since + idle;
            let now = start.elapsed();
            if now >= deadline {
                return;
            }
            tokio::time::sleep(deadline - now).await;
        }
    };
    tokio::select! {
        r = copy => r.map(|_| ()),
        _ = watchdog => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    }
}

async fn copy_half<R, W>(r: &mut R, w: &mut W, last: &AtomicU64, start: Instant) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}
