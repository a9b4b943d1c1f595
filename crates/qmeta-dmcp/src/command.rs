use crate::scope::Scope;
use qmeta_fields::{FieldId, FieldSet};

/// A request from a backend's agent to the LB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Add `field` to the scope (created as a copy of the backend scope if
    /// it does not exist yet).
    Include { scope: Scope, field: FieldId },
    /// Remove `field` from the scope (created as a copy of the backend scope
    /// if it does not exist yet). Never refused by the allowlist.
    Exclude { scope: Scope, field: FieldId },
    /// Backend scope: back to the LB-configured default. SNI scope: removed,
    /// so its connections follow the backend scope again.
    Reset { scope: Scope },
    /// Replace the scope's fields inside `from` by a random subset of
    /// `from ∩ allowed`, drawn once by the LB and reported in the ACK.
    /// Fields outside `from` keep their state.
    Randomize { scope: Scope, from: FieldSet },
    /// The full desired state: exactly these scopes (the backend scope is
    /// the LB default when absent). Sent after every (re)connect.
    Sync { scopes: Vec<(Scope, FieldSet)> },
    /// Report the current state; changes nothing.
    Query,
}

impl Command {
    /// One line for logs and the audit log, e.g. `INCLUDE backend sni`.
    /// Field names and scope names are not secrets; values never appear.
    pub fn summary(&self) -> String {
        match self {
            Command::Include { scope, field } => format!("INCLUDE {scope} {field}"),
            Command::Exclude { scope, field } => format!("EXCLUDE {scope} {field}"),
            Command::Reset { scope } => format!("RESET {scope}"),
            Command::Randomize { scope, from } => {
                format!("RANDOMIZE {scope} [{}]", from.names().join(","))
            }
            Command::Sync { scopes } => {
                let parts: Vec<String> =
                    scopes.iter().map(|(s, set)| format!("{s}=[{}]", set.names().join(","))).collect();
                format!("SYNC {}", parts.join(" "))
            }
            Command::Query => "QUERY".to_string(),
        }
    }

    /// The scope a single-scope command touches (`None` for SYNC / QUERY).
    pub fn scope(&self) -> Option<&Scope> {
        match self {
            Command::Include { scope, .. }
            | Command::Exclude { scope, .. }
            | Command::Reset { scope }
            | Command::Randomize { scope, .. } => Some(scope),
            Command::Sync { .. } | Command::Query => None,
        }
    }
}

/// The LB's answer to one request, as the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Accepted. `scopes` holds the affected scope (absent when a RESET
    /// removed an SNI scope) or, for SYNC and QUERY, every scope.
    Ack { version: u64, scopes: Vec<(Scope, FieldSet)>, drawn: Option<FieldSet> },
    /// Refused. `authenticated == false` means the LB could not MAC the
    /// answer (it did not hold the key): treat it as advisory only.
    Error { code: u16, reason: String, authenticated: bool },
}

impl Reply {
    /// For a `NOT_PERMITTED` error, the field the LB refused (the reason
    /// text is `field <name> not permitted`).
    pub fn not_permitted_field(&self) -> Option<FieldId> {
        match self {
            Reply::Error { code, reason, .. } if *code == crate::ErrorCode::NotPermitted as u16 => {
                let name = reason.strip_prefix("field ")?.strip_suffix(" not permitted")?;
                FieldId::from_name(name)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_fields_not_values() {
        let c = Command::Include { scope: Scope::Backend, field: FieldId::SNI };
        assert_eq!(c.summary(), "INCLUDE backend sni");
        let from: FieldSet = [FieldId::SRC_IP, FieldId::JA4].into_iter().collect();
        let c = Command::Randomize { scope: Scope::Sni("a.example".into()), from: from.clone() };
        assert_eq!(c.summary(), "RANDOMIZE sni=a.example [src_ip,ja4]");
        let c = Command::Sync { scopes: vec![(Scope::Backend, from)] };
        assert_eq!(c.summary(), "SYNC backend=[src_ip,ja4]");
        assert_eq!(Command::Query.summary(), "QUERY");
        assert_eq!(Command::Reset { scope: Scope::Backend }.summary(), "RESET backend");
    }

    #[test]
    fn not_permitted_field_is_parsed_from_the_reason() {
        let r = Reply::Error {
            code: crate::ErrorCode::NotPermitted as u16,
            reason: "field ja4 not permitted".into(),
            authenticated: true,
        };
        assert_eq!(r.not_permitted_field(), Some(FieldId::JA4));
        let r = Reply::Error { code: 1, reason: "field ja4 not permitted".into(), authenticated: true };
        assert_eq!(r.not_permitted_field(), None);
    }
}
