//! Reading a process' CPU time and memory, and counting TCP connections,
//! from `/proc`. Parsers are pure (text in, numbers out) so they are tested
//! on captured text; the readers are thin wrappers.

use std::fmt;

/// CPU time of one process (all its threads), in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuSample {
    pub utime: u64,
    pub stime: u64,
}

impl CpuSample {
    pub fn total(self) -> u64 {
        self.utime + self.stime
    }

    /// Ticks spent between `earlier` and `self`.
    pub fn since(self, earlier: CpuSample) -> CpuSample {
        CpuSample { utime: self.utime.saturating_sub(earlier.utime), stime: self.stime.saturating_sub(earlier.stime) }
    }
}

/// Why a `/proc` file could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcError {
    /// The file is missing a field we need (format changed or truncated).
    Malformed(&'static str),
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcError::Malformed(what) => write!(f, "malformed /proc data: {what}"),
        }
    }
}

impl std::error::Error for ProcError {}

/// utime + stime from the text of `/proc/PID/stat`. The command name is in
/// parentheses and may hold spaces or ')' itself, so fields are counted
/// from the last ')'.
pub fn parse_stat(text: &str) -> Result<CpuSample, ProcError> {
    let close = text.rfind(')').ok_or(ProcError::Malformed("no ')'"))?;
    // After ')': field 3 (state) is the first; utime is field 14, stime 15.
    let mut it = text[close + 1..].split_ascii_whitespace().skip(11);
    let mut next = |what| it.next().and_then(|s| s.parse::<u64>().ok()).ok_or(ProcError::Malformed(what));
    let utime = next("utime")?;
    let stime = next("stime")?;
    Ok(CpuSample { utime, stime })
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_rss_kib(text: &str) -> Result<u64, ProcError> {
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or(ProcError::Malformed("VmRSS"))
}

/// Established IPv4 TCP connections whose remote port is `port`, from the
/// text of `/proc/net/tcp` (addresses are hex, state 01 = ESTABLISHED).
pub fn count_established_to(text: &str, port: u16) -> usize {
    let want = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| {
            let mut f = l.split_ascii_whitespace();
            let (_sl, _local, remote, state) = (f.next(), f.next(), f.next(), f.next());
            remote.is_some_and(|r| r.ends_with(&want)) && state == Some("01")
        })
        .count()
}

pub fn read_cpu(pid: u32) -> std::io::Result<CpuSample> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).map_err(std::io::Error::other)
}

pub fn read_rss_kib(pid: u32) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_rss_kib(&text).map_err(std::io::Error::other)
}

pub fn established_to(port: u16) -> std::io::Result<usize> {
    Ok(count_established_to(&std::fs::read_to_string("/proc/net/tcp")?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a running haproxy (fields after stime trimmed).
    const STAT: &str = "4242 (haproxy) S 1 4242 4242 0 -1 4194560 1918 0 0 0 1234 567 0 0 20 0 1 0 6036 91000832 2436 18446744073709551615";

    #[test]
    fn stat_fields() {
        assert_eq!(parse_stat(STAT), Ok(CpuSample { utime: 1234, stime: 567 }));
    }

    #[test]
    fn stat_name_with_parens_and_spaces() {
        let text = STAT.replace("(haproxy)", "(a) b (c))");
        assert_eq!(parse_stat(&text).unwrap().total(), 1801);
    }

    #[test]
    fn stat_truncated() {
        assert_eq!(parse_stat("1 (x) S 1 2 3"), Err(ProcError::Malformed("utime")));
        assert_eq!(parse_stat("1 x"), Err(ProcError::Malformed("no ')'")));
    }

    #[test]
    fn since_subtracts_and_saturates() {
        let a = CpuSample { utime: 10, stime: 5 };
        let b = CpuSample { utime: 25, stime: 4 };
        assert_eq!(b.since(a), CpuSample { utime: 15, stime: 0 });
    }

    #[test]
    fn rss() {
        let text = "Name:\tqmeta\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(parse_rss_kib(text), Ok(12345));
        assert_eq!(parse_rss_kib("Name: x\n"), Err(ProcError::Malformed("VmRSS")));
    }

    #[test]
    fn tcp_established_by_remote_port() {
        // 0x4A39 = 19001; st 01 = ESTABLISHED, 0A = LISTEN, 06 = TIME_WAIT.
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
   0: 0100007F:4A39 00000000:0000 0A 00000000:00000000\n\
   1: 0100007F:D2F0 0100007F:4A39 01 00000000:00000000\n\
   2: 0100007F:D2F1 0100007F:4A39 06 00000000:00000000\n\
   3: 0100007F:4A39 0100007F:D2F0 01 00000000:00000000\n\
   4: 0100007F:D2F2 0100007F:4A39 01 00000000:00000000\n";
        assert_eq!(count_established_to(text, 19001), 2);
        assert_eq!(count_established_to(text, 19002), 0);
    }
}
