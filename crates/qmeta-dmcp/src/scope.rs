use std::fmt;

/// Longest SNI name a scope may carry (the DNS limit).
pub const MAX_SNI_LEN: usize = 253;

/// Which connections a field set applies to. The most specific scope that
/// matches a connection wins.
///
/// `#[non_exhaustive]` so that a later `Route { sni, path_prefix }` scope
/// (wire kind 2) can be added without breaking callers; the derived `Ord`
/// puts every later variant after the existing ones.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Every connection to the backend (the default scope).
    Backend,
    /// Connections whose TLS SNI equals this name (exact, lowercase).
    Sni(String),
}

impl Scope {
    /// An SNI scope for `name`, lowercased; `None` unless the name is 1..=253
    /// bytes of `a-z 0-9 - . _`.
    pub fn sni(name: &str) -> Option<Scope> {
        let lower = name.to_ascii_lowercase();
        valid_sni(&lower).then_some(Scope::Sni(lower))
    }

    /// True if this value could have come off the wire (SNI names valid and
    /// lowercase). `dispatch` refuses scopes that are not.
    pub fn is_valid(&self) -> bool {
        match self {
            Scope::Backend => true,
            Scope::Sni(name) => valid_sni(name),
        }
    }
}

pub(crate) fn valid_sni(name: &str) -> bool {
    (1..=MAX_SNI_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_'))
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Backend => f.write_str("backend"),
            Scope::Sni(name) => write!(f, "sni={name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_validation() {
        assert_eq!(Scope::Backend.to_string(), "backend");
        assert_eq!(Scope::sni("API.Example.com").unwrap().to_string(), "sni=api.example.com");
        assert_eq!(Scope::sni(""), None);
        assert_eq!(Scope::sni("a b"), None);
        assert_eq!(Scope::sni(&"a".repeat(254)), None);
        assert!(!Scope::Sni("Upper".into()).is_valid());
        assert!(Scope::Backend < Scope::Sni("a".into()));
    }
}
