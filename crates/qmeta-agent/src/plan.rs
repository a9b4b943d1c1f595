//! Pure planning: policy + what the LB acknowledged → the commands to send.
//! No I/O, so the "never ask for a forbidden field" rule is testable.

use crate::policy::Policy;
use qmeta_dmcp::{diff, Command, Scope};
use qmeta_fields::{FieldId, FieldSet};
use std::collections::BTreeMap;

/// The agent's intent: the policy, the subsets the LB drew for RANDOMIZE
/// scopes under this policy, and fields the LB refused (not in its
/// allowlist), which are left out until the policy is reloaded.
#[derive(Clone, Debug)]
pub struct Planner {
    policy: Policy,
    drawn: BTreeMap<Scope, FieldSet>,
    refused: FieldSet,
}

impl Planner {
    pub fn new(policy: Policy) -> Planner {
        Planner { policy, drawn: BTreeMap::new(), refused: FieldSet::new() }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Installs a new policy; returns false (and changes nothing) if it is
    /// the same. Draws and refusals are forgotten: the next plan re-draws.
    pub fn replace_policy(&mut self, policy: Policy) -> bool {
        if policy == self.policy {
            return false;
        }
        *self = Planner::new(policy);
        true
    }

    /// The full desired state: fixed fields and what was drawn, minus
    /// refused fields. Never contains a forbidden field.
    pub fn desired(&self) -> Vec<(Scope, FieldSet)> {
        self.policy
            .scopes
            .iter()
            .map(|sp| {
                let mut set = sp.fixed();
                if let Some(d) = self.drawn.get(&sp.scope) {
                    set = set.union(d);
                }
                (sp.scope.clone(), set.difference(&sp.forbidden).difference(&self.refused))
            })
            .collect()
    }

    /// The command sent after every (re)connect.
    pub fn sync(&self) -> Command {
        Command::Sync { scopes: self.desired() }
    }

    /// RANDOMIZE for every randomizing scope that has not drawn yet.
    pub fn randomize(&self) -> Vec<Command> {
        self.policy
            .scopes
            .iter()
            .filter(|sp| !self.drawn.contains_key(&sp.scope))
            .filter_map(|sp| {
                let from = sp.randomize_from()?.difference(&self.refused);
                Some(Command::Randomize { scope: sp.scope.clone(), from })
            })
            .collect()
    }

    /// Commands that bring `acked` to the desired state, then any RANDOMIZE
    /// still to do.
    pub fn update(&self, acked: &[(Scope, FieldSet)]) -> Vec<Command> {
        let mut cmds = diff(acked, &self.desired());
        cmds.extend(self.randomize());
        cmds
    }

    /// Records what the LB drew for a scope.
    pub fn drawn(&mut self, scope: &Scope, drawn: FieldSet) {
        self.drawn.insert(scope.clone(), drawn);
    }

    /// Records a field the LB refused (NOT_PERMITTED). Returns true if the
    /// policy required it (worth an error rather than a warning).
    pub fn refused(&mut self, field: FieldId) -> bool {
        self.refused.insert(field);
        self.policy.scopes.iter().any(|sp| sp.required.contains(field))
    }

    /// Fields given up on since the last policy load.
    pub fn refused_fields(&self) -> &FieldSet {
        &self.refused
    }
}

/// True if `cmd` asks the LB for one of `forbidden` (INCLUDE, RANDOMIZE or
/// SYNC naming it). EXCLUDE is how a forbidden field is removed, so it is
/// not asking.
pub fn asks_for(cmd: &Command, scope_forbidden: impl Fn(&Scope) -> FieldSet) -> Option<FieldId> {
    match cmd {
        Command::Include { scope, field } => scope_forbidden(scope).contains(*field).then_some(*field),
        Command::Randomize { scope, from } => from.intersection(&scope_forbidden(scope)).iter().next(),
        Command::Sync { scopes } => {
            scopes.iter().find_map(|(s, set)| set.intersection(&scope_forbidden(s)).iter().next())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ScopePolicy;
    use proptest::prelude::*;

    const POOL: [FieldId; 8] = [
        FieldId::SRC_IP,
        FieldId::SRC_PORT,
        FieldId::TIMESTAMP,
        FieldId::SNI,
        FieldId::JA4,
        FieldId::GEO_COUNTRY,
        FieldId::GEO_CITY,
        FieldId::HTTP_USER_AGENT,
    ];

    fn set_strategy() -> impl Strategy<Value = FieldSet> {
        proptest::collection::vec(0usize..POOL.len(), 0..6).prop_map(|ix| ix.into_iter().map(|i| POOL[i]).collect())
    }

    fn scope_policy(scope: Scope) -> impl Strategy<Value = ScopePolicy> {
        (set_strategy(), set_strategy(), set_strategy(), any::<bool>()).prop_map(
            move |(required, permissible, forbidden, randomize)| ScopePolicy {
                scope: scope.clone(),
                // A valid policy never requires a forbidden field.
                required: required.difference(&forbidden),
                permissible,
                forbidden,
                randomize,
            },
        )
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        (scope_policy(Scope::Backend), proptest::option::of(scope_policy(Scope::Sni("a.example".into()))))
            .prop_map(|(b, s)| Policy { scopes: std::iter::once(b).chain(s).collect() })
    }

    fn acked_strategy() -> impl Strategy<Value = Vec<(Scope, FieldSet)>> {
        (set_strategy(), proptest::option::of(set_strategy()), proptest::option::of(set_strategy())).prop_map(
            |(b, a, c)| {
                let mut v = vec![(Scope::Backend, b)];
                v.extend(a.map(|s| (Scope::Sni("a.example".into()), s)));
                v.extend(c.map(|s| (Scope::Sni("c.example".into()), s)));
                v
            },
        )
    }

    fn forbidden_of(p: &Policy) -> impl Fn(&Scope) -> FieldSet + '_ {
        // A scope without a policy of its own follows the backend scope's.
        move |s| p.scope(s).or(p.scope(&Scope::Backend)).map(|sp| sp.forbidden.clone()).unwrap_or_default()
    }

    proptest! {
        #[test]
        fn never_asks_for_a_forbidden_field(
            policy in policy_strategy(),
            acked in acked_strategy(),
            drawn in set_strategy(),
            refused in proptest::option::of(0usize..POOL.len()),
        ) {
            let mut planner = Planner::new(policy.clone());
            if let Some(i) = refused {
                planner.refused(POOL[i]);
            }
            for (scope, set) in planner.desired() {
                let sp = policy.scope(&scope).unwrap();
                prop_assert!(set.intersection(&sp.forbidden).is_empty());
            }
            let mut cmds = vec![planner.sync()];
            cmds.extend(planner.update(&acked));
            // Even if the LB reported drawing a forbidden field.
            planner.drawn(&Scope::Backend, drawn);
            cmds.push(planner.sync());
            cmds.extend(planner.update(&acked));
            for cmd in &cmds {
                prop_assert_eq!(asks_for(cmd, forbidden_of(&policy)), None, "{}", cmd.summary());
            }
        }
    }

    #[test]
    fn drawn_fields_join_the_desired_state_and_replacing_the_policy_redraws() {
        let policy = crate::policy::parse_policy(
            "p.toml",
            "required = ['src_ip']\npermissible = ['sni', 'ja4']\nrandomize = true",
        )
        .unwrap();
        let mut p = Planner::new(policy.clone());
        assert_eq!(p.randomize().len(), 1);
        p.drawn(&Scope::Backend, [FieldId::JA4].into_iter().collect());
        assert!(p.randomize().is_empty());
        assert_eq!(p.desired()[0].1, [FieldId::SRC_IP, FieldId::JA4].into_iter().collect());
        assert!(!p.replace_policy(policy));
        let other = crate::policy::parse_policy("p.toml", "required = ['src_ip']").unwrap();
        assert!(p.replace_policy(other));
        assert!(p.randomize().is_empty());
        assert_eq!(p.desired()[0].1, [FieldId::SRC_IP].into_iter().collect());
    }

    #[test]
    fn refused_fields_are_left_out() {
        let policy = crate::policy::parse_policy("p.toml", "required = ['src_ip']\npermissible = ['ja4']").unwrap();
        let mut p = Planner::new(policy);
        assert!(!p.refused(FieldId::JA4));
        assert_eq!(p.desired()[0].1, [FieldId::SRC_IP].into_iter().collect());
        assert!(p.refused(FieldId::SRC_IP));
    }
}
