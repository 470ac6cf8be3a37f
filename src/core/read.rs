//! The read protocol, written once for every cached read (tables, `cached_as`, prepared
//! reads, scope reads) and both front ends.
//!
//! A read is *begun* without I/O ([`Core::begin_read`], [`Core::begin_planned`]): the plan
//! key is computed and the local tier looked up once. A local hit that needs no store ends
//! there ([`Begun::Served`]); anything else is a [`Job`] that [`Core::finish`] completes:
//! 1. the local tier's confirmation (`Strict`, `Bounded` past its bound);
//! 2. the shared tier: the entry, or the stamps read *before* the loader runs (a token);
//! 3. one loader per entry and token in this process (`flight.rs`), and across processes
//!    with the profile's lock (`lock.rs`);
//! 4. the loader, then `STORE` (refused if the stamps changed), then a local copy if no
//!    epoch moved since step 2 (`local/epochs.rs`).

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::flight::{Flight, Join, Leader, Waited};
use super::local::epochs::Snapshot;
use super::local::{LocalEntry, LocalTier, Lookup};
use super::lock::{LockHeld, Locked};
use super::{Core, Planned};
use crate::codec::Codec;
use crate::error::{Error, LoadError};
use crate::event::{Outcome, Target};
use crate::plan::{plan_key, Plan};
use crate::profile::{LocalMode, Profile};
use crate::read::Read;
use crate::store::{Fetch, Sum, Token};
use crate::typed;

/// The leader guard of a flight of this cache.
type FlightLeader = Leader<(String, Sum), Arc<dyn std::any::Any + Send + Sync>>;

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

/// A begun read: answered already, or a job for [`Core::finish`].
pub(crate) enum Begun<'a, T> {
    /// A local hit that needed no store.
    Served(Arc<T>),
    /// The rest of the read.
    Go(Job<'a, T>),
}

/// The rest of a read after its local lookup.
pub(crate) struct Job<'a, T> {
    target: Target<'a>,
    source: Source<'a>,
    local: Probe<T>,
    /// False: a loaded value is stored in no tier (a transaction whose snapshot may
    /// predate an invalidation).
    fill: bool,
}

/// How a job finds its plan.
enum Source<'a> {
    /// Not cached: the loader answers.
    Bypass,
    /// A read whose plan is looked up only if needed (a confirmed local hit needs none).
    Read {
        read: &'a Read,
        profile: &'a Profile,
        key: u128,
    },
    /// Planned already.
    Planned(Arc<Planned>),
}

/// What the local tier said before any I/O.
enum Probe<T> {
    /// Not asked yet (the job asks in [`Core::finish`]).
    NotAsked,
    /// Nothing usable.
    Miss,
    /// Usable if the store confirms the entry's stamps.
    Confirm(u128, Arc<LocalEntry>, Arc<T>),
}

impl<'a, T> Job<'a, T> {
    /// A job for an already planned read (`None`: it bypasses the cache). The local tier is
    /// asked when it runs.
    pub fn planned(target: Target<'a>, planned: Option<Arc<Planned>>) -> Job<'a, T> {
        Job {
            target,
            source: planned.map_or(Source::Bypass, Source::Planned),
            local: Probe::NotAsked,
            fill: true,
        }
    }

    /// Whether a loaded value may be stored (see [`Job::fill`]'s field).
    pub fn filling(mut self, fill: bool) -> Self {
        self.fill = fill;
        self
    }
}

/// What step 2 found.
enum Fetched<T> {
    /// A decoded hit, its token and encoded size.
    Hit(Arc<T>, Token, usize),
    /// A miss, and the stamps read for it.
    Miss(Token),
    /// The previous value, within the stale grace.
    Stale(Arc<T>),
}

/// What the local tier's confirmation gave.
enum Confirmed<T> {
    Hit(Arc<T>),
    Miss,
    /// It could not be confirmed and the cache degrades: run the loader, store nothing.
    Degraded,
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

/// A local copy in the making: the epochs of the stamps, recorded before they are read.
struct LocalFill<'p> {
    tier: Option<&'p LocalTier>,
    snapshot: Option<Snapshot>,
    planned: &'p Planned,
}

impl LocalFill<'_> {
    /// Keeps `value` locally if no stamp changed since the snapshot.
    fn keep<T: Send + Sync + 'static>(&mut self, value: &Arc<T>, token: Token, weight: usize) {
        if let (Some(tier), Some(snapshot)) = (self.tier, self.snapshot.take()) {
            let p = self.planned;
            tier.finish_fill(
                p.key,
                value.clone(),
                token,
                snapshot,
                &p.plan,
                p.local,
                weight,
            );
        }
    }
}

impl<C: Codec> Core<C> {
    /// Begins a read of `read`: one plan key, one local lookup, no I/O.
    pub fn begin_read<'a, T: Send + Sync + 'static>(&'a self, read: &'a Read) -> Begun<'a, T> {
        let target = Target::Table {
            table: &read.table,
            op: read.op,
            read,
        };
        let Some(profile) = self.profile_of(read) else {
            return Begun::Go(Job::planned(target, None));
        };
        let Some(_) = &self.shared.plans else {
            // A computed prefix: the local key is the entry key's hash, so plan first.
            let planned = self.planned(read, profile, None);
            return self.begin_planned(target, Some(&planned));
        };
        let key = plan_key(read, profile);
        let local = self.probe(target, key, self.local_mode(profile));
        match local {
            Ok(v) => Begun::Served(v),
            Err(local) => Begun::Go(Job {
                target,
                source: Source::Read { read, profile, key },
                local,
                fill: true,
            }),
        }
    }

    /// Begins a read whose plan is known (`None`: it bypasses the cache).
    pub fn begin_planned<'a, T: Send + Sync + 'static>(
        &self,
        target: Target<'a>,
        planned: Option<&Arc<Planned>>,
    ) -> Begun<'a, T> {
        let Some(planned) = planned.filter(|_| self.shared.enabled) else {
            return Begun::Go(Job::planned(target, None));
        };
        match self.probe(target, planned.key, planned.local) {
            Ok(v) => Begun::Served(v),
            Err(local) => Begun::Go(Job {
                target,
                source: Source::Planned(planned.clone()),
                local,
                fill: true,
            }),
        }
    }

    /// A read of `read` from start to end.
    #[cfg(feature = "tokio")]
    pub async fn read<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.begin_read(read) {
            Begun::Served(v) => Ok((v, Served::Cached)),
            Begun::Go(job) => self.finish(job, loader).await,
        }
    }

    /// Completes a begun read (see the module docs).
    pub async fn finish<T, E, F, Fut>(
        &self,
        job: Job<'_, T>,
        loader: F,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut loader = Loader(Some(loader));
        let target = job.target;
        let local = match (&job.source, job.local) {
            (Source::Bypass, _) => {
                self.read_event(target, Outcome::Bypass);
                return loader.load().await;
            }
            (Source::Planned(p), Probe::NotAsked) => match self.probe(target, p.key, p.local) {
                Ok(v) => return Ok((v, Served::Cached)),
                Err(probe) => probe,
            },
            (_, probe) => probe,
        };
        if let Probe::Confirm(key, entry, value) = local {
            match self.confirm(target, key, &entry, value).await? {
                Confirmed::Hit(v) => return Ok((v, Served::Cached)),
                Confirmed::Degraded => return loader.load().await,
                Confirmed::Miss => {}
            }
        }
        let planned = match job.source {
            Source::Read { read, profile, key } => self.planned(read, profile, Some(key)),
            Source::Planned(p) => p,
            Source::Bypass => unreachable!("bypassing reads returned above"),
        };
        self.through_shared(target, &planned, job.fill, loader)
            .await
    }

    /// The local tier's answer for `key` without I/O: a value to serve now, or what is
    /// left to do. A served hit is reported here.
    #[inline]
    fn probe<T: Send + Sync + 'static>(
        &self,
        target: Target<'_>,
        key: u128,
        mode: LocalMode,
    ) -> Result<Arc<T>, Probe<T>> {
        let Some(tier) = self.local_tier(mode) else {
            return Err(Probe::Miss);
        };
        match tier.lookup::<T>(key, mode) {
            Lookup::Serve(v) => {
                self.read_event(target, Outcome::LocalHit);
                Ok(v)
            }
            Lookup::Confirm(entry, v) => Err(Probe::Confirm(key, entry, v)),
            Lookup::Miss => Err(Probe::Miss),
        }
    }

    /// The local tier, if on for `mode`.
    fn local_tier(&self, mode: LocalMode) -> Option<&LocalTier> {
        self.shared
            .local
            .as_ref()
            .filter(|_| mode != LocalMode::Off)
    }

    /// Confirms a local entry's stamps with the store (unconfirmed entries are never served).
    async fn confirm<T>(
        &self,
        target: Target<'_>,
        key: u128,
        entry: &LocalEntry,
        value: Arc<T>,
    ) -> Result<Confirmed<T>, Error> {
        let Some(tier) = self.shared.local.as_ref() else {
            return Ok(Confirmed::Miss);
        };
        let Some((stamps, token)) = entry.to_confirm() else {
            return Ok(Confirmed::Miss);
        };
        match self.call("confirm", |s| s.confirm(stamps, token)).await? {
            Some(valid) => {
                tier.confirmed(key, entry, valid);
                if valid {
                    self.read_event(target, Outcome::LocalHit);
                    Ok(Confirmed::Hit(value))
                } else {
                    Ok(Confirmed::Miss)
                }
            }
            None => {
                self.read_event(target, Outcome::Degraded);
                Ok(Confirmed::Degraded)
            }
        }
    }

    /// Steps 2 to 4: the shared tier, single flight, lock, loader, store, local copy.
    async fn through_shared<T, E, F, Fut>(
        &self,
        target: Target<'_>,
        planned: &Planned,
        fill: bool,
        mut loader: Loader<F>,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let plan = &planned.plan;
        // Epochs are recorded before the stamps are read (see local/epochs.rs).
        let tier = self.local_tier(planned.local).filter(|_| fill);
        let mut local = LocalFill {
            tier,
            snapshot: tier.and_then(|t| t.begin_fill(&plan.stamps, planned.local)),
            planned,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = match self.fetch::<T>(target, plan).await? {
                None => {
                    // Degraded: the store is unusable, the loader answers, nothing is stored.
                    self.read_event(target, Outcome::Degraded);
                    return loader.load().await;
                }
                Some(Fetched::Hit(v, token, weight)) => {
                    local.keep(&v, token, weight);
                    return Ok((v, Served::Cached));
                }
                Some(Fetched::Miss(token)) => token,
                // A snapshot transaction may not fill the shared tiers, so it may not be
                // the one that reloads: it reads for itself.
                Some(Fetched::Stale(_)) if !fill => return self.load_alone(target, loader).await,
                Some(Fetched::Stale(stale)) => {
                    return self.revalidate(target, plan, stale, loader, local).await
                }
            };
            if !fill {
                return self.load_alone(target, loader).await;
            }
            // One loader per entry and stamps in this process (see flight.rs).
            let leader = match self.shared.flights.join((plan.entry.clone(), token.0)) {
                Join::Leader(leader) => leader,
                Join::Follower(flight) => match self.wait_flight(&flight).await {
                    Waited::Done(v) => match v.downcast::<T>() {
                        Ok(v) => {
                            self.read_event(target, Outcome::Joined);
                            return Ok((v, Served::Cached));
                        }
                        // Another call site cached another type under this read.
                        Err(_) => return self.load_alone(target, loader).await,
                    },
                    Waited::Failed if self.shared.retry_failed && attempt < 3 => continue,
                    Waited::Failed => return Err(LoadError::Cache(Error::LoaderFailed)),
                    Waited::TimedOut => return self.load_alone(target, loader).await,
                },
            };
            // Across processes too, when the profile asks for it.
            let mut held = None;
            if plan.lock {
                match self.lock_or_wait(plan).await? {
                    Locked::Owner(lock) => held = Some(lock),
                    Locked::Filled(hit, token) => {
                        // Undecodable: load it ourselves.
                        if let Ok(v) = typed::decode::<C, T>(hit.payload()) {
                            let v = Arc::new(v);
                            self.read_event(target, Outcome::Joined);
                            leader.finish(v.clone());
                            local.keep(&v, token, hit.payload().len());
                            return Ok((v, Served::Cached));
                        }
                    }
                    Locked::GaveUp => {}
                }
            }
            return self
                .load_and_store(target, plan, token, loader, (leader, held), local)
                .await;
        }
    }

    /// A stale entry within its grace: one caller (in this process, and across processes
    /// by the lock) reloads; everyone else gets the previous value at once.
    async fn revalidate<T, E, F, Fut>(
        &self,
        target: Target<'_>,
        plan: &Arc<Plan>,
        stale: Arc<T>,
        loader: Loader<F>,
        local: LocalFill<'_>,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let serve_stale = |stale| {
            self.read_event(target, Outcome::Stale);
            Ok((stale, Served::Stale))
        };
        let Join::Leader(leader) = self
            .shared
            .flights
            .join((plan.entry.clone(), Sum::marker("stale")))
        else {
            return serve_stale(stale);
        };
        let Some(held) = self.take_lock(plan).await? else {
            return serve_stale(stale);
        };
        let Some(token) = self.call("fetch", |s| s.prepare(plan)).await? else {
            return serve_stale(stale);
        };
        self.load_and_store(target, plan, token, loader, (leader, Some(held)), local)
            .await
    }

    /// The end of every miss this process fills: the loader, `STORE`, the lock released,
    /// the followers given the value, a local copy kept. On a loader error (or panic),
    /// dropping `held` unlocks and dropping `leader` fails the flight (its followers retry).
    async fn load_and_store<T, E, F, Fut>(
        &self,
        target: Target<'_>,
        plan: &Plan,
        token: Token,
        mut loader: Loader<F>,
        (leader, held): (FlightLeader, Option<LockHeld<'_, C>>),
        mut local: LocalFill<'_>,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (value, _) = loader.load().await?;
        self.read_event(target, Outcome::Miss);
        let bytes = typed::encode::<C, T>(&value)?;
        let stored = self.call("store", |s| s.store(plan, &token, &bytes)).await;
        if let Some(held) = held {
            held.release().await;
        }
        leader.finish(value.clone());
        if stored? == Some(true) {
            local.keep(&value, token, bytes.len());
        }
        Ok((value, Served::Loaded))
    }

    /// A load that fills nothing (a snapshot transaction, a timed-out flight, a type clash).
    async fn load_alone<T, E, F, Fut>(
        &self,
        target: Target<'_>,
        mut loader: Loader<F>,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let loaded = loader.load().await?;
        self.read_event(target, Outcome::Miss);
        Ok(loaded)
    }

    /// Step 2: a decoded hit, or the token of the stamps read for a miss; `None` when the
    /// store failed and the cache degrades.
    async fn fetch<T>(&self, target: Target<'_>, plan: &Plan) -> Result<Option<Fetched<T>>, Error>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let Some(found) = self.call("fetch", |s| s.fetch(plan)).await? else {
            return Ok(None);
        };
        let bytes = match found {
            Fetch::Miss(t) => return Ok(Some(Fetched::Miss(t))),
            Fetch::Hit(bytes, token) => match typed::decode::<C, T>(bytes.payload()) {
                Ok(v) => {
                    self.read_event(target, Outcome::Hit);
                    let weight = bytes.payload().len();
                    return Ok(Some(Fetched::Hit(Arc::new(v), token, weight)));
                }
                Err(e) => {
                    self.undecoded(&plan.entry, e)?;
                    bytes
                }
            },
            Fetch::Stale(bytes) => match typed::decode::<C, T>(bytes.payload()) {
                Ok(v) => return Ok(Some(Fetched::Stale(Arc::new(v)))),
                Err(_) => bytes,
            },
        };
        // Undecodable: a plain miss, under freshly read stamps.
        drop(bytes);
        let token = self.call("fetch", |s| s.prepare(plan)).await?;
        Ok(token.map(Fetched::Miss))
    }

    /// Waits for another caller's loader: blocking the thread, or yielding to the runtime.
    async fn wait_flight<V: Clone>(&self, flight: &Flight<V>) -> Waited<V> {
        #[cfg(feature = "tokio")]
        if self.shared.asynch {
            return flight.wait_async(self.shared.flight_timeout).await;
        }
        flight.wait(self.shared.flight_timeout)
    }
}
