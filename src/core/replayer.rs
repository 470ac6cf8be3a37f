//! Queued invalidations go out without waiting for this process's next call: a background
//! replayer (a thread for the blocking front end, a task for the async one) starts when a
//! batch is queued and retries, with a bounded backoff, until the queue is empty; and the
//! last handle of a cache, dropped, sends what is still queued with a bounded wait.
//!
//! Why: while a writer's invalidations sit in its queue, other processes serve the entries
//! they would kill. An idle writer (or one that exits) must not extend that window past the
//! store's return.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::sync::{AtomicBool, Ordering};

/// The first pause between two attempts (it doubles up to the configured bound).
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The replayer's state in a cache's shared state.
pub(super) struct State {
    /// A replayer is running (at most one per cache).
    running: AtomicBool,
    /// The last handle is gone: a running replayer stops after its current attempt.
    closed: AtomicBool,
    /// The longest pause between attempts.
    backoff: Duration,
    /// How long the last handle's drop keeps trying.
    flush_on_drop: Duration,
}

impl State {
    pub fn new(backoff: Duration, flush_on_drop: Duration) -> State {
        State {
            running: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            backoff: backoff.max(FIRST_PAUSE),
            flush_on_drop,
        }
    }
}

/// Starts a replayer unless one runs (called after a batch was queued).
pub(super) fn start(shared: &Arc<Shared>) {
    let state = &shared.replayer;
    if state.closed.load(Ordering::Acquire) || state.running.swap(true, Ordering::AcqRel) {
        return;
    }
    let shared = shared.clone();
    #[cfg(feature = "tokio")]
    if let Some(rt) = shared.runtime.clone() {
        rt.spawn(async move {
            let mut pause = FIRST_PAUSE;
            loop {
                tokio::time::sleep(pause).await;
                match attempt(&shared).await {
                    Next::Stop => break,
                    Next::Again => pause = (pause * 2).min(shared.replayer.backoff),
                }
            }
        });
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("stampcache-replay".into())
        .spawn(move || {
            let mut pause = FIRST_PAUSE;
            loop {
                std::thread::sleep(pause);
                match crate::block::block_on(attempt(&shared)) {
                    Next::Stop => break,
                    Next::Again => pause = (pause * 2).min(shared.replayer.backoff),
                }
            }
        });
    if spawned.is_err() {
        // No thread: the queue is still replayed before this process's next store call.
        state.running.store(false, Ordering::Release);
    }
}

enum Next {
    Stop,
    Again,
}

/// One replay. Stops when the queue is empty or the cache closed; the `running` flag is
/// cleared and the queue checked again, so a batch queued meanwhile is not left behind.
async fn attempt(shared: &Arc<Shared>) -> Next {
    let state = &shared.replayer;
    let closed = state.closed.load(Ordering::Acquire);
    let done = closed || (shared.replay().await.is_ok() && !shared.queue.any());
    if !done {
        return Next::Again;
    }
    state.running.store(false, Ordering::Release);
    let again = !state.closed.load(Ordering::Acquire) && shared.queue.any();
    if again && !state.running.swap(true, Ordering::AcqRel) {
        return Next::Again;
    }
    Next::Stop
}

/// Held by every handle of a cache (not by background work); the last one dropped sends
/// what is still queued.
pub(super) struct LastHandle {
    shared: Arc<Shared>,
}

impl LastHandle {
    pub fn new(shared: &Arc<Shared>) -> Arc<LastHandle> {
        Arc::new(LastHandle {
            shared: shared.clone(),
        })
    }
}

impl Drop for LastHandle {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        shared.replayer.closed.store(true, Ordering::Release);
        if !shared.queue.any() {
            return;
        }
        let deadline = Instant::now() + shared.replayer.flush_on_drop;
        // On the async front end nothing may block here (a runtime thread, perhaps): the
        // flush runs as a task of its own, within the same bound.
        #[cfg(feature = "tokio")]
        if let Some(rt) = shared.runtime.clone() {
            rt.spawn(async move {
                while shared.replay().await.is_err() || shared.queue.any() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(FIRST_PAUSE).await;
                }
            });
            return;
        }
        while crate::block::block_on(shared.replay()).is_err() || shared.queue.any() {
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(FIRST_PAUSE);
        }
    }
}
