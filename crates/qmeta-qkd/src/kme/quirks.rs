//! Switchable deviations from the spec that real KMEs show in the wild, so
//! that clients can be tested against them. Off by default: without quirks
//! the KME is the strict reference implementation.

use std::fmt;
use std::time::Duration;

/// One deviation a KME site can be told to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Quirk {
    /// Key containers are sent as `{"Keys": [...]}` (the spelling of the
    /// spec's table) instead of `keys`.
    CapitalKeys,
    /// Unknown or already delivered key ids answer 404 instead of 400.
    NotFound404,
    /// Error bodies are `{"detail": "..."}` instead of `{"message": "..."}`.
    DetailErrors,
    /// Two of every three requests answer 503 (a KME under load or
    /// restarting); the third is served normally.
    Burst503,
    /// Every answer is delayed by [`SLOW_DELAY`].
    Slow,
    /// `size` is read as bytes instead of bits, so every key is 8× too
    /// long. A client must refuse such keys.
    BitsAsBytes,
}

/// Delay of the [`Quirk::Slow`] mode.
pub const SLOW_DELAY: Duration = Duration::from_millis(300);

impl Quirk {
    /// Every quirk with its config name.
    pub const ALL: [(Quirk, &'static str); 6] = [
        (Quirk::CapitalKeys, "capital_keys"),
        (Quirk::NotFound404, "not_found_404"),
        (Quirk::DetailErrors, "detail_errors"),
        (Quirk::Burst503, "burst_503"),
        (Quirk::Slow, "slow"),
        (Quirk::BitsAsBytes, "bits_as_bytes"),
    ];

    /// The quirk named `name` in a config file.
    pub fn from_name(name: &str) -> Option<Quirk> {
        Quirk::ALL.iter().find(|(_, n)| *n == name).map(|(q, _)| *q)
    }

    pub fn name(self) -> &'static str {
        Quirk::ALL.iter().find(|(q, _)| *q == self).map(|(_, n)| *n).unwrap_or("?")
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of quirks one site imitates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks(Vec<Quirk>);

impl Quirks {
    /// No quirk: the strict reference KME.
    pub fn none() -> Quirks {
        Quirks(Vec::new())
    }

    pub fn new(list: impl IntoIterator<Item = Quirk>) -> Quirks {
        let mut v: Vec<Quirk> = Vec::new();
        for q in list {
            if !v.contains(&q) {
                v.push(q);
            }
        }
        Quirks(v)
    }

    pub fn has(&self, q: Quirk) -> bool {
        self.0.contains(&q)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Quirk> + '_ {
        self.0.iter().copied()
    }

    /// Parses config names; unknown names are returned as the error.
    pub fn parse(names: &[String]) -> Result<Quirks, Vec<String>> {
        let mut bad = Vec::new();
        let mut out = Vec::new();
        for n in names {
            match Quirk::from_name(n) {
                Some(q) => out.push(q),
                None => bad.push(n.clone()),
            }
        }
        if bad.is_empty() {
            Ok(Quirks::new(out))
        } else {
            Err(bad)
        }
    }

    /// [`Quirk::Burst503`]: whether request number `n` (counting from 0)
    /// is refused.
    pub fn burst_refuses(&self, n: u64) -> bool {
        self.has(Quirk::Burst503) && n % 3 != 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_are_reported() {
        for (q, n) in Quirk::ALL {
            assert_eq!(Quirk::from_name(n), Some(q));
            assert_eq!(q.to_string(), n);
        }
        let q = Quirks::parse(&["slow".into(), "slow".into(), "burst_503".into()]).unwrap();
        assert_eq!(q.iter().count(), 2);
        assert!(q.has(Quirk::Slow) && !q.has(Quirk::CapitalKeys));
        assert_eq!(Quirks::parse(&["Keys".into(), "slow".into()]), Err(vec!["Keys".to_string()]));
        let refused: Vec<bool> = (0..6).map(|n| q.burst_refuses(n)).collect();
        assert_eq!(refused, [true, true, false, true, true, false]);
        assert!(!Quirks::none().burst_refuses(0));
    }
}
