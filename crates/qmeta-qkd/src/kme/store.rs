//! The key store of a KME and the ETSI 014 rules applied to it. Sans-IO:
//! the caller passes the SAE id (from the TLS certificate), the parsed
//! request and `now`; answers are values or [`Refusal`]s.
//!
//! Two layouts ([`Store::new`] / [`Store::new_split`]):
//! - **shared** (both sites in one process): one pool both sites issue
//!   from, fed by a [`Link`]; reservations made at one site are collected at
//!   the other.
//! - **split** (one site per process): each distilled block is cut in two
//!   halves, the first for keys issued at site A, the second for site B.
//!   A site issues from its own half and tells the peer which stream offset
//!   it used ([`Relay`]); the peer takes the same bytes from its copy
//!   ([`Store::accept_relay`]). Concurrent issuing at both sites therefore
//!   never uses the same bytes twice.

use super::link::{Link, LinkStats};
use super::pool::{Pool, TakeAt, WhenFull};
use super::LinkConfig;
use crate::api::{self, KeyRequest, Status};
use crate::Key;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

/// One of the two KMEs of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    A,
    B,
}

impl Site {
    pub fn peer(self) -> Site {
        match self {
            Site::A => Site::B,
            Site::B => Site::A,
        }
    }
    fn index(self) -> usize {
        match self {
            Site::A => 0,
            Site::B => 1,
        }
    }
}

/// Why a call is refused, as the spec's status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400 with an Error body.
    BadRequest(String),
    /// 400 with the spec's "not found" message (404 in the `not_found_404`
    /// quirk mode).
    NotFound,
    /// 401, no body.
    Unauthorized,
    /// 503 with an Error body.
    Unavailable(String),
}

/// What a site knows about itself.
#[derive(Debug, Clone)]
pub struct SiteInfo {
    pub kme_id: String,
    pub saes: Vec<String>,
}

/// Options beyond [`LinkConfig`] (which other crates build literally).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most `additional_slave_SAE_IDs` per request (0: no multicast).
    pub max_sae_id_count: u32,
    /// `bits_as_bytes` quirk per site (index 0 = A).
    pub size_is_bytes: [bool; 2],
}

/// A key issued at one site, waiting for its slaves at the other.
struct Reserved {
    issued_at: Site,
    master: String,
    /// Slaves that have not collected it yet.
    slaves: Vec<String>,
    /// Slaves that have (a second dec_keys by them is "not found").
    delivered: Vec<String>,
    bytes: Zeroizing<Vec<u8>>,
}

/// Keys issued at this site in split layout, for the peer KME: the bytes
/// are `number` keys of `each` bytes from `offset` of the issuing site's
/// stream. Carries no key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub issued_at: Site,
    pub offset: u64,
    pub each: u32,
    pub ids: Vec<Uuid>,
    pub master: String,
    pub slaves: Vec<String>,
}

/// Why [`Store::accept_relay`] did not take a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayError {
    /// The key material has not been distilled here yet: try again later.
    NotYet,
    /// The material is gone (consumed or dropped) or the relay breaks a
    /// rule (wrong site, unknown SAEs, duplicate ids).
    Refused(String),
}

/// What `enc_keys` handed out.
#[derive(Debug)]
pub struct Issued {
    pub keys: Vec<Key>,
    /// Split layout: what the peer KME must be told before the keys are
    /// given to the master.
    pub relay: Option<Relay>,
}

enum Material {
    Shared {
        link: Box<dyn Link>,
        /// Where the link writes; allocated once (no reallocation copies).
        scratch: Zeroizing<Vec<u8>>,
        pool: Pool,
    },
    Split {
        local: Site,
        /// Stream of keys issued here.
        mine: Pool,
        /// Copy of the peer's stream.
        theirs: Pool,
        stats: Arc<Mutex<LinkStats>>,
    },
}

/// Pool of unused key material plus keys reserved for (master, slaves).
pub struct Store {
    material: Material,
    limits: LinkConfig,
    opts: StoreOptions,
    key_bytes: usize,
    reserved: HashMap<Uuid, Reserved>,
    /// Issue order, to drop the oldest unclaimed reservation when full.
    order: VecDeque<Uuid>,
    sites: [SiteInfo; 2],
    id_rng: StdRng,
}

impl Store {
    /// Shared layout: both sites in this process, fed by `link`.
    pub fn new(limits: LinkConfig, link: Box<dyn Link>, a: SiteInfo, b: SiteInfo) -> Store {
        Store::with_options(limits, StoreOptions::default(), link, a, b)
    }

    pub fn with_options(
        limits: LinkConfig,
        opts: StoreOptions,
        link: Box<dyn Link>,
        a: SiteInfo,
        b: SiteInfo,
    ) -> Store {
        let key_bytes = (limits.key_size / 8).max(1) as usize;
        let cap = limits.max_key_count as usize * key_bytes;
        let material = Material::Shared {
            link,
            scratch: Zeroizing::new(Vec::with_capacity(cap)),
            pool: Pool::new(cap, WhenFull::DropNew),
        };
        Store::build(limits, opts, material, a, b)
    }

    /// Split layout: this process serves `local`; distilled blocks arrive
    /// through [`Store::feed_block`]; `stats` are the link's live figures.
    pub fn new_split(
        limits: LinkConfig,
        opts: StoreOptions,
        local: Site,
        a: SiteInfo,
        b: SiteInfo,
        stats: Arc<Mutex<LinkStats>>,
    ) -> Store {
        let key_bytes = (limits.key_size / 8).max(1) as usize;
        let cap = limits.max_key_count as usize * key_bytes;
        let material = Material::Split {
            local,
            mine: Pool::new(cap, WhenFull::DropOld),
            // Twice as deep: the peer may be up to a block ahead of us, and
            // its window must stay inside ours (docs/KME.md).
            theirs: Pool::new(2 * cap, WhenFull::DropOld),
            stats,
        };
        Store::build(limits, opts, material, a, b)
    }

    fn build(limits: LinkConfig, opts: StoreOptions, material: Material, a: SiteInfo, b: SiteInfo) -> Store {
        let key_bytes = (limits.key_size / 8).max(1) as usize;
        let id_rng = match limits.seed {
            // Distinct from the link's stream but reproducible.
            Some(s) => StdRng::seed_from_u64(s ^ 0x9e37_79b9_7f4a_7c15),
            None => StdRng::from_entropy(),
        };
        Store {
            material,
            limits,
            opts,
            key_bytes,
            reserved: HashMap::new(),
            order: VecDeque::new(),
            sites: [a, b],
            id_rng,
        }
    }

    fn site(&self, s: Site) -> &SiteInfo {
        &self.sites[s.index()]
    }

    fn attached(&self, s: Site, sae: &str) -> bool {
        self.site(s).saes.iter().any(|x| x == sae)
    }

    fn refill(&mut self, now: Instant) {
        if let Material::Shared { link, scratch, pool } = &mut self.material {
            let room = pool.room().min(scratch.capacity());
            link.distill(now, room, scratch);
            pool.push(scratch);
            scratch.zeroize();
        }
    }

    /// Split layout: one distilled block (identical at both sites). The
    /// first half feeds site A's stream, the rest site B's.
    pub fn feed_block(&mut self, block: &[u8]) {
        if let Material::Split { local, mine, theirs, .. } = &mut self.material {
            let (a, b) = block.split_at(block.len() / 2);
            let (m, t) = match local {
                Site::A => (a, b),
                Site::B => (b, a),
            };
            mine.push(m);
            theirs.push(t);
        }
    }

    /// Split layout: the link restarted (new session); both streams restart
    /// at offset 0 on both sides.
    pub fn reset_streams(&mut self) {
        if let Material::Split { mine, theirs, .. } = &mut self.material {
            mine.reset();
            theirs.reset();
        }
    }

    /// Split layout: both streams hold a full window (the link may pause).
    pub fn split_full(&self) -> bool {
        match &self.material {
            Material::Split { mine, theirs, .. } => mine.room() == 0 && theirs.len() >= mine.capacity(),
            Material::Shared { .. } => false,
        }
    }

    /// Bytes this store can issue from now.
    fn pool_len(&self) -> usize {
        match &self.material {
            Material::Shared { pool, .. } => pool.len(),
            Material::Split { mine, .. } => mine.len(),
        }
    }

    fn pool_capacity(&self) -> usize {
        match &self.material {
            Material::Shared { pool, .. } => pool.capacity(),
            Material::Split { mine, .. } => mine.capacity(),
        }
    }

    /// Keys of the default size currently in the pool.
    pub fn stored_key_count(&mut self, now: Instant) -> u64 {
        self.refill(now);
        (self.pool_len() / self.key_bytes) as u64
    }

    /// Keys handed out and not yet delivered to all their slaves.
    pub fn reserved_count(&self) -> usize {
        self.reserved.len()
    }

    /// The link's live figures.
    pub fn link_stats(&self) -> LinkStats {
        match &self.material {
            Material::Shared { link, .. } => link.stats(),
            Material::Split { stats, .. } => stats.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Common checks: the caller must belong to `site`, the other SAE to its peer.
    fn check_parties(&self, site: Site, caller: &str, other: &str, role: &str) -> Result<(), Refusal> {
        if !self.attached(site, caller) {
            return Err(Refusal::Unauthorized);
        }
        if !self.attached(site.peer(), other) {
            return Err(Refusal::BadRequest(format!(
                "{role} SAE ID is not attached to the peer KME {}",
                self.site(site.peer()).kme_id
            )));
        }
        Ok(())
    }

    /// Get status, called at `site` by `caller` (the master) about `slave`.
    pub fn status(&mut self, site: Site, caller: &str, slave: &str, now: Instant) -> Result<Status, Refusal> {
        self.check_parties(site, caller, slave, "slave")?;
        let stored = self.stored_key_count(now);
        let link = self.link_stats();
        let mut ext = serde_json::json!({
            "qmeta_link_kind": link.kind,
            "qmeta_pool_bytes": self.pool_len(),
            "qmeta_pool_capacity_bytes": self.pool_capacity(),
            "qmeta_pool_level": self.pool_len() as f64 / self.pool_capacity().max(1) as f64,
            "qmeta_reserved_keys": self.reserved.len(),
            "qmeta_key_rate": self.limits.key_rate,
            "qmeta_key_rate_bps": link.key_rate_bps,
            "qmeta_blocks_ok": link.blocks_ok,
            "qmeta_blocks_aborted": link.blocks_aborted,
            "qmeta_link_up": link.up,
        });
        if let Some(q) = link.qber {
            ext["qmeta_qber"] = serde_json::json!(q);
        }
        Ok(Status {
            source_kme_id: self.site(site).kme_id.clone(),
            target_kme_id: self.site(site.peer()).kme_id.clone(),
            master_sae_id: caller.to_string(),
            slave_sae_id: slave.to_string(),
            key_size: self.limits.key_size,
            stored_key_count: stored.min(u64::from(self.limits.max_key_count)),
            max_key_count: u64::from(self.limits.max_key_count),
            max_key_per_request: self.limits.max_key_per_request,
            max_key_size: self.limits.max_key_size,
            min_key_size: self.limits.min_key_size,
            max_sae_id_count: self.opts.max_sae_id_count,
            status_extension: Some(ext),
        })
    }

    /// Checks `additional_slave_SAE_IDs`; returns every slave, the named
    /// one first.
    fn slaves_of(&self, site: Site, slave: &str, req: &KeyRequest) -> Result<Vec<String>, Refusal> {
        let mut all = vec![slave.to_string()];
        let extra = req.additional_slave_sae_ids.as_deref().unwrap_or(&[]);
        if extra.is_empty() {
            return Ok(all);
        }
        let max = self.opts.max_sae_id_count as usize;
        if max == 0 {
            return Err(Refusal::BadRequest(
                "additional_slave_SAE_IDs are not supported (max_SAE_ID_count is 0)".into(),
            ));
        }
        if extra.len() > max {
            return Err(Refusal::BadRequest(format!(
                "{} additional_slave_SAE_IDs exceed max_SAE_ID_count {max}",
                extra.len()
            )));
        }
        for s in extra {
            if all.contains(s) {
                return Err(Refusal::BadRequest(
                    "additional_slave_SAE_IDs shall be distinct from each other and from the slave".into(),
                ));
            }
            if !self.attached(site.peer(), s) {
                return Err(Refusal::BadRequest(format!(
                    "additional slave SAE ID is not attached to the peer KME {}",
                    self.site(site.peer()).kme_id
                )));
            }
            all.push(s.clone());
        }
        Ok(all)
    }

    /// Get key: `caller` at `site` is the master; the keys are reserved for
    /// `slave` (and any additional slaves), who fetch them at the peer site.
    pub fn enc_keys(
        &mut self,
        site: Site,
        caller: &str,
        slave: &str,
        req: &KeyRequest,
        now: Instant,
    ) -> Result<Vec<Key>, Refusal> {
        self.issue(site, caller, slave, req, now).map(|i| i.keys)
    }

    /// [`Store::enc_keys`], also returning what the peer must be told in
    /// split layout.
    pub fn issue(
        &mut self,
        site: Site,
        caller: &str,
        slave: &str,
        req: &KeyRequest,
        now: Instant,
    ) -> Result<Issued, Refusal> {
        self.check_parties(site, caller, slave, "slave")?;
        let bad = |m: &str| Err(Refusal::BadRequest(m.to_string()));
        if req.extension_mandatory.as_ref().is_some_and(|e| !e.is_empty()) {
            // No extension is supported, so any mandatory one fails the call.
            return bad(api::MSG_EXTENSION_MANDATORY);
        }
        let slaves = self.slaves_of(site, slave, req)?;
        let number = req.number.unwrap_or(1);
        let size = req.size.unwrap_or(self.limits.key_size);
        if number == 0 {
            return bad("number shall be at least 1");
        }
        if number > self.limits.max_key_per_request {
            return bad(&format!("number {number} exceeds max_key_per_request {}", self.limits.max_key_per_request));
        }
        if size % 8 != 0 {
            return bad(api::MSG_SIZE_MULTIPLE_OF_8);
        }
        if size < self.limits.min_key_size || size > self.limits.max_key_size {
            return bad(&format!(
                "size {size} is outside min_key_size {} .. max_key_size {}",
                self.limits.min_key_size, self.limits.max_key_size
            ));
        }
        self.refill(now);
        let each = if self.opts.size_is_bytes[site.index()] { size as usize } else { (size / 8) as usize };
        let need = each * number as usize;
        let (offset, material) = {
            let pool = match &mut self.material {
                Material::Shared { pool, .. } => pool,
                Material::Split { mine, .. } => mine,
            };
            let offset = pool.head_offset();
            match pool.take(need) {
                Some(m) => (offset, m),
                None => {
                    return Err(Refusal::Unavailable(format!(
                        "not enough key material: {need} bytes asked, {} in the pool",
                        pool.len()
                    )))
                }
            }
        };
        let mut keys = Vec::with_capacity(number as usize);
        for chunk in material.chunks(each) {
            keys.push(Key { id: self.new_id(), bytes: Zeroizing::new(chunk.to_vec()) });
        }
        let relay = match self.material {
            Material::Shared { .. } => {
                for k in &keys {
                    self.reserve(k.id, k.bytes.clone(), site, caller, slaves.clone());
                }
                None
            }
            // The peer holds the reservation; nothing is kept here.
            Material::Split { .. } => Some(Relay {
                issued_at: site,
                offset,
                each: each as u32,
                ids: keys.iter().map(|k| k.id).collect(),
                master: caller.to_string(),
                slaves,
            }),
        };
        Ok(Issued { keys, relay })
    }

    fn new_id(&mut self) -> Uuid {
        let mut raw = [0u8; 16];
        self.id_rng.fill_bytes(&mut raw);
        uuid::Builder::from_random_bytes(raw).into_uuid()
    }

    /// Split layout: the peer issued `relay`; reserve the same bytes here
    /// for its slaves.
    pub fn accept_relay(&mut self, relay: &Relay) -> Result<(), RelayError> {
        let refused = |m: &str| Err(RelayError::Refused(m.to_string()));
        let local = match &self.material {
            Material::Split { local, .. } => *local,
            Material::Shared { .. } => return refused("not a split KME"),
        };
        if relay.issued_at != local.peer() {
            return refused("relay from the wrong site");
        }
        if !self.attached(local.peer(), &relay.master) {
            return refused("master SAE is not attached to the peer KME");
        }
        if relay.slaves.is_empty() || relay.slaves.iter().any(|s| !self.attached(local, s)) {
            return refused("slave SAE is not attached here");
        }
        let each = relay.each as usize;
        if relay.ids.is_empty()
            || relay.ids.len() > super::MAX_KEYS_PER_REQUEST as usize
            || each == 0
            || each > super::MAX_KEY_SIZE_BITS as usize
        {
            return refused("relay out of bounds");
        }
        let distinct: HashSet<_> = relay.ids.iter().collect();
        if distinct.len() != relay.ids.len() || relay.ids.iter().any(|i| self.reserved.contains_key(i)) {
            return refused("duplicate key id");
        }
        let Material::Split { theirs, .. } = &mut self.material else {
            return refused("not a split KME");
        };
        let material = match theirs.take_at(relay.offset, each * relay.ids.len()) {
            Ok(m) => m,
            Err(TakeAt::NotYet) => return Err(RelayError::NotYet),
            Err(TakeAt::Gone) => return refused("key material already gone"),
        };
        for (id, chunk) in relay.ids.iter().zip(material.chunks(each)) {
            let bytes = Zeroizing::new(chunk.to_vec());
            self.reserve(*id, bytes, relay.issued_at, &relay.master, relay.slaves.clone());
        }
        Ok(())
    }

    fn reserve(&mut self, id: Uuid, bytes: Zeroizing<Vec<u8>>, site: Site, master: &str, slaves: Vec<String>) {
        let cap = self.limits.max_key_count as usize;
        while self.reserved.len() >= cap {
            // Unclaimed keys cannot pile up forever: drop the oldest.
            match self.order.pop_front() {
                Some(old) => {
                    self.reserved.remove(&old);
                }
                None => break,
            }
        }
        let entry = Reserved { issued_at: site, master: master.to_string(), slaves, delivered: Vec::new(), bytes };
        self.reserved.insert(id, entry);
        self.order.push_back(id);
        if self.order.len() > 2 * cap.max(16) {
            // Delivered ids linger in `order`; compact now and then.
            let reserved = &self.reserved;
            self.order.retain(|id| reserved.contains_key(id));
        }
    }

    /// Get key with key IDs: `caller` at `site` is a slave, `master` the
    /// SAE that obtained the keys at the peer site. All or nothing; each
    /// key is delivered once to each of its slaves.
    pub fn dec_keys(&mut self, site: Site, caller: &str, master: &str, ids: &[String]) -> Result<Vec<Key>, Refusal> {
        if !self.attached(site, caller) {
            return Err(Refusal::Unauthorized);
        }
        if ids.is_empty() {
            return Err(Refusal::BadRequest("key_IDs shall not be empty".into()));
        }
        if ids.len() > self.limits.max_key_per_request as usize {
            return Err(Refusal::BadRequest(format!(
                "{} key_IDs exceed max_key_per_request {}",
                ids.len(),
                self.limits.max_key_per_request
            )));
        }
        let mut uuids = Vec::with_capacity(ids.len());
        let mut seen = HashSet::with_capacity(ids.len());
        let mut unauthorized = false;
        for s in ids {
            let id = Uuid::try_parse(s).map_err(|_| Refusal::NotFound)?;
            if !seen.insert(id) {
                return Err(Refusal::BadRequest("key_IDs shall be distinct".into()));
            }
            let r = self.reserved.get(&id).ok_or(Refusal::NotFound)?;
            if r.issued_at != site.peer() || r.master != master {
                return Err(Refusal::NotFound);
            }
            if r.delivered.iter().any(|d| d == caller) {
                return Err(Refusal::NotFound);
            }
            // Only a slave named at enc_keys time may take them (spec: 401).
            unauthorized |= !r.slaves.iter().any(|x| x == caller);
            uuids.push(id);
        }
        if unauthorized {
            return Err(Refusal::Unauthorized);
        }
        let mut out = Vec::with_capacity(uuids.len());
        for id in uuids {
            let r = self.reserved.get_mut(&id).expect("checked above");
            r.slaves.retain(|x| x != caller);
            r.delivered.push(caller.to_string());
            if r.slaves.is_empty() {
                let r = self.reserved.remove(&id).expect("checked above");
                out.push(Key { id, bytes: r.bytes });
            } else {
                out.push(Key { id, bytes: r.bytes.clone() });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::link::SimulatedLink;
    use super::*;
    use std::time::Duration;

    fn store(rate: u32, max_count: u32, t0: Instant) -> Store {
        let limits = LinkConfig { key_rate: rate, max_key_count: max_count, seed: Some(1), ..LinkConfig::default() };
        let link = SimulatedLink::new(32, rate, Some(1), t0);
        let a = SiteInfo { kme_id: "kme-a".into(), saes: vec!["lb".into()] };
        let b = SiteInfo { kme_id: "kme-b".into(), saes: vec!["be1".into(), "be2".into()] };
        Store::new(limits, Box::new(link), a, b)
    }

    fn req(number: u32, size: u32) -> KeyRequest {
        KeyRequest { number: Some(number), size: Some(size), ..KeyRequest::default() }
    }

    #[test]
    fn one_time_delivery_to_the_named_slave() {
        let t0 = Instant::now();
        let mut s = store(1000, 100, t0);
        let t = t0 + Duration::from_secs(1);
        assert_eq!(s.stored_key_count(t), 100, "capped at max_key_count");
        let keys = s.enc_keys(Site::A, "lb", "be1", &req(2, 512), t).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].bytes.len(), 64);
        assert_ne!(keys[0].bytes, keys[1].bytes);
        assert_eq!(s.stored_key_count(t), 100 - 4, "2 × 512 bits = 4 default keys");
        let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
        assert_eq!(s.dec_keys(Site::B, "be2", "lb", &ids).err(), Some(Refusal::Unauthorized), "wrong slave");
        assert_eq!(s.dec_keys(Site::A, "lb", "lb", &ids).err(), Some(Refusal::NotFound));
        assert_eq!(s.dec_keys(Site::B, "be1", "other", &ids).err(), Some(Refusal::NotFound));
        let got = s.dec_keys(Site::B, "be1", "lb", &ids).unwrap();
        assert_eq!(got[0].bytes, keys[0].bytes);
        assert_eq!(got[1].id, keys[1].id);
        assert_eq!(s.dec_keys(Site::B, "be1", "lb", &ids).err(), Some(Refusal::NotFound));
        assert_eq!(s.reserved_count(), 0);
    }

    #[test]
    fn request_checks() {
        let t0 = Instant::now();
        let mut s = store(1000, 100, t0);
        let t = t0 + Duration::from_secs(1);
        let bad = |m: &str| Err(Refusal::BadRequest(m.into()));
        assert_eq!(s.enc_keys(Site::A, "lb", "be1", &req(1, 100), t).map(|_| ()), bad(api::MSG_SIZE_MULTIPLE_OF_8));
        assert!(
            matches!(s.enc_keys(Site::A, "lb", "be1", &req(129, 256), t), Err(Refusal::BadRequest(m)) if m.contains("max_key_per_request"))
        );
        assert!(
            matches!(s.enc_keys(Site::A, "lb", "be1", &req(1, 2048), t), Err(Refusal::BadRequest(m)) if m.contains("max_key_size"))
        );
        assert!(matches!(s.enc_keys(Site::A, "lb", "be1", &req(1, 32), t), Err(Refusal::BadRequest(_))));
        assert!(
            matches!(s.enc_keys(Site::A, "lb", "lb", &req(1, 256), t), Err(Refusal::BadRequest(m)) if m.contains("peer KME kme-b"))
        );
        assert_eq!(s.enc_keys(Site::A, "be1", "lb", &req(1, 256), t).map(|_| ()), Err(Refusal::Unauthorized));
        let ext = KeyRequest { extension_mandatory: Some(vec![serde_json::json!({"x_y": 1})]), ..req(1, 256) };
        assert_eq!(s.enc_keys(Site::A, "lb", "be1", &ext, t).map(|_| ()), bad(api::MSG_EXTENSION_MANDATORY));
        // Defaults: one key of key_size.
        let k = s.enc_keys(Site::A, "lb", "be1", &KeyRequest::default(), t).unwrap();
        assert_eq!((k.len(), k[0].bytes.len()), (1, 32));
        // Reverse direction works too (backend is master at B).
        let k = s.enc_keys(Site::B, "be1", "lb", &req(1, 256), t).unwrap();
        assert_eq!(s.dec_keys(Site::A, "lb", "be1", &[k[0].id.to_string()]).unwrap()[0].bytes, k[0].bytes);
        assert_eq!(s.dec_keys(Site::B, "be1", "lb", &["nope".into()]).err(), Some(Refusal::NotFound));
    }

    #[test]
    fn empty_pool_is_unavailable_and_reservations_are_bounded() {
        let t0 = Instant::now();
        let mut dead = store(0, 10, t0);
        assert!(matches!(dead.enc_keys(Site::A, "lb", "be1", &req(1, 256), t0), Err(Refusal::Unavailable(_))));
        let mut s = store(1000, 4, t0);
        let t = t0 + Duration::from_secs(1);
        let first = s.enc_keys(Site::A, "lb", "be1", &req(1, 256), t).unwrap();
        for i in 0..4 {
            s.enc_keys(Site::A, "lb", "be1", &req(1, 256), t + Duration::from_secs(i + 1)).unwrap();
        }
        assert_eq!(s.reserved_count(), 4);
        // The oldest unclaimed reservation was dropped.
        assert!(s.dec_keys(Site::B, "be1", "lb", &[first[0].id.to_string()]).is_err());
        let st = s.status(Site::A, "lb", "be1", t).unwrap();
        assert!(st.stored_key_count <= st.max_key_count);
    }

    fn info(id: &str, saes: &[&str]) -> SiteInfo {
        SiteInfo { kme_id: id.into(), saes: saes.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn additional_slaves_each_collect_once() {
        let t0 = Instant::now();
        let limits = LinkConfig { seed: Some(3), ..LinkConfig::default() };
        let opts = StoreOptions { max_sae_id_count: 2, ..StoreOptions::default() };
        let link = SimulatedLink::new(32, 1000, Some(3), t0);
        let mut s = Store::with_options(
            limits,
            opts,
            Box::new(link),
            info("kme-a", &["lb"]),
            info("kme-b", &["be1", "be2", "be3"]),
        );
        let t = t0 + Duration::from_secs(1);
        let multi = KeyRequest { additional_slave_sae_ids: Some(vec!["be2".into()]), ..req(1, 256) };
        let k = s.enc_keys(Site::A, "lb", "be1", &multi, t).unwrap();
        let ids = [k[0].id.to_string()];
        assert_eq!(s.dec_keys(Site::B, "be3", "lb", &ids).err(), Some(Refusal::Unauthorized));
        assert_eq!(s.dec_keys(Site::B, "be2", "lb", &ids).unwrap()[0].bytes, k[0].bytes);
        assert_eq!(s.dec_keys(Site::B, "be2", "lb", &ids).err(), Some(Refusal::NotFound));
        assert_eq!(s.reserved_count(), 1, "still waiting for be1");
        assert_eq!(s.dec_keys(Site::B, "be1", "lb", &ids).unwrap()[0].bytes, k[0].bytes);
        assert_eq!(s.reserved_count(), 0);
        let too_many = KeyRequest {
            additional_slave_sae_ids: Some(vec!["be2".into(), "be3".into(), "be4".into()]),
            ..req(1, 256)
        };
        assert!(matches!(
            s.enc_keys(Site::A, "lb", "be1", &too_many, t),
            Err(Refusal::BadRequest(m)) if m.contains("max_SAE_ID_count 2")
        ));
        let st = s.status(Site::A, "lb", "be1", t).unwrap();
        assert_eq!(st.max_sae_id_count, 2);
    }

    #[test]
    fn split_sites_agree_on_relayed_keys() {
        let limits = LinkConfig { max_key_count: 8, seed: Some(5), ..LinkConfig::default() };
        let stats = Arc::new(Mutex::new(LinkStats::default()));
        let split = |local| {
            Store::new_split(
                limits.clone(),
                StoreOptions::default(),
                local,
                info("kme-a", &["lb"]),
                info("kme-b", &["be1"]),
                stats.clone(),
            )
        };
        let (mut a, mut b) = (split(Site::A), split(Site::B));
        let t = Instant::now();
        // Keys issued before the block arrived: 503.
        assert!(matches!(a.issue(Site::A, "lb", "be1", &req(1, 256), t), Err(Refusal::Unavailable(_))));
        let block: Vec<u8> = (0..=255u8).collect();
        a.feed_block(&block);
        // A issues; B has not seen the block yet, then has.
        let issued = a.issue(Site::A, "lb", "be1", &req(2, 256), t).unwrap();
        let relay = issued.relay.expect("split: relay for the peer");
        assert_eq!((relay.offset, relay.each, relay.ids.len()), (0, 32, 2));
        assert_eq!(a.reserved_count(), 0, "the issuing site keeps nothing");
        assert_eq!(b.accept_relay(&relay), Err(RelayError::NotYet));
        b.feed_block(&block);
        // B issues from its own half concurrently: different bytes.
        let from_b = b.issue(Site::B, "be1", "lb", &req(1, 256), t).unwrap();
        assert_eq!(&from_b.keys[0].bytes[..], &block[128..160]);
        b.accept_relay(&relay).unwrap();
        let got = b.dec_keys(Site::B, "be1", "lb", &[relay.ids[1].to_string()]).unwrap();
        assert_eq!(got[0].bytes, issued.keys[1].bytes);
        assert_eq!(&got[0].bytes[..], &block[32..64]);
        // Replay of the same relay: refused (ids known / material gone).
        assert!(matches!(b.accept_relay(&relay), Err(RelayError::Refused(_))));
        a.accept_relay(&from_b.relay.unwrap()).unwrap();
        // A relay naming SAEs of the wrong sites is refused.
        let bogus = Relay { master: "be1".into(), ids: vec![Uuid::from_u128(9)], offset: 64, ..relay };
        assert!(matches!(b.accept_relay(&bogus), Err(RelayError::Refused(_))));
        // Streams restart with a new session.
        a.reset_streams();
        assert_eq!(a.stored_key_count(t), 0);
    }
}
