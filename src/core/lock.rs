//! Cross-process loader locks (a profile's `lock`): one process loads a missing entry, the
//! others wait to be woken (DESIGN.md, "Dog-pile prevention").

use std::sync::Arc;
use std::time::Instant;

use super::Core;
use crate::codec::Codec;
use crate::error::Error;
use crate::plan::Plan;
use crate::store::{later, Fetch, HitBytes, Token};

/// What the cross-process lock gave.
pub(super) enum Locked<'a, C: Codec> {
    /// This caller holds it.
    Owner(LockHeld<'a, C>),
    /// Another process filled the entry meanwhile.
    Filled(HitBytes, Token),
    /// Waited too long, or the store failed and the cache degrades: load without the lock.
    GaveUp,
}

/// A held lock. [`release`](LockHeld::release) it; dropping it instead (a loader's panic, a
/// cancelled future) releases it from the destructor, at once or on a spawned task (see
/// `Store::unlock_detached`).
pub(super) struct LockHeld<'a, C: Codec> {
    core: &'a Core<C>,
    plan: Arc<Plan>,
    owner: Option<String>,
}

impl<C: Codec> LockHeld<'_, C> {
    /// Releases the lock and wakes the waiters.
    pub async fn release(mut self) {
        // Disarmed only once the unlock has answered: dropped while it is in flight, the
        // destructor sends it again (unlocking twice is harmless).
        if let Some(owner) = self.owner.clone() {
            let (plan, ttl) = (&self.plan, self.core.shared.lock_ttl);
            // A failed unlock is reported; the lock expires by itself.
            let _ = self
                .core
                .call("unlock", |s| s.unlock(plan, &owner, ttl))
                .await;
            self.owner = None;
        }
    }
}

impl<C: Codec> Drop for LockHeld<'_, C> {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            let shared = &self.core.shared;
            if let Err(e) = shared
                .store
                .unlock_detached(self.plan.clone(), owner, shared.lock_ttl)
            {
                let _ = self.core.store_failed("unlock", e);
            }
        }
    }
}

/// A token no other lock holder uses (thread, time and a process-random seed).
fn lock_owner() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(format!("{:?}{:?}", std::thread::current().id(), Instant::now()).as_bytes());
    format!("{:016x}{}", h.finish(), std::process::id())
}

impl<C: Codec> Core<C> {
    /// Takes the lock of a miss, or waits for its holder to fill the entry. Gives up (and
    /// loads unlocked) after waiting twice the lock's lifetime.
    pub(super) async fn lock_or_wait(&self, plan: &Arc<Plan>) -> Result<Locked<'_, C>, Error> {
        let ttl = self.shared.lock_ttl;
        let deadline = later(Instant::now(), ttl.saturating_mul(2));
        loop {
            if let Some(held) = self.take_lock(plan).await? {
                // A holder may have filled it and unlocked just before: look once. (A
                // failure here is reported; this caller then loads as the owner.)
                if let Ok(Some(Fetch::Hit(hit, token))) =
                    self.call("fetch", |s| s.fetch(plan)).await
                {
                    held.release().await;
                    return Ok(Locked::Filled(hit, token));
                }
                return Ok(Locked::Owner(held));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Locked::GaveUp);
            }
            // Woken when the holder unlocks; at the latest when its lock may have expired.
            let wait = left.min(ttl);
            if self
                .call("lock wait", |s| s.wait_unlock(plan, wait))
                .await?
                .is_none()
            {
                return Ok(Locked::GaveUp);
            }
            match self.call("fetch", |s| s.fetch(plan)).await? {
                Some(Fetch::Hit(hit, token)) => return Ok(Locked::Filled(hit, token)),
                Some(Fetch::Miss(_) | Fetch::Stale(_)) => {}
                None => return Ok(Locked::GaveUp),
            }
        }
    }

    /// Tries to take the entry's lock: `None` when someone else holds it, or when the store
    /// failed and the cache degrades. The guard exists before the request is sent: a future
    /// dropped while `SET NX` is in flight (which may have succeeded) still releases it, and
    /// releasing a lock someone else holds does nothing.
    pub(super) async fn take_lock(
        &self,
        plan: &Arc<Plan>,
    ) -> Result<Option<LockHeld<'_, C>>, Error> {
        let owner = lock_owner();
        let mut held = LockHeld {
            core: self,
            plan: plan.clone(),
            owner: Some(owner.clone()),
        };
        let ttl = self.shared.lock_ttl;
        let taken = self.call("lock", |s| s.try_lock(plan, &owner, ttl)).await;
        if taken? != Some(true) {
            held.owner = None; // Not ours: nothing to release.
            return Ok(None);
        }
        Ok(Some(held))
    }
}
