//! The agent loop: connect → SYNC → keep the connection; on reload send
//! only the diff; on disconnect reconnect with backoff and SYNC again.

use crate::config::{AgentConfig, MAX_BACKOFF};
use crate::keys::KeySource;
use crate::plan::Planner;
use crate::policy::load_policy;
use crate::status;
use anyhow::{anyhow, bail, Context};
use qmeta_dmcp::{ClientSession, Command, Reply, Scope, MAX_FRAME};
use qmeta_fields::FieldSet;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// Runs the agent with the given key source until `shutdown` turns true.
/// Each message on `reload` re-reads the policy file (SIGHUP in `run`).
pub async fn run_with<K: KeySource>(
    cfg: AgentConfig,
    keys: K,
    reload: mpsc::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut reload = Some(reload);
    let mut agent = Agent::new(cfg, keys);
    let first = agent.cfg.reconnect;
    let mut backoff = first;
    tracing::info!(backend = %agent.cfg.backend, lb = %agent.cfg.lb_control, sae = %agent.keys.sae_id(), "agent starting");
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match agent.connect().await {
            Ok(conn) => match agent.session(conn, &mut reload, &mut shutdown).await {
                Ok(()) => return Ok(()),
                Err(Broken { synced, error }) => {
                    tracing::warn!(backend = %agent.cfg.backend, "DMCP connection lost: {error:#}");
                    if synced {
                        backoff = first;
                    }
                }
            },
            Err(e) => tracing::warn!(backend = %agent.cfg.backend, "cannot reach the LB: {e:#}"),
        }
        agent.write_status(false);
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = shutdown_requested(&mut shutdown) => return Ok(()),
                _ = next_reload(&mut reload) => {
                    // Not connected: the next SYNC carries the new policy.
                    agent.reload_policy();
                }
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF.max(first));
    }
}

/// Why a session ended, and whether it had reached a synced state (which
/// resets the backoff).
struct Broken {
    synced: bool,
    error: anyhow::Error,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Agent<K> {
    cfg: AgentConfig,
    keys: K,
    planner: Planner,
    client: ClientSession,
    /// The LB's state as last acknowledged (empty before the first ACK).
    acked: Vec<(Scope, FieldSet)>,
    version: Option<u64>,
}

impl<K: KeySource> Agent<K> {
    fn new(cfg: AgentConfig, keys: K) -> Self {
        let client = ClientSession::new(keys.sae_id().to_string());
        let planner = Planner::new(cfg.policy.clone());
        Agent { cfg, keys, planner, client, acked: Vec::new(), version: None }
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        let stream = tokio::time::timeout(self.cfg.timeout, TcpStream::connect(&self.cfg.lb_control))
            .await
            .map_err(|_| anyhow!("connect to {} timed out", self.cfg.lb_control))?
            .with_context(|| format!("connect to {}", self.cfg.lb_control))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(MAX_FRAME) })
    }

    async fn session(
        &mut self,
        mut conn: Conn,
        reload: &mut Option<mpsc::Receiver<()>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Broken> {
        self.sync(&mut conn).await.map_err(|error| Broken { synced: false, error })?;
        let broken = |error| Broken { synced: true, error };
        loop {
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = shutdown_requested(shutdown) => return Ok(()),
                _ = next_reload(reload) => {
                    if self.reload_policy() {
                        self.update(&mut conn).await.map_err(broken)?;
                    }
                }
                r = conn.stream.read(&mut probe) => {
                    // The LB never speaks unasked: this is EOF or an error.
                    return Err(broken(match r {
                        Ok(0) => anyhow!("the LB closed the connection"),
                        Ok(_) => anyhow!("unsolicited bytes from the LB"),
                        Err(e) => e.into(),
                    }));
                }
            }
        }
    }

    /// SYNC the desired state (dropping fields the LB refuses), then draw
    /// for randomizing scopes that have no draw yet.
    async fn sync(&mut self, conn: &mut Conn) -> anyhow::Result<()> {
        // Each refusal removes one field, so this ends.
        loop {
            let cmd = self.planner.sync();
            match self.exchange(conn, &cmd).await? {
                Reply::Ack { version, scopes, .. } => {
                    self.acked_state(&cmd, version, scopes);
                    break;
                }
                refused => {
                    let Some(field) =
                        refused.not_permitted_field().filter(|f| !self.planner.refused_fields().contains(*f))
                    else {
                        bail!("SYNC refused: {}", describe(&refused));
                    };
                    self.give_up(field);
                }
            }
        }
        for cmd in self.planner.randomize() {
            self.send(conn, &cmd).await?;
        }
        self.write_status(true);
        Ok(())
    }

    /// After a policy change: only the commands that get from the last ACK
    /// to the new desired state.
    async fn update(&mut self, conn: &mut Conn) -> anyhow::Result<()> {
        let cmds = self.planner.update(&self.acked);
        if cmds.is_empty() {
            tracing::info!(backend = %self.cfg.backend, "LB state already matches the new policy");
        }
        for cmd in cmds {
            self.send(conn, &cmd).await?;
        }
        self.write_status(true);
        Ok(())
    }

    /// One command whose refusal for a field is survivable.
    async fn send(&mut self, conn: &mut Conn, cmd: &Command) -> anyhow::Result<()> {
        match self.exchange(conn, cmd).await? {
            Reply::Ack { version, scopes, drawn } => {
                if let (Some(scope), Some(drawn)) = (cmd.scope(), drawn) {
                    tracing::info!(backend = %self.cfg.backend, %scope, drawn = %drawn.names().join(","), "LB drew");
                    self.planner.drawn(scope, drawn);
                }
                self.acked_state(cmd, version, scopes);
                Ok(())
            }
            refused => match refused.not_permitted_field() {
                Some(field) => {
                    self.give_up(field);
                    Ok(())
                }
                None => bail!("{} refused: {}", cmd.summary(), describe(&refused)),
            },
        }
    }

    fn give_up(&mut self, field: qmeta_fields::FieldId) {
        if self.planner.refused(field) {
            tracing::error!(backend = %self.cfg.backend, %field, "the LB does not permit a REQUIRED field; continuing without it");
        } else {
            tracing::warn!(backend = %self.cfg.backend, %field, "the LB does not permit this field; continuing without it");
        }
    }

    fn acked_state(&mut self, cmd: &Command, version: u64, scopes: Vec<(Scope, FieldSet)>) {
        match cmd.scope() {
            None => self.acked = scopes,
            Some(scope) => {
                self.acked.retain(|(s, _)| s != scope);
                self.acked.extend(scopes);
                self.acked.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
        self.version = Some(version);
        let state: Vec<String> = self.acked.iter().map(|(s, f)| format!("{s}=[{}]", f.names().join(","))).collect();
        tracing::info!(backend = %self.cfg.backend, version, command = %cmd.summary(), state = %state.join(" "), "DMCP ACK");
    }

    /// One request/reply, bounded by the configured timeout. An
    /// unauthenticated ERROR ends the connection (it may be forged; a
    /// reconnect and SYNC recover either way).
    async fn exchange(&mut self, conn: &mut Conn, cmd: &Command) -> anyhow::Result<Reply> {
        let limit = self.cfg.timeout;
        let work = async {
            let key = self.keys.fresh_key().await.context("fetching a key from the KME")?;
            let frame = self.client.request(cmd, key.id, &key.bytes, now_unix_ms());
            conn.stream.write_all(&frame).await?;
            let mut chunk = [0u8; 2048];
            loop {
                if let Some((used, reply)) = self.client.read_reply(&conn.buf, &key.bytes)? {
                    conn.buf.drain(..used);
                    if let Reply::Error { authenticated: false, .. } = &reply {
                        bail!("unauthenticated answer to {}: {}", cmd.summary(), describe(&reply));
                    }
                    return Ok(reply);
                }
                let n = conn.stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("the LB closed the connection");
                }
                conn.buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(limit, work).await.map_err(|_| anyhow!("no answer from the LB within {limit:?}"))?
    }

    /// Re-reads the policy file; true if the policy changed. A bad file is
    /// logged and changes nothing.
    fn reload_policy(&mut self) -> bool {
        match load_policy(&self.cfg.policy_path) {
            Ok(policy) => {
                let changed = self.planner.replace_policy(policy);
                tracing::info!(backend = %self.cfg.backend, changed, "policy reloaded");
                changed
            }
            Err(e) => {
                tracing::error!(backend = %self.cfg.backend, "policy reload failed, keeping the current policy:\n{e}");
                false
            }
        }
    }

    fn write_status(&self, connected: bool) {
        let Some(path) = &self.cfg.status_file else {
            return;
        };
        let line =
            status::render(&self.cfg.backend, connected, self.version, &self.acked, self.planner.refused_fields());
        if let Err(e) = status::write(path, &line) {
            tracing::warn!("status file {}: {e}", path.display());
        }
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Error { code, reason, authenticated } => {
            let name = qmeta_dmcp::ErrorCode::from_u16(*code).map(|c| c.name()).unwrap_or("?");
            let auth = if *authenticated { "" } else { ", unauthenticated" };
            format!("{code} {name} ({reason}{auth})")
        }
        Reply::Ack { version, .. } => format!("ACK version {version}"),
    }
}

/// Resolves when shutdown is requested; never if the sender is gone.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves on the next reload request; never once the sender is gone.
async fn next_reload(rx: &mut Option<mpsc::Receiver<()>>) {
    if let Some(r) = rx {
        if r.recv().await.is_some() {
            return;
        }
        *rx = None;
    }
    std::future::pending::<()>().await
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
