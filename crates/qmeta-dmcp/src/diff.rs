use crate::command::Command;
use crate::scope::Scope;
use qmeta_fields::{FieldId, FieldSet};
use std::collections::BTreeMap;

/// Commands that turn the acknowledged state `acked` into `desired`, in the
/// order they must be sent. Later duplicates of a scope win.
///
/// Backend changes come first, so that an SNI scope created afterwards (as
/// a copy of the backend scope) starts from the desired backend set. A new
/// SNI scope equal to that set is created with an idempotent "pin" command
/// (INCLUDE of its first field, or EXCLUDE of `src_ip` if it is empty).
/// If either side lacks the backend scope the answer is one SYNC.
pub fn diff(acked: &[(Scope, FieldSet)], desired: &[(Scope, FieldSet)]) -> Vec<Command> {
    let acked: BTreeMap<&Scope, &FieldSet> = acked.iter().map(|(s, f)| (s, f)).collect();
    let desired_map: BTreeMap<&Scope, &FieldSet> = desired.iter().map(|(s, f)| (s, f)).collect();
    let (Some(acked_backend), Some(want_backend)) = (acked.get(&Scope::Backend), desired_map.get(&Scope::Backend))
    else {
        let scopes = desired_map.into_iter().map(|(s, f)| (s.clone(), f.clone())).collect();
        return vec![Command::Sync { scopes }];
    };
    let mut out = Vec::new();
    changes(&Scope::Backend, acked_backend, want_backend, &mut out);
    for scope in acked.keys().filter(|s| ***s != Scope::Backend) {
        if !desired_map.contains_key(scope) {
            out.push(Command::Reset { scope: (*scope).clone() });
        }
    }
    for (scope, want) in desired_map.iter().filter(|(s, _)| ***s != Scope::Backend) {
        match acked.get(scope) {
            Some(have) => changes(scope, have, want, &mut out),
            None => {
                let before = out.len();
                changes(scope, want_backend, want, &mut out);
                if out.len() == before {
                    out.push(pin(scope, want));
                }
            }
        }
    }
    out
}

fn changes(scope: &Scope, have: &FieldSet, want: &FieldSet, out: &mut Vec<Command>) {
    for field in have.difference(want).iter() {
        out.push(Command::Exclude { scope: scope.clone(), field });
    }
    for field in want.difference(have).iter() {
        out.push(Command::Include { scope: scope.clone(), field });
    }
}

fn pin(scope: &Scope, want: &FieldSet) -> Command {
    match want.iter().next() {
        Some(field) => Command::Include { scope: scope.clone(), field },
        None => Command::Exclude { scope: scope.clone(), field: FieldId::SRC_IP },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ControlState;
    use proptest::prelude::*;

    const POOL: [FieldId; 6] =
        [FieldId::SRC_IP, FieldId::SRC_PORT, FieldId::TIMESTAMP, FieldId::SNI, FieldId::JA4, FieldId::GEO_COUNTRY];

    fn state_strategy() -> impl Strategy<Value = Vec<(Scope, FieldSet)>> {
        let set = proptest::collection::vec(0usize..POOL.len(), 0..6)
            .prop_map(|ix| ix.into_iter().map(|i| POOL[i]).collect::<FieldSet>());
        let snis =
            proptest::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("c.example")], set.clone(), 0..3);
        (set, snis).prop_map(|(backend, snis)| {
            let mut v = vec![(Scope::Backend, backend)];
            v.extend(snis.into_iter().map(|(n, s)| (Scope::Sni(n.to_string()), s)));
            v
        })
    }

    fn at(scopes: &[(Scope, FieldSet)]) -> ControlState {
        let all: FieldSet = POOL.into_iter().collect();
        let mut s = ControlState::new(FieldSet::new(), all);
        s.dispatch(&Command::Sync { scopes: scopes.to_vec() }, [0; 32]).unwrap();
        s
    }

    proptest! {
        #[test]
        fn applying_the_diff_yields_desired(acked in state_strategy(), desired in state_strategy()) {
            let mut s = at(&acked);
            for cmd in diff(&acked, &desired) {
                s.dispatch(&cmd, [0; 32]).unwrap();
            }
            prop_assert_eq!(s.scopes(), desired.clone());
            prop_assert!(diff(&desired, &desired).is_empty());
        }
    }

    #[test]
    fn new_scope_equal_to_backend_is_pinned() {
        let b: FieldSet = [FieldId::SRC_IP].into_iter().collect();
        let acked = vec![(Scope::Backend, b.clone())];
        let desired = vec![(Scope::Backend, b.clone()), (Scope::Sni("x".into()), b)];
        assert_eq!(
            diff(&acked, &desired),
            vec![Command::Include { scope: Scope::Sni("x".into()), field: FieldId::SRC_IP }]
        );
    }

    #[test]
    fn missing_backend_means_sync() {
        let desired = vec![(Scope::Backend, FieldSet::new())];
        assert_eq!(diff(&[], &desired), vec![Command::Sync { scopes: desired.clone() }]);
    }
}
