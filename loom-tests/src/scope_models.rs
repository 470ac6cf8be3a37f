//! Models of `atomic()` scopes (src/scope/chain.rs): savepoints released or rolled back
//! while another thread reads the parent, the queued-invalidation hand-off at commit, and
//! a commit's promotion racing another scope's invalidation.

use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::chain::{Found, Kill, Layer};

/// A kill that matches entries equal to its value.
#[derive(Clone)]
struct Kills(u32);
impl Kill<u32> for Kills {
    fn kills(&self, e: &u32) -> bool {
        *e == self.0
    }
}

type L = Layer<u8, u32, Kills, u32>;

#[test]
fn readers_of_the_parent_see_a_release_whole_or_not_at_all() {
    loom::model(|| {
        let root = L::root();
        root.insert(1, 10);
        let sp = L::child(&root).unwrap();
        sp.record(Some("t"), Kills(10), 7).unwrap();
        sp.insert(1, 20);

        let r = root.clone();
        let reader = thread::spawn(move || r.lookup(&1));
        sp.release().unwrap();
        let seen = reader.join().unwrap();
        assert!(
            seen == Found::Entry(10) || seen == Found::Entry(20),
            "a reader saw {seen:?}: a release half done"
        );
        assert_eq!(root.lookup(&1), Found::Entry(20));
        assert_eq!(root.commit().unwrap().0, vec![7]);
    });
}

#[test]
fn readers_of_the_parent_never_see_a_rolled_back_savepoint() {
    loom::model(|| {
        let root = L::root();
        root.insert(1, 10);
        let sp = L::child(&root).unwrap();
        let s = sp.clone();
        let writer = thread::spawn(move || {
            s.record(Some("t"), Kills(10), 7).ok();
            s.insert(1, 20);
            s.rollback();
        });
        assert_eq!(root.lookup(&1), Found::Entry(10));
        writer.join().unwrap();
        assert_eq!(root.lookup(&1), Found::Entry(10));
        assert!(!root.written(&["t"]));
        assert_eq!(
            root.commit().unwrap().0,
            Vec::<u32>::new(),
            "a rolled back item ran"
        );
    });
}

#[test]
fn every_queued_invalidation_runs_exactly_once_across_a_commit() {
    loom::model(|| {
        let root = L::root();
        let sp = L::child(&root).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));

        // Another thread records into the root and releases a savepoint into it, while
        // this one commits. What a finished layer refuses, its caller runs at once.
        let (r, s, ran2) = (root.clone(), sp.clone(), ran.clone());
        let other = thread::spawn(move || {
            if r.record(None, Kills(0), 1).is_err() {
                ran2.fetch_add(1, Ordering::SeqCst);
            }
            s.record(None, Kills(0), 2).ok();
            let late = s.release().unwrap();
            ran2.fetch_add(late.len(), Ordering::SeqCst);
        });
        let committed = root.commit().unwrap().0;
        ran.fetch_add(committed.len(), Ordering::SeqCst);
        other.join().unwrap();
        // The savepoint's record always succeeds (it is open until released).
        assert_eq!(
            ran.load(Ordering::SeqCst),
            2,
            "an invalidation was lost or doubled"
        );
    });
}

#[test]
fn a_promotion_racing_another_invalidation_never_stores_a_stale_value() {
    loom::model(|| {
        // "Redis": the stamp, and the shared entry (token, value) STORE writes only if the
        // token is the current stamp (the script is atomic: one lock).
        let redis = Arc::new(Mutex::new((1u64, None::<(u64, u64)>)));
        let db = Arc::new(AtomicU64::new(1));

        let scope = L::root();
        // Scope A reads its stamp, then loads, then keeps the value in its overlay.
        let token = redis.lock().unwrap().0;
        let value = db.load(Ordering::SeqCst) as u32;
        scope.insert(1, value);

        // Scope B commits a write: database first, then the invalidation (new stamp).
        let (r, d) = (redis.clone(), db.clone());
        let other = thread::spawn(move || {
            d.store(2, Ordering::SeqCst);
            r.lock().unwrap().0 = 2;
        });

        // A commits: promotion.
        let (_, overlay) = scope.commit().unwrap();
        {
            let mut redis = redis.lock().unwrap();
            if redis.0 == token {
                redis.1 = Some((token, u64::from(overlay[&1])));
            }
        }
        other.join().unwrap();
        let redis = redis.lock().unwrap();
        if let Some((t, v)) = redis.1 {
            if t == redis.0 {
                assert_eq!(
                    v,
                    db.load(Ordering::SeqCst),
                    "a valid shared entry is stale"
                );
            }
        }
    });
}
