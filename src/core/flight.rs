//! In-process single flight: concurrent misses of one entry wait for one loader.
//!
//! A flight is keyed by the entry *and* the stamps its caller read before loading (the
//! token): a caller only shares a loader whose stamps it read too, so a value loaded
//! before an invalidation is never handed to a caller that started after it.
//!
//! The leader holds a [`Leader`] guard. Finishing it publishes the value; dropping it
//! unfinished (an error or a panic of the loader) marks the flight failed. Either way every
//! follower is woken and the flight leaves the map. Followers wait at most a timeout, so
//! nobody waits forever even if a leader hangs.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::sync::{Arc, Condvar, Mutex};

enum State<V> {
    Running,
    Done(V),
    Failed,
}

/// One loader in progress.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    /// Wakes blocking followers.
    cv: Condvar,
    /// Wakes async followers (tasks must not block a runtime thread on `cv`).
    #[cfg(all(feature = "tokio", not(loom)))]
    notify: crate::sync::Notify,
}

/// What a follower got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited<V> {
    /// The leader's value.
    Done(V),
    /// The leader failed: retry (or fail, as configured).
    Failed,
    /// The leader took longer than the timeout.
    TimedOut,
}

/// The flights of one cache.
pub(crate) struct Flights<K, V> {
    map: Arc<Mutex<HashMap<K, Arc<Flight<V>>>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// Joining a flight: lead it, or follow the one in progress.
pub(crate) enum Join<K: Hash + Eq + Clone, V: Clone> {
    /// Run the loader, then [`Leader::finish`].
    Leader(Leader<K, V>),
    /// Wait for the leader with [`Flight::wait`].
    Follower(Arc<Flight<V>>),
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// Leads the flight of `key`, or follows the one in progress.
    pub fn join(&self, key: K) -> Join<K, V> {
        let mut map = self.map.lock();
        if let Some(f) = map.get(&key) {
            return Join::Follower(f.clone());
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(State::Running),
            cv: Condvar::new(),
            #[cfg(all(feature = "tokio", not(loom)))]
            notify: crate::sync::Notify::new(),
        });
        map.insert(key.clone(), flight.clone());
        Join::Leader(Leader {
            key,
            flight,
            map: self.map.clone(),
            done: false,
        })
    }

    /// Flights in progress (for tests).
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// The leader's duty: finish the flight, or fail it by dropping this.
pub(crate) struct Leader<K: Hash + Eq + Clone, V: Clone> {
    key: K,
    flight: Arc<Flight<V>>,
    map: Arc<Mutex<HashMap<K, Arc<Flight<V>>>>>,
    done: bool,
}

impl<K: Hash + Eq + Clone, V: Clone> Leader<K, V> {
    /// Publishes the value to every follower.
    pub fn finish(mut self, value: V) {
        self.end(State::Done(value));
    }

    fn end(&mut self, outcome: State<V>) {
        self.done = true;
        // Out of the map first: a caller arriving now starts a new flight rather than
        // following one that has ended.
        {
            let mut map = self.map.lock();
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        *self.flight.state.lock() = outcome;
        self.flight.cv.notify_all();
        #[cfg(all(feature = "tokio", not(loom)))]
        self.flight.notify.notify_waiters();
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leader<K, V> {
    fn drop(&mut self) {
        if !self.done {
            self.end(State::Failed);
        }
    }
}

impl<V: Clone> Flight<V> {
    /// Waits for the leader, at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> Waited<V> {
        let mut st = self.state.lock();
        loop {
            match &*st {
                State::Done(v) => return Waited::Done(v.clone()),
                State::Failed => return Waited::Failed,
                State::Running => {}
            }
            let (guard, timed_out) = self.cv.wait_for(st, timeout);
            st = guard;
            if timed_out {
                if let State::Running = &*st {
                    return Waited::TimedOut;
                }
            }
        }
    }
}

#[cfg(all(feature = "tokio", not(loom)))]
impl<V: Clone> Flight<V> {
    /// What the flight ended with, if it has.
    fn outcome(&self) -> Option<Waited<V>> {
        match &*self.state.lock() {
            State::Done(v) => Some(Waited::Done(v.clone())),
            State::Failed => Some(Waited::Failed),
            State::Running => None,
        }
    }

    /// [`wait`](Flight::wait) for tasks: yields instead of blocking the thread. The leader
    /// need not be polled for this to end: finishing or dropping its guard wakes it.
    pub async fn wait_async(&self, timeout: Duration) -> Waited<V> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the state is read, so an end in between still wakes us.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.outcome().unwrap_or(Waited::TimedOut);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn one_leader_and_every_follower_gets_its_value() {
        let flights: Arc<Flights<u8, u32>> = Arc::default();
        let Join::Leader(leader) = flights.join(1) else {
            panic!("the first caller leads")
        };
        let followers: Vec<_> = (0..4)
            .map(|_| {
                let f = flights.clone();
                thread::spawn(move || match f.join(1) {
                    Join::Follower(fl) => fl.wait(Duration::from_secs(5)),
                    Join::Leader(_) => panic!("two leaders"),
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(20));
        leader.finish(7);
        for f in followers {
            assert_eq!(f.join().unwrap(), Waited::Done(7));
        }
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_dropped_leader_fails_the_flight() {
        let flights: Flights<u8, u32> = Flights::default();
        let Join::Leader(leader) = flights.join(1) else {
            panic!()
        };
        let Join::Follower(f) = flights.join(1) else {
            panic!()
        };
        drop(leader);
        assert_eq!(f.wait(Duration::from_secs(1)), Waited::Failed);
        assert!(
            matches!(flights.join(1), Join::Leader(_)),
            "a new flight starts"
        );
    }

    #[test]
    fn followers_stop_waiting_at_the_timeout() {
        let flights: Flights<u8, u32> = Flights::default();
        let _leader = flights.join(1);
        let Join::Follower(f) = flights.join(1) else {
            panic!()
        };
        assert_eq!(f.wait(Duration::from_millis(30)), Waited::TimedOut);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_followers_wake_when_the_leader_ends_or_is_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let flights: Flights<u8, u32> = Flights::default();
            let Join::Leader(leader) = flights.join(1) else {
                panic!()
            };
            let Join::Follower(f) = flights.join(1) else {
                panic!()
            };
            // The leader is never polled: it is a guard, dropped by another task.
            let t = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(leader);
            });
            // The longest wait a cache allows (ten years) is no panic for tokio's timer.
            let ten_years = Duration::from_secs(10 * 365 * 24 * 3600);
            assert_eq!(f.wait_async(ten_years).await, Waited::Failed);
            t.await.unwrap();
            let _leader = flights.join(2);
            let Join::Follower(f) = flights.join(2) else {
                panic!()
            };
            assert_eq!(
                f.wait_async(Duration::from_millis(20)).await,
                Waited::TimedOut
            );
        });
    }
}
