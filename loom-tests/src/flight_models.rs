//! Models of the in-process single flight (src/flight.rs): one loader, every waiter woken,
//! a failed loader hands over, nobody left behind.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

use crate::flight::{Flights, Join, Waited};

/// A caller: leads and loads (counting loads), or waits; retries once after a failure.
fn call(flights: &Flights<u8, u32>, loads: &AtomicUsize, fail_first: bool) -> Option<u32> {
    for _ in 0..2 {
        match flights.join(1) {
            Join::Leader(leader) => {
                let n = loads.fetch_add(1, Ordering::SeqCst);
                if fail_first && n == 0 {
                    drop(leader); // the loader failed
                    return None;
                }
                leader.finish(7);
                return Some(7);
            }
            Join::Follower(f) => match f.wait(Duration::from_secs(1)) {
                Waited::Done(v) => return Some(v),
                Waited::Failed => continue,
                Waited::TimedOut => unreachable!("loom waits have no timeout"),
            },
        }
    }
    None
}

#[test]
fn one_loader_and_every_waiter_woken() {
    loom::model(|| {
        let flights = Arc::new(Flights::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let (f, l) = (flights.clone(), loads.clone());
        let other = thread::spawn(move || call(&f, &l, false));
        let mine = call(&flights, &loads, false);
        let theirs = other.join().unwrap();
        assert_eq!((mine, theirs), (Some(7), Some(7)));
        // Two loads only if the second caller came after the first flight ended.
        assert!(loads.load(Ordering::SeqCst) >= 1);
        assert_eq!(flights.len(), 0, "a flight was left behind");
    });
}

#[test]
fn a_failed_loader_hands_over_and_nobody_hangs() {
    loom::model(|| {
        let flights = Arc::new(Flights::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let (f, l) = (flights.clone(), loads.clone());
        let other = thread::spawn(move || call(&f, &l, true));
        let mine = call(&flights, &loads, true);
        let theirs = other.join().unwrap();
        // The first loader failed; whoever retried (or came later) loaded and shared.
        let answers = [mine, theirs];
        assert_eq!(
            answers.iter().filter(|a| a.is_none()).count(),
            1,
            "{answers:?}"
        );
        assert!(answers.contains(&Some(7)));
        assert_eq!(flights.len(), 0, "a flight was left behind");
    });
}
