//! Stores: where stamps and entries live. [`redis`] is the shared tier; [`embedded`] has the
//! same semantics in one process. [`Store`] is either; everything above it is shared.
//!
//! The protocol, for one read:
//! 1. `fetch(plan)`: the entry if every stamp in `plan` still matches the checksum it
//!    was stored with; otherwise the current stamps are read (created where absent) and
//!    returned as a [`Token`]. This happens *before* the loader runs. `prepare(plan)` does
//!    only the second half (script `PREPARE`).
//! 2. the loader runs;
//! 3. `store(plan, token, payload)`: stores the payload tagged with the token, unless the
//!    stamps changed meanwhile. Even if stored, a later change of any stamp kills it.

pub mod embedded;
pub mod redis;

use std::time::Duration;

use crate::error::Error;
use crate::keys::TableKeys;
pub(crate) use crate::plan::Plan;

/// The checksum of the stamps read before a loader ran, and when they were read: the
/// store's clock in milliseconds (Redis `TIME`; 0 for the token of a hit, which is never
/// stored again). `STORE` refuses a token older than the scheme lifetime: only until then
/// is it sure that no invalidation dropped the schemes its entry depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token(pub Sum, pub u64);

/// A checksum of stamps, held inline (at most 40 ASCII bytes: SHA-1 hex on Redis, 32 hex
/// digits embedded), so taking one from a hit allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Sum {
    len: u8,
    bytes: [u8; 40],
}

impl Sum {
    /// `b` as a checksum: `None` if longer than 40 bytes or not ASCII.
    pub fn new(b: &[u8]) -> Option<Sum> {
        if b.len() > 40 || !b.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 40];
        bytes[..b.len()].copy_from_slice(b);
        Some(Sum {
            len: b.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// A marker that is no checksum (non-hex), for flights that are not keyed by stamps.
    pub fn marker(name: &str) -> Sum {
        Sum::new(name.as_bytes()).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        // ASCII by construction.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl Default for Sum {
    fn default() -> Sum {
        Sum {
            len: 0,
            bytes: [0; 40],
        }
    }
}

impl std::fmt::Debug for Sum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Bytes of a hit, owned (from Redis, payload after a header) or shared (embedded).
#[derive(Debug)]
pub(crate) enum HitBytes {
    Owned { buf: Vec<u8>, start: usize },
    Shared(std::sync::Arc<[u8]>),
}

impl HitBytes {
    pub fn payload(&self) -> &[u8] {
        match self {
            HitBytes::Owned { buf, start } => &buf[*start..],
            HitBytes::Shared(b) => b,
        }
    }
}

/// The answer of [`Store::fetch`].
#[derive(Debug)]
pub(crate) enum Fetch {
    /// A valid entry, and the checksum it was stored with.
    Hit(HitBytes, Token),
    /// No valid entry; the stamps to store a fresh one under.
    Miss(Token),
    /// No valid entry, but one that was valid until stamps died within the plan's stale
    /// grace (only for plans with `stale`).
    Stale(HitBytes),
}

/// A row image ready for invalidation: (escaped field, encoded value) pairs.
pub(crate) type EncodedRow = Vec<(String, String)>;

/// What an invalidation of rows did.
#[derive(Debug, Default)]
pub(crate) struct RowsInvalidated {
    /// The stamp keys it deleted (whether or not they existed).
    pub deleted: Vec<String>,
    /// The schemes some row could not name, so the whole table went instead.
    pub widened: Vec<Widening>,
    /// Fields whose row values are of another kind than some read's condition (another
    /// process's read: the store learnt it from the scheme set).
    pub clashes: Vec<KindClash>,
}

/// A written row's value and a cached read's condition on one field, of kinds that never
/// match (text against a number, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KindClash {
    /// The table.
    pub table: String,
    /// The field (unescaped).
    pub field: String,
    /// The kind the condition compares the field with.
    pub condition: crate::value::Kind,
    /// The kind the row's value has.
    pub row: crate::value::Kind,
}

/// A scheme (the fields of a cached read's conjunction) that rows of a table lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Widening {
    /// The table.
    pub table: String,
    /// The table's scheme set key.
    pub set: String,
    /// The scheme, as stored: escaped fields joined by `&`.
    pub scheme: String,
    /// The scheme's fields some row lacked (escaped), in order.
    pub missing: Vec<String>,
}

/// Collects widenings, one per (table, scheme), their missing fields merged.
pub(crate) fn merge_widening(all: &mut Vec<Widening>, t: &TableKeys, scheme: &str, missing: &str) {
    let i = match all
        .iter()
        .position(|w| w.set == t.schemes && w.scheme == scheme)
    {
        Some(i) => i,
        None => {
            all.push(Widening {
                table: t.table.clone(),
                set: t.schemes.clone(),
                scheme: scheme.to_owned(),
                missing: Vec::new(),
            });
            all.len() - 1
        }
    };
    let w = &mut all[i];
    for f in missing.split('&') {
        if !w.missing.iter().any(|m| m == f) {
            w.missing.push(f.to_owned());
        }
    }
    // In the scheme's order, whatever order rows reported them in.
    let order: Vec<&str> = w.scheme.split('&').collect();
    w.missing
        .sort_by_key(|m| order.iter().position(|f| f == m).unwrap_or(usize::MAX));
}

/// The store of a cache: which one, and how it is reached. Every operation is `async`;
/// the blocking front end drives them with [`block_on`](crate::block::block_on), which
/// finishes at once since its stores never wait on a future (they block the thread).
pub(crate) enum Store {
    /// In process.
    Embedded(embedded::EmbeddedStore),
    /// Redis, through a pool of blocking connections.
    Blocking(redis::RedisStore<redis::Pool>),
    /// Redis, through one multiplexed async connection.
    #[cfg(feature = "tokio")]
    Async(redis::RedisStore<redis::Multiplexed>),
}

/// Runs the same operation on whichever store this is.
macro_rules! each_store {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Embedded($s) => $call,
            Store::Blocking($s) => $call.await,
            #[cfg(feature = "tokio")]
            Store::Async($s) => $call.await,
        }
    };
}

impl Store {
    /// Step 1 of a read: the valid entry, or the current stamps (created where absent, and
    /// the plan's schemes registered).
    pub async fn fetch(&self, plan: &Plan) -> Result<Fetch, Error> {
        each_store!(self, s => s.fetch(plan, true))
    }
    /// `PREPARE` alone: the current stamps (created where absent, schemes registered),
    /// without looking at the entry.
    pub async fn prepare(&self, plan: &Plan) -> Result<Token, Error> {
        match each_store!(self, s => s.fetch(plan, false))? {
            Fetch::Miss(token) => Ok(token),
            Fetch::Hit(..) | Fetch::Stale(_) => {
                Err(Error::Protocol("PREPARE answered with an entry".into()))
            }
        }
    }
    /// Step 3 of a read: stores `payload` if the stamps still match `token`.
    pub async fn store(&self, plan: &Plan, token: &Token, payload: &[u8]) -> Result<bool, Error> {
        each_store!(self, s => s.store(plan, token, payload))
    }
    /// Whether the stamps still match `token` (a local entry's confirmation).
    pub async fn confirm(
        &self,
        stamps: &[std::sync::Arc<str>],
        token: &Token,
    ) -> Result<bool, Error> {
        each_store!(self, s => s.confirm(stamps, token))
    }
    /// Deletes the stamps of every conjunction the rows match, per table, in one call.
    /// Returns the stamp keys it deleted (whether or not they existed), and the schemes a
    /// row lacked fields of (its table's generation went instead).
    pub async fn invalidate_rows(
        &self,
        batches: &[(TableKeys, Vec<EncodedRow>)],
    ) -> Result<RowsInvalidated, Error> {
        each_store!(self, s => s.invalidate_rows(batches))
    }
    /// Deletes generation stamps: every entry of those tables dies.
    pub async fn invalidate_tables(&self, gens: &[String]) -> Result<(), Error> {
        each_store!(self, s => s.invalidate_tables(gens))
    }
    /// Deletes every key matching the pattern (`KeySpace::scan_pattern`), scheme sets
    /// included (losing a set costs misses, never staleness: see `PREPARE`).
    pub async fn invalidate_all(&self, pattern: &str) -> Result<(), Error> {
        each_store!(self, s => s.invalidate_all(pattern))
    }
    /// Takes the entry's loader lock for `owner` if free (`SET NX PX`).
    pub async fn try_lock(&self, plan: &Plan, owner: &str, ttl: Duration) -> Result<bool, Error> {
        each_store!(self, s => s.try_lock(plan, owner, ttl))
    }
    /// Releases the lock if `owner` still holds it, and wakes the waiters.
    pub async fn unlock(&self, plan: &Plan, owner: &str, ttl: Duration) -> Result<(), Error> {
        each_store!(self, s => s.unlock(plan, owner, ttl))
    }
    /// Waits until the lock's holder wakes the waiters, or `wait` passes.
    pub async fn wait_unlock(&self, plan: &Plan, wait: Duration) -> Result<(), Error> {
        each_store!(self, s => s.wait_unlock(plan, wait))
    }
    /// Simple cache: raw get.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        each_store!(self, s => s.get(key))
    }
    /// Simple cache: raw set with a lifetime.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Error> {
        each_store!(self, s => s.set(key, value, ttl))
    }
    /// Simple cache: delete; true if something was deleted.
    pub async fn delete(&self, keys: &[String]) -> Result<bool, Error> {
        each_store!(self, s => s.delete(keys))
    }

    /// Releases a lock from a destructor, where nothing can be awaited: at once on
    /// blocking stores, on a spawned task on the async one (a dropped read future). If
    /// that cannot run, the lock's expiry releases it.
    pub fn unlock_detached(
        &self,
        plan: std::sync::Arc<Plan>,
        owner: String,
        ttl: Duration,
    ) -> Result<(), Error> {
        match self {
            Store::Embedded(s) => s.unlock(&plan, &owner, ttl),
            Store::Blocking(s) => crate::block::block_on(s.unlock(&plan, &owner, ttl)),
            #[cfg(feature = "tokio")]
            Store::Async(s) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let s = s.clone();
                    rt.spawn(async move { s.unlock(&plan, &owner, ttl).await });
                }
                Ok(())
            }
        }
    }
}

/// Whether an entry stored under `checksum` was valid just before some of its stamps died:
/// each stamp is its current value or, if it was deleted within the grace, its last value
/// (`dead`); at least one must be a dead value. Bounded: stamps with two candidates past 8
/// make it give up (no stale answer, which is always safe).
pub(crate) fn was_valid_before_deaths<V: PartialEq + Copy>(
    checksum: impl Fn(&[V]) -> bool,
    current: &[Option<V>],
    dead: &[Option<V>],
) -> bool {
    let mut fixed: Vec<V> = Vec::with_capacity(current.len());
    let mut choices: Vec<(usize, V)> = Vec::new();
    for (i, (c, d)) in current.iter().zip(dead).enumerate() {
        match (c, d) {
            (Some(c), Some(d)) if c != d => {
                fixed.push(*c);
                choices.push((i, *d));
            }
            (Some(c), _) => fixed.push(*c),
            (None, Some(d)) => fixed.push(*d),
            (None, None) => return false,
        }
    }
    let forced_dead = current
        .iter()
        .zip(dead)
        .any(|(c, d)| c.is_none() && d.is_some());
    if choices.len() > 8 {
        return false;
    }
    for mask in 0u32..(1 << choices.len()) {
        if mask == 0 && !forced_dead {
            continue; // all current: that is a plain (invalid) check, not a stale one
        }
        let mut values = fixed.clone();
        for (bit, (i, d)) in choices.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                values[*i] = *d;
            }
        }
        if checksum(&values) {
            return true;
        }
    }
    false
}

/// Milliseconds for Redis `PX`, at least 1, at most what Redis accepts.
pub(crate) fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, (i64::MAX / 2) as u128) as u64
}

/// `now + d`, or a far but representable instant when that would overflow.
pub(crate) fn later(now: std::time::Instant, d: Duration) -> std::time::Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_is(target: u32) -> impl Fn(&[u32]) -> bool {
        move |v: &[u32]| v.iter().sum::<u32>() == target
    }

    #[test]
    fn stale_only_through_a_dead_value() {
        // Entry computed under stamps (1, 2): checksum "sum = 3" stands in for SHA-1.
        let check = sum_is(3);
        // Stamp 0 died (was 1) and was recreated as 5.
        assert!(was_valid_before_deaths(
            &check,
            &[Some(5), Some(2)],
            &[Some(1), None]
        ));
        // Stamp 0 died and is absent.
        assert!(was_valid_before_deaths(
            &check,
            &[None, Some(2)],
            &[Some(1), None]
        ));
        // It died twice: the marker holds the later value.
        assert!(!was_valid_before_deaths(
            &check,
            &[Some(5), Some(2)],
            &[Some(4), None]
        ));
        // No marker: the death is older than the grace.
        assert!(!was_valid_before_deaths(
            &check,
            &[Some(5), Some(2)],
            &[None, None]
        ));
        assert!(!was_valid_before_deaths(
            &check,
            &[None, Some(2)],
            &[None, None]
        ));
        // Still valid as it is: not a stale answer.
        assert!(!was_valid_before_deaths(
            &check,
            &[Some(1), Some(2)],
            &[None, None]
        ));
    }
}
