//! The applied position in Redis: the consumer publishes it after each applied batch; any
//! process sharing the Redis reads it and waits for it (read your writes across processes).
//!
//! One key per slot, `<prefix>sc<v>.<l>:x:{cdc}:applied:<slot>`, holding the position as
//! PostgreSQL writes it (`16/B374D848`). It is written only after the invalidations of every
//! transaction up to that position reached Redis, so a process that sees it reach a
//! position sees those invalidations too. It also marks the slot as *set up*: a consumer
//! deletes it before creating its slot, and writes it only after the new slot's
//! invalidation of every published table; a consumer that starts on an existing slot and
//! finds no key (a crash in between, an eviction, a `FLUSHDB`) invalidates every published
//! table again. Losing the key costs misses, never a stale read.

use std::time::{Duration, Instant};

use super::Lsn;
use crate::codec::Codec;
use crate::core::Core;
use crate::{Cache, Error};

/// How long the key lives without a new publication (refreshed on every one). A consumer
/// away for longer invalidates every published table when it returns.
pub(crate) const KEY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The first and the longest pause between two reads of the key while waiting.
const POLL_MIN: Duration = Duration::from_micros(500);
const POLL_MAX: Duration = Duration::from_millis(20);

/// Reads the published position (`None` when there is none).
pub(crate) async fn read<C: Codec>(core: &Core<C>, slot: &str) -> Result<Option<Lsn>, Error> {
    let key = core.cdc_applied_key(slot);
    let got = core.call("cdc_applied", |s| s.get(&key)).await?;
    let Some(found) = got else {
        return Err(Error::Unavailable(
            "reading the consumer's applied position failed (see the StoreFailed event)".into(),
        ));
    };
    let Some(bytes) = found else {
        return Ok(None);
    };
    // Anything but a position (another writer's key): as if none was published.
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse::<Lsn>().ok()))
}

/// Publishes `lsn` as applied (only after its invalidations reached the store).
pub(crate) async fn write<C: Codec>(core: &Core<C>, slot: &str, lsn: Lsn) -> Result<(), Error> {
    let key = core.cdc_applied_key(slot);
    let value = lsn.to_string();
    match core
        .call("cdc_applied", |s| s.set(&key, value.as_bytes(), KEY_TTL))
        .await?
    {
        Some(()) => Ok(()),
        None => Err(Error::Unavailable(
            "publishing the applied position failed (see the StoreFailed event)".into(),
        )),
    }
}

/// Deletes the published position (before a new slot is created).
pub(crate) async fn forget<C: Codec>(core: &Core<C>, slot: &str) -> Result<(), Error> {
    let key = core.cdc_applied_key(slot);
    let keys = [key];
    match core.call("cdc_applied", |s| s.delete(&keys)).await? {
        Some(_) => Ok(()),
        None => Err(Error::Unavailable(
            "deleting the applied position failed (see the StoreFailed event)".into(),
        )),
    }
}

/// The position the consumer of `slot` (in any process sharing this cache's Redis, with the
/// same prefix and version) last published as applied: every transaction committed at or
/// before it has invalidated the cache. `None` when none is published (no consumer yet, or
/// the key was lost).
pub fn published_lsn<C: Codec>(cache: &Cache<C>, slot: &str) -> Result<Option<Lsn>, Error> {
    crate::block::block_on(read(cache.core(), slot))
}

/// Waits, up to `timeout`, until the consumer of `slot` (in any process sharing this cache's
/// Redis) has published `lsn` as applied: read your writes without a consumer handle. Pass
/// `SELECT pg_current_wal_lsn()` read after your commit. `Ok(false)` on timeout; an error
/// when Redis cannot be read. The cache needs the consumer's prefix and version, and the
/// slot's name must be unique among the databases whose consumers share that Redis and
/// prefix (positions of two servers do not compare).
///
/// ```no_run
/// # fn f(cache: &stampcache::Cache, lsn: stampcache::cdc::Lsn) -> Result<(), stampcache::Error> {
/// use std::time::Duration;
/// if stampcache::cdc::wait_published(cache, "stampcache", lsn, Duration::from_secs(1))? {
///     // every read from here on sees the write
/// }
/// # Ok(()) }
/// ```
pub fn wait_published<C: Codec>(
    cache: &Cache<C>,
    slot: &str,
    lsn: Lsn,
    timeout: Duration,
) -> Result<bool, Error> {
    let deadline = Instant::now() + timeout;
    let mut pause = POLL_MIN;
    loop {
        if published_lsn(cache, slot)?.is_some_and(|p| p >= lsn) {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// [`published_lsn`] for an [`AsyncCache`](crate::AsyncCache).
#[cfg(feature = "tokio")]
pub async fn published_lsn_async<C: Codec>(
    cache: &crate::AsyncCache<C>,
    slot: &str,
) -> Result<Option<Lsn>, Error> {
    read(cache.core(), slot).await
}

/// [`wait_published`] for an [`AsyncCache`](crate::AsyncCache), without blocking the
/// runtime.
#[cfg(feature = "tokio")]
pub async fn wait_published_async<C: Codec>(
    cache: &crate::AsyncCache<C>,
    slot: &str,
    lsn: Lsn,
    timeout: Duration,
) -> Result<bool, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = POLL_MIN;
    loop {
        if read(cache.core(), slot).await?.is_some_and(|p| p >= lsn) {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}
