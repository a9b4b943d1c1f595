//! The writer thread: chains queued records, batches writes, fsyncs, rotates.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::chain::{Chain, ChainHead};
use crate::files::{self, TailError};
use crate::log::{now_ms, AuditError, AuditOptions};
use crate::record::Record;

/// Messages handled per batch before the batch is written out, so durable
/// waiters are not held up behind an endless stream.
const MAX_BATCH: usize = 4096;
/// Bytes gathered before they are written even mid-batch.
const MAX_BUFFER: usize = 1 << 20;

pub(crate) enum Msg {
    Record {
        ts_ms: u64,
        rec: Record,
    },
    Durable {
        ts_ms: u64,
        rec: Record,
        done: tokio::sync::oneshot::Sender<()>,
    },
    Flush(SyncSender<()>),
    #[cfg(test)]
    Pause {
        paused: SyncSender<()>,
        resume: Receiver<()>,
    },
}

pub(crate) struct Writer {
    path: PathBuf,
    file: File,
    /// Bytes in the live file (written, not necessarily synced).
    size: u64,
    chain: Chain,
    /// Lines of the current batch, newline-terminated.
    batch: Vec<u8>,
    fsync_interval: Duration,
    max_file_bytes: u64,
    head: Arc<Mutex<ChainHead>>,
    /// Waiters released by the next fsync.
    durable: Vec<tokio::sync::oneshot::Sender<()>>,
    flushes: Vec<SyncSender<()>>,
    /// Written since the last fsync.
    dirty: bool,
}

impl Writer {
    /// Opens the file, recovers from a crash, resumes the chain.
    pub(crate) fn open(path: &Path, opts: &AuditOptions, now: u64) -> Result<Writer, AuditError> {
        let io_err = |source| AuditError::Io { path: path.to_path_buf(), source };
        let corrupt = |reason: String| AuditError::Corrupt { path: path.to_path_buf(), reason };
        finish_rotation(path).map_err(io_err)?;
        let existed = path.exists();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io_err)?;
        if !existed {
            files::sync_dir(path).map_err(io_err)?;
        }
        let tail = match files::scan_tail(&mut file) {
            Ok(t) => t,
            Err(TailError::Io(e)) => return Err(io_err(e)),
            Err(TailError::Corrupt(reason)) => return Err(corrupt(reason)),
        };
        let chain = match &tail.last_line {
            Some(line) => Chain::resume(line).map_err(|e| corrupt(format!("last line: {}", e.reason)))?,
            None => Chain::new(),
        };
        let len = file.metadata().map_err(io_err)?.len();
        let mut w = Writer {
            path: path.to_path_buf(),
            file,
            size: len,
            head: Arc::new(Mutex::new(chain.head())),
            chain,
            batch: Vec::with_capacity(64 * 1024),
            fsync_interval: opts.fsync_interval,
            max_file_bytes: opts.max_file_bytes,
            durable: Vec::new(),
            flushes: Vec::new(),
            dirty: false,
        };
        let torn = len - tail.complete_end;
        if torn > 0 {
            tracing::warn!(path = %path.display(), bytes = torn, "audit log: truncating a torn final line");
            w.file.set_len(tail.complete_end).map_err(io_err)?;
            w.size = tail.complete_end;
            w.append(
                now,
                &Record::Lifecycle {
                    component: "audit".into(),
                    what: format!("truncated a torn final line ({torn} bytes) on open"),
                },
            );
            w.write_batch().map_err(io_err)?;
            w.sync().map_err(io_err)?;
        }
        Ok(w)
    }

    pub(crate) fn head_handle(&self) -> Arc<Mutex<ChainHead>> {
        Arc::clone(&self.head)
    }

    /// Thread body. On an I/O error the thread logs it and exits: the queue
    /// closes, so every later `record` fails and pending waiters hear
    /// `WriterStopped` — the log fails closed.
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        if let Err(e) = self.serve(&rx) {
            tracing::error!(path = %self.path.display(), error = %e,
                "audit log writer stopped; every further record is refused");
        }
    }

    fn serve(&mut self, rx: &Receiver<Msg>) -> io::Result<()> {
        let mut last_sync = Instant::now();
        loop {
            let first = if self.dirty {
                let wait = self.fsync_interval.saturating_sub(last_sync.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.finish(),
                }
            } else {
                match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return self.finish(),
                }
            };
            let mut closed = false;
            if let Some(m) = first {
                self.handle(m)?;
                for _ in 0..MAX_BATCH {
                    match rx.try_recv() {
                        Ok(m) => self.handle(m)?,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            self.write_batch()?;
            let due = self.dirty && last_sync.elapsed() >= self.fsync_interval;
            if closed || due || !self.durable.is_empty() || !self.flushes.is_empty() {
                self.sync()?;
                last_sync = Instant::now();
            }
            if self.max_file_bytes > 0 && self.size > self.max_file_bytes {
                self.rotate()?;
                last_sync = Instant::now();
            }
            if closed {
                return Ok(());
            }
        }
    }

    fn handle(&mut self, m: Msg) -> io::Result<()> {
        match m {
            Msg::Record { ts_ms, rec } => self.append(ts_ms, &rec),
            Msg::Durable { ts_ms, rec, done } => {
                self.append(ts_ms, &rec);
                self.durable.push(done);
            }
            Msg::Flush(done) => self.flushes.push(done),
            #[cfg(test)]
            Msg::Pause { paused, resume } => {
                let _ = paused.send(());
                let _ = resume.recv();
            }
        }
        if self.batch.len() >= MAX_BUFFER {
            self.write_batch()?;
        }
        Ok(())
    }

    fn append(&mut self, ts_ms: u64, rec: &Record) {
        self.chain.append_to(ts_ms, rec, &mut self.batch);
        self.batch.push(b'\n');
    }

    fn write_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.batch)?;
        self.size += self.batch.len() as u64;
        self.batch.clear();
        self.dirty = true;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = self.chain.head();
        Ok(())
    }

    /// fsyncs, then releases everyone waiting for durability.
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.dirty = false;
        for done in self.durable.drain(..) {
            // The waiter may have given up (future dropped); nothing to do.
            let _ = done.send(());
        }
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.write_batch()?;
        self.sync()
    }

    /// Starts a new part. The new part is prepared under `<name>.next` and
    /// synced before the renames, so a crash leaves either the old live file
    /// plus a stale `.next` (removed on open) or the rotated part plus
    /// `.next` (renamed into place on open).
    fn rotate(&mut self) -> io::Result<()> {
        self.write_batch()?;
        self.sync()?;
        let old = files::rotated_path(&self.path, self.chain.head().seq);
        if old.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("rotation target {} exists", old.display()),
            ));
        }
        let next = files::next_path(&self.path);
        if next.exists() {
            std::fs::remove_file(&next)?;
        }
        let mut file = OpenOptions::new().read(true).append(true).create_new(true).open(&next)?;
        let previous_file = old.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.append(now_ms(), &Record::Rotated { previous_file });
        file.write_all(&self.batch)?;
        file.sync_data()?;
        std::fs::rename(&self.path, &old)?;
        std::fs::rename(&next, &self.path)?;
        files::sync_dir(&self.path)?;
        self.size = self.batch.len() as u64;
        self.batch.clear();
        self.file = file;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = self.chain.head();
        tracing::info!(path = %self.path.display(), part = %old.display(), "audit log rotated");
        Ok(())
    }
}

/// Completes or undoes a rotation a crash interrupted (see `rotate`).
fn finish_rotation(path: &Path) -> io::Result<()> {
    let next = files::next_path(path);
    if !next.exists() {
        return Ok(());
    }
    if path.exists() {
        tracing::warn!(path = %path.display(), "audit log: removing an unfinished rotation");
        std::fs::remove_file(&next)?;
    } else {
        tracing::warn!(path = %path.display(), "audit log: completing an interrupted rotation");
        std::fs::rename(&next, path)?;
    }
    files::sync_dir(path)
}
