//! The handle callers hold: enqueue records, wait for durability.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::chain::ChainHead;
use crate::record::{Record, MAX_LINE_BYTES};
use crate::writer::{self, Msg};

/// Tuning of an [`AuditLog`].
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Records that may wait for the writer before [`AuditLog::record`]
    /// fails with [`AuditError::QueueFull`]. At least 1. Default 65 536.
    pub queue_capacity: usize,
    /// Longest time a written record waits for its fsync (durable records
    /// do not wait). Default 100 ms.
    pub fsync_interval: Duration,
    /// Rotate once the file is larger than this; 0 never rotates.
    pub max_file_bytes: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions { queue_capacity: 65_536, fsync_interval: Duration::from_millis(100), max_file_bytes: 0 }
    }
}

/// Why the audit log could not take a record or could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The writer is behind by `queue_capacity` records. Fail closed: do not
    /// do what was to be audited.
    #[error("audit queue is full")]
    QueueFull,
    /// The writer thread stopped (an I/O error, logged when it happened);
    /// nothing more can be audited through this handle.
    #[error("audit writer has stopped")]
    WriterStopped,
    /// The record's strings and lists could make its line longer than
    /// [`MAX_LINE_BYTES`].
    #[error("audit record too large (a line may hold at most {MAX_LINE_BYTES} bytes)")]
    RecordTooLarge,
    /// [`Record::Rotated`] is written by the log itself.
    #[error("the rotated event is reserved to the audit log")]
    Reserved,
    /// An option is out of range.
    #[error("invalid audit options: {0}")]
    InvalidOptions(&'static str),
    /// Opening, reading or preparing the file failed.
    #[error("audit log {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The existing file does not end in a valid record, so the chain cannot
    /// be resumed. The file was left untouched; move it aside (and keep it)
    /// to start a new chain.
    #[error("audit log {} cannot be resumed: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// Handle to an append-only, hash-chained audit log written by a background
/// thread. Cheap to clone; the thread finishes the queue, fsyncs and exits
/// when the last clone is dropped (the drop waits for it).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

// Field order matters: the sender drops first (the writer sees the queue
// close and drains it), then the join handle waits for the writer.
struct Inner {
    tx: SyncSender<Msg>,
    head: Arc<Mutex<ChainHead>>,
    path: PathBuf,
    _join: Joiner,
    /// Held for the writer's lifetime: a second process appending to the
    /// same chain would interleave sequence numbers and break it.
    _lock: std::fs::File,
}

struct Joiner(Option<JoinHandle<()>>);

impl Drop for Joiner {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // A panic in the writer was already reported by the panic hook.
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.inner.path).field("head", &self.head()).finish()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn check(rec: &Record) -> Result<(), AuditError> {
    if matches!(rec, Record::Rotated { .. }) {
        return Err(AuditError::Reserved);
    }
    if !rec.fits() {
        return Err(AuditError::RecordTooLarge);
    }
    Ok(())
}

fn map_send<T>(e: TrySendError<T>) -> AuditError {
    match e {
        TrySendError::Full(_) => AuditError::QueueFull,
        TrySendError::Disconnected(_) => AuditError::WriterStopped,
    }
}

impl AuditLog {
    /// Opens (creating if missing) the log at `path`, resumes its chain,
    /// and starts the writer thread.
    ///
    /// Recovery: a torn final line (no newline: the process died
    /// mid-write) is truncated away, with a warning and a `lifecycle`
    /// record saying how many bytes went; a half-finished rotation is
    /// completed or undone. A file whose last complete line is not a valid
    /// record is refused ([`AuditError::Corrupt`]) and left untouched.
    pub fn open(path: &Path, opts: AuditOptions) -> Result<AuditLog, AuditError> {
        if opts.queue_capacity == 0 {
            return Err(AuditError::InvalidOptions("queue_capacity must be at least 1"));
        }
        // A hidden sibling, so it never looks like a rotated part.
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let lock_path = path.with_file_name(format!(".{name}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| AuditError::Io { path: lock_path.clone(), source })?;
        if let Err(e) = lock.try_lock() {
            let source = match e {
                std::fs::TryLockError::WouldBlock => std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the audit log is in use by another process (is an older qmeta lb still draining?)",
                ),
                std::fs::TryLockError::Error(e) => e,
            };
            return Err(AuditError::Io { path: path.to_path_buf(), source });
        }
        let w = writer::Writer::open(path, &opts, now_ms())?;
        let head = w.head_handle();
        let (tx, rx) = mpsc::sync_channel(opts.queue_capacity);
        let handle = std::thread::Builder::new()
            .name("qmeta-audit".into())
            .spawn(move || w.run(rx))
            .map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
        Ok(AuditLog {
            inner: Arc::new(Inner { tx, head, path: path.to_path_buf(), _join: Joiner(Some(handle)), _lock: lock }),
        })
    }

    /// Enqueues `rec`, time-stamped now. Never blocks. An error means the
    /// record will not be written: the caller must not go ahead with what
    /// it was auditing.
    pub fn record(&self, rec: Record) -> Result<(), AuditError> {
        check(&rec)?;
        let ts_ms = now_ms();
        self.inner.tx.try_send(Msg::Record { ts_ms, rec }).map_err(map_send)
    }

    /// Enqueues `rec` and resolves once its line is written and fsynced.
    /// Does not block the executor: the writer fsyncs at once for it (and
    /// for everything queued before it).
    pub async fn record_durable(&self, rec: Record) -> Result<(), AuditError> {
        check(&rec)?;
        let ts_ms = now_ms();
        let (done, wait) = tokio::sync::oneshot::channel();
        self.inner.tx.try_send(Msg::Durable { ts_ms, rec, done }).map_err(map_send)?;
        wait.await.map_err(|_| AuditError::WriterStopped)
    }

    /// Blocks until everything enqueued before this call is written and
    /// fsynced. Blocking: call it from a blocking context, not a tokio
    /// worker.
    pub fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.inner.tx.send(Msg::Flush(done)).map_err(|_| AuditError::WriterStopped)?;
        wait.recv().map_err(|_| AuditError::WriterStopped)
    }

    /// `seq` and hash of the last record written to the file (it may not be
    /// fsynced yet; after [`flush`](Self::flush) it is).
    pub fn head(&self) -> ChainHead {
        self.inner.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The path this log writes to.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Test hook: parks the writer until the returned sender is used or
    /// dropped. Returns once the writer is parked.
    #[cfg(test)]
    pub(crate) fn pause(&self) -> mpsc::SyncSender<()> {
        let (paused_tx, paused_rx) = mpsc::sync_channel(1);
        let (resume_tx, resume_rx) = mpsc::sync_channel(1);
        self.inner.tx.send(Msg::Pause { paused: paused_tx, resume: resume_rx }).expect("writer running");
        paused_rx.recv().expect("writer parked");
        resume_tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record::ConnectionRefused { conn_id: i, backend: None, reason: "limit".into() }
    }

    #[test]
    fn full_queue_is_refused_then_drains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let opts = AuditOptions { queue_capacity: 3, ..AuditOptions::default() };
        let log = AuditLog::open(&path, opts).unwrap();
        let resume = log.pause();
        for i in 0..3 {
            log.record(rec(i)).unwrap();
        }
        assert!(matches!(log.record(rec(3)), Err(AuditError::QueueFull)));
        resume.send(()).unwrap();
        log.flush().unwrap();
        let summary = crate::verify_file(&path).unwrap();
        assert_eq!(summary.records, 3);
        assert_eq!(log.head(), summary.head);
        // Room again once the writer caught up.
        log.record(rec(4)).unwrap();
    }

    #[test]
    fn options_and_records_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let bad = AuditOptions { queue_capacity: 0, ..AuditOptions::default() };
        assert!(matches!(AuditLog::open(&path, bad), Err(AuditError::InvalidOptions(_))));
        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        let rotated = Record::Rotated { previous_file: "x".into() };
        assert!(matches!(log.record(rotated), Err(AuditError::Reserved)));
        let huge = Record::Lifecycle { component: "lb".into(), what: "x".repeat(MAX_LINE_BYTES / 6) };
        assert!(matches!(log.record(huge), Err(AuditError::RecordTooLarge)));
        log.flush().unwrap();
        assert_eq!(log.head().seq, 0);
    }
}
