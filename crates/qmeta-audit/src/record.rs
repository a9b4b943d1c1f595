//! The audit vocabulary: what can be recorded.

use serde::{Deserialize, Serialize};

/// Longest line (without its newline) the log writes and the verifier reads.
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Upper bound on everything in a line that is not a string or list element
/// from the record: the chain prefix (~145 bytes), the event name, field
/// names, integers, booleans and `null`s. Checked by a test.
pub(crate) const LINE_OVERHEAD: usize = 1024;

/// One auditable event. Serialized as the tail of a log line, after
/// `seq`, `ts` and `prev`, starting with `"event":"<snake_case kind>"`.
///
/// Only identifiers go in here — serials, backend names, field ids, key ids,
/// versions — never key material and never metadata values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Record {
    /// An LB certificate was minted for a backend connection.
    CertIssued {
        /// Certificate serial number, lowercase hex.
        serial: String,
        backend: String,
        /// Field ids included in the certificate.
        fields: Vec<u16>,
        /// Field ids the backend asked for but that were dropped (size cap,
        /// value unavailable).
        dropped: Vec<u16>,
        /// QKD key id the values were sealed under.
        key_id: String,
        /// DMCP state version the field set came from.
        state_version: u64,
        conn_id: u64,
    },
    /// A DMCP frame, accepted or rejected.
    Dmcp {
        /// Socket address of the DMCP peer (a backend agent, not a client).
        peer: String,
        /// Sender id claimed in the frame.
        sender: String,
        key_id: Option<String>,
        /// DMCP sequence number of the frame. Written as `dmcp_seq` so the
        /// line keeps a single `seq` key (the chain's).
        #[serde(rename = "dmcp_seq")]
        seq: Option<u64>,
        /// Command name and arguments (field ids), e.g. `INCLUDE 3`.
        command: String,
        accepted: bool,
        /// Why the frame was rejected (`None` when accepted).
        reason: Option<String>,
        /// State version after the command (when accepted).
        state_version: Option<u64>,
        /// Field ids drawn by `RANDOMIZE`.
        drawn: Option<Vec<u16>>,
    },
    /// Key material was fetched from a KME (the id only).
    KeyFetched { sae: String, key_id: String, purpose: String },
    /// A backend's sealing key was replaced.
    KeyRotated { backend: String, key_id: String, previous: Option<String> },
    /// No usable key for a backend (the LB fails closed).
    KeyUnavailable { backend: String, reason: String },
    /// A client connection was refused.
    ConnectionRefused { conn_id: u64, backend: Option<String>, reason: String },
    /// Start, stop, reload, recovery of a component.
    Lifecycle { component: String, what: String },
    /// First record of a file after rotation; written by the log itself
    /// ([`AuditLog::record`](crate::AuditLog::record) refuses it). Its
    /// `prev` is the head of `previous_file`.
    Rotated {
        /// File name (no directory) the previous part was renamed to.
        previous_file: String,
    },
}

impl Record {
    /// Upper bound on the serialized size of the variable parts: JSON
    /// escapes a byte into at most 6 (`\u00XX`), a `u16` list element takes
    /// at most 6 (`65535,`).
    pub(crate) fn weight(&self) -> usize {
        fn s(x: &str) -> usize {
            x.len().saturating_mul(6)
        }
        fn os(x: &Option<String>) -> usize {
            x.as_deref().map_or(0, s)
        }
        fn v(x: &[u16]) -> usize {
            x.len().saturating_mul(6)
        }
        let parts: [usize; 4] = match self {
            Record::CertIssued { serial, backend, fields, dropped, key_id, .. } => {
                [s(serial) + s(backend), v(fields), v(dropped), s(key_id)]
            }
            Record::Dmcp { peer, sender, key_id, command, reason, drawn, .. } => {
                [s(peer) + s(sender), os(key_id) + s(command), os(reason), drawn.as_deref().map_or(0, v)]
            }
            Record::KeyFetched { sae, key_id, purpose } => [s(sae), s(key_id), s(purpose), 0],
            Record::KeyRotated { backend, key_id, previous } => [s(backend), s(key_id), os(previous), 0],
            Record::KeyUnavailable { backend, reason } => [s(backend), s(reason), 0, 0],
            Record::ConnectionRefused { backend, reason, .. } => [os(backend), s(reason), 0, 0],
            Record::Lifecycle { component, what } => [s(component), s(what), 0, 0],
            Record::Rotated { previous_file } => [s(previous_file), 0, 0, 0],
        };
        parts.iter().fold(0usize, |a, b| a.saturating_add(*b))
    }

    /// True when the record is guaranteed to serialize into a line of at
    /// most [`MAX_LINE_BYTES`].
    pub fn fits(&self) -> bool {
        self.weight().checked_add(LINE_OVERHEAD).is_some_and(|n| n <= MAX_LINE_BYTES)
    }
}
