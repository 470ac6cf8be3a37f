//! The [`Cache`]: reads through the cache, and invalidation. Stores do the I/O; this module
//! decides what to read, what to store and what to invalidate, for every store alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{Codec, DefaultCodec};
use crate::cond::Cond;
use crate::dnf::{to_dnf, DnfLimits};
use crate::error::{Error, LoadError};
use crate::event::{Event, Invalidation, Listener, Outcome, Target};
use crate::flight::{Flights, Join, Waited};
use crate::front::{Async, Blocking, Front};
use crate::keys::{scheme_of, KeySpace, Prefix, PrefixScope, TableKeys};
use crate::local::tracking::{self, Channel, TrackingOptions};
use crate::local::{LocalMode, LocalStats, LocalTier, Lookup};
use crate::pending::{Backlog, Pending};
use crate::profile::{Profile, Profiles};
use crate::read::{Dep, Force, Read};
use crate::row::Row;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::store::{EncodedRow, Fetch, Plan, Store, Token};
use crate::value::{escape, escape_into};
use std::future::Future;

/// Shared state of all handles of one cache.
pub(crate) struct Inner {
    pub store: Store,
    pub profiles: Profiles,
    pub keys: KeySpace,
    pub enabled: bool,
    pub degrade: bool,
    pub max_in: usize,
    pub max_conjs: usize,
    pub pending_limit: usize,
    pub listeners: Vec<Listener>,
    pub pending: Pending,
    /// Memoised read plans (none with a computed prefix).
    pub plans: Option<moka::sync::Cache<u128, Arc<Plan>, xxhash_rust::xxh3::Xxh3Builder>>,
    /// The local tier, when any profile uses it.
    pub local: Option<LocalTier>,
    /// The tracked tier's push channel, when some read is `Tracked` on Redis.
    pub channel: Option<Arc<Channel>>,
    /// The default local mode (for profiles that do not set one, and `cached_as`).
    pub default_local: LocalMode,
    /// Misses being loaded in this process, by entry and stamps.
    pub flights: Flights<(String, String), Arc<dyn std::any::Any + Send + Sync>>,
    /// How long a caller waits for another's loader in this process.
    pub flight_timeout: Duration,
    /// Whether waiters retry when the loader they waited for failed.
    pub retry_failed: bool,
    /// Lifetime of cross-process loader locks.
    pub lock_ttl: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(c) = &self.channel {
            c.stop();
        }
    }
}

/// A query cache with stamp-validated, granular invalidation.
///
/// Cheap to clone: clones share the store, profiles and queued invalidations.
///
/// ```
/// use stampcache::{Cache, Cond, Read};
/// let cache = Cache::embedded();
/// let read = Read::get("blog.article").filter(Cond::eq("id", 1));
/// let title: String = cache.get_or_load(&read, || "from the database".to_string()).unwrap();
/// assert_eq!(title, "from the database");
/// ```
pub struct Cache<C: Codec = DefaultCodec, M: Front = Blocking> {
    pub(crate) inner: Arc<Inner>,
    /// Database alias of this handle's writes (for computed prefixes).
    pub(crate) write_db: Arc<str>,
    /// False on a [`no_invalidation`](Cache::no_invalidation) handle.
    pub(crate) invalidates: bool,
    pub(crate) codec: PhantomData<fn() -> (C, M)>,
}

/// The async front end of a cache: every operation of [`Cache`] as an `async fn`, over one
/// multiplexed Redis connection (build it with [`Builder::build_async`]). Same core, same
/// keys: a blocking and an async cache with the same prefix share entries.
pub type AsyncCache<C = DefaultCodec> = Cache<C, Async>;

impl<C: Codec, M: Front> Clone for Cache<C, M> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
            write_db: self.write_db.clone(),
            invalidates: self.invalidates,
            codec: PhantomData,
        }
    }
}

impl<C: Codec, M: Front> std::fmt::Debug for Cache<C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("keys", &self.inner.keys)
            .field("enabled", &self.inner.enabled)
            .field("degrade", &self.inner.degrade)
            .finish_non_exhaustive()
    }
}

/// Where the cache keeps its data.
#[derive(Debug, Clone)]
enum Backend {
    Embedded { capacity: u64 },
    Redis { url: String },
}

/// Configures and builds a [`Cache`].
pub struct Builder<C: Codec = DefaultCodec> {
    backend: Backend,
    profiles: Profiles,
    prefix: Prefix,
    version: u32,
    enabled: bool,
    degrade: bool,
    max_in: usize,
    max_conjs: usize,
    pending_limit: usize,
    redis: RedisOptions,
    local: LocalMode,
    local_capacity: u64,
    heartbeat: Duration,
    flight_timeout: Duration,
    retry_failed: bool,
    lock_ttl: Duration,
    listeners: Vec<Listener>,
    errors: Vec<Error>,
    codec: PhantomData<fn() -> C>,
}

impl Default for Builder<DefaultCodec> {
    fn default() -> Self {
        Builder {
            backend: Backend::Embedded {
                capacity: 256 << 20,
            },
            profiles: Profiles::default(),
            prefix: Prefix::Static(String::new()),
            version: 1,
            enabled: true,
            degrade: false,
            max_in: 8,
            max_conjs: 64,
            pending_limit: 10_000,
            redis: RedisOptions {
                pool_size: 16,
                connect_timeout: Duration::from_secs(1),
                io_timeout: Duration::from_secs(1),
                retry_after: Duration::from_secs(1),
            },
            local: LocalMode::Off,
            local_capacity: 64 << 20,
            heartbeat: Duration::from_millis(250),
            flight_timeout: Duration::from_secs(30),
            retry_failed: true,
            lock_ttl: Duration::from_secs(10),
            listeners: Vec::new(),
            errors: Vec::new(),
            codec: PhantomData,
        }
    }
}

impl<C: Codec> Builder<C> {
    /// Uses Redis at `url` (`redis://[:password@]host[:port][/db]`, `rediss://…` with the
    /// `tls` feature, `unix:///path?db=N`). Without this the cache is embedded.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.backend = Backend::Redis { url: url.into() };
        self
    }
    /// Keeps everything in this process, bounded to `capacity_bytes` of entries.
    pub fn embedded(mut self, capacity_bytes: u64) -> Self {
        self.backend = Backend::Embedded {
            capacity: capacity_bytes,
        };
        self
    }
    /// Sets the profile of a table pattern (`app.table`, `app.*`, `*.*`).
    pub fn profile(mut self, pattern: &str, profile: Profile) -> Self {
        if let Err(e) = self.profiles.set(pattern, Some(profile)) {
            self.errors.push(e);
        }
        self
    }
    /// Never caches tables matching the pattern.
    pub fn no_cache(mut self, pattern: &str) -> Self {
        if let Err(e) = self.profiles.set(pattern, None) {
            self.errors.push(e);
        }
        self
    }
    /// The profile of tables no pattern matches (default: [`Profile::default`]).
    pub fn default_profile(mut self, profile: Profile) -> Self {
        self.profiles.set_default(profile);
        self
    }
    /// A static prefix for every key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Prefix::Static(prefix.into());
        self
    }
    /// A prefix computed from the tables and databases of each read and write.
    pub fn prefix_fn(
        mut self,
        f: impl Fn(&PrefixScope<'_>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.prefix = Prefix::Computed(Arc::new(f));
        self
    }
    /// A version number in every key: bump it to start from an empty cache.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }
    /// `false` makes every read call its loader and every invalidation a no-op.
    pub fn enabled(mut self, yes: bool) -> Self {
        self.enabled = yes;
        self
    }
    /// On store errors: `true` runs the loader (and emits an event) instead of failing.
    /// Failed invalidations are queued and replayed in either mode.
    pub fn degrade_on_failure(mut self, yes: bool) -> Self {
        self.degrade = yes;
        self
    }
    /// `IN` lists longer than this invalidate on any write to the table (default 8).
    pub fn max_in(mut self, n: usize) -> Self {
        self.max_in = n;
        self
    }
    /// Conditions with more conjunctions than this invalidate on any write (default 64,
    /// at most 1,000).
    pub fn max_conjunctions(mut self, n: usize) -> Self {
        self.max_conjs = n.clamp(1, 1000);
        self
    }
    /// How many queued row images (and simple keys) to keep before widening (default 10,000).
    pub fn pending_limit(mut self, n: usize) -> Self {
        self.pending_limit = n.max(1);
        self
    }
    /// Idle connections kept in the pool (default 16).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.redis.pool_size = n;
        self
    }
    /// Redis connect timeout (default 1 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.redis.connect_timeout = d;
        self
    }
    /// After Redis fails to answer, how long calls fail fast (or degrade) before it is
    /// tried again (default 1 s), so an outage costs one timeout, not one per call.
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.redis.retry_after = d;
        self
    }
    /// Redis read and write timeout (default 1 s).
    pub fn io_timeout(mut self, d: Duration) -> Self {
        self.redis.io_timeout = d;
        self
    }
    /// Turns the local tier on with this default mode (profiles may set their own with
    /// [`Profile::local`]). Default: off.
    pub fn local(mut self, mode: LocalMode) -> Self {
        self.local = mode;
        self
    }
    /// Bytes of encoded values the local tier holds at most (default 64 MiB).
    pub fn local_capacity(mut self, bytes: u64) -> Self {
        self.local_capacity = bytes;
        self
    }
    /// How long the push channel of `Tracked` reads may stay silent before it is checked
    /// (and, without an answer within the same time, dropped). Default 250 ms.
    pub fn tracking_heartbeat(mut self, d: Duration) -> Self {
        self.heartbeat = d;
        self
    }
    /// How long a caller waits for another caller's loader of the same entry in this
    /// process before loading itself (default 30 s).
    pub fn flight_timeout(mut self, d: Duration) -> Self {
        self.flight_timeout = d;
        self
    }
    /// When the loader that others wait for fails: `true` (default) wakes them to try
    /// again (one of them loads); `false` gives each [`Error::LoaderFailed`].
    pub fn retry_failed_loads(mut self, yes: bool) -> Self {
        self.retry_failed = yes;
        self
    }
    /// Lifetime of the cross-process loader lock of profiles with `lock` (default 10 s):
    /// if its holder dies, a waiter takes over after this long.
    pub fn lock_timeout(mut self, d: Duration) -> Self {
        self.lock_ttl = d;
        self
    }
    /// Subscribes to events.
    pub fn on_event(mut self, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }
    /// Uses another codec.
    pub fn codec<D: Codec>(self) -> Builder<D> {
        Builder {
            backend: self.backend,
            profiles: self.profiles,
            prefix: self.prefix,
            version: self.version,
            enabled: self.enabled,
            degrade: self.degrade,
            max_in: self.max_in,
            max_conjs: self.max_conjs,
            pending_limit: self.pending_limit,
            redis: self.redis,
            local: self.local,
            local_capacity: self.local_capacity,
            heartbeat: self.heartbeat,
            flight_timeout: self.flight_timeout,
            retry_failed: self.retry_failed,
            lock_ttl: self.lock_ttl,
            listeners: self.listeners,
            errors: self.errors,
            codec: PhantomData,
        }
    }
    /// Builds the cache. Redis is connected lazily: a bad URL fails here, a down server on
    /// first use.
    pub fn build(self) -> Result<Cache<C>, Error> {
        self.build_with(|url, opts| Ok(Store::Blocking(RedisStore::blocking(url, opts)?)))
    }

    /// Builds the [`AsyncCache`]: call it inside a tokio runtime (Redis is reached through
    /// one multiplexed connection, made on first use and remade after failures). The
    /// pool size does not apply; the timeouts do.
    #[cfg(feature = "tokio")]
    pub fn build_async(self) -> Result<AsyncCache<C>, Error> {
        self.build_with(|url, opts| Ok(Store::Async(RedisStore::multiplexed(url, opts)?)))
    }

    /// Builds a cache whose Redis store (if any) `redis` opens.
    fn build_with<M: Front>(
        mut self,
        redis: impl FnOnce(&str, RedisOptions) -> Result<Store, Error>,
    ) -> Result<Cache<C, M>, Error> {
        self.check()?;
        let store = match &self.backend {
            Backend::Embedded { capacity } => Store::Embedded(EmbeddedStore::new(*capacity)),
            Backend::Redis { url } => redis(url, self.redis.clone())?,
        };
        self.build_over(store)
    }

    /// Checks the configuration and clamps durations.
    fn check(&mut self) -> Result<(), Error> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        if self.redis.io_timeout.is_zero() || self.redis.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be above zero".into()));
        }
        // Durations far past any use would overflow clocks and Redis' millisecond fields.
        for d in [
            &mut self.redis.io_timeout,
            &mut self.redis.connect_timeout,
            &mut self.redis.retry_after,
            &mut self.heartbeat,
            &mut self.flight_timeout,
            &mut self.lock_ttl,
        ] {
            *d = (*d).min(MAX_TTL);
        }
        Ok(())
    }

    /// The cache over `store`, with either front end.
    fn build_over<M: Front>(self, store: Store) -> Result<Cache<C, M>, Error> {
        let keys = KeySpace {
            prefix: self.prefix.clone(),
            version: self.version,
        };
        let default_local = self.local;
        let mode_of = |p: &Profile| {
            if p.local_get {
                LocalMode::TtlOnly
            } else {
                p.local.unwrap_or(default_local)
            }
        };
        let uses_local =
            self.profiles.any(|p| mode_of(p) != LocalMode::Off) || default_local != LocalMode::Off;
        let uses_tracked = self.profiles.any(|p| mode_of(p) == LocalMode::Tracked)
            || default_local == LocalMode::Tracked;
        let epochs = crate::local::epochs::Epochs::default();
        let entries = LocalTier::entries(self.local_capacity);
        let channel = match (&self.backend, uses_local && uses_tracked) {
            (Backend::Redis { url }, true) => {
                let Some(prefix) = keys.stamp_prefix() else {
                    return Err(Error::Config(
                        "the Tracked local mode needs a static key prefix".into(),
                    ));
                };
                if self.heartbeat.is_zero() {
                    return Err(Error::Config(
                        "the tracking heartbeat must be above zero".into(),
                    ));
                }
                // The push connection is RESP2 whatever the URL asks: it reads invalidations
                // as pub/sub messages (RESP3 would deliver them as pushes it never sees).
                let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| Error::Config(format!("bad Redis URL {url:?}: {e}")))?;
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(redis::ProtocolVersion::RESP2);
                let client = redis::Client::open(info.set_redis_settings(settings))
                    .map_err(|e| Error::Config(format!("bad Redis URL {url:?}: {e}")))?;
                let opts = TrackingOptions {
                    prefix,
                    heartbeat: self.heartbeat,
                    connect_timeout: self.redis.connect_timeout,
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
        let local = uses_local.then(|| {
            let ch = channel
                .clone()
                .unwrap_or_else(|| Channel::always_up(epochs.clone()));
            LocalTier::new(entries, ch)
        });
        Ok(Cache {
            inner: Arc::new(Inner {
                store,
                profiles: self.profiles,
                keys,
                enabled: self.enabled,
                degrade: self.degrade,
                max_in: self.max_in,
                max_conjs: self.max_conjs,
                pending_limit: self.pending_limit,
                plans: match self.prefix {
                    Prefix::Static(_) => Some(
                        moka::sync::Cache::builder()
                            .max_capacity(10_000)
                            .build_with_hasher(crate::local::fast_hasher()),
                    ),
                    Prefix::Computed(_) => None,
                },
                listeners: self.listeners,
                pending: Pending::default(),
                local,
                channel,
                default_local,
                flights: Flights::default(),
                flight_timeout: self.flight_timeout,
                retry_failed: self.retry_failed,
                lock_ttl: self.lock_ttl,
            }),
            write_db: Arc::from("default"),
            invalidates: true,
            codec: PhantomData,
        })
    }
}

/// A saved row to store under a `get` by its profile's `cache_on_save` field.
pub(crate) struct Saved {
    plan: Arc<Plan>,
    bytes: Vec<u8>,
}

/// Stamps and key material gathered from the dependencies of one entry.
#[derive(Default)]
pub(crate) struct Deps {
    stamps: Vec<String>,
    conjs: Vec<(String, Vec<crate::dnf::Conj>)>,
    schemes: BTreeMap<String, BTreeSet<String>>,
    tables: Vec<String>,
    dbs: Vec<String>,
    description: String,
}

impl Deps {
    fn stamp(&mut self, key: String) {
        // Few stamps per read: a linear check beats a set.
        if !self.stamps.contains(&key) {
            self.stamps.push(key);
        }
    }

    fn note(&mut self, table: &str, db: &str) {
        if !self.tables.iter().any(|t| t == table) {
            self.tables.push(table.to_owned());
        }
        if !self.dbs.iter().any(|d| d == db) {
            self.dbs.push(db.to_owned());
        }
    }

    pub(crate) fn into_plan(self, keys: &KeySpace, ttl: Duration, local: LocalMode) -> Plan {
        let tables: Vec<&str> = self.tables.iter().map(String::as_str).collect();
        let dbs: Vec<&str> = self.dbs.iter().map(String::as_str).collect();
        Plan {
            entry: keys.entry(&tables, &dbs, &self.description),
            stamps: self.stamps,
            schemes: self
                .schemes
                .into_iter()
                .map(|(k, s)| (k, s.into_iter().collect()))
                .collect(),
            ttl,
            local,
            deps: self.conjs,
            lock: false,
            stale: None,
        }
    }
}

/// The value out of its `Arc`: moved when unshared, cloned when the local tier holds it too.
pub(crate) fn unwrap_arc<T: Clone>(v: Arc<T>) -> T {
    Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone())
}

/// Longest lifetime an entry gets (a larger profile timeout is clamped to it).
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A value and whether it is stale (from [`Cache::get_or_load_answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The value.
    pub value: Arc<T>,
    /// True when it is the previous value of an entry invalidated within its profile's
    /// stale grace (another caller is reloading it).
    pub stale: bool,
}

/// Counters of a cache's tiers, from [`Cache::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The local tier (all zero when it is off).
    pub local: LocalStats,
}

/// The key of a read's memoised plan and local entry: the 128-bit hash of its description
/// and of whether it is forced (which picks the profile). Built in a reused buffer: this is
/// all a local hit computes.
fn plan_key(read: &Read, profile: &Profile) -> u128 {
    thread_local! {
        static BUF: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(256));
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        describe_read(read, profile, &mut b);
        b.push(if read.force == Some(Force::Cache) {
            '!'
        } else {
            '.'
        });
        xxhash_rust::xxh3::xxh3_128(b.as_bytes())
    })
}

/// Where a read's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// A tier, or another caller's loader.
    Cached,
    /// This call's loader.
    Loaded,
    /// The previous value, within its profile's stale grace, while another caller reloads.
    Stale,
}

/// What step 1 of a read found.
enum Fetched<T> {
    /// A decoded hit, its token and encoded size.
    Hit(Arc<T>, Token, usize),
    /// A miss, and the stamps read for it.
    Miss(Token),
    /// The previous value, within the stale grace.
    Stale(Arc<T>),
}

/// A token no other lock holder uses (thread, time and a process-random seed).
fn lock_owner() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(
        format!(
            "{:?}{:?}",
            std::thread::current().id(),
            std::time::Instant::now()
        )
        .as_bytes(),
    );
    format!("{:016x}{}", h.finish(), std::process::id())
}

/// A held cross-process lock. [`release`](LockHeld::release) it; dropping it instead (a
/// loader's panic, a cancelled future) releases it from the destructor, at once or on a
/// spawned task (see `Store::unlock_detached`).
struct LockHeld<'a, C: Codec, M: Front> {
    cache: &'a Cache<C, M>,
    plan: Arc<Plan>,
    owner: Option<String>,
}

impl<C: Codec, M: Front> LockHeld<'_, C, M> {
    async fn release(mut self) {
        // Disarmed only once the unlock has answered: dropped while it is in flight, the
        // destructor sends it again (unlocking twice is harmless).
        if let Some(owner) = self.owner.clone() {
            let inner = &self.cache.inner;
            let unlocked = inner.store.unlock(&self.plan, &owner, inner.lock_ttl).await;
            self.owner = None;
            if let Err(e) = unlocked {
                let _ = self.cache.store_failed("unlock", e);
            }
        }
    }
}

impl<C: Codec, M: Front> Drop for LockHeld<'_, C, M> {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            let inner = &self.cache.inner;
            if let Err(e) = inner
                .store
                .unlock_detached(self.plan.clone(), owner, inner.lock_ttl)
            {
                let _ = self.cache.store_failed("unlock", e);
            }
        }
    }
}

/// Runs a read's loader at most once.
struct Loader<F>(Option<F>);

impl<F> Loader<F> {
    async fn load<T, E, Fut>(&mut self) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.0.take() {
            Some(f) => f()
                .await
                .map(|v| (Arc::new(v), Served::Loaded))
                .map_err(LoadError::Loader),
            // Every path that loads returns: a second call is a bug, not a user error.
            None => unreachable!("the loader runs at most once"),
        }
    }
}

/// A blocking loader as the core's async one (its future is ready when made).
pub(crate) fn ready_loader<T, E>(
    f: impl FnOnce() -> Result<T, E>,
) -> impl FnOnce() -> std::future::Ready<Result<T, E>> {
    move || std::future::ready(f())
}

/// What the cross-process lock gave.
enum Locked<'a, C: Codec, M: Front> {
    /// This caller holds it.
    Owner(LockHeld<'a, C, M>),
    /// Another process filled the entry meanwhile.
    Filled(crate::store::HitBytes, Token),
    /// Waited too long, or the store failed: load without the lock.
    GaveUp,
}

/// What the local tier answered.
enum LocalAnswer<T> {
    Hit(Arc<T>),
    Miss,
    /// It could not be confirmed and the cache degrades: run the loader, store nothing.
    Degraded,
}

/// Appends what identifies a read's result: operation, table, database unless the profile
/// is `db_agnostic`, condition and extra.
fn describe_read(read: &Read, profile: &Profile, d: &mut String) {
    d.push_str(read.op.name());
    d.push('(');
    escape_into(&read.table, d);
    if !profile.db_agnostic {
        d.push('@');
        escape_into(&read.db, d);
    }
    d.push(',');
    read.cond.describe_into(d);
    d.push(',');
    crate::value::push_int(read.extra.len() as i128, d);
    d.push(':');
    d.push_str(&read.extra);
    d.push(')');
}

impl Cache<DefaultCodec> {
    /// A builder with defaults: embedded, every table cached for 15 minutes.
    pub fn builder() -> Builder<DefaultCodec> {
        Builder::default()
    }
    /// An embedded cache with defaults.
    pub fn embedded() -> Cache<DefaultCodec> {
        match Builder::default().build() {
            Ok(c) => c,
            Err(e) => unreachable!("the default configuration is valid: {e}"),
        }
    }
    /// A Redis cache with defaults.
    pub fn from_url(url: &str) -> Result<Cache<DefaultCodec>, Error> {
        Builder::default().redis(url).build()
    }
}

impl<C: Codec, M: Front> Cache<C, M> {
    /// A read's value and whether it is stale.
    pub(crate) async fn read_answer<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<Answer<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (value, served) = self.read_served(read, loader).await?;
        Ok(Answer {
            value,
            stale: served == Served::Stale,
        })
    }

    /// Every read of a `Read` goes here: the local tier under the read's plan key, then
    /// the shared tier; says where the answer came from.
    pub(crate) async fn read_served<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let target = Target::Table {
            table: &read.table,
            op: read.op,
        };
        let Some(profile) = self.read_profile(read) else {
            return self
                .load_through_filling(target, None, None, true, loader)
                .await;
        };
        // With memoised plans, the local tier is keyed by the plan key: a local hit needs
        // neither the plan nor the shared tier's key.
        let key = self.inner.plans.as_ref().map(|_| plan_key(read, profile));
        if let Some(k) = key {
            match self
                .local_answer::<T>(target, k, self.local_mode(profile))
                .await?
            {
                LocalAnswer::Hit(v) => return Ok((v, Served::Cached)),
                LocalAnswer::Degraded => {
                    let v = loader().await.map_err(LoadError::Loader)?;
                    return Ok((Arc::new(v), Served::Loaded));
                }
                LocalAnswer::Miss => {}
            }
        }
        let plan = self.plan_read_keyed(read, profile, key);
        // Without a plan key (computed prefix), the entry key is looked up instead.
        self.load_through_filling(target, Some(plan), key, true, loader)
            .await
    }

    /// The local tier's key of a read when plans are memoised (see `plan_key`).
    pub(crate) fn local_key_of(&self, read: &Read) -> Option<u128> {
        let profile = self.read_profile(read)?;
        self.inner.plans.as_ref().map(|_| plan_key(read, profile))
    }

    /// A read whose plan and local key are known (a [`Prepared`](crate::Prepared) read).
    pub(crate) async fn read_planned<T, E, F, Fut>(
        &self,
        target: Target<'_>,
        plan: Option<Arc<Plan>>,
        key: u128,
        mode: LocalMode,
        loader: F,
    ) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if plan.is_none() || !self.inner.enabled {
            return self.load_through(target, None, None, loader).await;
        }
        match self.local_answer::<T>(target, key, mode).await? {
            LocalAnswer::Hit(v) => return Ok(v),
            LocalAnswer::Degraded => {
                return loader().await.map(Arc::new).map_err(LoadError::Loader)
            }
            LocalAnswer::Miss => {}
        }
        self.load_through(target, plan, Some(key), loader).await
    }

    /// Caches a function result that depends on reads and tables (see [`CachedAs`](crate::CachedAs)).
    pub fn cached_as(&self, deps: impl IntoIterator<Item = Dep>) -> crate::CachedAs<'_, C, M> {
        crate::CachedAs::new(self, deps.into_iter().collect())
    }

    /// The time-only cache (see [`Simple`](crate::Simple)).
    pub fn simple(&self) -> crate::Simple<'_, C, M> {
        crate::Simple::new(self)
    }

    /// The profile in force for a read, or `None` when the read bypasses the cache.
    fn read_profile(&self, read: &Read) -> Option<&Profile> {
        if !self.inner.enabled {
            return None;
        }
        let profiles = &self.inner.profiles;
        match read.force {
            Some(Force::NoCache) => None,
            Some(Force::Cache) => Some(profiles.get_or_default(&read.table)),
            None => profiles
                .get(&read.table)
                .filter(|p| p.ops.contains(read.op)),
        }
    }

    /// The plan of a read, or `None` when it bypasses the cache.
    ///
    /// Plans are pure functions of the read and the configuration, so they are memoised by
    /// description (DNF and key building cost more than the lookup). With a computed prefix
    /// they are not: the function is the user's and may look at more than its arguments.
    pub(crate) fn plan_read(&self, read: &Read) -> Option<Arc<Plan>> {
        let profile = self.read_profile(read)?;
        let key = self.inner.plans.as_ref().map(|_| plan_key(read, profile));
        Some(self.plan_read_keyed(read, profile, key))
    }

    /// The plan of a read under its plan key (memoised), or built afresh without one.
    fn plan_read_keyed(&self, read: &Read, profile: &Profile, key: Option<u128>) -> Arc<Plan> {
        let build = || {
            let mut deps = Deps::default();
            self.add_read(read, profile, &mut deps);
            let local = self.local_mode(profile);
            let mut plan = deps.into_plan(&self.inner.keys, profile.timeout.min(MAX_TTL), local);
            plan.lock = profile.lock;
            plan.stale = profile.stale_grace;
            Arc::new(plan)
        };
        let (Some(plans), Some(key)) = (&self.inner.plans, key) else {
            return build();
        };
        if let Some(plan) = plans.get(&key) {
            return plan;
        }
        let plan = build();
        plans.insert(key, plan.clone());
        plan
    }

    /// The local mode of a profile (`local_get` is cacheops' name for `TtlOnly`).
    fn local_mode(&self, profile: &Profile) -> LocalMode {
        if self.inner.local.is_none() {
            LocalMode::Off
        } else if profile.local_get {
            LocalMode::TtlOnly
        } else {
            profile.local.unwrap_or(self.inner.default_local)
        }
    }

    /// The default local mode (used by `cached_as`).
    pub(crate) fn default_local(&self) -> LocalMode {
        if self.inner.local.is_none() {
            LocalMode::Off
        } else {
            self.inner.default_local
        }
    }

    /// Adds a read's stamps and description to `deps`.
    pub(crate) fn add_read(&self, read: &Read, profile: &Profile, deps: &mut Deps) {
        let profiles = &self.inner.profiles;
        let skip = |table: &str, field: &str| {
            profiles
                .get(table)
                .is_some_and(|p| p.skip_fields.iter().any(|f| f == field))
        };
        let limits = DnfLimits {
            max_in: self.inner.max_in,
            max_conjs: self.inner.max_conjs,
            skip: &skip,
        };
        let dnf = to_dnf(&read.table, &read.cond, &limits);
        deps.note(&read.table, &read.db);
        for (table, conjs) in &dnf.tables {
            deps.conjs.push((table.clone(), conjs.clone()));
            deps.note(table, &read.db);
            let tk = self.inner.keys.table(table, &read.db);
            deps.stamp(tk.gen.clone());
            let schemes = deps.schemes.entry(tk.schemes.clone()).or_default();
            for conj in conjs {
                schemes.insert(scheme_of(conj));
            }
            for conj in conjs {
                deps.stamp(tk.conj_key(conj));
            }
        }
        describe_read(read, profile, &mut deps.description);
    }

    /// Adds a whole-table dependency to `deps`.
    pub(crate) fn add_table(&self, table: &str, db: &str, deps: &mut Deps) {
        deps.conjs
            .push((table.to_owned(), vec![crate::dnf::Conj::new()]));
        deps.note(table, db);
        let tk = self.inner.keys.table(table, db);
        deps.stamp(tk.gen.clone());
        deps.stamp(tk.conj_key(&Default::default()));
        deps.schemes
            .entry(tk.schemes)
            .or_default()
            .insert(String::new());
        deps.description.push_str("table(");
        escape_into(table, &mut deps.description);
        deps.description.push(')');
    }

    /// Appends free text to the description of `deps` (function name, arguments, extra).
    pub(crate) fn describe(deps: &mut Deps, part: &[u8]) {
        let _ = write!(
            deps.description,
            "[{}:{}]",
            part.len(),
            crate::keys::hash_hex(part)
        );
    }

    /// The read protocol, shared by every cached read: the local tier (if the plan uses it),
    /// then the shared tier (stamps read before the loader), then the loader and the store.
    pub(crate) async fn load_through<T, E, F, Fut>(
        &self,
        target: Target<'_>,
        plan: Option<Arc<Plan>>,
        local_key: Option<u128>,
        loader: F,
    ) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_through_filling(target, plan, local_key, true, loader)
            .await
            .map(|(v, _)| v)
    }

    /// [`load_through`](Cache::load_through), also saying whether the loader answered.
    /// With `fill` false, a loaded value is stored in no tier (transactions whose snapshot
    /// may predate an invalidation).
    pub(crate) async fn load_through_filling<T, E, F, Fut>(
        &self,
        target: Target<'_>,
        plan: Option<Arc<Plan>>,
        local_key: Option<u128>,
        fill: bool,
        loader: F,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut loader = Loader(Some(loader));
        let Some(plan) = plan else {
            self.read_event(target, Outcome::Bypass);
            return loader.load().await;
        };
        let local = self
            .inner
            .local
            .as_ref()
            .filter(|_| plan.local != LocalMode::Off);
        // Without a key from the caller (who looked it up already), look up the entry key.
        let local_key = match local_key {
            Some(k) => k,
            None => {
                let k = xxhash_rust::xxh3::xxh3_128(plan.entry.as_bytes());
                match self.local_answer::<T>(target, k, plan.local).await? {
                    LocalAnswer::Hit(v) => return Ok((v, Served::Cached)),
                    LocalAnswer::Degraded => return loader.load().await,
                    LocalAnswer::Miss => {}
                }
                k
            }
        };
        // Epochs are recorded before the stamps are read (see local/epochs.rs).
        let mut snapshot = local
            .filter(|_| fill)
            .and_then(|l| l.begin_fill(&plan.stamps, plan.local));
        let mut keep_local = |value: &Arc<T>, token: Token, weight: usize| {
            if let (Some(l), Some(s)) = (local, snapshot.take()) {
                l.finish_fill(local_key, value.clone(), token, s, plan.clone(), weight);
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(token) = self.fetch_or_token::<T, E>(target, &plan).await? else {
                // Degraded: the store is unusable, the loader answers and nothing is stored.
                self.read_event(target, Outcome::Degraded);
                return loader.load().await;
            };
            let token = match token {
                Fetched::Hit(v, token, weight) => {
                    keep_local(&v, token, weight);
                    return Ok((v, Served::Cached));
                }
                Fetched::Miss(token) => token,
                Fetched::Stale(_) if !fill => {
                    // A snapshot transaction may not fill the shared tiers, so it may not
                    // be the one that reloads: it reads for itself.
                    let (value, _) = loader.load().await?;
                    self.read_event(target, Outcome::Miss);
                    return Ok((value, Served::Loaded));
                }
                Fetched::Stale(stale) => {
                    // One caller (in this process, and across processes by the lock)
                    // reloads; everyone else gets the previous value at once.
                    let Join::Leader(leader) = self
                        .inner
                        .flights
                        .join((plan.entry.clone(), String::from("stale")))
                    else {
                        self.read_event(target, Outcome::Stale);
                        return Ok((stale, Served::Stale));
                    };
                    let held = match self.take_lock(&plan).await {
                        Ok(Some(held)) => held,
                        Ok(None) => {
                            self.read_event(target, Outcome::Stale);
                            return Ok((stale, Served::Stale));
                        }
                        Err(e) => {
                            self.store_failed("lock", e)?;
                            self.read_event(target, Outcome::Stale);
                            return Ok((stale, Served::Stale));
                        }
                    };
                    let token = match self.inner.store.fetch(&plan, false).await {
                        Ok(Fetch::Miss(t)) => t,
                        Ok(_) => {
                            self.read_event(target, Outcome::Stale);
                            return Ok((stale, Served::Stale));
                        }
                        Err(e) => {
                            self.store_failed("fetch", e)?;
                            self.read_event(target, Outcome::Stale);
                            return Ok((stale, Served::Stale));
                        }
                    };
                    let (value, _) = loader.load().await?;
                    self.read_event(target, Outcome::Miss);
                    let bytes = C::encode(&*value)?;
                    let stored = self.inner.store.store(&plan, &token, &bytes).await;
                    held.release().await;
                    leader.finish(value.clone());
                    match stored {
                        Ok(true) => keep_local(&value, token, bytes.len()),
                        Ok(false) => {}
                        Err(e) => self.store_failed("store", e)?,
                    }
                    return Ok((value, Served::Loaded));
                }
            };
            if !fill {
                let (value, _) = loader.load().await?;
                self.read_event(target, Outcome::Miss);
                return Ok((value, Served::Loaded));
            }
            // One loader per entry and stamps in this process (see flight.rs).
            let leader = match self
                .inner
                .flights
                .join((plan.entry.clone(), token.0.clone()))
            {
                Join::Leader(leader) => leader,
                Join::Follower(flight) => match self.wait_flight(&flight).await {
                    Waited::Done(v) => match v.downcast::<T>() {
                        Ok(v) => {
                            self.read_event(target, Outcome::Joined);
                            return Ok((v, Served::Cached));
                        }
                        // Another call site cached another type under this read.
                        Err(_) => {
                            let (value, _) = loader.load().await?;
                            self.read_event(target, Outcome::Miss);
                            return Ok((value, Served::Loaded));
                        }
                    },
                    Waited::Failed if self.inner.retry_failed && attempt < 3 => continue,
                    Waited::Failed => return Err(LoadError::Cache(Error::LoaderFailed)),
                    Waited::TimedOut => {
                        let (value, _) = loader.load().await?;
                        self.read_event(target, Outcome::Miss);
                        return Ok((value, Served::Loaded));
                    }
                },
            };
            // Across processes too, when the profile asks for it.
            let mut held = None;
            if plan.lock {
                match self.lock_or_wait(&plan).await? {
                    Locked::Owner(lock) => held = Some(lock),
                    Locked::Filled(hit, token) => {
                        // Undecodable: load it ourselves.
                        if let Ok(v) = C::decode::<T>(hit.payload()) {
                            let v = Arc::new(v);
                            self.read_event(target, Outcome::Joined);
                            leader.finish(v.clone());
                            keep_local(&v, token, hit.payload().len());
                            return Ok((v, Served::Cached));
                        }
                    }
                    Locked::GaveUp => {}
                }
            }
            // On an error or a panic, dropping `held` unlocks and dropping `leader` fails
            // the flight (its followers retry).
            let (value, _) = loader.load().await?;
            self.read_event(target, Outcome::Miss);
            let bytes = C::encode(&*value)?;
            let stored = self.inner.store.store(&plan, &token, &bytes).await;
            if let Some(held) = held {
                held.release().await;
            }
            leader.finish(value.clone());
            match stored {
                Ok(true) => keep_local(&value, token, bytes.len()),
                Ok(false) => {}
                Err(e) => self.store_failed("store", e)?,
            }
            return Ok((value, Served::Loaded));
        }
    }

    /// Step 1 of a read: a decoded hit, or the token of the stamps read for a miss; `None`
    /// when the store failed and the cache degrades.
    async fn fetch_or_token<T, E>(
        &self,
        target: Target<'_>,
        plan: &Plan,
    ) -> Result<Option<Fetched<T>>, LoadError<E>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let fetched = match self.replay().await {
            Ok(()) => self.inner.store.fetch(plan, true).await,
            Err(e) => Err(e),
        };
        let token = match fetched {
            Ok(Fetch::Hit(bytes, token)) => match C::decode::<T>(bytes.payload()) {
                Ok(v) => {
                    self.read_event(target, Outcome::Hit);
                    let weight = bytes.payload().len();
                    return Ok(Some(Fetched::Hit(Arc::new(v), token, weight)));
                }
                Err(e) => {
                    self.emit(&Event::DecodeFailed {
                        key: &plan.entry,
                        error: &e,
                    });
                    match self.inner.store.fetch(plan, false).await {
                        Ok(Fetch::Miss(t)) => Some(t),
                        Ok(Fetch::Hit(..) | Fetch::Stale(_)) => None,
                        Err(e) => {
                            self.store_failed("fetch", e)?;
                            None
                        }
                    }
                }
            },
            Ok(Fetch::Miss(t)) => Some(t),
            Ok(Fetch::Stale(bytes)) => match C::decode::<T>(bytes.payload()) {
                Ok(v) => return Ok(Some(Fetched::Stale(Arc::new(v)))),
                // Undecodable: a plain miss.
                Err(_) => match self.inner.store.fetch(plan, false).await {
                    Ok(Fetch::Miss(t)) => Some(t),
                    Ok(_) => None,
                    Err(e) => {
                        self.store_failed("fetch", e)?;
                        None
                    }
                },
            },
            Err(e) => {
                self.store_failed("fetch", e)?;
                None
            }
        };
        Ok(token.map(Fetched::Miss))
    }

    /// Takes the cross-process lock of a miss, or waits for its holder to fill the entry.
    /// Gives up (and loads unlocked) after waiting twice the lock's lifetime.
    async fn lock_or_wait(&self, plan: &Arc<Plan>) -> Result<Locked<'_, C, M>, Error> {
        let store = &self.inner.store;
        let ttl = self.inner.lock_ttl;
        let deadline = crate::store::later(std::time::Instant::now(), ttl.saturating_mul(2));
        loop {
            match self.take_lock(plan).await {
                Ok(Some(held)) => {
                    // A holder may have filled it and unlocked just before: look once.
                    if let Ok(Fetch::Hit(hit, token)) = store.fetch(plan, true).await {
                        held.release().await;
                        return Ok(Locked::Filled(hit, token));
                    }
                    return Ok(Locked::Owner(held));
                }
                Ok(None) => {}
                Err(e) => {
                    self.store_failed("lock", e)?;
                    return Ok(Locked::GaveUp);
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(Locked::GaveUp);
            }
            // Woken when the holder unlocks; at the latest when its lock may have expired.
            if let Err(e) = store.wait_unlock(plan, left.min(ttl)).await {
                self.store_failed("lock wait", e)?;
                return Ok(Locked::GaveUp);
            }
            match store.fetch(plan, true).await {
                Ok(Fetch::Hit(hit, token)) => return Ok(Locked::Filled(hit, token)),
                Ok(Fetch::Miss(_) | Fetch::Stale(_)) => {}
                Err(e) => {
                    self.store_failed("fetch", e)?;
                    return Ok(Locked::GaveUp);
                }
            }
        }
    }

    /// Tries to take the entry's cross-process lock. The guard exists before the request
    /// is sent: a future dropped while `SET NX` is in flight (which may have succeeded)
    /// still releases it, and releasing a lock someone else holds does nothing.
    async fn take_lock(&self, plan: &Arc<Plan>) -> Result<Option<LockHeld<'_, C, M>>, Error> {
        let owner = lock_owner();
        let mut held = LockHeld {
            cache: self,
            plan: plan.clone(),
            owner: Some(owner.clone()),
        };
        let taken = self
            .inner
            .store
            .try_lock(plan, &owner, self.inner.lock_ttl)
            .await?;
        if !taken {
            held.owner = None; // Not ours: nothing to release.
            return Ok(None);
        }
        Ok(Some(held))
    }

    /// The local tier's answer for `key` (a served hit is reported here).
    fn local_lookup<T: Send + Sync + 'static>(
        &self,
        local: &LocalTier,
        target: Target<'_>,
        key: u128,
        mode: LocalMode,
    ) -> Lookup<T> {
        let found = local.lookup::<T>(key, mode);
        if matches!(found, Lookup::Serve(_)) {
            self.read_event(target, Outcome::LocalHit);
        }
        found
    }

    /// A local hit that needs no store (`Tracked`, `Bounded` within its bound, `TtlOnly`),
    /// found without entering the async core: the blocking front end's fast path. `None`
    /// means "go through the core" (which looks again).
    pub(crate) fn local_hit<T: Send + Sync + 'static>(&self, read: &Read) -> Option<Arc<T>> {
        self.inner.local.as_ref()?;
        self.inner.plans.as_ref()?;
        let profile = self.read_profile(read)?;
        let mode = self.local_mode(profile);
        if mode == LocalMode::Off {
            return None;
        }
        let target = Target::Table {
            table: &read.table,
            op: read.op,
        };
        self.local_hit_keyed(target, plan_key(read, profile), mode)
    }

    /// [`local_hit`](Cache::local_hit) of a read whose local key and mode are known.
    pub(crate) fn local_hit_keyed<T: Send + Sync + 'static>(
        &self,
        target: Target<'_>,
        key: u128,
        mode: LocalMode,
    ) -> Option<Arc<T>> {
        let local = self
            .inner
            .local
            .as_ref()
            .filter(|_| mode != LocalMode::Off)?;
        match self.local_lookup::<T>(local, target, key, mode) {
            Lookup::Serve(v) => Some(v),
            Lookup::Confirm(..) | Lookup::Miss => None,
        }
    }

    /// Asks the local tier for `key`; confirms the entry with the store when its mode says so.
    async fn local_answer<T: Send + Sync + 'static>(
        &self,
        target: Target<'_>,
        key: u128,
        mode: LocalMode,
    ) -> Result<LocalAnswer<T>, Error> {
        let Some(local) = self.inner.local.as_ref().filter(|_| mode != LocalMode::Off) else {
            return Ok(LocalAnswer::Miss);
        };
        match self.local_lookup::<T>(local, target, key, mode) {
            Lookup::Serve(v) => Ok(LocalAnswer::Hit(v)),
            Lookup::Confirm(entry, v) => {
                let confirmed = match self.replay().await {
                    Ok(()) => {
                        self.inner
                            .store
                            .confirm(&entry.plan().stamps, entry.token())
                            .await
                    }
                    Err(e) => Err(e),
                };
                match confirmed {
                    Ok(valid) => {
                        local.confirmed(key, &entry, valid);
                        if valid {
                            self.read_event(target, Outcome::LocalHit);
                            return Ok(LocalAnswer::Hit(v));
                        }
                        Ok(LocalAnswer::Miss)
                    }
                    Err(e) => {
                        // Unconfirmed entries are never served.
                        self.store_failed("confirm", e)?;
                        self.read_event(target, Outcome::Degraded);
                        Ok(LocalAnswer::Degraded)
                    }
                }
            }
            Lookup::Miss => Ok(LocalAnswer::Miss),
        }
    }

    /// Waits for another caller's loader: blocking the thread, or yielding to the runtime.
    async fn wait_flight<V: Clone>(&self, flight: &crate::flight::Flight<V>) -> Waited<V> {
        #[cfg(feature = "tokio")]
        if M::ASYNC {
            return flight.wait_async(self.inner.flight_timeout).await;
        }
        flight.wait(self.inner.flight_timeout)
    }

    /// Counters of the tiers.
    pub fn stats(&self) -> Stats {
        Stats {
            local: self
                .inner
                .local
                .as_ref()
                .map(LocalTier::stats)
                .unwrap_or_default(),
        }
    }

    /// The local tier, for tests of its memory bounds.
    #[doc(hidden)]
    pub fn local_sizes(&self) -> (u64, usize) {
        self.inner
            .local
            .as_ref()
            .map_or((0, 0), |l| (l.len(), l.epoch_slots()))
    }

    /// The Redis client id of the tracked tier's push connection (0 when none), so tests
    /// can kill it.
    #[doc(hidden)]
    pub fn push_client_id(&self) -> u64 {
        self.inner.channel.as_ref().map_or(0, |c| c.client_id())
    }

    /// Loaders in progress in this process (tests check none is left behind).
    #[doc(hidden)]
    pub fn flights_in_progress(&self) -> usize {
        self.inner.flights.len()
    }

    /// True while the tracked tier's push channel is up.
    pub fn push_channel_up(&self) -> bool {
        self.inner.channel.as_ref().is_some_and(|c| c.is_up())
    }

    // ---------------------------------------------------------------- invalidation

    /// A handle whose invalidations do nothing (reads work as usual). For bulk loads and
    /// writes whose effects you invalidate yourself.
    pub fn no_invalidation(&self) -> Cache<C, M> {
        Cache {
            invalidates: false,
            ..self.clone()
        }
    }

    /// A handle whose invalidations are for writes on database `alias` (it matters only with
    /// a computed prefix).
    pub fn using(&self, alias: &str) -> Cache<C, M> {
        Cache {
            write_db: Arc::from(alias),
            ..self.clone()
        }
    }

    /// Invalidates what `rows` of `table` can affect, then stores the saved row of a
    /// profile's `cache_on_save` (the core of every write operation of both front ends).
    pub(crate) async fn written(
        &self,
        table: &str,
        rows: Vec<Row>,
        saved: Option<Saved>,
    ) -> Result<(), Error> {
        if self.active() && !rows.is_empty() {
            self.apply(self.rows_backlog(table, &rows)).await?;
        }
        match saved {
            Some(saved) => self.store_saved(saved).await,
            None => Ok(()),
        }
    }

    /// Invalidates every cached read of a table.
    pub(crate) async fn model(&self, table: &str) -> Result<(), Error> {
        if !self.active() {
            return Ok(());
        }
        self.apply(self.table_backlog(table)).await
    }

    /// Invalidates everything this cache (prefix and version) has stored.
    pub(crate) async fn everything(&self) -> Result<(), Error> {
        if !self.active() {
            return Ok(());
        }
        self.apply(Backlog {
            all: true,
            ..Backlog::default()
        })
        .await
    }

    /// The invalidation of rows of `table`, ready to send or queue.
    pub(crate) fn rows_backlog(&self, table: &str, rows: &[Row]) -> Backlog {
        let mut tk = self.inner.keys.table(table, &self.write_db);
        tk.stale_ms = self
            .inner
            .profiles
            .get(table)
            .and_then(|p| p.stale_grace)
            .map_or(0, crate::store::millis);
        let encoded: Vec<EncodedRow> = rows.iter().map(|r| self.encode_row(table, r)).collect();
        let mut b = Backlog::default();
        b.rows.insert(tk.gen.clone(), (tk, encoded));
        b
    }

    /// The invalidation of a whole table, ready to send or queue.
    pub(crate) fn table_backlog(&self, table: &str) -> Backlog {
        let mut b = Backlog::default();
        let tk = self.inner.keys.table(table, &self.write_db);
        b.tables.insert(tk.gen, table.to_owned());
        b
    }

    /// Number of invalidations queued because the store was unavailable.
    pub fn pending_invalidations(&self) -> usize {
        self.inner.pending.len()
    }

    fn active(&self) -> bool {
        self.inner.enabled && self.invalidates
    }

    /// Row image to (escaped field, encoded value) pairs, without the profile's skipped fields.
    fn encode_row(&self, table: &str, row: &Row) -> EncodedRow {
        let skip: &[String] = self
            .inner
            .profiles
            .get(table)
            .map_or(&[], |p| &p.skip_fields);
        row.iter()
            .filter(|(f, _)| !skip.iter().any(|s| s == f))
            .map(|(f, v)| (escape(f), v.encode()))
            .collect()
    }

    /// What a profile's `cache_on_save` stores for a saved row: the plan of a `get` by its
    /// field, and the encoded row. `None` when the profile does not ask for it.
    pub(crate) fn saved<R: Serialize + ?Sized>(
        &self,
        table: &str,
        new: &R,
    ) -> Result<Option<Saved>, Error> {
        let Some(profile) = self.inner.profiles.get(table) else {
            return Ok(None);
        };
        let Some(field) = &profile.cache_on_save else {
            return Ok(None);
        };
        if !self.inner.enabled {
            return Ok(None);
        }
        let row = Row::from_serialize(new)?;
        let Some(value) = row.get(field) else {
            return Err(Error::Row(format!(
                "cache_on_save field {field:?} is not a scalar field of the saved {table} row"
            )));
        };
        let read = Read::get(table)
            .filter(Cond::eq(field.as_str(), value.clone()))
            .db(&*self.write_db);
        let Some(plan) = self.plan_read(&read) else {
            return Ok(None);
        };
        Ok(Some(Saved {
            plan,
            bytes: C::encode(new)?,
        }))
    }

    /// Stores a saved row (see [`saved`](Cache::saved)) under fresh stamps.
    async fn store_saved(&self, saved: Saved) -> Result<(), Error> {
        let Saved { plan, bytes } = saved;
        let store = &self.inner.store;
        let stored = match store.fetch(&plan, false).await {
            Ok(Fetch::Miss(token)) => store.store(&plan, &token, &bytes).await,
            Ok(Fetch::Hit(..) | Fetch::Stale(_)) => Ok(false),
            Err(e) => Err(e),
        };
        match stored {
            Ok(_) => Ok(()),
            Err(e) => self.store_failed("cache_on_save", e),
        }
    }

    /// Sends a backlog (after anything queued before it); queues it if the store fails.
    pub(crate) async fn apply(&self, b: Backlog) -> Result<(), Error> {
        let sent = match self.replay().await {
            Ok(()) => self.send(&b).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                self.invalidation_events(&b, false);
                Ok(())
            }
            Err(e) => {
                self.invalidation_events(&b, true);
                self.inner.pending.push(b, self.inner.pending_limit);
                // Which stamps the queued rows will delete is unknown until they are sent:
                // drop every local entry rather than risk serving one of them.
                if let Some(l) = &self.inner.local {
                    l.flush();
                }
                self.store_failed("invalidate", e)
            }
        }
    }

    /// Sends a backlog to the store, and applies what it deleted to the local tier before
    /// returning (a process reads its own writes).
    async fn send(&self, b: &Backlog) -> Result<(), Error> {
        let store = &self.inner.store;
        let local = self.inner.local.as_ref();
        if b.all {
            store
                .invalidate_all(
                    &self.inner.keys.scan_pattern(),
                    &self.inner.keys.meta_marker(),
                )
                .await?;
            if let Some(l) = local {
                l.flush();
            }
            return Ok(());
        }
        if !b.tables.is_empty() {
            let gens: Vec<String> = b.tables.keys().cloned().collect();
            store.invalidate_tables(&gens).await?;
            if let Some(l) = local {
                l.stamps_changed(gens.iter().map(String::as_str));
            }
        }
        if !b.rows.is_empty() {
            let batches: Vec<(TableKeys, Vec<EncodedRow>)> = b.rows.values().cloned().collect();
            let deleted = store.invalidate_rows(&batches).await?;
            if let Some(l) = local {
                l.stamps_changed(deleted.iter().map(String::as_str));
            }
        }
        if !b.keys.is_empty() {
            let keys: Vec<String> = b.keys.iter().cloned().collect();
            store.delete(&keys).await?;
        }
        Ok(())
    }

    /// Replays queued invalidations; on failure they stay queued.
    pub(crate) async fn replay(&self) -> Result<(), Error> {
        let Some(replay) = self
            .inner
            .pending
            .begin_replay(self.inner.pending_limit)
            .await
        else {
            return Ok(());
        };
        // On failure (or if this future is dropped) the backlog goes back to the queue.
        self.send(replay.backlog()).await?;
        let items = replay.sent();
        self.emit(&Event::Replayed { items });
        Ok(())
    }

    // ---------------------------------------------------------------- events and failures

    pub(crate) fn emit(&self, e: &Event<'_>) {
        for l in &self.inner.listeners {
            l(e);
        }
    }

    pub(crate) fn read_event(&self, target: Target<'_>, outcome: Outcome) {
        if !self.inner.listeners.is_empty() {
            self.emit(&Event::Read { target, outcome });
        }
    }

    fn invalidation_events(&self, b: &Backlog, queued: bool) {
        let wrap = |i| {
            if queued {
                Event::InvalidationQueued(i)
            } else {
                Event::Invalidated(i)
            }
        };
        if self.inner.listeners.is_empty() {
            return;
        }
        if b.all {
            self.emit(&wrap(Invalidation::All));
        }
        for table in b.tables.values() {
            self.emit(&wrap(Invalidation::Table { table }));
        }
        for (t, rows) in b.rows.values() {
            self.emit(&wrap(Invalidation::Rows {
                table: &t.table,
                rows: rows.len(),
            }));
        }
        for key in &b.keys {
            self.emit(&wrap(Invalidation::Key { key }));
        }
    }

    /// Reports a store failure; `Ok` means "degrade and go on", `Err` means "fail".
    pub(crate) fn store_failed(&self, during: &'static str, error: Error) -> Result<(), Error> {
        self.emit(&Event::StoreFailed {
            during,
            error: &error,
        });
        if self.inner.degrade
            && matches!(
                error,
                Error::Redis(_) | Error::Protocol(_) | Error::Unavailable(_)
            )
        {
            Ok(())
        } else {
            Err(error)
        }
    }
}
