use crate::FieldId;
use std::collections::BTreeSet;

/// An ordered set of fields (the DMCP state of one scope, a policy's
/// required set, …). Iterates in id order, which is also priority order:
/// when a certificate would grow too large the highest ids are dropped first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct FieldSet(BTreeSet<FieldId>);

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, f: FieldId) -> bool {
        self.0.insert(f)
    }
    pub fn remove(&mut self, f: FieldId) -> bool {
        self.0.remove(&f)
    }
    pub fn contains(&self, f: FieldId) -> bool {
        self.0.contains(&f)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = FieldId> + '_ {
        self.0.iter().copied()
    }
    /// Fields in `self` but not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        self.0.difference(&other.0).copied().collect()
    }
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        self.0.union(&other.0).copied().collect()
    }
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        self.0.intersection(&other.0).copied().collect()
    }
    /// Comma-separated names, for logs and the audit log.
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|f| f.name()).collect()
    }
}

impl FromIterator<FieldId> for FieldSet {
    fn from_iter<T: IntoIterator<Item = FieldId>>(iter: T) -> Self {
        FieldSet(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a FieldSet {
    type Item = FieldId;
    type IntoIter = std::iter::Copied<std::collections::btree_set::Iter<'a, FieldId>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().copied()
    }
}
