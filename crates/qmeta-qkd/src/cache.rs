//! Backend-side key cache: a key by id, fetched from the backend's KME
//! (`dec_keys`) the first time the id is seen.
//!
//! A strict KME delivers a key once, so concurrent `get`s for the same id
//! share one `dec_keys` call (a per-id `OnceCell`). The cache is a bounded
//! LRU: the least recently used resolved key is dropped (and zeroized) when
//! a newly fetched key would exceed `capacity`.

use crate::client::{ClientError, KmeClient};
use crate::Key;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Keys by id, shared by clones.
#[derive(Clone)]
pub struct DecKeyCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: KmeClient,
    master_sae: String,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Uuid, Entry>,
    tick: u64,
}

struct Entry {
    cell: Arc<OnceCell<Arc<Key>>>,
    last_used: u64,
}

impl std::fmt::Debug for DecKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecKeyCache")
            .field("master_sae", &self.inner.master_sae)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl DecKeyCache {
    /// `master_sae` is the SAE that obtained the keys (the LB); `capacity`
    /// is at least 1.
    pub fn new(client: KmeClient, master_sae: String, capacity: usize) -> DecKeyCache {
        DecKeyCache {
            inner: Arc::new(Inner { client, master_sae, capacity: capacity.max(1), state: Mutex::default() }),
        }
    }

    /// The key with this id, from the cache or (once) from the KME.
    pub async fn get(&self, id: Uuid) -> Result<Arc<Key>, ClientError> {
        let cell = self.cell(id);
        let result = cell
            .get_or_try_init(|| async {
                let mut keys = self.inner.client.dec_keys(&self.inner.master_sae, &[id]).await?;
                Ok::<_, ClientError>(Arc::new(keys.remove(0)))
            })
            .await
            .cloned();
        match &result {
            Ok(_) => self.trim(id),
            Err(_) => self.forget_failed(id, &cell),
        }
        result
    }

    /// Number of ids held (resolved or being fetched).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cell for `id`, created if new.
    fn cell(&self, id: Uuid) -> Arc<OnceCell<Arc<Key>>> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        let e = st.entries.entry(id).or_insert_with(|| Entry { cell: Arc::new(OnceCell::new()), last_used: tick });
        e.last_used = tick;
        e.cell.clone()
    }

    /// After `keep` was fetched: drop least recently used entries until the
    /// cache fits. Trimming only on success means a failed fetch never
    /// evicts a good key; pending fetches may overshoot `capacity` briefly.
    fn trim(&self, keep: Uuid) {
        let mut st = self.lock();
        while st.entries.len() > self.inner.capacity {
            // Prefer resolved keys; a pending fetch has waiters.
            let victim = st
                .entries
                .iter()
                .filter(|(k, _)| **k != keep)
                .min_by_key(|(_, e)| (!e.cell.initialized(), e.last_used))
                .map(|(k, _)| *k);
            match victim {
                Some(v) => st.entries.remove(&v),
                None => break,
            };
        }
    }

    /// Drops a failed fetch's cell so the map holds no empty cells; a later
    /// `get` asks the KME again.
    fn forget_failed(&self, id: Uuid, cell: &Arc<OnceCell<Arc<Key>>>) {
        let mut st = self.lock();
        if st.entries.get(&id).is_some_and(|e| Arc::ptr_eq(&e.cell, cell) && !e.cell.initialized()) {
            st.entries.remove(&id);
        }
    }
}
