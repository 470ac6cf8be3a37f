//! [`ConsumerHandle`]: the running consumer's status, applied position and stop.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::clock;
use super::Lsn;
use crate::sync::{AtomicU64, Ordering};

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
    /// Another session holds the slot (another consumer on the same slot): waiting, and
    /// taking over as soon as it is free. Nothing is applied meanwhile; the slot keeps
    /// everything from the last acknowledged position for whoever streams next.
    Standby {
        /// The server process holding the slot, when the server said.
        active_pid: Option<u32>,
    },
    /// Stopped (by [`ConsumerHandle::stop`] or by dropping the handle).
    Stopped,
}

/// State shared by the consumer's thread and its handle.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: tokio::sync::watch::Sender<bool>,
    /// The applied position again, for async waiters.
    applied: tokio::sync::watch::Sender<Lsn>,
    reconnects: AtomicU64,
    transactions: AtomicU64,
    rows: AtomicU64,
    tables: AtomicU64,
    apply_failures: AtomicU64,
    /// The newest WAL position the server reported.
    server: AtomicU64,
    /// The last applied commit's time (server clock), microseconds since the Unix epoch
    /// (0: none yet).
    commit_micros: AtomicU64,
    /// Its lag when applied, in microseconds.
    lag_micros: AtomicU64,
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
            stop: tokio::sync::watch::channel(false).0,
            applied: tokio::sync::watch::channel(Lsn::ZERO).0,
            reconnects: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            tables: AtomicU64::new(0),
            apply_failures: AtomicU64::new(0),
            server: AtomicU64::new(0),
            commit_micros: AtomicU64::new(0),
            lag_micros: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        self.lock().status.clone()
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
            self.applied.send_replace(lsn);
            self.changed.notify_all();
        }
    }

    /// The applied position.
    pub fn applied(&self) -> Lsn {
        self.lock().applied
    }

    /// A transaction committed at `committed` (server clock) was applied now.
    pub fn applied_commit(&self, committed: SystemTime) {
        let lag = clock::lag(committed, SystemTime::now());
        self.lag_micros.store(
            u64::try_from(lag.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.commit_micros
            .store(clock::unix_micros(committed), Ordering::Relaxed);
    }

    /// The server reported WAL up to `lsn`.
    pub fn server_at(&self, lsn: Lsn) {
        self.server.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// `transactions` transactions with `rows` row images and `tables` whole tables
    /// (together) were applied.
    pub fn applied_tx(&self, transactions: usize, rows: usize, tables: usize) {
        self.transactions
            .fetch_add(transactions as u64, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.tables.fetch_add(tables as u64, Ordering::Relaxed);
    }

    pub fn apply_failed(&self) {
        self.apply_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once a stop was requested (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    fn request_stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Counters since the consumer started; sample them for rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Transactions applied (those that invalidated something).
    pub transactions: u64,
    /// Row images applied (an update counts two).
    pub rows: u64,
    /// Whole tables invalidated (truncates, very large transactions, new slots).
    pub tables: u64,
    /// Failed attempts to apply (the cache's store unavailable).
    pub apply_failures: u64,
    /// Reconnects.
    pub reconnects: u64,
}

/// Where a consumer runs.
#[derive(Debug)]
pub(crate) enum Runner {
    /// A thread of its own (for the blocking `Cache`).
    Thread(JoinHandle<()>),
    /// A task on the application's tokio runtime (for `AsyncCache`).
    #[cfg(feature = "tokio")]
    Task(tokio::task::JoinHandle<()>),
}

/// A running consumer. Dropping it stops the consumer (and, on a thread, waits for it).
#[derive(Debug)]
pub struct ConsumerHandle {
    shared: Arc<Shared>,
    runner: Option<Runner>,
}

impl ConsumerHandle {
    pub(crate) fn new(shared: Arc<Shared>, runner: Runner) -> ConsumerHandle {
        ConsumerHandle {
            shared,
            runner: Some(runner),
        }
    }

    /// What the consumer is doing now.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Every transaction that committed at or before this position is applied to the
    /// cache (and acknowledged to the server). [`Lsn::ZERO`] until the first one.
    pub fn applied_lsn(&self) -> Lsn {
        self.shared.lock().applied
    }

    /// The newest WAL position the server reported (in changes and keepalives).
    pub fn server_lsn(&self) -> Lsn {
        Lsn(self.shared.server.load(Ordering::Relaxed))
    }

    /// How far applying is behind the server, in bytes of WAL (0 when caught up). The
    /// server reports its position at least every `wal_sender_timeout / 2` while idle.
    pub fn lag_bytes(&self) -> u64 {
        self.server_lsn().0.saturating_sub(self.applied_lsn().0)
    }

    /// When the last applied transaction committed (the server's clock); `None` until one
    /// was. While transactions flow, `SystemTime::now()` minus this is how far behind the
    /// cache is in time; when writes stop, it only ages.
    pub fn applied_commit_time(&self) -> Option<SystemTime> {
        match self.shared.commit_micros.load(Ordering::Relaxed) {
            0 => None,
            m => UNIX_EPOCH.checked_add(Duration::from_micros(m)),
        }
    }

    /// How long the last applied transaction took from its commit (the server's clock) to
    /// its invalidations applied (this machine's clock; zero if the clocks disagree that
    /// way); `None` until one was applied. Lag as time, beside
    /// [`lag_bytes`](Self::lag_bytes).
    pub fn last_apply_lag(&self) -> Option<Duration> {
        self.applied_commit_time()?;
        Some(Duration::from_micros(
            self.shared.lag_micros.load(Ordering::Relaxed),
        ))
    }

    /// Counters since the consumer started.
    pub fn stats(&self) -> ConsumerStats {
        let s = &self.shared;
        ConsumerStats {
            transactions: s.transactions.load(Ordering::Relaxed),
            rows: s.rows.load(Ordering::Relaxed),
            tables: s.tables.load(Ordering::Relaxed),
            apply_failures: s.apply_failures.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
        }
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

    /// [`wait_applied`](Self::wait_applied) without blocking the runtime.
    pub async fn applied(&self, lsn: Lsn, timeout: Duration) -> bool {
        let mut rx = self.shared.applied.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= lsn)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Stops the consumer; one on a thread ([`spawn`](super::ConsumerBuilder::spawn)) is
    /// waited for, one on a task is told to stop (await [`shutdown`](Self::shutdown) to
    /// wait for it). A transaction not yet applied is not acknowledged: a persistent slot
    /// sends it again on the next start.
    pub fn stop(mut self) {
        self.stop_now();
    }

    /// Stops the consumer and waits until it has stopped, without blocking the runtime.
    pub async fn shutdown(mut self) {
        self.shared.request_stop();
        match self.runner.take() {
            #[cfg(feature = "tokio")]
            Some(Runner::Task(task)) => {
                let _ = task.await;
            }
            Some(Runner::Thread(thread)) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            None => {}
        }
        self.shared.set_status(Status::Stopped);
    }

    fn stop_now(&mut self) {
        self.shared.request_stop();
        if let Some(Runner::Thread(thread)) = self.runner.take() {
            let _ = thread.join();
            self.shared.set_status(Status::Stopped);
        }
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}
