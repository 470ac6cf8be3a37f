//! The one place that chooses synchronisation primitives: std atomics and parking_lot
//! normally, loom's models under `--cfg loom` (see `loom-tests/`). Every module takes its
//! locks and atomics from here, never from std, parking_lot or tokio directly. (`Arc` is
//! std's everywhere but in the modelled modules, which take loom's from here too.)

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

/// A mutex held across `.await` (replays serialise on it); tokio's, which works under any
/// executor, the blocking front end's included. Not modelled under loom.
#[cfg(not(loom))]
pub(crate) type AsyncMutex<T> = tokio::sync::Mutex<T>;
/// The guard of [`AsyncMutex`].
#[cfg(not(loom))]
pub(crate) type AsyncMutexGuard<'a, T> = tokio::sync::MutexGuard<'a, T>;

/// Wakes async waiters (tokio's; not modelled under loom, where waits are blocking).
#[cfg(all(feature = "tokio", not(loom)))]
pub(crate) type Notify = tokio::sync::Notify;

/// A mutex whose `lock` returns the guard directly (parking_lot's interface).
#[cfg(not(loom))]
pub(crate) type Mutex<T> = parking_lot::Mutex<T>;

/// A read-mostly lock for process-wide statics (parking_lot's; never modelled: loom
/// cannot hold statics, and what such statics guard is no part of a model).
pub(crate) type StaticRwLock<T> = parking_lot::RwLock<T>;

/// A mutex whose `lock` returns the guard directly (parking_lot's interface).
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(v: T) -> Self {
        Mutex(loom::sync::Mutex::new(v))
    }
    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        // A poisoned lock means a model thread panicked: the model has failed already.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The guard of [`Mutex`].
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
/// The guard of [`Mutex`].
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

/// A condition variable with a by-value, timed wait (the same interface under loom).
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct Condvar(parking_lot::Condvar);

#[cfg(not(loom))]
impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(parking_lot::Condvar::new())
    }
    /// Waits until notified or `timeout` passes; returns the guard and whether it timed out.
    pub(crate) fn wait_for<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let timed_out = self.0.wait_for(&mut guard, timeout).timed_out();
        (guard, timed_out)
    }
    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// A condition variable with a by-value, timed wait (the same interface under loom).
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Condvar(loom::sync::Condvar);

#[cfg(loom)]
impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(loom::sync::Condvar::new())
    }
    /// loom explores wake-ups, not time: the wait has no timeout, so a lost wake-up shows
    /// up as a deadlock in the model.
    pub(crate) fn wait_for<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        _timeout: std::time::Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        (self.0.wait(guard).unwrap_or_else(|e| e.into_inner()), false)
    }
    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}
