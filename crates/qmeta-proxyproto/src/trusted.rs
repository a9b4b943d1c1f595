//! Which peers may send a PROXY header: a list of CIDRs and addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A set of networks from configuration, e.g.
/// `["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]`.
///
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is folded into IPv4 on both sides,
/// so a dual-stack listener that reports `::ffff:10.1.2.3` matches
/// `10.0.0.0/8`, and an entry `::ffff:10.0.0.0/104` means `10.0.0.0/8`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedPeers {
    v4: Vec<(u32, u8)>,
    v6: Vec<(u128, u8)>,
}

impl TrustedPeers {
    /// Parses every entry; on failure the message names each bad entry
    /// (index and text) and why, joined by `"; "`. Entries with host bits
    /// set (`10.0.0.1/8`) are refused: they are usually a typo for a host
    /// or a different network, and silently masking would widen trust.
    pub fn parse(list: &[String]) -> Result<TrustedPeers, String> {
        let mut peers = TrustedPeers::default();
        let mut errors = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            match parse_entry(entry.trim()) {
                Ok(Net::V4(a, p)) => peers.v4.push((a, p)),
                Ok(Net::V6(a, p)) => peers.v6.push((a, p)),
                Err(why) => errors.push(format!("entry {i} ({entry:?}): {why}")),
            }
        }
        if errors.is_empty() {
            Ok(peers)
        } else {
            Err(errors.join("; "))
        }
    }

    /// True if `ip` is inside one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().any(|&(net, p)| a & mask4(p) == net)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().any(|&(net, p)| a & mask6(p) == net)
            }
        }
    }

    /// True when no peer is trusted.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

enum Net {
    V4(u32, u8),
    V6(u128, u8),
}

fn parse_entry(s: &str) -> Result<Net, String> {
    if s.is_empty() {
        return Err("empty entry".into());
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u8 = p.parse().map_err(|_| format!("bad prefix length {p:?}"))?;
            if n > max {
                return Err(format!("prefix length {n} exceeds {max}"));
            }
            n
        }
        Some(p) => return Err(format!("bad prefix length {p:?}")),
    };
    let net = match ip {
        IpAddr::V4(v4) => Net::V4(u32::from(v4), prefix),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => Net::V4(u32::from(v4), prefix - 96),
            _ => Net::V6(u128::from(v6), prefix),
        },
    };
    let host_bits = match net {
        Net::V4(a, p) => (a & !mask4(p) != 0).then(|| format!("{}/{p}", Ipv4Addr::from(a & mask4(p)))),
        Net::V6(a, p) => (a & !mask6(p) != 0).then(|| format!("{}/{p}", Ipv6Addr::from(a & mask6(p)))),
    };
    match host_bits {
        Some(suggest) => Err(format!("host bits set (did you mean {suggest}?)")),
        None => Ok(net),
    }
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[&str]) -> TrustedPeers {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        TrustedPeers::parse(&list).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn masks() {
        assert_eq!(mask4(0), 0);
        assert_eq!(mask4(8), 0xFF00_0000);
        assert_eq!(mask4(32), u32::MAX);
        assert_eq!(mask6(0), 0);
        assert_eq!(mask6(128), u128::MAX);
        assert_eq!(mask6(1), 1 << 127);
    }

    #[test]
    fn v4_cidr() {
        let p = peers(&["10.0.0.0/8", "192.168.1.128/25", "127.0.0.1"]);
        for yes in ["10.0.0.0", "10.255.255.255", "192.168.1.128", "192.168.1.255", "127.0.0.1"] {
            assert!(p.contains(ip(yes)), "{yes}");
        }
        for no in ["11.0.0.0", "9.255.255.255", "192.168.1.127", "127.0.0.2", "::1", "::a00:1"] {
            assert!(!p.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn v6_cidr() {
        let p = peers(&["2001:db8::/32", "::1", "fe80::/10"]);
        for yes in ["2001:db8::", "2001:db8:ffff::1", "::1", "fe80::1", "febf::1"] {
            assert!(p.contains(ip(yes)), "{yes}");
        }
        for no in ["2001:db9::", "::2", "fec0::1", "127.0.0.1", "0.0.0.1"] {
            assert!(!p.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn v4_mapped_v6_matches_v4_entries_and_back() {
        let p = peers(&["10.0.0.0/8"]);
        assert!(p.contains(ip("::ffff:10.1.2.3")));
        assert!(!p.contains(ip("::ffff:11.1.2.3")));
        let p = peers(&["::ffff:10.0.0.0/104", "::ffff:127.0.0.1"]);
        assert!(p.contains(ip("10.9.9.9")));
        assert!(p.contains(ip("::ffff:10.9.9.9")));
        assert!(p.contains(ip("127.0.0.1")));
        assert!(!p.contains(ip("11.0.0.1")));
        // A v6 entry wider than the mapped range stays v6.
        let p = peers(&["::/0"]);
        assert!(p.contains(ip("2001:db8::1")));
        assert!(!p.contains(ip("10.0.0.1")));
        let p = peers(&["0.0.0.0/0"]);
        assert!(p.contains(ip("10.0.0.1")) && p.contains(ip("::ffff:1.2.3.4")));
        assert!(!p.contains(ip("::1")));
    }

    #[test]
    fn empty_list_trusts_nobody() {
        let p = peers(&[]);
        assert!(p.is_empty());
        assert!(!p.contains(ip("127.0.0.1")));
        assert!(!peers(&["::1"]).is_empty());
    }

    #[test]
    fn whitespace_is_trimmed() {
        assert!(peers(&[" 10.0.0.0/8 "]).contains(ip("10.1.1.1")));
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let list: Vec<String> = [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "",
            "host.example",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
            "2001:db8::1/32",
            "10.0.0.0/08x",
            "1.2.3.4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let err = TrustedPeers::parse(&list).unwrap_err();
        let parts: Vec<&str> = err.split("; ").collect();
        assert_eq!(parts.len(), 9, "{err}");
        assert_eq!(parts[0], "entry 0 (\"10.0.0.0/33\"): prefix length 33 exceeds 32");
        assert_eq!(parts[1], "entry 1 (\"10.0.0.1/8\"): host bits set (did you mean 10.0.0.0/8?)");
        assert_eq!(parts[2], "entry 2 (\"\"): empty entry");
        assert!(parts[3].contains("not an IP address"), "{}", parts[3]);
        assert!(parts[4].contains("bad prefix length"), "{}", parts[4]);
        assert!(parts[5].contains("bad prefix length"), "{}", parts[5]);
        assert!(parts[6].contains("exceeds 128"), "{}", parts[6]);
        assert!(parts[7].contains("did you mean 2001:db8::/32?"), "{}", parts[7]);
        assert!(parts[8].contains("bad prefix length"), "{}", parts[8]);
    }
}
