//! X.509 validity times from Unix seconds, without reading any clock.

use crate::der;

/// Latest encodable instant: 9999-12-31T23:59:59Z.
pub(crate) const MAX_UNIX: u64 = 253_402_300_799;
/// 2050-01-01T00:00:00Z: from here on RFC 5280 requires GeneralizedTime.
const Y2050: u64 = 2_524_608_000;

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian;
/// H. Hinnant's `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Size of the encoded time TLV for `unix` (caller checked `unix <= MAX_UNIX`).
pub(crate) fn encoded_len(unix: u64) -> usize {
    if unix < Y2050 {
        15
    } else {
        17
    }
}

/// Writes `unix` as UTCTime (before 2050) or GeneralizedTime, seconds
/// precision, `Z` suffix, as RFC 5280 section 4.1.2.5 requires.
/// The caller checked `unix <= MAX_UNIX`.
pub(crate) fn write(out: &mut Vec<u8>, unix: u64) {
    let (y, mo, d) = civil_from_days(unix / 86_400);
    let s = unix % 86_400;
    let (h, mi, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut text = Vec::with_capacity(15);
    let mut digits = |v: u64, n: u32| {
        for i in (0..n).rev() {
            text.push(b'0' + (v / 10u64.pow(i) % 10) as u8);
        }
    };
    let tag = if unix < Y2050 {
        digits(y % 100, 2);
        der::UTC_TIME
    } else {
        digits(y, 4);
        der::GENERALIZED_TIME
    };
    for v in [mo, d, h, mi, sec] {
        digits(v, 2);
    }
    text.push(b'Z');
    der::tlv(out, tag, &text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(unix: u64) -> String {
        let mut out = Vec::new();
        write(&mut out, unix);
        assert_eq!(out.len(), encoded_len(unix));
        String::from_utf8_lossy(&out[2..]).into_owned()
    }

    #[test]
    fn known_instants() {
        assert_eq!(enc(0), "700101000000Z");
        assert_eq!(enc(1_700_000_000), "231114221320Z");
        assert_eq!(enc(951_782_400), "000229000000Z"); // leap day 2000
        assert_eq!(enc(Y2050 - 1), "491231235959Z");
        assert_eq!(enc(Y2050), "20500101000000Z");
        assert_eq!(enc(MAX_UNIX), "99991231235959Z");
    }
}
