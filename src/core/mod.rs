//! The core: one private [`Core`] that every public handle (`src/front/`) calls into. It
//! decides *what* to read, store and invalidate; stores (`src/store/`) only do it.
//!
//! - `read.rs`: the read protocol (local tier, stamps before the loader, single flight,
//!   locks, stale-while-revalidate), one entry point;
//! - `lock.rs`: cross-process loader locks;
//! - `invalidate.rs`: writes become invalidation [`Batch`](batch::Batch)es, sent or queued;
//! - `batch.rs`, `queue.rs`: the batch; the queue of batches the store did not take;
//! - `simple.rs`: the time-only cache's operations;
//! - `local/`: the local tier; `scope/`: `atomic()` scopes; `flight.rs`: single flight.
//!
//! Every store call goes through [`Core::call`] (replay what is queued, run the operation,
//! report a failure and apply the failure policy) or, for invalidations, through
//! `Core::apply` (the same, and queue what failed).

pub(crate) mod batch;
mod flight;
mod invalidate;
mod kinds;
pub(crate) mod local;
mod lock;
mod queue;
mod read;
mod replayer;
pub(crate) mod scope;
mod simple;
mod widened;

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::Codec;
use crate::error::Error;
use crate::event::{Event, Listener, Outcome, Target};
use crate::plan::{entry_key_hash, plan_key, Plan, Planner};
use crate::profile::{LocalMode, Profile};
use crate::read::{Dep, Read};
use crate::store::{Store, Sum};
use crate::sync::{AtomicU64, Ordering};
use flight::Flights;
use local::tracking::Channel;
use local::{LocalStats, LocalTier};
use queue::Queue;

pub(crate) use invalidate::Saved;
pub(crate) use read::{Begun, Job, Served};

/// A plan as the core uses it: the store's [`Plan`], and where the entry sits in the local
/// tier.
pub(crate) struct Planned {
    /// What the store needs (keys, stamps, schemes, lifetime).
    pub plan: Arc<Plan>,
    /// How the local tier treats the entry.
    pub local: LocalMode,
    /// The entry's key in the local tier: the plan key of a read when plans are memoised,
    /// else the hash of the entry key.
    pub key: u128,
}

/// A read described once and planned: what the sqlx front keeps per statement, operation
/// and parameters ([`Core::described`]), so a repeated call neither binds the statement's
/// condition, nor builds the read, nor hashes it into its plan key.
#[cfg(feature = "sqlx")]
pub(crate) struct Described {
    /// The read (for events, and for reads through a scope).
    pub read: Read,
    /// Its plan, as [`Core::plan`] gives it (`None`: it bypasses the cache).
    pub planned: Option<Arc<Planned>>,
}

/// Settings the builder hands to [`Core::new`].
pub(crate) struct Setup {
    pub store: Store,
    pub planner: Planner,
    pub enabled: bool,
    pub degrade: bool,
    pub pending_limit: usize,
    pub listeners: Vec<Listener>,
    /// Plans are memoised by plan key (not with a computed prefix).
    pub memoise: bool,
    pub local: Option<LocalTier>,
    pub channel: Option<Arc<Channel>>,
    pub default_local: LocalMode,
    pub flight_timeout: Duration,
    pub retry_failed: bool,
    /// An entry written by another type is an error (else a miss).
    pub type_mismatch_fails: bool,
    pub lock_ttl: Duration,
    /// The async front end: waits yield to tokio and destructors spawn their I/O.
    pub asynch: bool,
    /// The longest pause between two background replays of queued invalidations.
    pub replay_backoff: Duration,
    /// How long dropping the last handle waits to send queued invalidations.
    pub flush_on_drop: Duration,
}

/// Shared state of all handles of one cache. Private: handles go through `Core`'s methods.
struct Shared {
    /// Unique in the process: which cache a read's plan memo (`read::KeyMemo`) belongs to.
    id: u64,
    store: Store,
    planner: Planner,
    enabled: bool,
    degrade: bool,
    pending_limit: usize,
    listeners: Vec<Listener>,
    /// Invalidations the store did not take, replayed before the next store call.
    queue: Queue,
    /// Memoised plans by plan key (none with a computed prefix).
    plans: Option<moka::sync::Cache<u128, Arc<Planned>, local::KeyHash>>,
    /// Reads the sqlx front described, by the hash of what identifies them (kept when plans
    /// are: a plan with a computed prefix is made afresh for each read).
    #[cfg(feature = "sqlx")]
    described: Option<moka::sync::Cache<u128, Arc<Described>, local::KeyHash>>,
    local: Option<LocalTier>,
    channel: Option<Arc<Channel>>,
    default_local: LocalMode,
    /// Misses being loaded in this process, by entry and stamps.
    flights: Flights<(String, Sum), Arc<dyn Any + Send + Sync>>,
    flight_timeout: Duration,
    retry_failed: bool,
    type_mismatch_fails: bool,
    lock_ttl: Duration,
    /// Only the async front end (feature `tokio`) asks.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    asynch: bool,
    /// The runtime the async front end was built in (background work is spawned there).
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
    /// Background replays (see `replayer.rs`).
    replayer: replayer::State,
    /// Value kinds seen per field, in conditions and row images (see `kinds.rs`).
    kinds: kinds::KindBook,
    /// Reads answered by the store, by outcome.
    reads: ReadCounters,
    /// Which read uses each scheme, for widening events (only with listeners).
    widened: widened::Widened,
}

impl Shared {
    /// Sends an event to every listener.
    fn emit(&self, e: &Event<'_>) {
        for l in &self.listeners {
            l(e);
        }
    }

    /// Reports a condition and a row of one field whose values can never match.
    fn kind_mismatch(&self, m: &kinds::Mismatch) {
        self.emit(&Event::KindMismatch {
            table: &m.table,
            field: &m.field,
            condition: m.condition,
            row: m.row,
            read: &m.read,
        });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(c) = &self.channel {
            c.stop();
        }
    }
}

/// One handle on a cache's core: shared state, and this handle's write settings.
pub(crate) struct Core<C: Codec> {
    shared: Arc<Shared>,
    /// Shared by every handle (not by background work): the last one dropped flushes the
    /// queue (see `replayer.rs`).
    _last: Arc<replayer::LastHandle>,
    /// Database alias of this handle's writes (for computed prefixes).
    write_db: Arc<str>,
    /// False on a `no_invalidation` handle.
    invalidates: bool,
    codec: PhantomData<fn() -> C>,
}

impl<C: Codec> Clone for Core<C> {
    fn clone(&self) -> Self {
        Core {
            shared: self.shared.clone(),
            _last: self._last.clone(),
            write_db: self.write_db.clone(),
            invalidates: self.invalidates,
            codec: PhantomData,
        }
    }
}

impl<C: Codec> std::fmt::Debug for Core<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("keys", &self.shared.planner.keys)
            .field("enabled", &self.shared.enabled)
            .field("degrade", &self.shared.degrade)
            .finish_non_exhaustive()
    }
}

/// Counters of a cache's tiers, from `Cache::stats`: the store's (Redis, or the embedded
/// store) and the local tier's. A read answered locally counts in `local` only; every
/// other cached read counts once in `shared`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads that reached the store: Redis, or the embedded store.
    pub shared: SharedStats,
    /// The local tier (all zero when it is off).
    pub local: LocalStats,
}

/// How the reads that reached the store (Redis, or the embedded store) were answered,
/// `simple()` reads included. Reads that bypass the cache, local hits and a scope's
/// overlay hits are not counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedStats {
    /// Served from the store.
    pub hits: u64,
    /// Not there (or dead): the loader ran.
    pub misses: u64,
    /// Served by another caller's loader (single flight, or the cross-process lock).
    pub joined: u64,
    /// The previous value served within a profile's stale grace.
    pub stale: u64,
    /// The store failed and the cache degraded to the loader.
    pub degraded: u64,
}

/// The counters behind [`SharedStats`].
#[derive(Default)]
struct ReadCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    joined: AtomicU64,
    stale: AtomicU64,
    degraded: AtomicU64,
}

impl ReadCounters {
    fn note(&self, outcome: Outcome) {
        let c = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::Miss => &self.misses,
            Outcome::Joined => &self.joined,
            Outcome::Stale => &self.stale,
            Outcome::Degraded => &self.degraded,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> SharedStats {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SharedStats {
            hits: n(&self.hits),
            misses: n(&self.misses),
            joined: n(&self.joined),
            stale: n(&self.stale),
            degraded: n(&self.degraded),
        }
    }
}

impl<C: Codec> Core<C> {
    /// The core over `setup`.
    pub fn new(setup: Setup) -> Core<C> {
        let plans = setup.memoise.then(|| {
            moka::sync::Cache::builder()
                .max_capacity(10_000)
                .build_with_hasher(local::KeyHash::default())
        });
        #[cfg(feature = "sqlx")]
        let described = setup.memoise.then(|| {
            moka::sync::Cache::builder()
                .max_capacity(10_000)
                .build_with_hasher(local::KeyHash::default())
        });
        let replayer = replayer::State::new(setup.replay_backoff, setup.flush_on_drop);
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let shared = Arc::new(Shared {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            store: setup.store,
            planner: setup.planner,
            enabled: setup.enabled,
            degrade: setup.degrade,
            pending_limit: setup.pending_limit,
            listeners: setup.listeners,
            queue: Queue::default(),
            plans,
            #[cfg(feature = "sqlx")]
            described,
            local: setup.local,
            channel: setup.channel,
            default_local: setup.default_local,
            flights: Flights::default(),
            flight_timeout: setup.flight_timeout,
            retry_failed: setup.retry_failed,
            type_mismatch_fails: setup.type_mismatch_fails,
            lock_ttl: setup.lock_ttl,
            asynch: setup.asynch,
            #[cfg(feature = "tokio")]
            runtime: setup
                .asynch
                .then(tokio::runtime::Handle::try_current)
                .and_then(Result::ok),
            replayer,
            kinds: kinds::KindBook::default(),
            reads: ReadCounters::default(),
            widened: widened::Widened::default(),
        });
        Core {
            _last: replayer::LastHandle::new(&shared),
            shared,
            write_db: Arc::from("default"),
            invalidates: true,
            codec: PhantomData,
        }
    }

    /// A handle whose invalidations do nothing.
    pub fn without_invalidation(&self) -> Core<C> {
        Core {
            invalidates: false,
            ..self.clone()
        }
    }

    /// A handle whose writes are for database `alias`.
    pub fn using(&self, alias: &str) -> Core<C> {
        Core {
            write_db: Arc::from(alias),
            ..self.clone()
        }
    }

    /// False when the cache is switched off (`Builder::enabled(false)`).
    pub fn enabled(&self) -> bool {
        self.shared.enabled
    }

    /// True for the async front end (work started from destructors is spawned).
    #[cfg(feature = "tokio")]
    pub fn is_async(&self) -> bool {
        self.shared.asynch
    }

    /// Row images a scope keeps before it records whole tables instead.
    pub fn pending_limit(&self) -> usize {
        self.shared.pending_limit
    }

    // ---------------------------------------------------------------- planning

    /// The profile in force for a read, or `None` when the read bypasses the cache.
    fn profile_of(&self, read: &Read) -> Option<&Profile> {
        if !self.shared.enabled {
            return None;
        }
        self.shared.planner.profile_of(read)
    }

    /// The local mode of a profile (`local_get` is cacheops' name for `TtlOnly`).
    fn local_mode(&self, profile: &Profile) -> LocalMode {
        if self.shared.local.is_none() {
            LocalMode::Off
        } else if profile.local_get {
            LocalMode::TtlOnly
        } else {
            profile.local.unwrap_or(self.shared.default_local)
        }
    }

    /// The plan of a read, or `None` when it bypasses the cache.
    pub fn plan(&self, read: &Read) -> Option<Arc<Planned>> {
        let profile = self.profile_of(read)?;
        let key = self.shared.plans.as_ref().map(|_| plan_key(read, profile));
        Some(self.planned(read, profile, key))
    }

    /// The plan of a read under its plan key: memoised (plans are pure functions of the read
    /// and the configuration), or built afresh without a key. With a computed prefix plans
    /// are not memoised: the function is the user's and may look at more than its arguments.
    fn planned(&self, read: &Read, profile: &Profile, key: Option<u128>) -> Arc<Planned> {
        let build = || {
            let plan = Arc::new(self.shared.planner.plan_read(read, profile));
            self.note_condition_kinds(&plan);
            self.note_schemes(&plan);
            Arc::new(Planned {
                key: key.unwrap_or_else(|| entry_key_hash(&plan)),
                local: self.local_mode(profile),
                plan,
            })
        };
        let (Some(plans), Some(key)) = (&self.shared.plans, key) else {
            return build();
        };
        // The read's own memo first (one load), then this cache's.
        let slot = &read.memo.1;
        if let Some((id, planned)) = slot.get().map(|b| &**b) {
            if *id == self.shared.id {
                if let Ok(planned) = planned.clone().downcast::<Planned>() {
                    return planned;
                }
            }
        }
        let planned = match plans.get(&key) {
            Some(planned) => planned,
            None => {
                let planned = build();
                plans.insert(key, planned.clone());
                planned
            }
        };
        let _ = slot.set(Box::new((self.shared.id, planned.clone())));
        planned
    }

    /// The read described under `key` (a 128-bit hash of what identifies it, see
    /// [`Described`]), made by `describe` and planned the first time. `Ok(None)`: reads are
    /// not memoised here (a computed prefix), or `describe` gave a read with invalid names
    /// (its caller reads it as usual, to be told so). Bounded: the 10,000 most recent.
    #[cfg(feature = "sqlx")]
    pub fn described<E>(
        &self,
        key: impl FnOnce() -> u128,
        describe: impl FnOnce() -> Result<Read, E>,
    ) -> Result<Result<Arc<Described>, Read>, E> {
        let Some(memo) = &self.shared.described else {
            return describe().map(Err);
        };
        let key = key();
        if let Some(d) = memo.get(&key) {
            return Ok(Ok(d));
        }
        let read = describe()?;
        if read.check_names().is_err() {
            return Ok(Err(read));
        }
        let d = Arc::new(Described {
            planned: self.plan(&read),
            read,
        });
        memo.insert(key, d.clone());
        Ok(Ok(d))
    }

    /// Remembers which read uses each of `plan`'s schemes, when someone listens to events.
    fn note_schemes(&self, plan: &Plan) {
        if !self.shared.listeners.is_empty() {
            self.shared.widened.note(plan);
        }
    }

    /// The plan of a `cached_as` call, or `None` when the cache is off.
    pub fn plan_call(
        &self,
        deps: &[Dep],
        name: &str,
        args: &[u8],
        extra: &[String],
        timeout: Option<Duration>,
    ) -> Option<Arc<Planned>> {
        if !self.shared.enabled {
            return None;
        }
        let planner = &self.shared.planner;
        let build = || {
            let plan = Arc::new(planner.plan_call(deps, name, args, extra, timeout));
            self.note_schemes(&plan);
            let local = match &self.shared.local {
                Some(_) => self.shared.default_local,
                None => LocalMode::Off,
            };
            Arc::new(Planned {
                key: entry_key_hash(&plan),
                local,
                plan,
            })
        };
        // Memoised like reads' plans (not with a computed prefix).
        let Some(plans) = &self.shared.plans else {
            return Some(build());
        };
        let key = planner.call_key(deps, name, args, extra, timeout);
        if let Some(planned) = plans.get(&key) {
            return Some(planned);
        }
        let planned = build();
        plans.insert(key, planned.clone());
        Some(planned)
    }

    // ---------------------------------------------------------------- the store gateway

    /// Replays queued invalidations, then runs `op` on the store. No failure policy: the
    /// caller decides (see [`call`](Core::call)).
    async fn attempt<'s, R, Fut>(&'s self, op: impl FnOnce(&'s Store) -> Fut) -> Result<R, Error>
    where
        Fut: Future<Output = Result<R, Error>>,
    {
        self.replay().await?;
        op(&self.shared.store).await
    }

    /// Every store call but invalidations: replay what is queued, run `op`, and on failure
    /// emit the event and apply the policy: `Ok(None)` means "degrade and go on", `Err`
    /// means "fail".
    pub async fn call<'s, R, Fut>(
        &'s self,
        during: &'static str,
        op: impl FnOnce(&'s Store) -> Fut,
    ) -> Result<Option<R>, Error>
    where
        Fut: Future<Output = Result<R, Error>>,
    {
        match self.attempt(op).await {
            Ok(v) => Ok(Some(v)),
            Err(e) => self.store_failed(during, e).map(|()| None),
        }
    }

    // ---------------------------------------------------------------- events and failures

    /// Sends an event to every listener.
    pub fn emit(&self, e: &Event<'_>) {
        self.shared.emit(e);
    }

    /// Records the kinds of a new plan's condition values; reports a clash with rows.
    fn note_condition_kinds(&self, plan: &Plan) {
        for (table, conjs) in &plan.depends {
            for (field, value) in conjs.iter().flatten() {
                if let Some(m) = self
                    .shared
                    .kinds
                    .condition(table, field, value, &plan.entry)
                {
                    self.shared.kind_mismatch(&m);
                }
            }
        }
    }

    /// Stored bytes did not decode as the requested type: an event, then a miss, or an
    /// error where the builder says type mismatches fail.
    pub fn undecoded(&self, key: &str, why: crate::typed::Undecoded) -> Result<(), Error> {
        match why {
            crate::typed::Undecoded::OtherType { stored, requested } => {
                self.emit(&Event::TypeMismatch {
                    key,
                    stored: &stored,
                    requested,
                });
                if self.shared.type_mismatch_fails {
                    return Err(Error::TypeMismatch {
                        key: key.to_owned(),
                        stored,
                        requested,
                    });
                }
            }
            crate::typed::Undecoded::Codec(error) => {
                self.emit(&Event::DecodeFailed { key, error: &error })
            }
        }
        Ok(())
    }

    /// Reports how a read was answered (and counts it, see [`SharedStats`]).
    pub fn read_event(&self, target: Target<'_>, outcome: Outcome) {
        self.shared.reads.note(outcome);
        if !self.shared.listeners.is_empty() {
            self.emit(&Event::Read { target, outcome });
        }
    }

    /// Reports a store failure; `Ok` means "degrade and go on", `Err` means "fail".
    fn store_failed(&self, during: &'static str, error: Error) -> Result<(), Error> {
        self.emit(&Event::StoreFailed {
            during,
            error: &error,
        });
        if self.shared.degrade
            && matches!(
                error,
                Error::Redis(_)
                    | Error::Protocol(_)
                    | Error::Unavailable(_)
                    | Error::Timeout { .. }
            )
        {
            Ok(())
        } else {
            Err(error)
        }
    }

    // ---------------------------------------------------------------- state, for handles

    /// Counters of the tiers.
    pub fn stats(&self) -> Stats {
        Stats {
            shared: self.shared.reads.get(),
            local: self
                .shared
                .local
                .as_ref()
                .map(LocalTier::stats)
                .unwrap_or_default(),
        }
    }

    /// Entries and epoch slots of the local tier (memory checks in tests).
    pub fn local_sizes(&self) -> (u64, usize) {
        self.shared
            .local
            .as_ref()
            .map_or((0, 0), |l| (l.len(), l.epoch_slots()))
    }

    /// The local tier's weight in bytes, as its weigher counts it (memory checks).
    pub fn local_weight(&self) -> u64 {
        self.shared.local.as_ref().map_or(0, LocalTier::weight)
    }

    /// The Redis client id of the push connection (0 when none).
    pub fn push_client_id(&self) -> u64 {
        self.shared.channel.as_ref().map_or(0, |c| c.client_id())
    }

    /// True while the tracked tier's push channel is up.
    pub fn push_channel_up(&self) -> bool {
        self.shared.channel.as_ref().is_some_and(|c| c.is_up())
    }

    /// Loaders in progress in this process.
    pub fn flights_in_progress(&self) -> usize {
        self.shared.flights.len()
    }

    /// Number of invalidations queued because the store was unavailable.
    pub fn queued_invalidations(&self) -> usize {
        self.shared.queue.len()
    }

    /// The Redis key of one call of a simple-cache function.
    pub fn call_key(&self, name: &str, args: &[u8]) -> String {
        self.shared.planner.keys.call(name, args)
    }

    /// The Redis key of a simple-cache key.
    pub fn simple_key(&self, key: &str) -> String {
        self.shared.planner.keys.simple(key)
    }

    /// The Redis key where the change-stream consumer of `slot` publishes its applied
    /// position.
    #[cfg_attr(not(feature = "postgres-cdc"), allow(dead_code))]
    pub fn cdc_applied_key(&self, slot: &str) -> String {
        self.shared.planner.keys.cdc_applied(slot)
    }
}
