//! The policy file: which fields a backend requires, permits and forbids,
//! per scope. Read with `qmeta_config`, so every mistake is reported at once.

use qmeta_config::{ConfigErrors, Document, Section};
use qmeta_dmcp::{Scope, MAX_SCOPES, MAX_SET_LEN};
use qmeta_fields::{FieldId, FieldSet};
use std::path::Path;

/// The policy of one scope, forbidden fields already merged with the
/// file's top-level `forbidden`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopePolicy {
    pub scope: Scope,
    pub required: FieldSet,
    pub permissible: FieldSet,
    pub forbidden: FieldSet,
    /// Send RANDOMIZE over `permissible` instead of including it all.
    pub randomize: bool,
}

impl ScopePolicy {
    /// The fields the agent asks for outright: required, plus permissible
    /// unless randomized, minus forbidden.
    pub fn fixed(&self) -> FieldSet {
        let mut want = self.required.clone();
        if !self.randomize {
            want = want.union(&self.permissible);
        }
        want.difference(&self.forbidden)
    }

    /// The RANDOMIZE `from` set, if this scope randomizes: permissible
    /// minus required (already included) minus forbidden.
    pub fn randomize_from(&self) -> Option<FieldSet> {
        self.randomize.then(|| self.permissible.difference(&self.required).difference(&self.forbidden))
    }
}

/// A validated policy: the backend scope first, then the `[[scope]]`
/// tables (SNI and/or route scopes) in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub scopes: Vec<ScopePolicy>,
}

impl Policy {
    /// The desired state without randomized fields: one entry per scope.
    pub fn desired(&self) -> Vec<(Scope, FieldSet)> {
        self.scopes.iter().map(|s| (s.scope.clone(), s.fixed())).collect()
    }

    /// The policy of one scope.
    pub fn scope(&self, scope: &Scope) -> Option<&ScopePolicy> {
        self.scopes.iter().find(|s| &s.scope == scope)
    }
}

/// Reads and validates a policy file.
pub fn load_policy(path: &Path) -> Result<Policy, ConfigErrors> {
    let doc = Document::load(path)?;
    from_document(&doc)
}

/// Validates policy text (`file` names it in errors).
pub fn parse_policy(file: &str, text: &str) -> Result<Policy, ConfigErrors> {
    let doc = Document::parse(file, text)?;
    from_document(&doc)
}

fn from_document(doc: &Document) -> Result<Policy, ConfigErrors> {
    let root = doc.root();
    let required = fields(&root, "required").unwrap_or_default();
    let permissible = fields(&root, "permissible").unwrap_or_default();
    let forbidden = fields(&root, "forbidden").unwrap_or_default();
    let randomize = root.bool_or("randomize", false);
    let top = ScopePolicy { scope: Scope::Backend, required, permissible, forbidden, randomize };
    check(&root, &top);

    let mut scopes = vec![top.clone()];
    let tables = root.tables("scope", false);
    if tables.len() > MAX_SCOPES - 1 {
        root.error("scope", format!("at most {} [[scope]] tables", MAX_SCOPES - 1));
    }
    for t in &tables {
        // `sni`, `path_prefix` (an HTTP-mode route) or both.
        let sni = t.opt_str("sni");
        let prefix = t.opt_str("path_prefix");
        let sni_ok = sni.as_deref().is_none_or(|name| {
            let ok = Scope::sni(name).is_some();
            if !ok {
                t.error("sni", format!("{name:?} is not a DNS name (1..=253 bytes of a-z 0-9 - . _)"));
            }
            ok
        });
        let scope = match (sni.as_deref(), prefix.as_deref()) {
            (None, None) => {
                t.error("sni", "a [[scope]] needs `sni`, `path_prefix` or both");
                None
            }
            (Some(name), None) => Scope::sni(name),
            (_, Some(p)) => {
                let s = if sni_ok { Scope::route(sni.as_deref(), p) } else { None };
                if sni_ok && s.is_none() {
                    t.error(
                        "path_prefix",
                        format!("{p:?} must start with / and be 1..=256 bytes of visible ASCII without ? or #"),
                    );
                }
                s
            }
        };
        if let Some(s) = &scope {
            if scopes.iter().any(|p| &p.scope == s) {
                t.error(if prefix.is_some() { "path_prefix" } else { "sni" }, format!("{s} appears twice"));
            }
        }
        // A list a scope does not set is inherited from the top level.
        let required = if t.has("required") { fields(t, "required") } else { Some(top.required.clone()) };
        let permissible = if t.has("permissible") { fields(t, "permissible") } else { Some(top.permissible.clone()) };
        let own_forbidden = fields(t, "forbidden").unwrap_or_default();
        let randomize = t.bool_or("randomize", top.randomize);
        t.deny_unknown();
        if let (Some(scope), Some(required), Some(permissible)) = (scope, required, permissible) {
            let sp =
                ScopePolicy { scope, required, permissible, forbidden: top.forbidden.union(&own_forbidden), randomize };
            check(t, &sp);
            scopes.push(sp);
        }
    }
    root.finish()?;
    Ok(Policy { scopes })
}

/// A list of field names; unknown names are reported (all of them).
fn fields(s: &Section, key: &str) -> Option<FieldSet> {
    let names = s.opt_strings(key)?;
    let mut set = FieldSet::new();
    let mut ok = true;
    for name in names {
        match FieldId::from_name(&name) {
            Some(f) => {
                set.insert(f);
            }
            None => {
                s.error(key, format!("unknown field `{name}`"));
                ok = false;
            }
        }
    }
    ok.then_some(set)
}

fn check(s: &Section, p: &ScopePolicy) {
    let clash = p.required.intersection(&p.forbidden);
    if !clash.is_empty() {
        s.error("required", format!("both required and forbidden: {}", clash.names().join(", ")));
    }
    if p.required.union(&p.permissible).len() > MAX_SET_LEN {
        s.error("permissible", format!("required + permissible exceed {MAX_SET_LEN} fields"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[FieldId]) -> FieldSet {
        ids.iter().copied().collect()
    }

    #[test]
    fn route_scopes() {
        let p = parse_policy(
            "p.toml",
            "required = ['src_ip']\n[[scope]]\npath_prefix = '/api'\nrequired = ['http_user_agent']\n\
             [[scope]]\nsni = 'A.example'\npath_prefix = '/api/'",
        )
        .unwrap();
        assert_eq!(p.scopes[1].scope, Scope::Route { sni: None, path_prefix: "/api".into() });
        assert_eq!(p.scopes[1].required, set(&[FieldId::HTTP_USER_AGENT]));
        assert_eq!(p.scopes[2].scope, Scope::Route { sni: Some("a.example".into()), path_prefix: "/api/".into() });
        let e = parse_policy("p.toml", "[[scope]]\npath_prefix = 'api'\n[[scope]]\nrequired = []").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("scope[0].path_prefix"), "{text}");
        assert!(text.contains("scope[1].sni"), "{text}");
        let dup = parse_policy("p.toml", "[[scope]]\npath_prefix = '/a'\n[[scope]]\npath_prefix = '/a'").unwrap_err();
        assert!(dup.to_string().contains("appears twice"), "{dup}");
    }

    #[test]
    fn parses_scopes_with_inheritance() {
        let p = parse_policy(
            "p.toml",
            r#"
            required = ["src_ip", "timestamp"]
            permissible = ["sni", "ja4"]
            forbidden = ["geo_city"]
            [[scope]]
            sni = "API.example.com"
            required = ["src_ip"]
            forbidden = ["ja4"]
            "#,
        )
        .unwrap();
        assert_eq!(p.scopes.len(), 2);
        assert_eq!(p.scopes[0].fixed(), set(&[FieldId::SRC_IP, FieldId::TIMESTAMP, FieldId::SNI, FieldId::JA4]));
        let api = &p.scopes[1];
        assert_eq!(api.scope, Scope::Sni("api.example.com".into()));
        assert_eq!(api.permissible, set(&[FieldId::SNI, FieldId::JA4]));
        assert_eq!(api.forbidden, set(&[FieldId::GEO_CITY, FieldId::JA4]));
        assert_eq!(api.fixed(), set(&[FieldId::SRC_IP, FieldId::SNI]));
        assert_eq!(api.randomize_from(), None);
    }

    #[test]
    fn randomize_splits_fixed_and_drawn() {
        let p = parse_policy(
            "p.toml",
            "required = ['src_ip']\npermissible = ['src_ip', 'sni', 'ja4', 'geo_city']\nforbidden = ['geo_city']\nrandomize = true",
        )
        .unwrap();
        assert_eq!(p.scopes[0].fixed(), set(&[FieldId::SRC_IP]));
        assert_eq!(p.scopes[0].randomize_from(), Some(set(&[FieldId::SNI, FieldId::JA4])));
    }

    #[test]
    fn every_bad_key_is_named() {
        let errs = parse_policy(
            "p.toml",
            r#"
            required = ["src_ip", "nope"]
            permissible = ["sni", 5]
            forbidden = ["src_ip"]
            randomize = "yes"
            typo = 1
            [[scope]]
            sni = "bad name"
            required = ["geo_city"]
            forbidden = ["geo_city", "zzz"]
            [[scope]]
            sni = "a.example"
            extra = true
            required = ["timestamp"]
            forbidden = ["timestamp"]
            [[scope]]
            sni = "A.example"
            "#,
        )
        .unwrap_err();
        for key in [
            "required",
            "permissible",
            "randomize",
            "typo",
            "scope[0].sni",
            "scope[0].forbidden",
            "scope[1].extra",
            "scope[1].required",
            "scope[2].sni",
        ] {
            assert!(errs.mentions(key), "{key} not named in:\n{errs}");
        }
        assert!(errs.to_string().contains("unknown field `nope`"), "{errs}");
        assert!(errs.to_string().contains("appears twice"), "{errs}");
    }

    #[test]
    fn required_and_forbidden_clash() {
        let errs = parse_policy("p.toml", "required = ['sni']\nforbidden = ['sni']").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs.mentions("required"));
        assert!(errs.to_string().contains("both required and forbidden: sni"));
    }
}
