//! The channel between two single-site KMEs: one TLS connection (each KME
//! presents its own certificate; each checks the other's KME id) carrying
//! the BB84 messages of the link and the key relays of `enc_keys`.
//!
//! - The BB84 end (Alice at site A, Bob at site B) runs on its own thread,
//!   never on the async runtime; its messages are authenticated by the
//!   protocol's own Wegman–Carter tags as well as by TLS.
//! - Every finished block is fed to the local [`Store`] (identical at both
//!   sites), split between the two sites' issuing streams.
//! - `enc_keys` at one site sends a [`Relay`] (stream offset + key ids +
//!   master + slaves) and answers the master only after the peer's Ack.
//! - A new connection starts a new session: both streams restart at 0.
//!
//! The frame format is in [`frame`]; the design in `docs/KME.md`.

pub mod frame;

use super::bb84::{self, LinkEnd};
use super::setup::{Bb84Config, PeerChannel, PeerSite};
use super::store::{Relay, RelayError, Site, Store};
use super::{KmeError, KmeSiteConfig, LinkStats};
use frame::{Frame, FrameError};
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long `enc_keys` waits for the peer to confirm a relay.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a relay may wait here for its key material to be distilled.
const PENDING_TIMEOUT: Duration = Duration::from_secs(2);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Why a relay failed (no key material in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayFailed {
    #[error("not connected to the peer KME")]
    NotConnected,
    #[error("the peer KME did not confirm in time")]
    Timeout,
    #[error("the peer KME refused the keys")]
    Refused,
}

struct Shared {
    /// Frames to the current connection (None while disconnected).
    out: Mutex<Option<mpsc::UnboundedSender<Frame>>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<bool>>>,
    seq: AtomicU64,
    connected: AtomicBool,
    /// Sessions started (each connection is one).
    sessions: AtomicU64,
}

/// The server's side of the channel: send relays, see whether the peer
/// is there. Cheap to clone.
#[derive(Clone)]
pub struct PeerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHandle").field("connected", &self.is_connected()).finish()
    }
}

impl PeerHandle {
    fn new() -> PeerHandle {
        PeerHandle {
            shared: Arc::new(Shared {
                out: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                seq: AtomicU64::new(1),
                connected: AtomicBool::new(false),
                sessions: AtomicU64::new(0),
            }),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Sessions (connections) so far.
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.load(Ordering::Acquire)
    }

    /// Tells the peer about keys issued here; returns once it holds them.
    pub async fn relay(&self, relay: Relay) -> Result<(), RelayFailed> {
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(seq, tx);
        let sent = lock(&self.shared.out).as_ref().is_some_and(|out| out.send(Frame::Relay { seq, relay }).is_ok());
        if !sent {
            lock(&self.shared.pending).remove(&seq);
            return Err(RelayFailed::NotConnected);
        }
        let res = tokio::time::timeout(RELAY_TIMEOUT, rx).await;
        lock(&self.shared.pending).remove(&seq);
        match res {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(RelayFailed::Refused),
            // Sender dropped: the connection went away.
            Ok(Err(_)) => Err(RelayFailed::NotConnected),
            Err(_) => Err(RelayFailed::Timeout),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything the channel task needs.
pub(crate) struct Channel {
    pub site: Site,
    pub local: KmeSiteConfig,
    pub peer: PeerSite,
    pub channel: PeerChannel,
    pub bb84: Bb84Config,
    /// Most secret bits per second Alice lets the link produce.
    pub max_bits_per_sec: f64,
    pub seed: Option<u64>,
    pub store: Arc<Mutex<Store>>,
    pub stats: Arc<Mutex<LinkStats>>,
}

/// A bound channel; `run` serves it until `stop`.
pub(crate) struct BoundChannel {
    pub handle: PeerHandle,
    /// Where this site accepts the peer (listen mode).
    pub listen_addr: Option<SocketAddr>,
    listener: Option<TcpListener>,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    ch: Arc<Channel>,
}

pub(crate) async fn bind(ch: Channel) -> Result<BoundChannel, KmeError> {
    let creds = |source| KmeError::Credentials { kme_id: ch.local.kme_id.clone(), source };
    let server = qmeta_pki::server_config(
        &ch.local.cert,
        &ch.local.key,
        qmeta_pki::ClientAuth::Required(&ch.local.client_ca),
        &[b"qmeta-kme-link/1"],
    )
    .map_err(creds)?;
    let mut client =
        qmeta_pki::client_config(&ch.local.client_ca, Some((&ch.local.cert, &ch.local.key))).map_err(creds)?;
    client.alpn_protocols = vec![b"qmeta-kme-link/1".to_vec()];
    let (listener, listen_addr) = match ch.channel {
        PeerChannel::Listen(addr) => {
            let bind_err = |source| KmeError::Bind { kme_id: ch.local.kme_id.clone(), addr, source };
            let l = TcpListener::bind(addr).await.map_err(bind_err)?;
            let a = l.local_addr().map_err(bind_err)?;
            (Some(l), Some(a))
        }
        PeerChannel::Connect(_) => (None, None),
    };
    Ok(BoundChannel {
        handle: PeerHandle::new(),
        listen_addr,
        listener,
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        ch: Arc::new(ch),
    })
}

/// The CN of the peer's certificate must be the peer's KME id.
fn peer_is<T>(conn: &rustls::ConnectionCommon<T>, kme_id: &str) -> bool {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| qmeta_pki::common_name(c))
        .is_some_and(|cn| cn == kme_id)
}

impl BoundChannel {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = RECONNECT_MIN;
        loop {
            let conn = tokio::select! {
                _ = stop.changed() => break,
                c = self.next_connection() => c,
            };
            match conn {
                Some(stream) => {
                    backoff = RECONNECT_MIN;
                    tokio::select! {
                        _ = stop.changed() => break,
                        r = self.session(stream) => {
                            tracing::warn!(kme = %self.ch.local.kme_id, reason = %r, "KME link session ended");
                        }
                    }
                }
                None => {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
        self.disconnected();
    }

    /// One authenticated TLS stream to the peer, or None (retry later).
    async fn next_connection(&self) -> Option<Box<dyn Stream>> {
        /// Unauthenticated link handshakes in flight at once.
        const MAX_PENDING_LINK_HANDSHAKES: usize = 16;
        /// Bound on one incoming link handshake.
        const LINK_ACCEPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
        let kme = &self.ch.local.kme_id;
        let want = &self.ch.peer.kme_id;
        match (&self.listener, self.ch.channel) {
            (Some(l), _) => {
                // Handshakes run concurrently, each bounded: connections
                // that never complete TLS (or are not the peer) cannot keep
                // the real peer waiting behind them.
                let mut pending = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = l.accept() => {
                            let Ok((tcp, from)) = accepted else { continue };
                            if pending.len() >= MAX_PENDING_LINK_HANDSHAKES {
                                tracing::warn!(kme = %kme, %from, "KME link: too many pending handshakes, dropping");
                                continue;
                            }
                            let _ = tcp.set_nodelay(true);
                            let acceptor = self.acceptor.clone();
                            let (kme, want) = (kme.clone(), want.clone());
                            pending.spawn(async move {
                                let tls = tokio::time::timeout(LINK_ACCEPT_TIMEOUT, acceptor.accept(tcp))
                                    .await
                                    .ok()?
                                    .map_err(|e| tracing::warn!(kme = %kme, %from, error = %e, "KME link TLS failed"))
                                    .ok()?;
                                if !peer_is(tls.get_ref().1, &want) {
                                    tracing::warn!(kme = %kme, %from, "KME link: peer certificate is not {want}");
                                    return None;
                                }
                                Some(tls)
                            });
                        }
                        Some(done) = pending.join_next(), if !pending.is_empty() => {
                            if let Ok(Some(tls)) = done {
                                return Some(Box::new(tls));
                            }
                        }
                    }
                }
            }
            (None, PeerChannel::Connect(addr)) => {
                let tcp = TcpStream::connect(addr).await.ok()?;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::try_from(want.clone()).ok()?;
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connector.connect(name, tcp))
                    .await
                    .ok()?
                    .map_err(|e| tracing::warn!(kme = %kme, %addr, error = %e, "KME link TLS failed"))
                    .ok()?;
                if !peer_is(tls.get_ref().1, want) {
                    tracing::warn!(kme = %kme, %addr, "KME link: peer certificate is not {want}");
                    return None;
                }
                Some(Box::new(tls))
            }
            (None, PeerChannel::Listen(_)) => None,
        }
    }

    fn disconnected(&self) {
        let sh = &self.ch_handle().shared;
        sh.connected.store(false, Ordering::Release);
        *lock(&sh.out) = None;
        // Waiting relays learn at once (their senders are dropped).
        lock(&sh.pending).clear();
        lock(&self.ch.stats).up = false;
    }

    fn ch_handle(&self) -> &PeerHandle {
        &self.handle
    }

    /// One connection: hello, then frames both ways until it breaks.
    async fn session(&self, stream: Box<dyn Stream>) -> String {
        let ch = &self.ch;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mine: [u8; 16] = rand::random();
        let hello = frame::encode(&Frame::Hello { version: frame::VERSION, site: ch.site, nonce: mine });
        if let Err(e) = write(&mut wr, &hello).await {
            return format!("write: {e}");
        }
        let mut buf = Vec::with_capacity(64 * 1024);
        let theirs = match read_frame(&mut rd, &mut buf).await {
            Ok(Frame::Hello { version, site, nonce }) if version == frame::VERSION && site == ch.site.peer() => nonce,
            Ok(_) => return "peer sent a wrong hello".into(),
            Err(e) => return e,
        };
        // Both sides order the nonces the same way: A's first.
        let nonce = match ch.site {
            Site::A => [mine, theirs].concat(),
            Site::B => [theirs, mine].concat(),
        };
        // New session: both sides restart their streams before any block.
        lock(&ch.store).reset_streams();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Frame>();
        let sh = &self.handle.shared;
        *lock(&sh.out) = Some(out_tx.clone());
        sh.connected.store(true, Ordering::Release);
        sh.sessions.fetch_add(1, Ordering::AcqRel);
        tracing::info!(kme = %ch.local.kme_id, peer = %ch.peer.kme_id, "KME link up");
        // The BB84 end on its own thread.
        let (to_end, from_peer) = std_mpsc::channel::<Vec<u8>>();
        let fed = Arc::new(Notify::new());
        let stop_end = Arc::new(AtomicBool::new(false));
        let seed = ch.seed.map(|s| s.wrapping_add(sh.sessions.load(Ordering::Acquire)));
        let end = match bb84::new_end(ch.site, &ch.bb84, seed, &nonce) {
            Ok(e) => e,
            Err(e) => {
                self.disconnected();
                return format!("BB84 end: {e}");
            }
        };
        let thread = {
            let (ch, out, fed, stop) = (self.ch.clone(), out_tx.clone(), fed.clone(), stop_end.clone());
            std::thread::Builder::new()
                .name(format!("qmeta-bb84-{}", ch.local.kme_id))
                .spawn(move || end_thread(end, &ch, from_peer, out, fed, stop))
        };
        if let Err(e) = thread {
            self.disconnected();
            return format!("spawn: {e}");
        }
        drop(out_tx);
        let writer = async {
            while let Some(f) = out_rx.recv().await {
                if let Err(e) = write(&mut wr, &frame::encode(&f)).await {
                    return format!("write: {e}");
                }
            }
            "writer closed".to_string()
        };
        let reader = self.read_loop(&mut rd, &mut buf, to_end, fed);
        let reason = tokio::select! {
            r = writer => r,
            r = reader => r,
        };
        stop_end.store(true, Ordering::Release);
        self.disconnected();
        reason
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        rd: &mut R,
        buf: &mut Vec<u8>,
        to_end: std_mpsc::Sender<Vec<u8>>,
        fed: Arc<Notify>,
    ) -> String {
        // Relays waiting for their key material: (seq, relay, since).
        let mut waiting: Vec<(u64, Relay, Instant)> = Vec::new();
        loop {
            let next = if waiting.is_empty() {
                read_frame(rd, buf).await.map(Some)
            } else {
                tokio::select! {
                    f = read_frame(rd, buf) => f.map(Some),
                    _ = fed.notified() => Ok(None),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => Ok(None),
                }
            };
            let frame = match next {
                Ok(f) => f,
                Err(e) => return e,
            };
            match frame {
                Some(Frame::Bb84(m)) => {
                    let delivered = to_end.send(m).is_ok();
                    if !delivered {
                        return "BB84 end stopped".into();
                    }
                }
                Some(Frame::Relay { seq, relay }) => waiting.push((seq, relay, Instant::now())),
                Some(Frame::Ack { seq, ok }) => {
                    if let Some(tx) = lock(&self.handle.shared.pending).remove(&seq) {
                        let _ = tx.send(ok);
                    }
                }
                Some(Frame::Hello { .. }) => return "unexpected hello".into(),
                None => {}
            }
            self.settle(&mut waiting);
        }
    }

    /// Accepts the relays whose material has arrived; refuses the ones
    /// that cannot be met. Acks go out in arrival order of the answers.
    fn settle(&self, waiting: &mut Vec<(u64, Relay, Instant)>) {
        let out = lock(&self.handle.shared.out).clone();
        let mut store = lock(&self.ch.store);
        waiting.retain(|(seq, relay, since)| {
            let ok = match store.accept_relay(relay) {
                Ok(()) => true,
                Err(RelayError::NotYet) if since.elapsed() < PENDING_TIMEOUT => return true,
                Err(RelayError::NotYet) => false,
                Err(RelayError::Refused(why)) => {
                    tracing::warn!(kme = %self.ch.local.kme_id, why, "relay refused");
                    false
                }
            };
            if let Some(out) = &out {
                let _ = out.send(Frame::Ack { seq: *seq, ok });
            }
            false
        });
    }
}

/// A TLS stream of either side.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

async fn write<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    wr.write_all(bytes).await?;
    // TLS buffers records until flushed.
    wr.flush().await
}

async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>) -> Result<Frame, String> {
    loop {
        match frame::decode(buf) {
            Ok((f, used)) => {
                buf.drain(..used);
                return Ok(f);
            }
            Err(FrameError::Incomplete) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = rd.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("peer closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The BB84 end's thread: peer messages in, replies out, finished blocks
/// into the store. Alice paces blocks to `max_bits_per_sec` and pauses
/// while both streams hold enough ([`Store::split_full`]).
fn end_thread(
    mut end: Box<dyn LinkEnd>,
    ch: &Channel,
    from_peer: std_mpsc::Receiver<Vec<u8>>,
    out: mpsc::UnboundedSender<Frame>,
    fed: Arc<Notify>,
    stop: Arc<AtomicBool>,
) {
    let started = Instant::now();
    let mut bits_total = 0f64;
    let send = |msgs: Vec<Vec<u8>>| msgs.into_iter().all(|m| out.send(Frame::Bb84(m)).is_ok());
    lock(&ch.stats).up = true;
    if ch.site == Site::A && !send(end.start_block()) {
        return;
    }
    while !stop.load(Ordering::Acquire) {
        let msg = match from_peer.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let (replies, block) = match end.on_message(&msg) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(kme = %ch.local.kme_id, error = %e, "BB84 message refused");
                return;
            }
        };
        if !send(replies) {
            return;
        }
        let Some(block) = block else { continue };
        let bits = block.key.as_ref().map_or(0, |k| k.len() * 8);
        let aborted = block.aborted;
        bits_total += bits as f64;
        if let Some(key) = &block.key {
            lock(&ch.store).feed_block(key);
            fed.notify_one();
        }
        {
            let mut st = lock(&ch.stats);
            st.kind = "bb84";
            st.qber = block.qber.or(st.qber);
            if aborted {
                st.blocks_aborted += 1;
            } else {
                st.blocks_ok += 1;
            }
            st.key_rate_bps = bits_total / started.elapsed().as_secs_f64().max(1e-3);
        }
        if ch.site == Site::A {
            // Pace: never faster than the configured rate.
            if ch.max_bits_per_sec > 0.0 {
                let due = Duration::from_secs_f64(bits_total / ch.max_bits_per_sec);
                let ahead = due.saturating_sub(started.elapsed());
                sleep_unless(&stop, ahead);
            } else {
                // key_rate 0: a link that is down.
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            while !stop.load(Ordering::Acquire) && lock(&ch.store).split_full() {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !send(end.start_block()) {
                return;
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Acquire) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}
