use std::fmt;

/// Longest SNI name a scope may carry (the DNS limit).
pub const MAX_SNI_LEN: usize = 253;
/// Longest path prefix a route scope may carry.
pub const MAX_PATH_PREFIX_LEN: usize = 256;

/// Which connections a field set applies to. The most specific scope that
/// matches a connection wins.
///
/// Specificity, most specific first: a route with an SNI, a route without
/// one (longer prefixes first in both), an SNI scope, the backend scope.
///
/// `#[non_exhaustive]` so that later scope kinds can be added without
/// breaking callers; the derived `Ord` puts every later variant after the
/// existing ones.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Every connection to the backend (the default scope).
    Backend,
    /// Connections whose TLS SNI equals this name (exact, lowercase).
    Sni(String),
    /// HTTP mode: requests whose path starts with `path_prefix` (on a `/`
    /// boundary, see [`Scope::route_matches`]), on connections with this
    /// SNI when `sni` is set (exact, lowercase).
    Route { sni: Option<String>, path_prefix: String },
}

impl Scope {
    /// An SNI scope for `name`, lowercased; `None` unless the name is 1..=253
    /// bytes of `a-z 0-9 - . _`.
    pub fn sni(name: &str) -> Option<Scope> {
        let lower = name.to_ascii_lowercase();
        valid_sni(&lower).then_some(Scope::Sni(lower))
    }

    /// A route scope; `None` unless `path_prefix` is valid (see
    /// [`valid_path_prefix`]) and `sni`, when given, is a valid name.
    pub fn route(sni: Option<&str>, path_prefix: &str) -> Option<Scope> {
        let sni = sni.map(str::to_ascii_lowercase);
        let s = Scope::Route { sni, path_prefix: path_prefix.to_string() };
        s.is_valid().then_some(s)
    }

    /// True if this value could have come off the wire (SNI names valid and
    /// lowercase, path prefixes valid). `dispatch` refuses scopes that are not.
    pub fn is_valid(&self) -> bool {
        match self {
            Scope::Backend => true,
            Scope::Sni(name) => valid_sni(name),
            Scope::Route { sni, path_prefix } => sni.as_deref().is_none_or(valid_sni) && valid_path_prefix(path_prefix),
        }
    }

    /// For a route scope: does a request for `path` fall under its prefix?
    /// The prefix must end at a `/` boundary so `/api` covers `/api` and
    /// `/api/x` but not `/apix`. Always false for other scopes.
    pub fn route_matches(&self, path: &str) -> bool {
        let Scope::Route { path_prefix, .. } = self else { return false };
        prefix_matches(path_prefix, path)
    }
}

pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A route prefix: 1..=[`MAX_PATH_PREFIX_LEN`] bytes, starting with `/`,
/// visible ASCII only, and no query (`?`) or fragment (`#`).
pub fn valid_path_prefix(p: &str) -> bool {
    (1..=MAX_PATH_PREFIX_LEN).contains(&p.len())
        && p.starts_with('/')
        && p.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'?' && b != b'#')
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
            Scope::Route { sni: Some(name), path_prefix } => write!(f, "route=sni={name},path={path_prefix}"),
            Scope::Route { sni: None, path_prefix } => write!(f, "route=path={path_prefix}"),
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
        assert!(Scope::Sni("a".into()) < Scope::Route { sni: None, path_prefix: "/".into() });
    }

    #[test]
    fn route_validation_and_matching() {
        let r = Scope::route(Some("API.example"), "/api").unwrap();
        assert_eq!(r.to_string(), "route=sni=api.example,path=/api");
        assert_eq!(Scope::route(None, "/api").unwrap().to_string(), "route=path=/api");
        assert_eq!(Scope::route(None, "api"), None);
        assert_eq!(Scope::route(None, ""), None);
        assert_eq!(Scope::route(None, "/a b"), None);
        assert_eq!(Scope::route(None, "/a?b"), None);
        assert_eq!(Scope::route(None, &format!("/{}", "a".repeat(MAX_PATH_PREFIX_LEN))), None);
        assert!(Scope::route(None, &format!("/{}", "a".repeat(MAX_PATH_PREFIX_LEN - 1))).is_some());
        assert_eq!(Scope::route(Some("bad name"), "/api"), None);
        assert!(r.route_matches("/api"));
        assert!(r.route_matches("/api/v1"));
        assert!(!r.route_matches("/apix"));
        assert!(!r.route_matches("/"));
        assert!(Scope::route(None, "/api/").unwrap().route_matches("/api/x"));
        assert!(!Scope::route(None, "/api/").unwrap().route_matches("/api"));
        assert!(Scope::route(None, "/").unwrap().route_matches("/anything"));
        assert!(!Scope::Backend.route_matches("/"));
    }
}
