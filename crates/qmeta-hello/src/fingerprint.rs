//! JA4 / JA4_r (FoxIO, technical_details/JA4.md) and JA3 (salesforce/ja3).
//! See docs/FINGERPRINTS.md for the exact rules implemented here.

use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::hello::ClientHello;
use crate::is_grease;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;

impl ClientHello {
    /// The JA4 fingerprint, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
    /// Protocol is always `t`: this crate only sees TLS over TCP.
    pub fn ja4(&self) -> String {
        let (ciphers, exts_sigs) = self.ja4_lists();
        format!("{}_{}_{}", self.ja4_a(), hash12(&ciphers), hash12(&exts_sigs))
    }

    /// JA4_r: JA4 with the sorted lists in clear instead of hashed.
    pub fn ja4_r(&self) -> String {
        let (ciphers, exts_sigs) = self.ja4_lists();
        format!("{}_{}_{}", self.ja4_a(), ciphers, exts_sigs)
    }

    /// The JA3 string `SSLVersion,Ciphers,Extensions,EllipticCurves,ECPointFormats`:
    /// decimal values joined by `-`, wire order, GREASE removed.
    pub fn ja3_string(&self) -> String {
        let points: Vec<u16> = self.ec_point_formats.iter().map(|&p| p.into()).collect();
        format!(
            "{},{},{},{},{}",
            self.legacy_version,
            dec_list(&self.cipher_suites),
            dec_list(&self.extensions),
            dec_list(&self.supported_groups),
            dec_list(&points),
        )
    }

    /// JA3: lowercase hex MD5 of [`ClientHello::ja3_string`].
    pub fn ja3(&self) -> String {
        to_hex(&Md5::digest(self.ja3_string().as_bytes()))
    }

    /// The 10-character `a` part: protocol, version, SNI flag, counts, ALPN.
    fn ja4_a(&self) -> String {
        let sni = if self.extensions.contains(&EXT_SERVER_NAME) { 'd' } else { 'i' };
        let ciphers = count(&self.cipher_suites);
        let exts = count(&self.extensions);
        let (a0, a1) = alpn_chars(self.alpn.first().map(Vec::as_slice));
        format!("t{}{sni}{ciphers:02}{exts:02}{a0}{a1}", self.ja4_version())
    }

    fn ja4_version(&self) -> &'static str {
        let version =
            self.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(self.legacy_version);
        match version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0002 => "s2",
            0xfeff => "d1",
            0xfefd => "d2",
            0xfefc => "d3",
            _ => "00",
        }
    }

    /// The strings hashed into JA4's `b` and `c` parts.
    fn ja4_lists(&self) -> (String, String) {
        let mut ciphers: Vec<u16> = no_grease(&self.cipher_suites).collect();
        ciphers.sort_unstable();
        let mut exts: Vec<u16> =
            no_grease(&self.extensions).filter(|e| *e != EXT_SERVER_NAME && *e != EXT_ALPN).collect();
        exts.sort_unstable();
        let sigs: Vec<u16> = no_grease(&self.signature_algorithms).collect();
        let mut c = hex_list(&exts);
        if !sigs.is_empty() {
            c.push('_');
            c.push_str(&hex_list(&sigs));
        }
        (hex_list(&ciphers), c)
    }
}

fn no_grease(values: &[u16]) -> impl Iterator<Item = u16> + '_ {
    values.iter().copied().filter(|v| !is_grease(*v))
}

/// Two-digit count without GREASE, capped at 99.
fn count(values: &[u16]) -> usize {
    no_grease(values).count().min(99)
}

/// First and last character of the first ALPN value; `00` without one.
/// When either end is not ASCII alphanumeric, the first and last hex digit
/// of the whole value are used instead (so `0x30ab` gives `3b`).
fn alpn_chars(first: Option<&[u8]>) -> (char, char) {
    let Some(&[head, .., tail] | &[head @ tail]) = first else {
        return ('0', '0');
    };
    if head.is_ascii_alphanumeric() && tail.is_ascii_alphanumeric() {
        (char::from(head), char::from(tail))
    } else {
        (hex_digit(head >> 4), hex_digit(tail & 0x0f))
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

/// First 12 hex characters of SHA-256; the empty string gives `000000000000`.
fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_owned();
    }
    to_hex(&Sha256::digest(s.as_bytes())[..6])
}

// Hand-rolled formatting: `write!` per value dominated the JA4 cost.
const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_list(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for shift in [12, 8, 4, 0] {
            out.push(char::from(HEX[usize::from(v >> shift & 0xf)]));
        }
    }
    out
}

fn dec_list(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 6);
    for (i, v) in no_grease(values).enumerate() {
        if i > 0 {
            out.push('-');
        }
        push_decimal(&mut out, v);
    }
    out
}

fn push_decimal(out: &mut String, v: u16) {
    let mut digits = [0u8; 5];
    let mut n = v;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_hash_vectors() {
        assert_eq!(
            hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
            "8daaf6152771"
        );
        let exts = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
        let sigs = "0403,0804,0401,0503,0805,0501,0806,0601";
        assert_eq!(hash12(&format!("{exts}_{sigs}")), "e5627efa2ab1");
        assert_eq!(hash12(exts), "6d807ffa2a79");
        assert_eq!(hash12(""), "000000000000");
    }

    #[test]
    fn alpn_character_rules() {
        assert_eq!(alpn_chars(None), ('0', '0'));
        assert_eq!(alpn_chars(Some(b"h2")), ('h', '2'));
        assert_eq!(alpn_chars(Some(b"http/1.1")), ('h', '1'));
        assert_eq!(alpn_chars(Some(b"x")), ('x', 'x'));
        assert_eq!(alpn_chars(Some(&[0xab])), ('a', 'b'));
        assert_eq!(alpn_chars(Some(&[0xab, 0xcd])), ('a', 'd'));
        assert_eq!(alpn_chars(Some(&[0x30, 0xab])), ('3', 'b'));
        assert_eq!(alpn_chars(Some(b"h2/")), ('6', 'f'));
    }

    #[test]
    fn hex_and_decimal_lists() {
        assert_eq!(hex_list(&[0x2f, 0xc02b]), "002f,c02b");
        assert_eq!(hex_list(&[]), "");
        assert_eq!(dec_list(&[0x0a0a, 47, 53, 0xfafa]), "47-53");
        assert_eq!(to_hex(&[0, 0xff, 0x5a]), "00ff5a");
        assert_eq!(dec_list(&[0, 9, 10, 771, 65535]), "0-9-10-771-65535");
        assert_eq!(hex_list(&[0xffff, 0x0a0b]), "ffff,0a0b");
    }
}
