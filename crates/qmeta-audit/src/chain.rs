//! The sans-IO core: turns records into chained lines.

use sha2::{Digest, Sha256};

use crate::format::{self, ZERO_HASH};
use crate::record::Record;
use crate::verify::VerifyError;

/// Sequence number and hash of the last line of a chain: what an auditor
/// writes down to detect later truncation or rewriting.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainHead {
    /// `seq` of the last line; 0 for an empty chain.
    pub seq: u64,
    /// Lowercase hex SHA-256 of the last line without its newline; 64 zeros
    /// for an empty chain.
    pub hash: String,
}

impl ChainHead {
    pub(crate) fn from_parts(next_seq: u64, hash: &[u8; 32]) -> ChainHead {
        ChainHead { seq: next_seq - 1, hash: hex::encode(hash) }
    }
}

/// Hash-chain state. Feed it time stamps and records, get lines back.
///
/// It reads no clock and does no I/O. Time stamps are clamped so they never
/// go backwards within a chain (several threads take time stamps before they
/// enqueue, and wall clocks step).
#[derive(Clone)]
pub struct Chain {
    next_seq: u64,
    prev: [u8; 32],
    last_ts: u64,
    /// Reused buffer for the record's JSON, so appending allocates nothing
    /// once warm.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("head", &self.head()).field("last_ts", &self.last_ts).finish()
    }
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

impl Chain {
    /// A chain with no lines yet: the first line gets `seq` 1 and a `prev`
    /// of 64 zeros.
    pub fn new() -> Chain {
        Chain { next_seq: 1, prev: ZERO_HASH, last_ts: 0, scratch: Vec::with_capacity(512) }
    }

    /// Continues the chain whose last line is `last_line` (without its
    /// newline). Only that line is checked; run [`verify`](crate::verify)
    /// for the rest. Errors report `line: 1`, meaning the line given.
    pub fn resume(last_line: &str) -> Result<Chain, VerifyError> {
        let err = |reason: String| VerifyError { line: 1, reason };
        let p = format::parse_line(last_line.as_bytes()).map_err(err)?;
        let next_seq = p.seq.checked_add(1).ok_or_else(|| err("seq exhausted".into()))?;
        Ok(Chain {
            next_seq,
            prev: Sha256::digest(last_line.as_bytes()).into(),
            last_ts: p.ts_ms,
            scratch: Vec::with_capacity(512),
        })
    }

    /// Appends the next line (no newline) to `out` and advances the chain.
    /// This is the allocation-free form the log writer uses.
    ///
    /// The line is at most [`MAX_LINE_BYTES`](crate::MAX_LINE_BYTES) when
    /// [`Record::fits`]; a larger record still produces a line, which
    /// [`verify`](crate::verify) will then refuse.
    pub fn append_to(&mut self, ts_unix_ms: u64, rec: &Record, out: &mut Vec<u8>) {
        let ts = ts_unix_ms.max(self.last_ts).min(format::MAX_TS_MS);
        self.last_ts = ts;
        let start = out.len();
        format::push_prefix(out, self.next_seq, ts, &self.prev);
        self.scratch.clear();
        // Record holds only strings, integers, booleans and lists, and the
        // sink is a Vec: serde_json has no way to fail here.
        serde_json::to_writer(&mut self.scratch, rec).expect("Record always serializes");
        // Skip the record's opening brace: the prefix already opened it.
        out.extend_from_slice(&self.scratch[1..]);
        self.prev = Sha256::digest(&out[start..]).into();
        // A u64 of lines is never exhausted in practice; saturate rather
        // than wrap so a chain can never repeat a seq.
        self.next_seq = self.next_seq.saturating_add(1);
    }

    /// Appends the next record and returns its line (no newline).
    pub fn append(&mut self, ts_unix_ms: u64, rec: &Record) -> String {
        let mut out = Vec::with_capacity(256);
        self.append_to(ts_unix_ms, rec, &mut out);
        String::from_utf8(out).expect("prefix is ASCII and serde_json writes UTF-8")
    }

    /// Head of the chain: the last line appended (or resumed from).
    pub fn head(&self) -> ChainHead {
        ChainHead::from_parts(self.next_seq, &self.prev)
    }

    /// `seq` the next line will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle(what: &str) -> Record {
        Record::Lifecycle { component: "lb".into(), what: what.into() }
    }

    #[test]
    fn first_lines_have_documented_shape() {
        let mut c = Chain::new();
        assert_eq!(c.head().seq, 0);
        assert_eq!(c.head().hash, "0".repeat(64));
        let l1 = c.append(1_700_000_000_001, &lifecycle("start"));
        assert_eq!(
            l1,
            format!(
                "{{\"seq\":1,\"ts\":\"2023-11-14T22:13:20.001Z\",\"prev\":\"{}\",\"event\":\"lifecycle\",\"component\":\"lb\",\"what\":\"start\"}}",
                "0".repeat(64)
            )
        );
        let h1 = hex::encode(Sha256::digest(l1.as_bytes()));
        assert_eq!(c.head(), ChainHead { seq: 1, hash: h1.clone() });
        let l2 = c.append(1_700_000_000_002, &lifecycle("x"));
        assert!(l2.starts_with(&format!(
            "{{\"seq\":2,\"ts\":\"2023-11-14T22:13:20.002Z\",\"prev\":\"{h1}\",\"event\":\"lifecycle\""
        )));
    }

    #[test]
    fn ts_never_goes_backwards() {
        let mut c = Chain::new();
        c.append(5_000, &lifecycle("a"));
        let l = c.append(1_000, &lifecycle("b"));
        assert!(l.contains("\"ts\":\"1970-01-01T00:00:05.000Z\""), "{l}");
    }

    #[test]
    fn resume_continues_seq_and_hash() {
        let mut a = Chain::new();
        a.append(1, &lifecycle("a"));
        let last = a.append(2, &lifecycle("b"));
        let mut b = Chain::resume(&last).unwrap();
        assert_eq!(b.head(), a.head());
        assert_eq!(b.append(3, &lifecycle("c")), a.append(3, &lifecycle("c")));
    }

    #[test]
    fn resume_rejects_garbage() {
        let e = Chain::resume("{\"seq\":1}").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("ts"), "{}", e.reason);
    }
}
