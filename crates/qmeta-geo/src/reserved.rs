//! Special-purpose addresses: the ones no geolocation database can place.
//!
//! Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries
//! (RFC 6890 and its updates), plus multicast, which is in neither registry
//! but is never a real client source. Every entry of the registries is
//! listed, including the few marked "globally reachable" (AS112, AMT,
//! 6to4, TEREDO, ...): those are anycast or transition blocks whose
//! location says nothing about a client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 special-purpose blocks: (network, prefix length, what it is).
pub(crate) const RESERVED_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network (RFC 791)"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private use (RFC 1918)"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space / CGNAT (RFC 6598)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback (RFC 1122)"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link local (RFC 3927)"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private use (RFC 1918)"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments (RFC 6890)"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation TEST-NET-1 (RFC 5737)"),
    (Ipv4Addr::new(192, 31, 196, 0), 24, "AS112-v4 (RFC 7535)"),
    (Ipv4Addr::new(192, 52, 193, 0), 24, "AMT (RFC 7450)"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "deprecated 6to4 relay anycast (RFC 7526)"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private use (RFC 1918)"),
    (Ipv4Addr::new(192, 175, 48, 0), 24, "direct delegation AS112 (RFC 7534)"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking (RFC 2544)"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation TEST-NET-2 (RFC 5737)"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation TEST-NET-3 (RFC 5737)"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (RFC 5771)"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved and limited broadcast (RFC 1112, RFC 919)"),
];

/// IPv6 special-purpose blocks inside the global unicast range `2000::/3`.
/// Everything outside `2000::/3` is reserved wholesale (see [`reserved_v6`]).
pub(crate) const RESERVED_V6_IN_GLOBAL: &[(Ipv6Addr, u8, &str)] = &[
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments incl. TEREDO, ORCHID, benchmarking (RFC 2928)",
    ),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation (RFC 3849)"),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, "6to4 (RFC 3056)"),
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48, "direct delegation AS112 (RFC 7534)"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation (RFC 9637)"),
];

/// True when `ip` is in a special-purpose block and so has no geographic
/// location: private, loopback, link-local, documentation, CGNAT, ULA,
/// multicast, benchmarking, translation prefixes and the rest of the IANA
/// special-purpose registries. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
/// is judged by its IPv4 address.
pub fn reserved(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => reserved_v6(v6),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it stands for; any other
/// address unchanged. Dual-stack listeners report IPv4 clients this way.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn reserved_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    RESERVED_V4.iter().any(|&(net, len, _)| prefix_match(u128::from(bits), u128::from(u32::from(net)), len, 32))
}

/// IANA allocates unicast space only from `2000::/3`; everything else
/// (`::/8` with loopback, unspecified, IPv4-compatible and the NAT64
/// prefixes `64:ff9b::/96` and `64:ff9b:1::/48`; `100::/64` discard;
/// `5f00::/16` SRv6 SIDs; `fc00::/7` ULA; `fe80::/10` link-local; the
/// deprecated `fec0::/10` site-local; `ff00::/8` multicast) is reserved.
fn reserved_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let global_unicast = bits >> 125 == 0b001;
    !global_unicast || RESERVED_V6_IN_GLOBAL.iter().any(|&(net, len, _)| prefix_match(bits, u128::from(net), len, 128))
}

/// Whether the top `len` bits of `addr` and `net` agree, both being
/// `width`-bit numbers stored in a u128.
fn prefix_match(addr: u128, net: u128, len: u8, width: u32) -> bool {
    let len = u32::from(len);
    if len == 0 {
        return true;
    }
    let shift = width - len;
    addr >> shift == net >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> bool {
        reserved(s.parse().unwrap())
    }

    #[test]
    fn table_networks_have_no_host_bits() {
        for &(net, len, what) in RESERVED_V4 {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            assert_eq!(u32::from(net) & !mask, 0, "{what}");
        }
        for &(net, len, what) in RESERVED_V6_IN_GLOBAL {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            assert_eq!(u128::from(net) & !mask, 0, "{what}");
            assert_eq!(u128::from(net) >> 125, 1, "{what} must lie in 2000::/3");
        }
    }

    #[test]
    fn v4_reserved_blocks_and_their_edges() {
        let cases = [
            ("0.0.0.0", true),
            ("0.255.255.255", true),
            ("1.0.0.0", false),
            ("9.255.255.255", false),
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("100.63.255.255", false),
            ("100.64.0.0", true),
            ("100.127.255.255", true),
            ("100.128.0.0", false),
            ("127.0.0.1", true),
            ("169.254.10.1", true),
            ("169.255.0.1", false),
            ("172.15.255.255", false),
            ("172.16.0.0", true),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("192.0.0.9", true),
            ("192.0.1.1", false),
            ("192.0.2.55", true),
            ("192.31.196.1", true),
            ("192.52.193.1", true),
            ("192.88.99.1", true),
            ("192.167.255.255", false),
            ("192.168.1.1", true),
            ("192.169.0.0", false),
            ("192.175.48.1", true),
            ("198.17.255.255", false),
            ("198.18.0.0", true),
            ("198.19.255.255", true),
            ("198.20.0.0", false),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("203.0.114.0", false),
            ("223.255.255.255", false),
            ("224.0.0.1", true),
            ("239.255.255.255", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("8.8.8.8", false),
            ("81.2.69.142", false),
        ];
        for (ip, want) in cases {
            assert_eq!(r(ip), want, "{ip}");
        }
    }

    #[test]
    fn v6_reserved_blocks_and_their_edges() {
        let cases = [
            ("::", true),
            ("::1", true),
            ("::2", true),
            ("64:ff9b::808:808", true),
            ("64:ff9b:1::1", true),
            ("100::1", true),
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2000::", false),
            ("2001::1", true),
            ("2001:1::1", true),
            ("2001:2::1", true),
            ("2001:1ff:ffff::1", true),
            ("2001:200::1", false),
            ("2001:db8::1", true),
            ("2001:db9::1", false),
            ("2002:c000:0201::1", true),
            ("2003::1", false),
            ("2620:4f:8000::1", true),
            ("2620:4f:8001::1", false),
            ("2a00:1450:4001::1", false),
            ("3ffe:ffff::1", false),
            ("3fff::1", true),
            ("3fff:fff:ffff::1", true),
            ("3fff:1000::1", false),
            ("4000::1", true),
            ("5f00::1", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
        ];
        for (ip, want) in cases {
            assert_eq!(r(ip), want, "{ip}");
        }
    }

    #[test]
    fn v4_mapped_v6_is_judged_by_its_v4() {
        assert!(r("::ffff:10.1.2.3"));
        assert!(r("::ffff:127.0.0.1"));
        assert!(!r("::ffff:8.8.8.8"));
        assert!(!r("::ffff:81.2.69.142"));
        assert_eq!(canonical("::ffff:81.2.69.142".parse().unwrap()), "81.2.69.142".parse::<IpAddr>().unwrap());
        // IPv4-compatible (deprecated) addresses are not mapped ones.
        assert!(r("::8.8.8.8"));
    }
}
