//! [`ConsumerHandle`]: the running consumer's status, applied position and stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Lsn;

/// What the consumer is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Connecting and checking the setup.
    Starting,
    /// Streaming: committed transactions are applied as they arrive.
    Streaming,
    /// A transaction could not be applied (the cache's store is unavailable): it is held,
    /// retried after a delay, and its position is not acknowledged.
    Holding {
        /// Failed attempts so far.
        attempt: u32,
        /// The last error.
        error: String,
    },
    /// The connection broke or setup failed; reconnecting after a delay.
    Reconnecting {
        /// Failed attempts in a row.
        attempt: u32,
        /// The last error.
        error: String,
    },
    /// Stopped (by [`ConsumerHandle::stop`] or by dropping the handle).
    Stopped,
}

/// State shared by the consumer's thread and its handle.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    pub(crate) wake: tokio::sync::Notify,
    reconnects: AtomicU64,
}

#[derive(Debug)]
struct State {
    status: Status,
    applied: Lsn,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State {
                status: Status::Starting,
                applied: Lsn::ZERO,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            reconnects: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_status(&self, status: Status) {
        self.lock().status = status;
        self.changed.notify_all();
    }

    /// Everything committed up to `lsn` is applied (never moves back).
    pub fn set_applied(&self, lsn: Lsn) {
        let mut s = self.lock();
        if lsn > s.applied {
            s.applied = lsn;
            drop(s);
            self.changed.notify_all();
        }
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// A running consumer. Dropping it stops the consumer (and waits for its thread).
#[derive(Debug)]
pub struct ConsumerHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ConsumerHandle {
    pub(crate) fn new(shared: Arc<Shared>, thread: JoinHandle<()>) -> ConsumerHandle {
        ConsumerHandle {
            shared,
            thread: Some(thread),
        }
    }

    /// What the consumer is doing now.
    pub fn status(&self) -> Status {
        self.shared.lock().status.clone()
    }

    /// Every transaction that committed at or before this position is applied to the
    /// cache (and acknowledged to the server). [`Lsn::ZERO`] until the first one.
    pub fn applied_lsn(&self) -> Lsn {
        self.shared.lock().applied
    }

    /// How many times the consumer reconnected.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Waits until every transaction committed at or before `lsn` is applied (read your
    /// writes: pass `SELECT pg_current_wal_lsn()` taken after your commit). False on
    /// timeout or when the consumer stopped first.
    pub fn wait_applied(&self, lsn: Lsn, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        loop {
            if s.applied >= lsn {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || s.status == Status::Stopped {
                return false;
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the consumer and waits for its thread. A transaction not yet applied is not
    /// acknowledged: a persistent slot sends it again on the next start.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.request_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.set_status(Status::Stopped);
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
