//! [`Builder`]: a cache's configuration, checked, then the core built over a store.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{Codec, DefaultCodec};
use crate::core::local::{self, LocalSetup};
use crate::core::{Core, Setup};
use crate::error::Error;
use crate::event::{Event, Listener};
#[cfg(feature = "tokio")]
use crate::front::AsyncCache;
use crate::front::Cache;
use crate::keys::{KeySpace, Prefix, PrefixScope};
use crate::plan::{Planner, MAX_TTL};
use crate::profile::{LocalMode, Profile, Profiles};
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::store::Store;

/// Where the cache keeps its data.
#[derive(Clone)]
enum Backend {
    Embedded { capacity: u64 },
    Redis { url: String },
}

/// The URL's password is never shown.
impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Embedded { capacity } => f
                .debug_struct("Embedded")
                .field("capacity", capacity)
                .finish(),
            Backend::Redis { url } => f
                .debug_struct("Redis")
                .field("url", &crate::error::redact_url(url))
                .finish(),
        }
    }
}

/// The settings, for logs: the Redis URL with its credentials redacted.
impl<C: Codec> std::fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("backend", &self.backend)
            .field("version", &self.version)
            .field("enabled", &self.enabled)
            .field("degrade", &self.degrade)
            .field("redis", &self.redis)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
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
    type_mismatch_fails: bool,
    lock_ttl: Duration,
    replay_backoff: Duration,
    flush_on_drop: Duration,
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
            type_mismatch_fails: false,
            lock_ttl: Duration::from_secs(10),
            replay_backoff: Duration::from_millis(500),
            flush_on_drop: Duration::from_secs(1),
            listeners: Vec::new(),
            errors: Vec::new(),
            codec: PhantomData,
        }
    }
}

impl<C: Codec> Builder<C> {
    /// Uses Redis at `url` (`redis://[:password@]host[:port][/db]`, `rediss://…` with the
    /// `tls` feature, `unix:///path?db=N`). Without this the cache is embedded. Errors,
    /// events and `Debug` output never show the URL's password.
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
    /// Failed invalidations are queued and replayed in either mode, and reported as
    /// [`Error::InvalidationQueued`] in either mode: the database write stands and need
    /// not be retried, but until the replay other processes may serve the old value.
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
    /// Redis connect timeout (default 1 s): making a connection, its greeting (`AUTH`,
    /// `SELECT`) included, fails with [`Error::Timeout`] past it.
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
    /// Redis response timeout (default 1 s): a request's whole answer (every reply of a
    /// pipeline) must arrive within it, or it fails with [`Error::Timeout`] (the connection
    /// is then dropped).
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
    /// An entry written by another Rust type than the one it is read as (two call sites
    /// sharing one read, or a struct changed by a deploy): `false` (default) treats it as a
    /// miss and emits [`Event::TypeMismatch`]; `true` returns [`Error::TypeMismatch`].
    /// Either way the bytes are never decoded as the wrong type.
    pub fn type_mismatch_fails(mut self, yes: bool) -> Self {
        self.type_mismatch_fails = yes;
        self
    }
    /// Lifetime of the cross-process loader lock of profiles with `lock` (default 10 s):
    /// if its holder dies, a waiter takes over after this long.
    pub fn lock_timeout(mut self, d: Duration) -> Self {
        self.lock_ttl = d;
        self
    }
    /// Invalidations that could not reach the store are queued and replayed in the
    /// background as soon as it answers: first after 10 ms, then at pauses doubling up to
    /// this bound (default 500 ms). With [`retry_after`](Builder::retry_after), it bounds how
    /// long after the store's return other processes may still serve what they kill.
    pub fn replay_backoff(mut self, d: Duration) -> Self {
        self.replay_backoff = d;
        self
    }
    /// How long dropping the last handle of a cache keeps trying to send queued
    /// invalidations (default 1 s; on the async front end a task does it, within the same
    /// bound).
    pub fn flush_on_drop(mut self, d: Duration) -> Self {
        self.flush_on_drop = d;
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
            type_mismatch_fails: self.type_mismatch_fails,
            lock_ttl: self.lock_ttl,
            replay_backoff: self.replay_backoff,
            flush_on_drop: self.flush_on_drop,
            listeners: self.listeners,
            errors: self.errors,
            codec: PhantomData,
        }
    }
    /// Builds the blocking [`Cache`]. Redis is connected lazily: a bad URL fails here, a
    /// down server on first use.
    pub fn build(self) -> Result<Cache<C>, Error> {
        let core = self.build_core(false, |url, opts| {
            Ok(Store::Blocking(RedisStore::blocking(url, opts)?))
        })?;
        Ok(Cache::from_core(core))
    }

    /// Builds the [`AsyncCache`]: call it inside a tokio runtime (Redis is reached through
    /// one multiplexed connection, made on first use and remade after failures). The
    /// pool size does not apply; the timeouts do.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn build_async(self) -> Result<AsyncCache<C>, Error> {
        let core = self.build_core(true, |url, opts| {
            Ok(Store::Async(RedisStore::multiplexed(url, opts)?))
        })?;
        Ok(AsyncCache::from_core(core))
    }

    /// The core over the store `redis` opens (if any), for either front end.
    fn build_core(
        mut self,
        asynch: bool,
        redis: impl FnOnce(&str, RedisOptions) -> Result<Store, Error>,
    ) -> Result<Core<C>, Error> {
        self.check()?;
        let store = match &self.backend {
            Backend::Embedded { capacity } => Store::Embedded(EmbeddedStore::new(*capacity)),
            Backend::Redis { url } => redis(url, self.redis.clone())?,
        };
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
        let redis_url = match &self.backend {
            Backend::Redis { url } => Some(url.as_str()),
            Backend::Embedded { .. } => None,
        };
        let (local, channel) = local::setup(LocalSetup {
            used: self.profiles.any(|p| mode_of(p) != LocalMode::Off)
                || default_local != LocalMode::Off,
            tracked: self.profiles.any(|p| mode_of(p) == LocalMode::Tracked)
                || default_local == LocalMode::Tracked,
            capacity: self.local_capacity,
            redis_url,
            keys: &keys,
            heartbeat: self.heartbeat,
            connect_timeout: self.redis.connect_timeout,
        })?;
        Ok(Core::new(Setup {
            store,
            memoise: matches!(self.prefix, Prefix::Static(_)),
            planner: Planner {
                profiles: self.profiles,
                keys,
                max_in: self.max_in,
                max_conjs: self.max_conjs,
            },
            enabled: self.enabled,
            degrade: self.degrade,
            pending_limit: self.pending_limit,
            listeners: self.listeners,
            local,
            channel,
            default_local,
            flight_timeout: self.flight_timeout,
            retry_failed: self.retry_failed,
            type_mismatch_fails: self.type_mismatch_fails,
            lock_ttl: self.lock_ttl,
            asynch,
            replay_backoff: self.replay_backoff,
            flush_on_drop: self.flush_on_drop,
        }))
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
            &mut self.replay_backoff,
            &mut self.flush_on_drop,
        ] {
            *d = (*d).min(MAX_TTL);
        }
        Ok(())
    }
}
