//! The qmeta audit log: an append-only, hash-chained record of every
//! certificate issued, every DMCP frame (accepted or rejected, and why) and
//! every key fetch and rotation.
//!
//! Each record is one JSON line `{"seq":N,"ts":"…","prev":"<sha256 of the
//! previous line>","event":"…",…}`; the exact format, the chain, crash
//! recovery and rotation are specified in `docs/AUDIT.md`. Records hold
//! identifiers only (serials, backend names, field ids, key ids, versions):
//! never key material, never metadata values.
//!
//! What it is not: a signer. The chain shows that lines were changed,
//! removed or reordered; it cannot show that the tail was cut or the whole
//! file rewritten unless a head ([`ChainHead`]) was kept elsewhere —
//! signed checkpoints belong to the caller.
//!
//! The core, [`Chain`], is sans-IO: time stamps and records in, lines out.
//! [`AuditLog`] wraps it in a writer thread so that callers on the hot path
//! never touch the disk. Call order:
//!
//! 1. [`AuditLog::open`] (resumes the chain of an existing file);
//! 2. [`AuditLog::record`] for each event — non-blocking; an error means the
//!    record will not be written and the caller must fail closed;
//!    [`AuditLog::record_durable`] when the record must be on disk before
//!    the caller answers (a DMCP acknowledgement);
//! 3. [`AuditLog::flush`] / drop the last clone at shutdown (drop drains the
//!    queue and fsyncs);
//! 4. [`verify_file`] / [`verify_rotated`] to check a log offline.
#![forbid(unsafe_code)]

mod chain;
mod files;
mod format;
mod log;
mod record;
mod verify;
mod writer;

pub use chain::{Chain, ChainHead};
pub use log::{AuditError, AuditLog, AuditOptions};
pub use record::{Record, MAX_LINE_BYTES};
pub use verify::{verify, verify_file, verify_rotated, RotatedVerifyError, VerifyError, VerifySummary};
