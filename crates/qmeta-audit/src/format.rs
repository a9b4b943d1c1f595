//! The fixed line prefix `{"seq":N,"ts":"…","prev":"…","event":"…"`:
//! writing it and reading it back. Pure functions, no I/O.

use crate::record::MAX_LINE_BYTES;

/// `prev` of the first line of a chain.
pub(crate) const ZERO_HASH: [u8; 32] = [0; 32];

/// 9999-12-31T23:59:59.999Z: the last instant RFC 3339 can write with a
/// four-digit year. Later time stamps are clamped to it.
pub(crate) const MAX_TS_MS: u64 = 253_402_300_799_999;

const TS_LEN: usize = 24;
const MAX_EVENT_LEN: usize = 64;

/// Writes `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn format_ts(ms: u64) -> [u8; TS_LEN] {
    let ms = ms.min(MAX_TS_MS);
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut out[0..4], y);
    put_digits(&mut out[5..7], m);
    put_digits(&mut out[8..10], d);
    put_digits(&mut out[11..13], sod / 3600);
    put_digits(&mut out[14..16], sod / 60 % 60);
    put_digits(&mut out[17..19], sod % 60);
    put_digits(&mut out[20..23], ms % 1000);
    out
}

/// Parses what [`format_ts`] writes, and nothing else (canonical form only).
pub(crate) fn parse_ts(b: &[u8]) -> Option<u64> {
    if b.len() != TS_LEN {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        b[r].iter().try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if y < 1970 || !(1..=12).contains(&mo) || d == 0 || d > 31 || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let total = ((days * 86_400 + h * 3600 + mi * 60 + s) * 1000) + ms;
    // Round trip rejects impossible dates (Feb 30) and stray separators.
    (format_ts(total) == b[..]).then_some(total)
}

fn put_digits(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

// Howard Hinnant's civil calendar algorithms, restricted to days >= 0.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends the decimal form of `v` (no allocation).
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `{"seq":N,"ts":"…","prev":"…",` — the record's JSON, minus its
/// opening brace, follows.
pub(crate) fn push_prefix(out: &mut Vec<u8>, seq: u64, ts_ms: u64, prev: &[u8; 32]) {
    out.extend_from_slice(b"{\"seq\":");
    push_u64(out, seq);
    out.extend_from_slice(b",\"ts\":\"");
    out.extend_from_slice(&format_ts(ts_ms));
    out.extend_from_slice(b"\",\"prev\":\"");
    let mut hex_buf = [0u8; 64];
    // Cannot fail: the buffer is exactly twice the input length.
    let _ = hex::encode_to_slice(prev, &mut hex_buf);
    out.extend_from_slice(&hex_buf);
    out.extend_from_slice(b"\",");
}

/// The chain fields of one line.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub seq: u64,
    pub ts_ms: u64,
    pub prev: [u8; 32],
    pub event: &'a str,
}

/// A bounded cursor over one line; every step checks before it reads.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, lit: &[u8], what: &str) -> Result<(), String> {
        if self.b[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(format!("expected {what} at byte {}", self.pos + 1))
        }
    }

    fn take_while(&mut self, max: usize, ok: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        let rest = &self.b[start..];
        let n = rest.iter().take(max + 1).take_while(|&&c| ok(c)).count();
        self.pos += n;
        &rest[..n]
    }
}

/// Checks one line (without its newline) against the format and returns its
/// chain fields. The error says what is wrong, never what the line holds.
pub(crate) fn parse_line(b: &[u8]) -> Result<Parsed<'_>, String> {
    if b.len() > MAX_LINE_BYTES {
        return Err(format!("line longer than {MAX_LINE_BYTES} bytes"));
    }
    if std::str::from_utf8(b).is_err() {
        return Err("not UTF-8".into());
    }
    let mut c = Cursor { b, pos: 0 };
    c.lit(b"{\"seq\":", "`{\"seq\":`")?;
    let digits = c.take_while(20, |x| x.is_ascii_digit());
    if digits.is_empty() || digits.len() > 20 || (digits.len() > 1 && digits[0] == b'0') {
        return Err("seq is not a canonical decimal".into());
    }
    let seq = digits.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')));
    let seq = seq.ok_or("seq out of range")?;
    c.lit(b",\"ts\":\"", "`,\"ts\":\"`")?;
    let ts = c.take_while(TS_LEN, |x| x != b'"');
    let ts_ms = parse_ts(ts).ok_or("ts is not RFC 3339 UTC with milliseconds")?;
    c.lit(b"\",\"prev\":\"", "`\",\"prev\":\"`")?;
    let hex_prev = c.take_while(64, |x| matches!(x, b'0'..=b'9' | b'a'..=b'f'));
    let mut prev = [0u8; 32];
    if hex_prev.len() != 64 || hex::decode_to_slice(hex_prev, &mut prev).is_err() {
        return Err("prev is not 64 lowercase hex digits".into());
    }
    c.lit(b"\",\"event\":\"", "`\",\"event\":\"`")?;
    let event = c.take_while(MAX_EVENT_LEN, |x| matches!(x, b'a'..=b'z' | b'0'..=b'9' | b'_'));
    if event.is_empty() || event.len() > MAX_EVENT_LEN {
        return Err("event is not a snake_case name".into());
    }
    c.lit(b"\"", "`\"` after event")?;
    if !matches!(b.get(c.pos), Some(b',' | b'}')) || b.last() != Some(&b'}') {
        return Err("record does not end its object".into());
    }
    // The prefix is ours; the rest must make the whole line one JSON object.
    serde_json::from_slice::<serde::de::IgnoredAny>(b).map_err(|e| format!("invalid JSON at column {}", e.column()))?;
    let event = std::str::from_utf8(event).map_err(|_| "event is not UTF-8")?;
    Ok(Parsed { seq, ts_ms, prev, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_known_values() {
        assert_eq!(&format_ts(0), b"1970-01-01T00:00:00.000Z");
        assert_eq!(&format_ts(951_782_400_123), b"2000-02-29T00:00:00.123Z");
        assert_eq!(&format_ts(1_700_000_000_001), b"2023-11-14T22:13:20.001Z");
        assert_eq!(&format_ts(u64::MAX), b"9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn ts_round_trips_and_rejects_non_canonical() {
        for ms in [0, 1, 86_399_999, 951_782_400_123, 4_102_444_800_000, MAX_TS_MS] {
            assert_eq!(parse_ts(&format_ts(ms)), Some(ms));
        }
        assert_eq!(parse_ts(b"2023-02-30T00:00:00.000Z"), None);
        assert_eq!(parse_ts(b"2023-01-01T24:00:00.000Z"), None);
        assert_eq!(parse_ts(b"1969-12-31T23:59:59.999Z"), None);
        assert_eq!(parse_ts(b"2023-01-01 00:00:00.000Z"), None);
        assert_eq!(parse_ts(b"2023-01-01T00:00:00.000+"), None);
    }

    #[test]
    fn push_u64_writes_decimal() {
        for v in [0u64, 7, 10, 12_345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }

    #[test]
    fn parse_line_reads_prefix() {
        let line = format!(
            "{{\"seq\":42,\"ts\":\"2023-11-14T22:13:20.001Z\",\"prev\":\"{}\",\"event\":\"lifecycle\",\"component\":\"lb\",\"what\":\"x\"}}",
            "ab".repeat(32)
        );
        let p = parse_line(line.as_bytes()).unwrap();
        assert_eq!(p.seq, 42);
        assert_eq!(p.ts_ms, 1_700_000_000_001);
        assert_eq!(p.prev, [0xab; 32]);
        assert_eq!(p.event, "lifecycle");
        // Trailing bytes, leading zeros, uppercase hex are all refused.
        assert!(parse_line(format!("{line} ").as_bytes()).is_err());
        assert!(parse_line(line.replace("\"seq\":42", "\"seq\":042").as_bytes()).is_err());
        assert!(parse_line(line.replace("abab", "ABAB").as_bytes()).is_err());
        assert!(parse_line(line.replace("\"x\"}", "\"x\"").as_bytes()).is_err());
    }
}
