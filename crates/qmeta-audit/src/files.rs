//! File naming and crash recovery for the writer (the I/O side).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::record::MAX_LINE_BYTES;

/// Every line starts with this; a torn tail must be a prefix of a line.
const LINE_START: &[u8] = b"{\"seq\":";

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Name a full part is renamed to: `<name>.<last seq, 20 digits>`, so that
/// sorting names sorts parts by age.
pub(crate) fn rotated_path(path: &Path, last_seq: u64) -> PathBuf {
    sibling(path, &format!(".{last_seq:020}"))
}

/// Where the next part is prepared before it replaces the live file.
pub(crate) fn next_path(path: &Path) -> PathBuf {
    sibling(path, ".next")
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The rotated parts of `path`, oldest first.
pub(crate) fn rotated_parts(path: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(base) = path.file_name() else {
        return Ok(Vec::new());
    };
    let base = base.as_encoded_bytes();
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(parent(path))? {
        let entry = entry?;
        let name = entry.file_name();
        let b = name.as_encoded_bytes();
        let is_part = b.len() == base.len() + 21
            && b.starts_with(base)
            && b[base.len()] == b'.'
            && b[base.len() + 1..].iter().all(u8::is_ascii_digit);
        if is_part {
            parts.push(entry.path());
        }
    }
    parts.sort();
    Ok(parts)
}

/// Makes renames and creations in `path`'s directory durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent(path))?.sync_all()
}

/// What the end of an existing log holds.
pub(crate) struct Tail {
    /// Offset just past the last `\n`: everything after it is torn.
    pub complete_end: u64,
    /// The last complete line, without its newline.
    pub last_line: Option<String>,
}

pub(crate) enum TailError {
    Io(io::Error),
    /// The file does not end like an audit log; nothing was changed.
    Corrupt(String),
}

impl From<io::Error> for TailError {
    fn from(e: io::Error) -> Self {
        TailError::Io(e)
    }
}

/// Finds the last complete line and the torn tail, reading at most about two
/// lines' worth backwards from the end.
pub(crate) fn scan_tail(file: &mut File) -> Result<Tail, TailError> {
    let len = file.metadata()?.len();
    let limit = MAX_LINE_BYTES as u64 + 1;
    let last_nl = rfind_newline(file, len, limit)?;
    let complete_end = last_nl.map_or(0, |p| p + 1);
    if last_nl.is_none() && len > limit {
        return Err(TailError::Corrupt("no newline near the end: not an audit log, or damaged".into()));
    }
    let torn = read_at(file, complete_end, len - complete_end)?;
    let n = torn.len().min(LINE_START.len());
    if torn[..n] != LINE_START[..n] {
        return Err(TailError::Corrupt("unterminated tail is not the start of a record".into()));
    }
    let Some(last_nl) = last_nl else {
        return Ok(Tail { complete_end, last_line: None });
    };
    let start = match rfind_newline(file, last_nl, limit)? {
        Some(p) => p + 1,
        None if last_nl < limit => 0,
        None => return Err(TailError::Corrupt("last line is too long".into())),
    };
    let line = read_at(file, start, last_nl - start)?;
    let line = String::from_utf8(line).map_err(|_| TailError::Corrupt("last line is not UTF-8".into()))?;
    Ok(Tail { complete_end, last_line: Some(line) })
}

fn read_at(file: &mut File, at: u64, len: u64) -> io::Result<Vec<u8>> {
    // Callers bound len by MAX_LINE_BYTES (plus one) before calling.
    let mut buf = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Offset of the last `\n` in `[end - limit, end)`.
fn rfind_newline(file: &mut File, end: u64, limit: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let floor = end.saturating_sub(limit);
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = end;
    while pos > floor {
        let n = CHUNK.min(pos - floor);
        pos -= n;
        let chunk = &mut buf[..n as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(pos + i as u64));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tail_of(content: &[u8]) -> Result<Tail, TailError> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        scan_tail(&mut f)
    }

    #[test]
    fn finds_last_line_and_torn_tail() {
        let t = tail_of(b"{\"seq\":1}\n{\"seq\":2}\n{\"se").ok().unwrap();
        assert_eq!(t.complete_end, 20);
        assert_eq!(t.last_line.as_deref(), Some("{\"seq\":2}"));
        let t = tail_of(b"{\"seq\":1}\n").ok().unwrap();
        assert_eq!(t.complete_end, 10);
        assert_eq!(t.last_line.as_deref(), Some("{\"seq\":1}"));
        let t = tail_of(b"{\"seq\":1").ok().unwrap();
        assert_eq!((t.complete_end, t.last_line), (0, None));
        let t = tail_of(b"").ok().unwrap();
        assert_eq!((t.complete_end, t.last_line), (0, None));
    }

    #[test]
    fn refuses_foreign_tails() {
        assert!(matches!(tail_of(b"{\"seq\":1}\nhello"), Err(TailError::Corrupt(_))));
        let big = vec![b'x'; MAX_LINE_BYTES + 10];
        assert!(matches!(tail_of(&big), Err(TailError::Corrupt(_))));
    }

    #[test]
    fn names_parts_so_they_sort_by_age() {
        let p = Path::new("/var/log/audit.log");
        assert_eq!(rotated_path(p, 42), Path::new("/var/log/audit.log.00000000000000000042"));
        assert_eq!(next_path(p), Path::new("/var/log/audit.log.next"));
    }
}
