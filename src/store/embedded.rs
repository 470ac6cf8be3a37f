//! The embedded store: the Redis store's semantics inside one process, for single-process
//! programs, examples and tests. Stamps are numbers from a process-wide counter, so a
//! recreated stamp never equals an old one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;

use super::{
    later, merge_widening, was_valid_before_deaths, EncodedRow, Fetch, HitBytes, Plan,
    RowsInvalidated, Sum, Token,
};
use crate::error::Error;
use crate::keys::{hash_hex, TableKeys};
use crate::sync::{AtomicU64, Mutex, Ordering};

/// One stored value: the checksum it was stored with (empty for simple keys) and the bytes.
struct Stored {
    token: Sum,
    payload: Arc<[u8]>,
    expires: Instant,
}

/// Stamps and scheme sets: small, behind one lock.
#[derive(Default)]
struct Stamps {
    values: HashMap<String, (u64, Instant)>,
    /// Last values of stamps deleted within their stale grace.
    dead: HashMap<String, (u64, Instant)>,
    /// Scheme sets: per set, each scheme and the time until which some entry may depend
    /// on it (as Redis' sorted sets: times only grow, a scheme goes once its time passed).
    schemes: HashMap<String, BTreeMap<String, Instant>>,
    writes_since_sweep: usize,
}

impl Stamps {
    fn live(&self, key: &str, now: Instant) -> Option<u64> {
        self.values
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| *v)
    }

    /// Drops expired stamps now and then, so the map shrinks as reads go cold.
    fn sweep(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= 1024 {
            self.writes_since_sweep = 0;
            self.values.retain(|_, (_, exp)| *exp > now);
            self.dead.retain(|_, (_, exp)| *exp > now);
            self.schemes.retain(|_, set| {
                set.retain(|_, until| *until >= now);
                !set.is_empty()
            });
        }
    }

    /// The schemes of a set still in their time (the passed ones dropped), or `None` when
    /// the set does not exist.
    fn live_schemes(&mut self, set: &str, now: Instant) -> Option<&mut BTreeMap<String, Instant>> {
        let members = self.schemes.get_mut(set)?;
        members.retain(|_, until| *until >= now);
        if members.is_empty() {
            self.schemes.remove(set);
            return None;
        }
        self.schemes.get_mut(set)
    }
}

/// Keeps `schemes` of `set` at least until `until`.
fn register(set: &mut BTreeMap<String, Instant>, schemes: &[String], until: Instant) {
    for s in schemes {
        match set.get_mut(s) {
            Some(t) => *t = (*t).max(until),
            None => {
                set.insert(s.clone(), until);
            }
        }
    }
}

/// In-process store. Entries live in a moka cache bounded by bytes.
pub(crate) struct EmbeddedStore {
    stamps: Mutex<Stamps>,
    entries: Moka<String, Arc<Stored>>,
    counter: AtomicU64,
}

/// What an entry weighs against the capacity.
fn weight(key: &str, token: &str, payload: usize) -> u64 {
    (key.len() + token.len() + payload) as u64
}

struct ByDeadline;
impl moka::Expiry<String, Arc<Stored>> for ByDeadline {
    fn expire_after_create(&self, _: &String, v: &Arc<Stored>, now: Instant) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<Stored>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
}

impl EmbeddedStore {
    /// A store holding at most `capacity_bytes` of entries.
    pub fn new(capacity_bytes: u64) -> EmbeddedStore {
        EmbeddedStore {
            stamps: Mutex::new(Stamps::default()),
            entries: Moka::builder()
                .max_capacity(capacity_bytes)
                .weigher(|k: &String, v: &Arc<Stored>| {
                    weight(k, v.token.as_str(), v.payload.len()).min(u32::MAX as u64) as u32
                })
                .expire_after(ByDeadline)
                .build(),
            counter: AtomicU64::new(1),
        }
    }

    /// Whether an entry fits at all (moka would admit one heavier than its whole bound, and
    /// evict everything else for it); if not, any older value of its key goes (a later
    /// read must not find it) and the caller stores nothing.
    fn fits(&self, key: &str, token: &str, payload: usize) -> bool {
        let capacity = self.entries.policy().max_capacity().unwrap_or(u64::MAX);
        let fits = weight(key, token, payload) <= capacity;
        if !fits {
            self.entries.invalidate(key);
        }
        fits
    }

    /// `now` on the tokens' clock: milliseconds since the process' first use of it.
    fn clock(&self, now: Instant) -> u64 {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        now.saturating_duration_since(origin).as_millis() as u64
    }

    fn checksum(values: &[u64]) -> String {
        let mut buf = Vec::with_capacity(values.len() * 8);
        for v in values {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        hash_hex(&buf)
    }

    fn current(&self, stamps: &Stamps, plan: &Plan, now: Instant) -> Option<String> {
        let mut values = Vec::with_capacity(plan.stamps.len());
        for k in &plan.stamps {
            values.push(stamps.live(k, now)?);
        }
        Some(Self::checksum(&values))
    }

    fn live_entry(&self, key: &str) -> Option<Arc<Stored>> {
        self.entries.get(key).filter(|e| e.expires > Instant::now())
    }
}

/// The operations of [`Store`](super::Store), answered at once.
impl EmbeddedStore {
    pub fn fetch(&self, plan: &Plan, want_hit: bool) -> Result<Fetch, Error> {
        let now = Instant::now();
        let entry = if want_hit {
            self.live_entry(&plan.entry)
        } else {
            None
        };
        let mut stamps = self.stamps.lock();
        if let Some(e) = entry {
            if self.current(&stamps, plan, now).as_deref() == Some(e.token.as_str()) {
                return Ok(Fetch::Hit(
                    HitBytes::Shared(e.payload.clone()),
                    Token(e.token, 0),
                ));
            }
            if plan.stale.is_some() {
                let current: Vec<Option<u64>> =
                    plan.stamps.iter().map(|k| stamps.live(k, now)).collect();
                let dead: Vec<Option<u64>> = plan
                    .stamps
                    .iter()
                    .map(|k| {
                        stamps
                            .dead
                            .get(k)
                            .filter(|(_, x)| *x > now)
                            .map(|(v, _)| *v)
                    })
                    .collect();
                let matches = |values: &[u64]| Self::checksum(values) == e.token.as_str();
                if was_valid_before_deaths(matches, &current, &dead) {
                    return Ok(Fetch::Stale(HitBytes::Shared(e.payload.clone())));
                }
            }
        }
        // As in Redis' PREPARE: a missing scheme set kills its table's generation first.
        // (Here only invalidate_all, which clears every stamp with it, or the expiry of
        // every member, after which no entry depended on it, removes a set.)
        for set_plan in &plan.schemes {
            if !set_plan.schemes.is_empty() && stamps.live_schemes(&set_plan.key, now).is_none() {
                stamps.values.remove(&set_plan.gen);
            }
        }
        let ttl = plan.stamp_ttl();
        let mut values = Vec::with_capacity(plan.stamps.len());
        for k in &plan.stamps {
            let v = match stamps.values.get_mut(k) {
                Some((v, exp)) if *exp > now => {
                    *exp = (*exp).max(now + ttl);
                    *v
                }
                _ => {
                    let v = self.counter.fetch_add(1, Ordering::Relaxed);
                    stamps.values.insert(k.clone(), (v, later(now, ttl)));
                    stamps.sweep(now);
                    v
                }
            };
            values.push(v);
        }
        let until = later(now, plan.scheme_ttl());
        for set_plan in &plan.schemes {
            if !set_plan.schemes.is_empty() {
                let set = stamps.schemes.entry(set_plan.key.clone()).or_default();
                register(set, &set_plan.schemes, until);
            }
        }
        let sum = Self::checksum(&values);
        let sum = Sum::new(sum.as_bytes()).unwrap_or_default();
        Ok(Fetch::Miss(Token(sum, self.clock(now))))
    }

    pub fn store(&self, plan: &Plan, token: &Token, payload: &[u8]) -> Result<bool, Error> {
        let now = Instant::now();
        let mut stamps = self.stamps.lock();
        if self.current(&stamps, plan, now).as_deref() != Some(token.0.as_str())
            || !self.fits(&plan.entry, token.0.as_str(), payload.len())
        {
            return Ok(false);
        }
        // As in Redis' STORE: only while the PREPARE's promise holds is it sure that no
        // invalidation dropped the entry's schemes meanwhile; then they are kept past the
        // entry's life.
        let sttl = plan.scheme_ttl().as_millis().min(u64::MAX as u128) as u64;
        if self.clock(now) >= token.1.saturating_add(sttl) {
            return Ok(false);
        }
        for set_plan in &plan.schemes {
            if !set_plan.schemes.is_empty() && !stamps.schemes.contains_key(&set_plan.key) {
                return Ok(false);
            }
        }
        let until = later(now, plan.scheme_ttl());
        for set_plan in &plan.schemes {
            if let Some(set) = stamps.schemes.get_mut(&set_plan.key) {
                register(set, &set_plan.schemes, until);
            }
        }
        self.entries.insert(
            plan.entry.clone(),
            Arc::new(Stored {
                token: token.0,
                payload: Arc::from(payload),
                expires: later(now, plan.ttl),
            }),
        );
        Ok(true)
    }

    pub fn confirm(&self, stamps_keys: &[Arc<str>], token: &Token) -> Result<bool, Error> {
        let now = Instant::now();
        let stamps = self.stamps.lock();
        let mut values = Vec::with_capacity(stamps_keys.len());
        for k in stamps_keys {
            match stamps.live(k, now) {
                Some(v) => values.push(v),
                None => return Ok(false),
            }
        }
        Ok(Self::checksum(&values) == token.0.as_str())
    }

    pub fn invalidate_rows(
        &self,
        batches: &[(TableKeys, Vec<EncodedRow>)],
    ) -> Result<RowsInvalidated, Error> {
        let mut deleted = Vec::new();
        let mut widened = Vec::new();
        let now = Instant::now();
        let mut stamps = self.stamps.lock();
        for (t, rows) in batches {
            let schemes: Vec<String> = stamps
                .live_schemes(&t.schemes, now)
                .map(|s| s.keys().cloned().collect())
                .unwrap_or_default();
            if schemes.is_empty() && !rows.is_empty() {
                // As in Redis: without schemes, the generation reaches every entry.
                stamps.values.remove(&t.gen);
                deleted.push(t.gen.clone());
            }
            for row in rows {
                let row: HashMap<&str, &str> =
                    row.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
                for scheme in &schemes {
                    let mut key = t.conj_prefix.clone();
                    let mut missing: Vec<&str> = Vec::new();
                    let mut first = true;
                    for field in scheme.split('&').filter(|f| !f.is_empty()) {
                        let Some(v) = row.get(field) else {
                            missing.push(field);
                            continue;
                        };
                        if !first {
                            key.push('&');
                        }
                        first = false;
                        key.push_str(field);
                        key.push('=');
                        key.push_str(v);
                    }
                    let gone = if missing.is_empty() {
                        key
                    } else {
                        merge_widening(&mut widened, t, scheme, &missing.join("&"));
                        t.gen.clone()
                    };
                    if let Some((v, _)) = stamps.values.remove(&gone) {
                        if t.stale_ms > 0 {
                            let until = later(Instant::now(), Duration::from_millis(t.stale_ms));
                            stamps.dead.insert(gone.clone(), (v, until));
                        }
                    }
                    deleted.push(gone);
                }
            }
        }
        // One process: its own `KindBook` sees every condition and row already.
        Ok(RowsInvalidated {
            deleted,
            widened,
            clashes: Vec::new(),
        })
    }

    pub fn invalidate_tables(&self, gens: &[String]) -> Result<(), Error> {
        let mut stamps = self.stamps.lock();
        for g in gens {
            stamps.values.remove(g);
            // A whole-table invalidation ends any stale grace of the table's entries.
            stamps.dead.remove(g);
        }
        Ok(())
    }

    pub fn invalidate_all(&self, _pattern: &str) -> Result<(), Error> {
        // Scheme sets go too (as in Redis): every stamp goes with them, at once, so no
        // entry outlives the sets it was stored under.
        let mut stamps = self.stamps.lock();
        stamps.values.clear();
        stamps.dead.clear();
        stamps.schemes.clear();
        self.entries.invalidate_all();
        Ok(())
    }

    // One process: the in-process single flight already gives one loader per entry.
    pub fn try_lock(&self, _: &Plan, _: &str, _: Duration) -> Result<bool, Error> {
        Ok(true)
    }

    pub fn unlock(&self, _: &Plan, _: &str, _: Duration) -> Result<(), Error> {
        Ok(())
    }

    pub fn wait_unlock(&self, _: &Plan, _: Duration) -> Result<(), Error> {
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.live_entry(key).map(|e| e.payload.to_vec()))
    }

    pub fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Error> {
        if !self.fits(key, "", value.len()) {
            return Ok(());
        }
        self.entries.insert(
            key.to_owned(),
            Arc::new(Stored {
                token: Sum::default(),
                payload: Arc::from(value),
                expires: later(Instant::now(), ttl),
            }),
        );
        Ok(())
    }

    pub fn delete(&self, keys: &[String]) -> Result<bool, Error> {
        let mut any = false;
        for k in keys {
            any |= self.entries.remove(k).is_some();
        }
        Ok(any)
    }
}
