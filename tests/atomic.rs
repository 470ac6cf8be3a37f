//! `atomic()` scopes, against the embedded store and a real Redis, through both front ends,
//! counting loader calls.

mod common;

use std::sync::{Arc, Mutex};

use common::front::{BuildFor, TestCache as Cache};
use common::{Article, Backend, Loads};
use stampcache::{Cond, Error, Event, Isolation, Read};

crate::backend_suite!(
    [embedded => Embedded, redis => Redis, redis_local_strict => RedisStrict,
     async_embedded => AsyncEmbedded, async_redis => AsyncRedis, async_redis_local_strict => AsyncRedisStrict];
    reads_before_the_first_write_hit_the_shared_cache,
    a_scope_sees_its_own_write_while_others_get_the_cached_value,
    after_commit_everyone_sees_the_new_value,
    rollback_leaves_everything_cached_and_invalidates_nothing,
    savepoint_rollback_discards_its_writes,
    no_invalidation_inside_a_scope,
    nested_savepoints_three_deep,
    a_scope_dropped_by_a_panic_rolls_back,
    commit_promotes_only_entries_whose_stamps_are_current,
    repeatable_read_never_fills_the_shared_tiers,
    a_savepoint_released_after_its_root_committed_still_invalidates,
    a_finished_scope_refuses_reads,
    commit_batches_invalidations_into_one_call_per_kind,
    a_savepoint_of_a_released_savepoint_waits_for_the_root,
    a_savepoint_open_at_the_root_commit_is_committed_with_it,
    very_many_written_rows_collapse_to_whole_tables,
);

fn get(id: i64) -> Read {
    Read::get("blog.article").filter(Cond::eq("id", id))
}

fn list(c: i64) -> Read {
    Read::fetch("blog.article").filter(Cond::eq("category", c))
}

/// A cache whose invalidation events are counted.
fn counted(b: Backend, name: &str) -> (Cache, Arc<Mutex<usize>>) {
    let n = Arc::new(Mutex::new(0));
    let sink = n.clone();
    let cache = b
        .builder(name)
        .on_event(move |e| {
            if let Event::Invalidated(_) = e {
                *sink.lock().unwrap() += 1;
            }
        })
        .build_for(b)
        .unwrap();
    (cache, n)
}

fn title(cache: &Cache, id: i64, loads: &Loads, db: &str) -> String {
    cache
        .get_or_compute(&get(id), loads.of(db.to_string()))
        .unwrap()
}

fn reads_before_the_first_write_hit_the_shared_cache(b: Backend) {
    let cache = b.builder("before_write").build_for(b).unwrap();
    let loads = Loads::default();
    title(&cache, 1, &loads, "t1");
    let scope = cache.atomic();
    let v: String = scope
        .get_or_compute(&get(1), loads.of("db".to_string()))
        .unwrap();
    assert_eq!(
        (v.as_str(), loads.count()),
        ("t1", 1),
        "served by the shared cache"
    );
    scope.commit().unwrap();
}

fn a_scope_sees_its_own_write_while_others_get_the_cached_value(b: Backend) {
    let cache = b.builder("own_write").build_for(b).unwrap();
    let loads = Loads::default();
    title(&cache, 1, &loads, "old");
    let a = cache.atomic();
    let old = Article::new(1);
    let new = Article {
        title: "new".into(),
        ..old.clone()
    };
    a.on_update("blog.article", &old, &new).unwrap();
    let seen: String = a
        .get_or_compute(&get(1), loads.of("new".to_string()))
        .unwrap();
    assert_eq!(seen, "new", "scope A sees its own change");
    assert_eq!(loads.count(), 2);
    let again: String = a.get_or_compute(&get(1), || unreachable!()).unwrap();
    assert_eq!(again, "new", "and keeps it in its overlay");
    let other = cache.atomic();
    let seen_b: String = other
        .get_or_compute(&get(1), loads.of("x".to_string()))
        .unwrap();
    assert_eq!(seen_b, "old", "scope B gets the cached, committed value");
    assert_eq!(title(&cache, 1, &loads, "x"), "old");
    assert_eq!(loads.count(), 2);
}

fn after_commit_everyone_sees_the_new_value(b: Backend) {
    let cache = b.builder("after_commit").build_for(b).unwrap();
    let loads = Loads::default();
    title(&cache, 1, &loads, "old");
    let a = cache.atomic();
    let other = cache.atomic();
    let old = Article::new(1);
    let new = Article {
        title: "new".into(),
        ..old.clone()
    };
    a.on_update("blog.article", &old, &new).unwrap();
    let _: String = a
        .get_or_compute(&get(1), loads.of("new".to_string()))
        .unwrap();
    a.commit().unwrap();
    let seen_b: String = other
        .get_or_compute(&get(1), loads.of("new".to_string()))
        .unwrap();
    assert_eq!(seen_b, "new");
    assert_eq!(title(&cache, 1, &loads, "new"), "new");
}

fn rollback_leaves_everything_cached_and_invalidates_nothing(b: Backend) {
    let (cache, invalidations) = counted(b, "rollback");
    let loads = Loads::default();
    title(&cache, 1, &loads, "old");
    let a = cache.atomic();
    a.on_insert("blog.article", &Article::new(1)).unwrap();
    a.invalidate_model("blog.article").unwrap();
    let _: String = a
        .get_or_compute(&get(1), loads.of("uncommitted".to_string()))
        .unwrap();
    a.rollback();
    assert_eq!(title(&cache, 1, &loads, "x"), "old");
    assert_eq!(loads.count(), 2);
    assert_eq!(*invalidations.lock().unwrap(), 0);
}

fn savepoint_rollback_discards_its_writes(b: Backend) {
    let (cache, invalidations) = counted(b, "sp_rollback");
    let loads = Loads::default();
    title(&cache, 1, &loads, "old");
    let root = cache.atomic();
    let sp = root.savepoint().unwrap();
    sp.on_insert("blog.article", &Article::new(1)).unwrap();
    let v: String = sp
        .get_or_compute(&get(1), loads.of("in sp".to_string()))
        .unwrap();
    assert_eq!(v, "in sp");
    sp.rollback();
    let v: String = root
        .get_or_compute(&get(1), loads.of("x".to_string()))
        .unwrap();
    assert_eq!(v, "old", "the root never wrote: the shared cache answers");
    root.commit().unwrap();
    assert_eq!(title(&cache, 1, &loads, "x"), "old");
    assert_eq!(loads.count(), 2);
    assert_eq!(*invalidations.lock().unwrap(), 0);
}

fn no_invalidation_inside_a_scope(b: Backend) {
    let (cache, invalidations) = counted(b, "sp_quiet");
    let loads = Loads::default();
    title(&cache, 1, &loads, "old");
    let root = cache.atomic();
    let quiet = root.no_invalidation();
    quiet.on_insert("blog.article", &Article::new(1)).unwrap();
    let v: String = quiet
        .get_or_compute(&get(1), loads.of("x".to_string()))
        .unwrap();
    assert_eq!(
        v, "old",
        "nothing was recorded: the table counts as unwritten"
    );
    assert!(
        matches!(quiet.commit(), Err(Error::Scope(_))),
        "a view cannot end the scope"
    );
    root.commit().unwrap();
    assert_eq!(*invalidations.lock().unwrap(), 0);
    assert_eq!(title(&cache, 1, &loads, "x"), "old");
}

fn nested_savepoints_three_deep(b: Backend) {
    let cache = b.builder("nested").build_for(b).unwrap();
    let loads: Vec<Loads> = (0..4).map(|_| Loads::default()).collect();
    let read_all = |c: &Cache| {
        for (i, l) in loads.iter().enumerate().skip(1) {
            let _: Vec<i64> = c.get_or_compute(&list(i as i64), l.of(vec![])).unwrap();
        }
    };
    read_all(&cache);
    let root = cache.atomic();
    let s1 = root.savepoint().unwrap();
    s1.on_insert("blog.article", &Article::new(1)).unwrap(); // category 1
    let s2 = s1.savepoint().unwrap();
    s2.on_insert("blog.article", &Article::new(2)).unwrap(); // category 2
    let s3 = s2.savepoint().unwrap();
    s3.on_insert("blog.article", &Article::new(3)).unwrap(); // category 3
    let deep: Vec<i64> = s3.get_or_compute(&list(1), || vec![1]).unwrap();
    assert_eq!(
        deep,
        vec![1],
        "the deepest savepoint sees its ancestors' writes"
    );
    s3.release().unwrap();
    let in_s2: Vec<i64> = s2.get_or_compute(&list(3), || vec![3]).unwrap();
    assert_eq!(in_s2, vec![3], "released into s2");
    s2.rollback(); // discards categories 2 and 3
    s1.release().unwrap();
    root.commit().unwrap();
    read_all(&cache);
    let counts: Vec<usize> = loads.iter().skip(1).map(Loads::count).collect();
    assert_eq!(counts, vec![2, 1, 1], "only category 1 was invalidated");
}

fn a_scope_dropped_by_a_panic_rolls_back(b: Backend) {
    let (cache, invalidations) = counted(b, "panic");
    let loads = Loads::default();
    title(&cache, 1, &loads, "old");
    let c = cache.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let scope = c.atomic();
        scope.on_insert("blog.article", &Article::new(1)).unwrap();
        panic!("the transaction failed");
    }));
    assert!(result.is_err());
    assert_eq!(title(&cache, 1, &loads, "x"), "old");
    assert_eq!(*invalidations.lock().unwrap(), 0);
}

fn commit_promotes_only_entries_whose_stamps_are_current(b: Backend) {
    let cache = b.builder("promote").build_for(b).unwrap();
    let loads = Loads::default();
    let a = cache.atomic();
    a.on_insert("blog.article", &Article::new(1)).unwrap(); // category 1: the table is written
    let two: Vec<i64> = a.get_or_compute(&list(2), loads.of(vec![2])).unwrap();
    let three: Vec<i64> = a.get_or_compute(&list(3), loads.of(vec![3])).unwrap();
    assert_eq!((two, three, loads.count()), (vec![2], vec![3], 2));
    // Another transaction commits a write to category 3 before A commits.
    cache.on_insert("blog.article", &Article::new(3)).unwrap();
    a.commit().unwrap();
    let two: Vec<i64> = cache.get_or_compute(&list(2), loads.of(vec![0])).unwrap();
    assert_eq!(two, vec![2], "promoted: its stamps were still current");
    let three: Vec<i64> = cache
        .get_or_compute(&list(3), loads.of(vec![3, 103]))
        .unwrap();
    assert_eq!(
        three,
        vec![3, 103],
        "not promoted: another write killed its stamps"
    );
    assert_eq!(loads.count(), 3);
}

fn repeatable_read_never_fills_the_shared_tiers(b: Backend) {
    let cache = b.builder("rr").build_for(b).unwrap();
    let loads = Loads::default();
    for iso in [Isolation::RepeatableRead, Isolation::Serializable] {
        let before = loads.count();
        let scope = cache.atomic_with(iso);
        assert_eq!(scope.isolation(), iso);
        let _: Vec<i64> = scope.get_or_compute(&list(5), loads.of(vec![5])).unwrap();
        let _: Vec<i64> = scope.get_or_compute(&list(5), loads.of(vec![5])).unwrap();
        assert_eq!(
            loads.count(),
            before + 1,
            "kept in the overlay for the transaction"
        );
        scope.commit().unwrap();
        let _: Vec<i64> = cache.get_or_compute(&list(5), loads.of(vec![5])).unwrap();
        assert_eq!(loads.count(), before + 2, "but not in the shared tiers");
        cache.invalidate_all().unwrap();
    }
}

fn a_savepoint_released_after_its_root_committed_still_invalidates(b: Backend) {
    let cache = b.builder("late_sp").build_for(b).unwrap();
    let loads = Loads::default();
    let _: Vec<i64> = cache.get_or_compute(&list(1), loads.of(vec![1])).unwrap();
    let root = cache.atomic();
    let sp = root.savepoint().unwrap();
    sp.on_insert("blog.article", &Article::new(1)).unwrap();
    root.commit().unwrap();
    let _: Vec<i64> = cache.get_or_compute(&list(1), loads.of(vec![1])).unwrap();
    assert_eq!(loads.count(), 1, "not yet: the savepoint is open");
    sp.release().unwrap();
    let _: Vec<i64> = cache
        .get_or_compute(&list(1), loads.of(vec![1, 101]))
        .unwrap();
    assert_eq!(loads.count(), 2, "released: applied at once, not lost");
}

fn a_finished_scope_refuses_reads(b: Backend) {
    let cache = b.builder("finished").build_for(b).unwrap();
    let root = cache.atomic();
    let view = root.no_invalidation();
    root.commit().unwrap();
    assert!(matches!(
        view.get_or_compute(&get(1), || "x".to_string()),
        Err(Error::Scope(_))
    ));
    assert!(matches!(view.savepoint(), Err(Error::Scope(_))));
}

fn commit_batches_invalidations_into_one_call_per_kind(b: Backend) {
    let (cache, invalidations) = counted(b, "batch");
    let scope = cache.atomic();
    for i in 0..50 {
        scope.on_insert("blog.article", &Article::new(i)).unwrap();
    }
    scope
        .invalidate_obj("blog.author", &stampcache::Row::new().with("id", 1))
        .unwrap();
    assert_eq!(*invalidations.lock().unwrap(), 0, "deferred");
    scope.commit().unwrap();
    // One batch: one event per table, all rows of a table in one script call.
    assert_eq!(*invalidations.lock().unwrap(), 2);
}

fn a_savepoint_of_a_released_savepoint_waits_for_the_root(b: Backend) {
    let (cache, invalidations) = counted(b, "sp_of_released");
    let root = cache.atomic();
    let s1 = root.savepoint().unwrap();
    let s2 = s1.savepoint().unwrap();
    s1.release().unwrap();
    s2.on_insert("blog.article", &Article::new(1)).unwrap();
    s2.release().unwrap();
    assert_eq!(
        *invalidations.lock().unwrap(),
        0,
        "applied before the commit"
    );
    let v: Vec<i64> = root.get_or_compute(&list(1), || vec![1]).unwrap();
    assert_eq!(v, vec![1]);
    root.rollback();
    assert_eq!(
        *invalidations.lock().unwrap(),
        0,
        "a rolled back write was invalidated"
    );
    let loads = Loads::default();
    let _: Vec<i64> = cache.get_or_compute(&list(1), loads.of(vec![])).unwrap();
    assert_eq!(
        loads.count(),
        1,
        "the uncommitted read never reached the shared tier"
    );
}

fn a_savepoint_open_at_the_root_commit_is_committed_with_it(b: Backend) {
    let cache = b.builder("sp_open_commit").build_for(b).unwrap();
    let loads = Loads::default();
    let _: Vec<i64> = cache.get_or_compute(&list(1), loads.of(vec![1])).unwrap();
    let root = cache.atomic();
    let sp = root.savepoint().unwrap();
    sp.on_insert("blog.article", &Article::new(1)).unwrap();
    root.commit().unwrap();
    drop(sp); // COMMIT included the savepoint's write: its invalidation must run
    let _: Vec<i64> = cache
        .get_or_compute(&list(1), loads.of(vec![1, 101]))
        .unwrap();
    assert_eq!(loads.count(), 2);
}

fn very_many_written_rows_collapse_to_whole_tables(b: Backend) {
    let cache = b
        .builder("collapse")
        .pending_limit(10)
        .build_for(b)
        .unwrap();
    let loads = Loads::default();
    let _: Vec<i64> = cache.get_or_compute(&list(50), loads.of(vec![50])).unwrap();
    let scope = cache.atomic();
    for i in 0..20 {
        scope.on_insert("blog.article", &Article::new(i)).unwrap(); // categories 0..19
    }
    scope.commit().unwrap();
    let _: Vec<i64> = cache.get_or_compute(&list(50), loads.of(vec![50])).unwrap();
    assert_eq!(
        loads.count(),
        2,
        "past the limit the whole table was invalidated"
    );
}
