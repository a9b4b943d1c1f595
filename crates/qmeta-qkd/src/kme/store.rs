//! The key store both KMEs of a pair share, and the ETSI 014 rules applied
//! to it. Sans-IO: the caller passes the SAE id (from the TLS certificate),
//! the parsed request and `now`; answers are values or [`Refusal`]s.

use super::link::Link;
use super::LinkConfig;
use crate::api::{self, KeyRequest, Status};
use crate::Key;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::collections::{HashMap, HashSet, VecDeque};
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

/// A key handed out by one KME, waiting for its slave at the other.
struct Reserved {
    issued_at: Site,
    master: String,
    slave: String,
    bytes: Zeroizing<Vec<u8>>,
}

/// Pool of unused key material plus keys reserved for (master, slave).
pub struct Store {
    link: Box<dyn Link>,
    limits: LinkConfig,
    key_bytes: usize,
    pool: Zeroizing<Vec<u8>>,
    cap_bytes: usize,
    reserved: HashMap<Uuid, Reserved>,
    /// Issue order, to drop the oldest unclaimed reservation when full.
    order: VecDeque<Uuid>,
    sites: [SiteInfo; 2],
    id_rng: StdRng,
}

impl Store {
    pub fn new(limits: LinkConfig, link: Box<dyn Link>, a: SiteInfo, b: SiteInfo) -> Store {
        let key_bytes = (limits.key_size / 8).max(1) as usize;
        let cap_bytes = limits.max_key_count as usize * key_bytes;
        let id_rng = match limits.seed {
            // Distinct from the link's stream but reproducible.
            Some(s) => StdRng::seed_from_u64(s ^ 0x9e37_79b9_7f4a_7c15),
            None => StdRng::from_entropy(),
        };
        Store {
            link,
            limits,
            key_bytes,
            // Reserved up front so the pool never reallocates (no stray copies).
            pool: Zeroizing::new(Vec::with_capacity(cap_bytes)),
            cap_bytes,
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
        let room = self.cap_bytes - self.pool.len();
        self.link.distill(now, room, &mut self.pool);
        self.pool.truncate(self.cap_bytes);
    }

    /// Keys of the default size currently in the pool.
    pub fn stored_key_count(&mut self, now: Instant) -> u64 {
        self.refill(now);
        (self.pool.len() / self.key_bytes) as u64
    }

    /// Keys handed out and not yet delivered to their slave.
    pub fn reserved_count(&self) -> usize {
        self.reserved.len()
    }

    /// Common checks: the caller must belong to `site`, the other SAE to its peer.
    fn check_parties(
        &self,
        site: Site,
        caller: &str,
        other: &str,
        role: &str,
    ) -> Result<(), Refusal> {
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
    pub fn status(
        &mut self,
        site: Site,
        caller: &str,
        slave: &str,
        now: Instant,
    ) -> Result<Status, Refusal> {
        self.check_parties(site, caller, slave, "slave")?;
        let stored = self.stored_key_count(now);
        Ok(Status {
            source_kme_id: self.site(site).kme_id.clone(),
            target_kme_id: self.site(site.peer()).kme_id.clone(),
            master_sae_id: caller.to_string(),
            slave_sae_id: slave.to_string(),
            key_size: self.limits.key_size,
            stored_key_count: stored,
            max_key_count: u64::from(self.limits.max_key_count),
            max_key_per_request: self.limits.max_key_per_request,
            max_key_size: self.limits.max_key_size,
            min_key_size: self.limits.min_key_size,
            max_sae_id_count: 0,
            status_extension: Some(serde_json::json!({
                "qmeta_pool_bytes": self.pool.len(),
                "qmeta_pool_capacity_bytes": self.cap_bytes,
                "qmeta_reserved_keys": self.reserved.len(),
                "qmeta_key_rate": self.limits.key_rate,
            })),
        })
    }

    /// Get key: `caller` at `site` is the master; the keys are reserved for
    /// `slave`, who fetches them at the peer site.
    pub fn enc_keys(
        &mut self,
        site: Site,
        caller: &str,
        slave: &str,
        req: &KeyRequest,
        now: Instant,
    ) -> Result<Vec<Key>, Refusal> {
        self.check_parties(site, caller, slave, "slave")?;
        let bad = |m: &str| Err(Refusal::BadRequest(m.to_string()));
        if req
            .extension_mandatory
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            return bad(api::MSG_EXTENSION_MANDATORY);
        }
        if req
            .additional_slave_sae_ids
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            return bad("additional_slave_SAE_IDs are not supported (max_SAE_ID_count is 0)");
        }
        let number = req.number.unwrap_or(1);
        let size = req.size.unwrap_or(self.limits.key_size);
        if number == 0 {
            return bad("number shall be at least 1");
        }
        if number > self.limits.max_key_per_request {
            return bad(&format!(
                "number {number} exceeds max_key_per_request {}",
                self.limits.max_key_per_request
            ));
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
        let each = (size / 8) as usize;
        let need = each * number as usize;
        if self.pool.len() < need {
            return Err(Refusal::Unavailable(format!(
                "not enough key material: {need} bytes asked, {} in the pool",
                self.pool.len()
            )));
        }
        // Take from the end: no shifting, and the taken bytes are wiped.
        let start = self.pool.len() - need;
        let mut keys = Vec::with_capacity(number as usize);
        for chunk in self.pool[start..].chunks(each) {
            let mut raw = [0u8; 16];
            self.id_rng.fill_bytes(&mut raw);
            let id = uuid::Builder::from_random_bytes(raw).into_uuid();
            keys.push(Key {
                id,
                bytes: Zeroizing::new(chunk.to_vec()),
            });
        }
        self.pool[start..].zeroize();
        self.pool.truncate(start);
        for k in &keys {
            self.reserve(k, site, caller, slave);
        }
        Ok(keys)
    }

    fn reserve(&mut self, k: &Key, site: Site, master: &str, slave: &str) {
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
        let entry = Reserved {
            issued_at: site,
            master: master.to_string(),
            slave: slave.to_string(),
            bytes: k.bytes.clone(),
        };
        self.reserved.insert(k.id, entry);
        self.order.push_back(k.id);
        if self.order.len() > 2 * cap.max(16) {
            // Delivered ids linger in `order`; compact now and then.
            let reserved = &self.reserved;
            self.order.retain(|id| reserved.contains_key(id));
        }
    }

    /// Get key with key IDs: `caller` at `site` is the slave, `master` the
    /// SAE that obtained the keys at the peer site. All or nothing; each
    /// key is delivered once.
    pub fn dec_keys(
        &mut self,
        site: Site,
        caller: &str,
        master: &str,
        ids: &[String],
    ) -> Result<Vec<Key>, Refusal> {
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
        let not_found = || Refusal::BadRequest(api::MSG_KEYS_NOT_FOUND.to_string());
        let mut uuids = Vec::with_capacity(ids.len());
        let mut seen = HashSet::with_capacity(ids.len());
        for s in ids {
            let id = Uuid::try_parse(s).map_err(|_| not_found())?;
            if !seen.insert(id) {
                return Err(Refusal::BadRequest("key_IDs shall be distinct".into()));
            }
            let r = self.reserved.get(&id).ok_or_else(not_found)?;
            if r.issued_at != site.peer() || r.master != master {
                return Err(not_found());
            }
            uuids.push(id);
        }
        // Only the slave named at enc_keys time may take them (spec: 401).
        if uuids.iter().any(|id| self.reserved[id].slave != caller) {
            return Err(Refusal::Unauthorized);
        }
        Ok(uuids
            .into_iter()
            .map(|id| {
                let r = self.reserved.remove(&id).expect("checked above");
                Key { id, bytes: r.bytes }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::link::SimulatedLink;
    use super::*;
    use std::time::Duration;

    fn store(rate: u32, max_count: u32, t0: Instant) -> Store {
        let limits = LinkConfig {
            key_rate: rate,
            max_key_count: max_count,
            seed: Some(1),
            ..LinkConfig::default()
        };
        let link = SimulatedLink::new(32, rate, Some(1), t0);
        let a = SiteInfo {
            kme_id: "kme-a".into(),
            saes: vec!["lb".into()],
        };
        let b = SiteInfo {
            kme_id: "kme-b".into(),
            saes: vec!["be1".into(), "be2".into()],
        };
        Store::new(limits, Box::new(link), a, b)
    }

    fn req(number: u32, size: u32) -> KeyRequest {
        KeyRequest {
            number: Some(number),
            size: Some(size),
            ..KeyRequest::default()
        }
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
        assert_eq!(
            s.stored_key_count(t),
            100 - 4,
            "2 × 512 bits = 4 default keys"
        );
        let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
        assert_eq!(
            s.dec_keys(Site::B, "be2", "lb", &ids).err(),
            Some(Refusal::Unauthorized),
            "wrong slave"
        );
        assert_eq!(
            s.dec_keys(Site::A, "lb", "lb", &ids).err(),
            Some(Refusal::BadRequest(api::MSG_KEYS_NOT_FOUND.into()))
        );
        assert_eq!(
            s.dec_keys(Site::B, "be1", "other", &ids).err(),
            Some(Refusal::BadRequest(api::MSG_KEYS_NOT_FOUND.into()))
        );
        let got = s.dec_keys(Site::B, "be1", "lb", &ids).unwrap();
        assert_eq!(got[0].bytes, keys[0].bytes);
        assert_eq!(got[1].id, keys[1].id);
        assert_eq!(
            s.dec_keys(Site::B, "be1", "lb", &ids).err(),
            Some(Refusal::BadRequest(api::MSG_KEYS_NOT_FOUND.into()))
        );
        assert_eq!(s.reserved_count(), 0);
    }

    #[test]
    fn request_checks() {
        let t0 = Instant::now();
        let mut s = store(1000, 100, t0);
        let t = t0 + Duration::from_secs(1);
        let bad = |m: &str| Err(Refusal::BadRequest(m.into()));
        assert_eq!(
            s.enc_keys(Site::A, "lb", "be1", &req(1, 100), t)
                .map(|_| ()),
            bad(api::MSG_SIZE_MULTIPLE_OF_8)
        );
        assert!(
            matches!(s.enc_keys(Site::A, "lb", "be1", &req(129, 256), t), Err(Refusal::BadRequest(m)) if m.contains("max_key_per_request"))
        );
        assert!(
            matches!(s.enc_keys(Site::A, "lb", "be1", &req(1, 2048), t), Err(Refusal::BadRequest(m)) if m.contains("max_key_size"))
        );
        assert!(matches!(
            s.enc_keys(Site::A, "lb", "be1", &req(1, 32), t),
            Err(Refusal::BadRequest(_))
        ));
        assert!(
            matches!(s.enc_keys(Site::A, "lb", "lb", &req(1, 256), t), Err(Refusal::BadRequest(m)) if m.contains("peer KME kme-b"))
        );
        assert_eq!(
            s.enc_keys(Site::A, "be1", "lb", &req(1, 256), t)
                .map(|_| ()),
            Err(Refusal::Unauthorized)
        );
        let ext = KeyRequest {
            extension_mandatory: Some(vec![serde_json::json!({"x_y": 1})]),
            ..req(1, 256)
        };
        assert_eq!(
            s.enc_keys(Site::A, "lb", "be1", &ext, t).map(|_| ()),
            bad(api::MSG_EXTENSION_MANDATORY)
        );
        // Defaults: one key of key_size.
        let k = s
            .enc_keys(Site::A, "lb", "be1", &KeyRequest::default(), t)
            .unwrap();
        assert_eq!((k.len(), k[0].bytes.len()), (1, 32));
        // Reverse direction works too (backend is master at B).
        let k = s.enc_keys(Site::B, "be1", "lb", &req(1, 256), t).unwrap();
        assert_eq!(
            s.dec_keys(Site::A, "lb", "be1", &[k[0].id.to_string()])
                .unwrap()[0]
                .bytes,
            k[0].bytes
        );
        assert_eq!(
            s.dec_keys(Site::B, "be1", "lb", &["nope".into()]).err(),
            bad(api::MSG_KEYS_NOT_FOUND).err()
        );
    }

    #[test]
    fn empty_pool_is_unavailable_and_reservations_are_bounded() {
        let t0 = Instant::now();
        let mut dead = store(0, 10, t0);
        assert!(matches!(
            dead.enc_keys(Site::A, "lb", "be1", &req(1, 256), t0),
            Err(Refusal::Unavailable(_))
        ));
        let mut s = store(1000, 4, t0);
        let t = t0 + Duration::from_secs(1);
        let first = s.enc_keys(Site::A, "lb", "be1", &req(1, 256), t).unwrap();
        for i in 0..4 {
            s.enc_keys(
                Site::A,
                "lb",
                "be1",
                &req(1, 256),
                t + Duration::from_secs(i + 1),
            )
            .unwrap();
        }
        assert_eq!(s.reserved_count(), 4);
        // The oldest unclaimed reservation was dropped.
        assert!(s
            .dec_keys(Site::B, "be1", "lb", &[first[0].id.to_string()])
            .is_err());
        let st = s.status(Site::A, "lb", "be1", t).unwrap();
        assert!(st.stored_key_count <= st.max_key_count);
    }
}
