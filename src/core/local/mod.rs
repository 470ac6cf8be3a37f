//! The local tier: decoded values in process memory (moka), in front of the shared tier.
//!
//! A local entry keeps the decoded value (a hit clones an `Arc`), the checksum of the stamps
//! it was computed under and a [`Snapshot`] of their epochs. How a hit is trusted depends on
//! the [`LocalMode`] of the read's profile:
//!
//! | mode | a local hit is served when |
//! | --- | --- |
//! | `Strict` | Redis confirms the stamps (one round trip of a few bytes) |
//! | `Tracked` | no epoch changed and the push channel has been up since the fill (zero round trips) |
//! | `Bounded(d)` | it was confirmed less than `d` ago (else confirmed like `Strict`) |
//! | `TtlOnly` | its TTL has not passed (cacheops' `local_get`) |
//!
//! In every mode, invalidations made by this process bump the epochs of the stamps they
//! delete before the invalidating call returns, so a process always reads its own writes.

pub(crate) mod epochs;
pub(crate) mod tracking;

use std::any::Any;
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;

use crate::error::Error;
use crate::keys::KeySpace;
use crate::plan::Plan;
use crate::profile::LocalMode;
use crate::store::Token;
use crate::sync::{Arc, AtomicU64, Ordering};
use epochs::{Epochs, Snapshot};
use tracking::{Channel, TrackingOptions};

/// Counters of the local tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalStats {
    /// Reads answered from process memory.
    pub hits: u64,
    /// Local entries confirmed against Redis (`Strict`, `Bounded`).
    pub validations: u64,
    /// Confirmations that found a stamp changed (the entry was dropped).
    pub validation_failures: u64,
    /// Invalidation messages pushed by Redis (`Tracked`).
    pub pushes: u64,
    /// Times the whole local tier was dropped (push channel lost, `invalidate_all`).
    pub flushes: u64,
}

#[derive(Default)]
struct Counters {
    hits: Striped,
    validations: AtomicU64,
    validation_failures: AtomicU64,
    flushes: AtomicU64,
}

/// A counter spread over cache lines, so threads counting hits do not contend for one.
#[derive(Default)]
struct Striped([crossbeam_utils::CachePadded<AtomicU64>; 8]);

impl Striped {
    fn add(&self) {
        thread_local! {
            static STRIPE: usize = {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) as usize % 8
            };
        }
        let i = STRIPE.with(|s| *s);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Heap bytes of one entry besides what [`LocalTier::finish_fill`] counts itself (the
/// value's `Arc` and bytes, the entry's own allocation, its snapshot's keys, the checksum
/// kept for confirmations): moka's node, its queues' and expiry wheel's links and its map's
/// share. Calibrated with `benches/local_memory.rs` (2026-12-05: the weigher's total within
/// 10% of the heap a counting allocator measured for 20,000 entries of 200 B values).
const MAP_NODE: usize = 150;

/// Heap bytes per stamp key of an entry besides the key's text: the snapshot's reference,
/// a flag in the slot's list, the slot and its share of the epoch map (a slot is often one
/// entry's alone: a conjunction of a unique field).
const PER_STAMP: usize = 120;

/// The map of local entries.
pub(crate) type LocalMap = Moka<u128, Arc<LocalEntry>, KeyHash>;

/// The hasher of maps keyed by local keys: the keys are already uniform and unpredictable
/// 128-bit hashes (seeded per process, `plan::key_hash`), so it folds them to 64 bits
/// instead of hashing them a second time.
pub(crate) type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

/// See [`KeyHash`].
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    #[inline]
    fn write_u128(&mut self, key: u128) {
        self.0 = (key as u64) ^ ((key >> 64) as u64);
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys are hashed here; anything else still spreads (FNV-1a).
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One local entry.
pub(crate) struct LocalEntry {
    value: Arc<dyn Any + Send + Sync>,
    /// The checksum to confirm against (`Strict`, `Bounded`; the stamps are the
    /// snapshot's keys). `None` for entries never confirmed (`Tracked`, `TtlOnly`). No
    /// entry keeps its plan alive.
    confirm: Option<Box<Token>>,
    snapshot: Snapshot,
    /// When Redis last confirmed the stamps, as nanoseconds since `LocalTier::origin`.
    confirmed: AtomicU64,
    expires: Instant,
    weight: u32,
}

impl LocalEntry {
    /// The stamps and checksum to confirm against (`None`: the entry is never confirmed).
    pub fn to_confirm(&self) -> Option<(&[epochs::Key], &Token)> {
        self.confirm.as_deref().map(|t| (self.snapshot.keys(), t))
    }
}

/// Whether entries of `mode` are confirmed with the store (and so keep their plan).
fn confirmed_mode(mode: LocalMode) -> bool {
    matches!(mode, LocalMode::Strict | LocalMode::Bounded(_))
}

/// Moka expiry: each entry at its own deadline.
struct UntilExpiry;

impl moka::Expiry<u128, Arc<LocalEntry>> for UntilExpiry {
    fn expire_after_create(&self, _: &u128, e: &Arc<LocalEntry>, now: Instant) -> Option<Duration> {
        Some(e.expires.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &u128,
        e: &Arc<LocalEntry>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.expires.saturating_duration_since(now))
    }
}

/// What a lookup decided.
pub(crate) enum Lookup<T> {
    /// Serve this value now.
    Serve(Arc<T>),
    /// Serve it if Redis confirms the entry's stamps.
    Confirm(Arc<LocalEntry>, Arc<T>),
    /// Nothing usable locally.
    Miss,
}

/// The local tier of one cache.
pub(crate) struct LocalTier {
    entries: LocalMap,
    epochs: Epochs,
    counters: Counters,
    origin: Instant,
    /// Pushes reach this process (always true without `Tracked` reads on Redis).
    channel: Arc<tracking::Channel>,
}

/// How the builder sets the local tier up.
pub(crate) struct LocalSetup<'a> {
    /// Some profile (or the default) uses the local tier.
    pub used: bool,
    /// Some profile (or the default) uses `Tracked`.
    pub tracked: bool,
    /// Bytes of encoded values held at most.
    pub capacity: u64,
    /// The Redis URL, when the cache is on Redis (pushes need it).
    pub redis_url: Option<&'a str>,
    pub keys: &'a KeySpace,
    pub heartbeat: Duration,
    pub connect_timeout: Duration,
}

/// The local tier and, for `Tracked` reads on Redis, its push channel (started here).
pub(crate) fn setup(s: LocalSetup<'_>) -> Result<(Option<LocalTier>, Option<Arc<Channel>>), Error> {
    if !s.used {
        return Ok((None, None));
    }
    let epochs = Epochs::default();
    let entries = LocalTier::entries(s.capacity);
    let channel = match (s.redis_url, s.tracked) {
        (Some(url), true) => {
            let Some(prefix) = s.keys.stamp_prefix() else {
                return Err(Error::Config(
                    "the Tracked local mode needs a static key prefix".into(),
                ));
            };
            if s.heartbeat.is_zero() {
                return Err(Error::Config(
                    "the tracking heartbeat must be above zero".into(),
                ));
            }
            // The push connection is RESP2 whatever the URL asks: it reads invalidations as
            // pub/sub messages (RESP3 would deliver them as pushes it never sees).
            let bad = |e| crate::store::redis::bad_url(url, e);
            let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(bad)?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP2);
            let client = redis::Client::open(info.set_redis_settings(settings)).map_err(bad)?;
            let opts = TrackingOptions {
                prefix,
                heartbeat: s.heartbeat,
                connect_timeout: s.connect_timeout,
            };
            Some(tracking::spawn(
                client,
                opts,
                epochs.clone(),
                entries.clone(),
            ))
        }
        _ => None,
    };
    let ch = channel
        .clone()
        .unwrap_or_else(|| Channel::always_up(epochs.clone()));
    Ok((Some(LocalTier::new(entries, ch)), channel))
}

impl LocalTier {
    /// The entry map: about `capacity_bytes` of entries, weighed by encoded size, each
    /// leaving at its TTL (and taking its epoch slots with it).
    pub fn entries(capacity_bytes: u64) -> LocalMap {
        Moka::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_: &u128, e: &Arc<LocalEntry>| e.weight)
            .expire_after(UntilExpiry)
            .build_with_hasher(KeyHash::default())
    }

    /// A tier over `entries`, told of stamp changes through `channel`.
    pub fn new(entries: LocalMap, channel: Arc<tracking::Channel>) -> LocalTier {
        LocalTier {
            entries,
            epochs: channel.epochs().clone(),
            counters: Counters::default(),
            origin: Instant::now(),
            channel,
        }
    }

    fn now_nanos(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Looks `key` up for a read in `mode`.
    #[inline]
    pub fn lookup<T: Send + Sync + 'static>(&self, key: u128, mode: LocalMode) -> Lookup<T> {
        let Some(entry) = self.entries.get(&key) else {
            return Lookup::Miss;
        };
        // (Expired entries are never returned: moka drops them at their deadline.)
        let usable =
            entry.snapshot.still_valid() && (mode != LocalMode::Tracked || self.channel.is_up());
        let value = match entry.value.clone().downcast::<T>() {
            Ok(v) if usable => v,
            // Dead, or cached under another type by another call site: refill.
            _ => {
                self.entries.invalidate(&key);
                return Lookup::Miss;
            }
        };
        let fresh = match mode {
            LocalMode::Off => return Lookup::Miss,
            LocalMode::Tracked | LocalMode::TtlOnly => true,
            LocalMode::Bounded(d) => {
                let since = self
                    .now_nanos()
                    .saturating_sub(entry.confirmed.load(Ordering::Relaxed));
                since < d.as_nanos().min(u128::from(u64::MAX)) as u64
            }
            LocalMode::Strict => false,
        };
        if !fresh && entry.confirm.is_none() {
            // Filled under a mode that keeps nothing to confirm with.
            self.entries.invalidate(&key);
            return Lookup::Miss;
        }
        if fresh {
            self.counters.hits.add();
            Lookup::Serve(value)
        } else {
            Lookup::Confirm(entry, value)
        }
    }

    /// Records the outcome of confirming `entry` with Redis.
    pub fn confirmed(&self, key: u128, entry: &LocalEntry, valid: bool) {
        self.counters.validations.fetch_add(1, Ordering::Relaxed);
        if valid {
            entry.confirmed.store(self.now_nanos(), Ordering::Relaxed);
            self.counters.hits.add();
        } else {
            self.counters
                .validation_failures
                .fetch_add(1, Ordering::Relaxed);
            self.entries.invalidate(&key);
        }
    }

    /// Starts a fill: records the stamps' epochs before they are read from the store.
    /// `None` when a tracked fill cannot be trusted (the push channel is down).
    pub fn begin_fill(&self, stamps: &[String], mode: LocalMode) -> Option<Snapshot> {
        match mode {
            LocalMode::Off => None,
            LocalMode::Tracked => self.epochs.snapshot_tracked(stamps),
            _ => Some(self.epochs.snapshot(stamps)),
        }
    }

    /// Ends a fill: keeps the value if no stamp changed since `begin_fill`. `weight` is the
    /// value's encoded size (its decoded heap, estimated).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_fill<T: Send + Sync + 'static>(
        &self,
        key: u128,
        value: Arc<T>,
        token: Token,
        snapshot: Snapshot,
        plan: &Arc<Plan>,
        mode: LocalMode,
        weight: usize,
    ) {
        if !snapshot.still_valid() {
            return;
        }
        let confirm = confirmed_mode(mode).then(|| Box::new(token));
        // What the entry keeps alive: the value (its `Arc` and heap), the entry, the
        // snapshot's keys, the checksum if kept, moka's node. (Not the plan: the plan memo
        // holds it, bounded on its own.)
        let stamps = plan
            .stamps
            .iter()
            .map(|k| k.len() + PER_STAMP)
            .sum::<usize>();
        let mut bytes = weight
            + 16
            + std::mem::size_of::<T>()
            + 16
            + std::mem::size_of::<LocalEntry>()
            + 32
            + stamps
            + MAP_NODE;
        if confirm.is_some() {
            bytes += std::mem::size_of::<Token>();
        }
        let entry = LocalEntry {
            value,
            confirm,
            snapshot,
            confirmed: AtomicU64::new(self.now_nanos()),
            expires: crate::store::later(Instant::now(), plan.ttl),
            weight: bytes.min(u32::MAX as usize) as u32,
        };
        self.entries.insert(key, Arc::new(entry));
    }

    /// This process deleted (or learnt of the deletion of) these stamps.
    pub fn stamps_changed<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        for k in keys {
            self.epochs.bump(k);
        }
    }

    /// Drops everything (invalidate_all, or lost pushes).
    pub fn flush(&self) {
        self.epochs.bump_all();
        self.entries.invalidate_all();
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters.
    pub fn stats(&self) -> LocalStats {
        let c = &self.counters;
        LocalStats {
            hits: c.hits.sum(),
            validations: c.validations.load(Ordering::Relaxed),
            validation_failures: c.validation_failures.load(Ordering::Relaxed),
            pushes: self.channel.pushes(),
            flushes: c.flushes.load(Ordering::Relaxed) + self.channel.flushes(),
        }
    }

    /// Slots in the epoch table (memory checks).
    pub fn epoch_slots(&self) -> usize {
        self.epochs.len()
    }

    /// The weigher's total over the entries held (memory checks).
    pub fn weight(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    /// Entries held (memory checks).
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
