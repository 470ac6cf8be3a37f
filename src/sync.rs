//! The one place that chooses synchronisation primitives: std atomics and parking_lot
//! normally, loom's models under `--cfg loom` (see `loom-tests/`). Modules whose races are
//! modelled import from here, never from std or parking_lot directly.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

/// A mutex whose `lock` returns the guard directly (parking_lot's interface).
#[cfg(not(loom))]
pub(crate) type Mutex<T> = parking_lot::Mutex<T>;

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
