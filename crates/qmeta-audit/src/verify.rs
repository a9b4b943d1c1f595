//! Checking a log: format, sequence, hash chain, time order.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::chain::ChainHead;
use crate::files;
use crate::format::{self, ZERO_HASH};
use crate::record::MAX_LINE_BYTES;

/// The first bad line of a log and what is wrong with it. `line` is 1-based;
/// 0 means the file itself (cannot be opened). The reason never quotes the
/// line's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct VerifyError {
    pub line: usize,
    pub reason: String,
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Number of lines (records) checked.
    pub records: u64,
    /// Head of the chain after the last line; compare it with a head written
    /// down earlier to detect truncation or a rewritten tail.
    pub head: ChainHead,
}

/// Verification of a rotated set failed in `file`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {error}", file.display())]
pub struct RotatedVerifyError {
    pub file: PathBuf,
    pub error: VerifyError,
}

/// Verifies one log stream: a single file, or rotated parts concatenated in
/// order (they form one chain).
///
/// Every line must be complete (end in `\n`), at most
/// [`MAX_LINE_BYTES`], in the format of `docs/AUDIT.md`, carry the next
/// `seq`, have `prev` equal to the SHA-256 of the line before it, and a `ts`
/// no earlier than the line before it. The first line starts a chain (`seq`
/// 1, `prev` of zeros) or continues one from an earlier file (a `rotated`
/// record). A changed line that still parses is reported at the *next*
/// line, whose `prev` no longer matches; a change to the last line is only
/// visible by comparing the returned head with one recorded earlier.
pub fn verify(mut reader: impl BufRead) -> Result<VerifySummary, VerifyError> {
    let mut v = Verifier::default();
    let mut buf = Vec::new();
    verify_stream(&mut v, &mut reader, &mut buf)?;
    Ok(v.summary())
}

/// [`verify`] on a file.
pub fn verify_file(path: &Path) -> Result<VerifySummary, VerifyError> {
    let file = std::fs::File::open(path).map_err(|e| VerifyError { line: 0, reason: format!("cannot open: {e}") })?;
    verify(BufReader::with_capacity(64 * 1024, file))
}

/// Verifies the live file `path` together with its rotated parts
/// (`<name>.<20-digit last seq>` beside it), oldest first, as one chain:
/// each part after the first must open with a `rotated` record that names
/// the part before it and continues its `seq` and hash. The oldest part
/// present may itself start with a `rotated` record (older parts removed by
/// retention).
pub fn verify_rotated(path: &Path) -> Result<VerifySummary, RotatedVerifyError> {
    let fail = |file: &Path, line: usize, reason: String| RotatedVerifyError {
        file: file.to_path_buf(),
        error: VerifyError { line, reason },
    };
    let mut parts = files::rotated_parts(path).map_err(|e| fail(path, 0, format!("cannot list: {e}")))?;
    if path.exists() {
        parts.push(path.to_path_buf());
    }
    if parts.is_empty() {
        return Err(fail(path, 0, "no such file".into()));
    }
    let mut v = Verifier::default();
    let mut buf = Vec::new();
    let mut previous: Option<String> = None;
    for part in &parts {
        v.start_file(previous.take());
        let file = std::fs::File::open(part).map_err(|e| fail(part, 0, format!("cannot open: {e}")))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        verify_stream(&mut v, &mut reader, &mut buf)
            .map_err(|error| RotatedVerifyError { file: part.clone(), error })?;
        previous = part.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    Ok(v.summary())
}

fn verify_stream(v: &mut Verifier, reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<(), VerifyError> {
    loop {
        buf.clear();
        let reason = match read_line(reader, buf, MAX_LINE_BYTES) {
            Ok(Line::Eof) => return Ok(()),
            Ok(Line::Complete) => {
                v.feed(buf)?;
                continue;
            }
            Ok(Line::Torn) => "torn final line: no newline (write interrupted)".to_string(),
            Ok(Line::TooLong) => format!("line longer than {MAX_LINE_BYTES} bytes"),
            Err(e) => format!("read error: {e}"),
        };
        return Err(VerifyError { line: v.line + 1, reason });
    }
}

enum Line {
    Complete,
    Torn,
    TooLong,
    Eof,
}

/// Reads up to and excluding the next `\n` into `buf`, never holding more
/// than `max` bytes.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(if buf.is_empty() { Line::Eof } else { Line::Torn });
        }
        let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if buf.len() + chunk > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&avail[..chunk]);
        r.consume(chunk + usize::from(found));
        if found {
            return Ok(Line::Complete);
        }
    }
}

/// Line-by-line checker, shared by the single-stream and rotated-set entry
/// points.
#[derive(Default)]
struct Verifier {
    /// Lines seen in the current file.
    line: usize,
    records: u64,
    /// (`seq`, hash) the next line must carry; `None` before the first line.
    expect: Option<(u64, [u8; 32])>,
    last_ts: u64,
    /// Set at the start of a non-first part: the name its `rotated` record
    /// must give.
    rotated_from: Option<String>,
}

#[derive(serde::Deserialize)]
struct RotatedFields {
    previous_file: String,
}

impl Verifier {
    fn start_file(&mut self, previous: Option<String>) {
        self.line = 0;
        self.rotated_from = previous;
    }

    fn feed(&mut self, line: &[u8]) -> Result<(), VerifyError> {
        self.line += 1;
        let n = self.line;
        let err = |reason: String| VerifyError { line: n, reason };
        let p = format::parse_line(line).map_err(err)?;
        match self.expect {
            None => {
                let starts_chain = p.prev == ZERO_HASH;
                if starts_chain && p.seq != 1 {
                    return Err(err(format!("first line of a chain has seq {}, not 1", p.seq)));
                }
                if !starts_chain && p.event != "rotated" {
                    return Err(err(
                        "first line neither starts a chain (prev of zeros) nor continues one (rotated)".into()
                    ));
                }
            }
            Some((seq, hash)) => {
                if p.seq != seq {
                    return Err(err(format!("seq {} where {seq} was expected", p.seq)));
                }
                if p.prev != hash {
                    return Err(err(if n > 1 {
                        format!("prev is not the hash of line {}: that line was altered, or lines are missing", n - 1)
                    } else {
                        "prev is not the hash of the previous part's last line".into()
                    }));
                }
            }
        }
        if let Some(expected) = self.rotated_from.take() {
            if p.event != "rotated" {
                return Err(err("part does not open with a rotated record".into()));
            }
            let named = serde_json::from_slice::<RotatedFields>(line)
                .map_err(|_| err("rotated record without previous_file".into()))?;
            if named.previous_file != expected {
                return Err(err(format!(
                    "rotated record names {:?}, but the previous part is {expected:?}",
                    named.previous_file
                )));
            }
        }
        if p.ts_ms < self.last_ts {
            return Err(err("ts is earlier than the previous line's".into()));
        }
        let next = p.seq.checked_add(1).ok_or_else(|| err("seq exhausted".into()))?;
        self.last_ts = p.ts_ms;
        self.expect = Some((next, Sha256::digest(line).into()));
        self.records += 1;
        Ok(())
    }

    fn summary(&self) -> VerifySummary {
        let head = match &self.expect {
            Some((next, hash)) => ChainHead::from_parts(*next, hash),
            None => ChainHead::from_parts(1, &ZERO_HASH),
        };
        VerifySummary { records: self.records, head }
    }
}
