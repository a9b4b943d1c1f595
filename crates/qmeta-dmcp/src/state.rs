use crate::command::Command;
use crate::scope::Scope;
use qmeta_fields::{FieldId, FieldSet};
use std::collections::BTreeMap;

/// Most scopes one backend may have, the backend scope included. Together
/// with [`MAX_SET_LEN`] this keeps every ACK below [`crate::MAX_FRAME`].
pub const MAX_SCOPES: usize = 16;
/// Most fields one scope (or a RANDOMIZE `from` set) may hold.
pub const MAX_SET_LEN: usize = 64;

/// The LB's DMCP state for one backend: the field set of every scope, the
/// operator's default and allowlist, and a version that counts changes.
///
/// A plain value: [`ControlState::dispatch`] is the only way it changes, so
/// it can be cloned, compared and rebuilt from [`crate::diff`] output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlState {
    default: FieldSet,
    allowed: FieldSet,
    scopes: BTreeMap<Scope, FieldSet>,
    version: u64,
}

/// What an accepted command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The state version after the command (unchanged if nothing changed).
    pub version: u64,
    /// For RANDOMIZE: the subset drawn.
    pub drawn: Option<FieldSet>,
}

/// Why `dispatch` refused a command. A refused command changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The operator's allowlist for this backend does not contain the field.
    #[error("field {0} not permitted")]
    NotPermitted(FieldId),
    /// The command would give the backend more than [`MAX_SCOPES`] scopes.
    #[error("more than {MAX_SCOPES} scopes")]
    TooManyScopes,
    /// The command would put more than [`MAX_SET_LEN`] fields in a scope.
    #[error("more than {MAX_SET_LEN} fields in one scope")]
    TooManyFields,
    /// An SNI scope name that is empty, too long, or not lowercase DNS text,
    /// or a route path prefix that is not valid.
    #[error("invalid scope name")]
    InvalidScope,
    /// A SYNC named the same scope twice.
    #[error("scope {0} listed twice")]
    DuplicateScope(Scope),
}

impl ControlState {
    /// Version 0; the backend scope holds `default`. A default longer than
    /// [`MAX_SET_LEN`] keeps its lowest ids (the highest-priority fields).
    pub fn new(default: FieldSet, allowed: FieldSet) -> ControlState {
        let default: FieldSet = default.iter().take(MAX_SET_LEN).collect();
        let scopes = BTreeMap::from([(Scope::Backend, default.clone())]);
        ControlState { default, allowed, scopes, version: 0 }
    }

    /// Counts state changes since this value was created (LB start).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The fields for a connection with this SNI: the SNI scope if there is
    /// one for the (lowercased) name, else the backend scope.
    pub fn fields_for(&self, sni: Option<&str>) -> &FieldSet {
        if let Some(name) = sni {
            // Avoid allocating on the hot path when the name is already lowercase.
            let hit = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                self.scopes.get(&Scope::Sni(name.to_ascii_lowercase()))
            } else {
                self.scopes.get(&Scope::Sni(name.to_string()))
            };
            if let Some(set) = hit {
                return set;
            }
        }
        &self.scopes[&Scope::Backend]
    }

    /// The fields for one HTTP request: like [`ControlState::fields_for`],
    /// but a route scope whose prefix covers `path` is more specific than
    /// any SNI scope. Most specific wins: a route naming this SNI (longest
    /// prefix first), then a route without SNI (longest prefix first), then
    /// the SNI scope, then the backend scope. `path` is the request path
    /// without the query; `None` (TCP mode) skips route scopes.
    pub fn fields_for_request(&self, sni: Option<&str>, path: Option<&str>) -> &FieldSet {
        if let Some(path) = path {
            let mut best: Option<(bool, usize, &FieldSet)> = None;
            // Route scopes sort after every other scope: skip straight to them.
            let first = Scope::Route { sni: None, path_prefix: String::new() };
            for (scope, set) in self.scopes.range(first..) {
                let Scope::Route { sni: want, path_prefix } = scope else { continue };
                let sni_hit = match want {
                    None => false,
                    Some(w) => match sni {
                        Some(got) if got.eq_ignore_ascii_case(w) => true,
                        _ => continue,
                    },
                };
                if !crate::scope::prefix_matches(path_prefix, path) {
                    continue;
                }
                let rank = (sni_hit, path_prefix.len());
                if best.is_none_or(|(s, l, _)| (s, l) < rank) {
                    best = Some((rank.0, rank.1, set));
                }
            }
            if let Some((_, _, set)) = best {
                return set;
            }
        }
        self.fields_for(sni)
    }

    /// Every scope and its set, backend first, then SNI scopes by name,
    /// then route scopes.
    pub fn scopes(&self) -> Vec<(Scope, FieldSet)> {
        self.scopes.iter().map(|(s, f)| (s.clone(), f.clone())).collect()
    }

    /// The set of one scope, if it exists.
    pub fn scope(&self, scope: &Scope) -> Option<&FieldSet> {
        self.scopes.get(scope)
    }

    /// The operator's allowlist.
    pub fn allowed(&self) -> &FieldSet {
        &self.allowed
    }

    /// Applies a command. `random` is only used by RANDOMIZE (bit `i` of
    /// `random`, little-endian bit order, decides the `i`-th candidate in id
    /// order). Either the whole command applies or nothing changes.
    pub fn dispatch(&mut self, cmd: &Command, random: [u8; 32]) -> Result<Applied, Refusal> {
        if let Some(scope) = cmd.scope() {
            if !scope.is_valid() {
                return Err(Refusal::InvalidScope);
            }
        }
        let mut drawn = None;
        let next = match cmd {
            Command::Include { scope, field } => {
                if !self.allowed.contains(*field) {
                    return Err(Refusal::NotPermitted(*field));
                }
                let mut set = self.current_or_backend(scope);
                set.insert(*field);
                self.with_scope(scope, set)?
            }
            Command::Exclude { scope, field } => {
                let mut set = self.current_or_backend(scope);
                set.remove(*field);
                self.with_scope(scope, set)?
            }
            Command::Reset { scope } => {
                let mut next = self.scopes.clone();
                match scope {
                    Scope::Backend => {
                        next.insert(Scope::Backend, self.default.clone());
                    }
                    other => {
                        next.remove(other);
                    }
                }
                next
            }
            Command::Randomize { scope, from } => {
                let candidates = from.intersection(&self.allowed);
                let pick: FieldSet = candidates
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i < 256 && random[i / 8] & (1 << (i % 8)) != 0)
                    .map(|(_, f)| f)
                    .collect();
                let set = self.current_or_backend(scope).difference(from).union(&pick);
                drawn = Some(pick);
                self.with_scope(scope, set)?
            }
            Command::Sync { scopes } => self.synced(scopes)?,
            Command::Query => self.scopes.clone(),
        };
        if next != self.scopes {
            self.scopes = next;
            self.version += 1;
        }
        Ok(Applied { version: self.version, drawn })
    }

    fn current_or_backend(&self, scope: &Scope) -> FieldSet {
        self.scopes.get(scope).unwrap_or(&self.scopes[&Scope::Backend]).clone()
    }

    fn with_scope(&self, scope: &Scope, set: FieldSet) -> Result<BTreeMap<Scope, FieldSet>, Refusal> {
        if set.len() > MAX_SET_LEN {
            return Err(Refusal::TooManyFields);
        }
        let mut next = self.scopes.clone();
        next.insert(scope.clone(), set);
        if next.len() > MAX_SCOPES {
            return Err(Refusal::TooManyScopes);
        }
        Ok(next)
    }

    fn synced(&self, scopes: &[(Scope, FieldSet)]) -> Result<BTreeMap<Scope, FieldSet>, Refusal> {
        let mut next = BTreeMap::from([(Scope::Backend, self.default.clone())]);
        let mut seen = std::collections::BTreeSet::new();
        for (scope, set) in scopes {
            if !scope.is_valid() {
                return Err(Refusal::InvalidScope);
            }
            if !seen.insert(scope) {
                return Err(Refusal::DuplicateScope(scope.clone()));
            }
            if let Some(f) = set.difference(&self.allowed).iter().next() {
                return Err(Refusal::NotPermitted(f));
            }
            if set.len() > MAX_SET_LEN {
                return Err(Refusal::TooManyFields);
            }
            next.insert(scope.clone(), set.clone());
        }
        if next.len() > MAX_SCOPES {
            return Err(Refusal::TooManyScopes);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[FieldId]) -> FieldSet {
        ids.iter().copied().collect()
    }

    fn state() -> ControlState {
        ControlState::new(
            set(&[FieldId::SRC_IP, FieldId::TIMESTAMP]),
            set(&[FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::SNI, FieldId::JA4, FieldId::ALPN]),
        )
    }

    #[test]
    fn include_exclude_reset() {
        let mut s = state();
        let a = s.dispatch(&Command::Include { scope: Scope::Backend, field: FieldId::SNI }, [0; 32]).unwrap();
        assert_eq!(a, Applied { version: 1, drawn: None });
        assert!(s.fields_for(None).contains(FieldId::SNI));
        // Idempotent: no change, no new version.
        let a = s.dispatch(&Command::Include { scope: Scope::Backend, field: FieldId::SNI }, [0; 32]).unwrap();
        assert_eq!(a.version, 1);
        s.dispatch(&Command::Exclude { scope: Scope::Backend, field: FieldId::SRC_IP }, [0; 32]).unwrap();
        assert_eq!(s.fields_for(None), &set(&[FieldId::TIMESTAMP, FieldId::SNI]));
        s.dispatch(&Command::Reset { scope: Scope::Backend }, [0; 32]).unwrap();
        assert_eq!(s.fields_for(None), &set(&[FieldId::SRC_IP, FieldId::TIMESTAMP]));
        assert_eq!(s.version(), 3);
    }

    #[test]
    fn sni_scope_is_most_specific_and_reset_removes_it() {
        let mut s = state();
        let api = Scope::Sni("api.example".into());
        s.dispatch(&Command::Include { scope: api.clone(), field: FieldId::JA4 }, [0; 32]).unwrap();
        assert_eq!(s.fields_for(Some("api.example")), &set(&[FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::JA4]));
        assert_eq!(s.fields_for(Some("API.example")), &set(&[FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::JA4]));
        assert_eq!(s.fields_for(Some("other")), &set(&[FieldId::SRC_IP, FieldId::TIMESTAMP]));
        s.dispatch(&Command::Reset { scope: api }, [0; 32]).unwrap();
        assert_eq!(s.scopes().len(), 1);
        assert_eq!(s.fields_for(Some("api.example")), &set(&[FieldId::SRC_IP, FieldId::TIMESTAMP]));
    }

    #[test]
    fn most_specific_route_wins() {
        let mut s = state();
        let inc = |s: &mut ControlState, scope: Scope, field| {
            s.dispatch(&Command::Include { scope, field }, [0; 32]).unwrap();
        };
        inc(&mut s, Scope::Sni("a.example".into()), FieldId::SNI);
        inc(&mut s, Scope::route(None, "/api").unwrap(), FieldId::JA4);
        inc(&mut s, Scope::route(None, "/api/v2").unwrap(), FieldId::ALPN);
        inc(&mut s, Scope::route(Some("a.example"), "/api").unwrap(), FieldId::SNI);
        let base = set(&[FieldId::SRC_IP, FieldId::TIMESTAMP]);
        let with = |f: &[FieldId]| base.union(&set(f));
        // No path (TCP mode): routes never apply.
        assert_eq!(s.fields_for_request(Some("a.example"), None), &with(&[FieldId::SNI]));
        assert_eq!(s.fields_for_request(None, Some("/")), &base);
        assert_eq!(s.fields_for_request(None, Some("/apix")), &base);
        assert_eq!(s.fields_for_request(None, Some("/api/x")), &with(&[FieldId::JA4]));
        assert_eq!(s.fields_for_request(Some("b.example"), Some("/api/v2/x")), &with(&[FieldId::ALPN]));
        // A route naming the SNI beats a longer prefix without one.
        assert_eq!(s.fields_for_request(Some("A.example"), Some("/api/v2/x")), &with(&[FieldId::SNI]));
        // SNI scope when no route covers the path.
        assert_eq!(s.fields_for_request(Some("a.example"), Some("/other")), &with(&[FieldId::SNI]));
        let r = s.dispatch(
            &Command::Include { scope: Scope::Route { sni: None, path_prefix: "x".into() }, field: FieldId::SNI },
            [0; 32],
        );
        assert_eq!(r, Err(Refusal::InvalidScope));
    }

    #[test]
    fn not_permitted_changes_nothing() {
        let mut s = state();
        let before = s.clone();
        let r = s.dispatch(&Command::Include { scope: Scope::Backend, field: FieldId::GEO_CITY }, [0; 32]);
        assert_eq!(r, Err(Refusal::NotPermitted(FieldId::GEO_CITY)));
        let r = s.dispatch(&Command::Sync { scopes: vec![(Scope::Backend, set(&[FieldId::SRC_PORT]))] }, [0; 32]);
        assert_eq!(r, Err(Refusal::NotPermitted(FieldId::SRC_PORT)));
        let r = s.dispatch(&Command::Include { scope: Scope::Sni("Bad".into()), field: FieldId::SNI }, [0; 32]);
        assert_eq!(r, Err(Refusal::InvalidScope));
        assert_eq!(s, before);
    }

    #[test]
    fn randomize_draws_only_from_allowed_and_is_deterministic() {
        let from = set(&[FieldId::SNI, FieldId::JA4, FieldId::GEO_CITY, FieldId::ALPN]);
        let cmd = Command::Randomize { scope: Scope::Backend, from };
        for seed in 0u8..=255 {
            let random = [seed; 32];
            let mut a = state();
            let mut b = state();
            let da = a.dispatch(&cmd, random).unwrap().drawn.unwrap();
            let db = b.dispatch(&cmd, random).unwrap().drawn.unwrap();
            assert_eq!(da, db);
            assert!(!da.contains(FieldId::GEO_CITY));
            // Fields outside `from` are kept.
            assert_eq!(a.fields_for(None), &set(&[FieldId::SRC_IP, FieldId::TIMESTAMP]).union(&da));
        }
        // Candidates in id order: alpn(7), sni(6)... → sorted: sni, alpn, ja4.
        let mut s = state();
        let drawn = s.dispatch(&cmd, [0b101; 32]).unwrap().drawn.unwrap();
        assert_eq!(drawn, set(&[FieldId::SNI, FieldId::JA4]));
        let drawn = s.dispatch(&cmd, [0; 32]).unwrap().drawn.unwrap();
        assert!(drawn.is_empty());
    }

    #[test]
    fn sync_replaces_everything() {
        let mut s = state();
        s.dispatch(&Command::Include { scope: Scope::Sni("a".into()), field: FieldId::SNI }, [0; 32]).unwrap();
        let want = vec![(Scope::Backend, set(&[FieldId::SNI])), (Scope::Sni("b".into()), set(&[FieldId::JA4]))];
        s.dispatch(&Command::Sync { scopes: want.clone() }, [0; 32]).unwrap();
        assert_eq!(s.scopes(), want);
        let dup = vec![(Scope::Backend, set(&[])), (Scope::Backend, set(&[]))];
        assert_eq!(s.dispatch(&Command::Sync { scopes: dup }, [0; 32]), Err(Refusal::DuplicateScope(Scope::Backend)));
    }

    #[test]
    fn scope_count_is_bounded() {
        let mut s = state();
        for i in 0..MAX_SCOPES - 1 {
            let scope = Scope::Sni(format!("h{i}"));
            s.dispatch(&Command::Include { scope, field: FieldId::SNI }, [0; 32]).unwrap();
        }
        let r = s.dispatch(&Command::Include { scope: Scope::Sni("one-more".into()), field: FieldId::SNI }, [0; 32]);
        assert_eq!(r, Err(Refusal::TooManyScopes));
    }
}
