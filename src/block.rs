//! Driving the shared async core from the blocking front end.
//!
//! The blocking stores do their I/O in the call, so the core's futures are ready on the
//! first poll and this costs one poll. Anything that does wait (a contended async lock,
//! say) wakes this thread through its waker.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Wakes the thread that is blocked in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static WAKER: Waker = Waker::from(Arc::new(Unpark(std::thread::current())));
}

/// Runs `f` to completion on this thread.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            // A bounded park: a spurious or lost wake-up costs a millisecond, not a hang.
            std::thread::park_timeout(Duration::from_millis(1));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_futures_and_woken_ones_complete() {
        assert_eq!(block_on(async { 1 + 1 }), 2);
        // A future woken from another thread.
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = flag.clone();
        let t = std::thread::spawn(move || {
            let w = rx.recv().unwrap();
            f2.store(true, std::sync::atomic::Ordering::SeqCst);
            w.wake();
        });
        let mut sent = Some(tx);
        let v = block_on(std::future::poll_fn(|cx| {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return Poll::Ready(7);
            }
            if let Some(tx) = sent.take() {
                tx.send(cx.waker().clone()).unwrap();
            }
            Poll::Pending
        }));
        assert_eq!(v, 7);
        t.join().unwrap();
    }
}
