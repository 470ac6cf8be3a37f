//! One behavioural suite, run against the embedded store, a real Redis, and Redis behind
//! the local tier (strict and tracked), each through both front ends (blocking and async).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::front::{BuildFor, TestCache as Cache};
use common::{Article, Backend, Kind, Loads};
use stampcache::{
    Cond, Dep, Error, Event, Invalidation, Op, Outcome, Profile, Read, Row, Target, Value,
};

crate::backend_suite!(
    [embedded => Embedded, redis => Redis, redis_local_strict => RedisStrict, redis_local_tracked => RedisTracked,
     async_embedded => AsyncEmbedded, async_redis => AsyncRedis, async_redis_local_strict => AsyncRedisStrict,
     async_redis_local_tracked => AsyncRedisTracked];
    identical_reads_load_once,
    update_invalidates_get_of_that_row_only,
    update_invalidates_reads_of_old_and_new_values,
    insert_invalidates_matching_lists_and_counts_only,
    boolean_flip_invalidates_reads_of_old_value,
    other_and_negated_conditions_die_on_any_write,
    in_and_is_null_are_granular,
    join_condition_dies_on_matching_write_to_joined_table_only,
    invalidated_update_moves_rows_between_categories,
    cached_as_with_two_dependencies,
    invalidation_inside_loader_leaves_nothing_served,
    no_invalidation_handle_does_not_invalidate,
    entries_expire_after_their_timeout,
    prefixes_keep_caches_apart,
    computed_prefix_reaches_reads_of_the_same_db,
    db_agnostic_shares_entries_across_aliases,
    cache_on_save_fills_the_get,
    invalidate_model_and_all,
    disabled_cache_is_a_pass_through,
    profiles_decide_what_is_cached,
    events_report_reads_and_invalidations,
    simple_cache_distinguishes_misses,
    loader_errors_store_nothing,
    incomplete_row_image_invalidates_whole_table,
    values_of_equal_integers_share_keys,
    skipped_fields_widen_and_are_left_out,
    concurrent_readers_never_see_a_value_older_than_a_finished_write,
    stale_while_revalidate_within_the_grace_only,
    a_snapshot_transaction_never_refills_a_stale_entry,
    absurd_timeouts_are_clamped_not_panics,
    prepared_reads_behave_like_reads,
);

fn article_get(id: i64) -> Read {
    Read::get("blog.article").filter(Cond::eq("id", id))
}

fn category_list(c: i64) -> Read {
    Read::fetch("blog.article").filter(Cond::eq("category", c))
}

fn category_count(c: i64) -> Read {
    Read::count("blog.article").filter(Cond::eq("category", c))
}

fn identical_reads_load_once(b: Backend) {
    let cache = b.builder("identical").build_for(b).unwrap();
    let loads = Loads::default();
    for _ in 0..3 {
        let a: Article = cache
            .get_or_compute(&article_get(1), loads.of(Article::new(1)))
            .unwrap();
        assert_eq!(a, Article::new(1));
    }
    assert_eq!(loads.count(), 1);
    // A different read is a different entry.
    let _: Article = cache
        .get_or_compute(&article_get(2), loads.of(Article::new(2)))
        .unwrap();
    assert_eq!(loads.count(), 2);
}

fn update_invalidates_get_of_that_row_only(b: Backend) {
    let cache = b.builder("update_get").build_for(b).unwrap();
    let (one, two) = (Loads::default(), Loads::default());
    let _: Article = cache
        .get_or_compute(&article_get(1), one.of(Article::new(1)))
        .unwrap();
    let _: Article = cache
        .get_or_compute(&article_get(2), two.of(Article::new(2)))
        .unwrap();
    let old = Article::new(1);
    let new = Article {
        title: "changed".into(),
        ..old.clone()
    };
    cache.on_update("blog.article", &old, &new).unwrap();
    let got: Article = cache
        .get_or_compute(&article_get(1), one.of(new.clone()))
        .unwrap();
    assert_eq!(got.title, "changed");
    let _: Article = cache
        .get_or_compute(&article_get(2), two.of(Article::new(2)))
        .unwrap();
    assert_eq!((one.count(), two.count()), (2, 1));
}

fn update_invalidates_reads_of_old_and_new_values(b: Backend) {
    let cache = b.builder("update_old_new").build_for(b).unwrap();
    let loads: Vec<Loads> = (0..3).map(|_| Loads::default()).collect();
    let read_all = |cache: &Cache| {
        for (c, l) in loads.iter().enumerate() {
            let _: Vec<i64> = cache
                .get_or_compute(&category_list(c as i64 + 1), l.of(vec![]))
                .unwrap();
        }
    };
    read_all(&cache);
    let old = Article::new(101); // category 1
    let new = Article {
        category: 2,
        ..old.clone()
    };
    cache.on_update("blog.article", &old, &new).unwrap();
    read_all(&cache);
    let counts: Vec<usize> = loads.iter().map(Loads::count).collect();
    assert_eq!(
        counts,
        vec![2, 2, 1],
        "categories 1 and 2 reload, 3 stays cached"
    );
}

fn insert_invalidates_matching_lists_and_counts_only(b: Backend) {
    let cache = b.builder("insert").build_for(b).unwrap();
    let (l1, c1, l2, c2) = (
        Loads::default(),
        Loads::default(),
        Loads::default(),
        Loads::default(),
    );
    let read = |cache: &Cache| {
        let _: Vec<i64> = cache
            .get_or_compute(&category_list(1), l1.of(vec![1]))
            .unwrap();
        let _: u64 = cache.get_or_compute(&category_count(1), c1.of(1)).unwrap();
        let _: Vec<i64> = cache
            .get_or_compute(&category_list(2), l2.of(vec![2]))
            .unwrap();
        let _: u64 = cache.get_or_compute(&category_count(2), c2.of(1)).unwrap();
    };
    read(&cache);
    cache.on_insert("blog.article", &Article::new(201)).unwrap(); // category 1
    read(&cache);
    assert_eq!(
        (l1.count(), c1.count(), l2.count(), c2.count()),
        (2, 2, 1, 1)
    );
}

fn boolean_flip_invalidates_reads_of_old_value(b: Backend) {
    let cache = b.builder("bool").build_for(b).unwrap();
    let published = |p: bool| {
        Read::count("blog.article")
            .filter(Cond::eq("category", 3))
            .filter(Cond::eq("published", p))
    };
    let (yes, no) = (Loads::default(), Loads::default());
    let read = |cache: &Cache| {
        let _: u64 = cache.get_or_compute(&published(true), yes.of(66)).unwrap();
        let _: u64 = cache.get_or_compute(&published(false), no.of(34)).unwrap();
    };
    read(&cache);
    let old = Article::new(3); // category 3, published = false (3 % 3 == 0)
    assert!(!old.published);
    // Only the old image: the flip is reported as a delete of the unpublished row.
    cache.on_delete("blog.article", &old).unwrap();
    read(&cache);
    assert_eq!((yes.count(), no.count()), (1, 2));
    let new = Article {
        published: true,
        ..old.clone()
    };
    cache.on_update("blog.article", &old, &new).unwrap();
    read(&cache);
    assert_eq!((yes.count(), no.count()), (2, 3));
}

fn other_and_negated_conditions_die_on_any_write(b: Backend) {
    let cache = b.builder("other").build_for(b).unwrap();
    let ranged = Read::fetch("blog.article").filter(Cond::other("id > 500"));
    let negated = Read::fetch("blog.article").filter(Cond::eq("category", 5).not());
    let mixed = Read::fetch("blog.article")
        .filter(Cond::eq("category", 5))
        .filter(Cond::other("id > 500"));
    let (r, n, m) = (Loads::default(), Loads::default(), Loads::default());
    let read = |cache: &Cache| {
        let _: Vec<i64> = cache.get_or_compute(&ranged, r.of(vec![])).unwrap();
        let _: Vec<i64> = cache.get_or_compute(&negated, n.of(vec![])).unwrap();
        let _: Vec<i64> = cache.get_or_compute(&mixed, m.of(vec![])).unwrap();
    };
    read(&cache);
    read(&cache);
    assert_eq!((r.count(), n.count(), m.count()), (1, 1, 1));
    cache.on_insert("blog.article", &Article::new(7)).unwrap(); // category 7
    read(&cache);
    // The mixed read keeps its granular part: category 7 does not touch it.
    assert_eq!((r.count(), n.count(), m.count()), (2, 2, 1));
}

fn in_and_is_null_are_granular(b: Backend) {
    let cache = b.builder("in_null").build_for(b).unwrap();
    let listed = Read::fetch("blog.article").filter(Cond::is_in("category", [1, 2]));
    let orphans = Read::fetch("blog.comment").filter(Cond::is_null("article_id"));
    let (l, o) = (Loads::default(), Loads::default());
    let read = |cache: &Cache| {
        let _: Vec<i64> = cache.get_or_compute(&listed, l.of(vec![])).unwrap();
        let _: Vec<i64> = cache.get_or_compute(&orphans, o.of(vec![])).unwrap();
    };
    read(&cache);
    cache.on_insert("blog.article", &Article::new(3)).unwrap();
    cache
        .invalidate_obj(
            "blog.comment",
            &Row::new().with("id", 1).with("article_id", 9),
        )
        .unwrap();
    read(&cache);
    assert_eq!((l.count(), o.count()), (1, 1));
    cache.on_insert("blog.article", &Article::new(2)).unwrap();
    cache
        .invalidate_obj(
            "blog.comment",
            &Row::new().with("id", 2).with("article_id", Value::Null),
        )
        .unwrap();
    read(&cache);
    assert_eq!((l.count(), o.count()), (2, 2));
}

fn join_condition_dies_on_matching_write_to_joined_table_only(b: Backend) {
    let cache = b.builder("join").build_for(b).unwrap();
    let by_ann = Read::fetch("blog.article")
        .filter(Cond::eq("category", 1))
        .filter(Cond::eq(("blog.author", "name"), "ann"));
    let loads = Loads::default();
    let read = |cache: &Cache| {
        let _: Vec<i64> = cache.get_or_compute(&by_ann, loads.of(vec![1])).unwrap();
    };
    read(&cache);
    let bob = Row::new().with("id", 2).with("name", "bob");
    cache.invalidate_obj("blog.author", &bob).unwrap();
    // A row of another table with a field called `name` = ann does not count either.
    cache
        .invalidate_obj("blog.tag", &Row::new().with("id", 1).with("name", "ann"))
        .unwrap();
    read(&cache);
    assert_eq!(loads.count(), 1);
    let ann = Row::new().with("id", 1).with("name", "ann");
    cache.invalidate_obj("blog.author", &ann).unwrap();
    read(&cache);
    assert_eq!(loads.count(), 2);
}

fn invalidated_update_moves_rows_between_categories(b: Backend) {
    let cache = b.builder("bulk").build_for(b).unwrap();
    let (c1, c2, c3) = (Loads::default(), Loads::default(), Loads::default());
    let read = |cache: &Cache| {
        let _: u64 = cache.get_or_compute(&category_count(1), c1.of(0)).unwrap();
        let _: u64 = cache.get_or_compute(&category_count(2), c2.of(0)).unwrap();
        let _: u64 = cache.get_or_compute(&category_count(3), c3.of(0)).unwrap();
    };
    read(&cache);
    let old: Vec<Article> = [1, 101, 201].map(Article::new).to_vec();
    let new: Vec<Article> = old
        .iter()
        .map(|a| Article {
            category: 2,
            ..a.clone()
        })
        .collect();
    cache
        .invalidated_update("blog.article", old.iter().zip(new.iter()))
        .unwrap();
    read(&cache);
    assert_eq!((c1.count(), c2.count(), c3.count()), (2, 2, 1));
}

fn cached_as_with_two_dependencies(b: Backend) {
    let cache = b.builder("cached_as").build_for(b).unwrap();
    let loads = Loads::default();
    let report = |cache: &Cache, year: i32| -> String {
        cache
            .cached_as([Dep::from(category_count(1)), Dep::table("blog.author")])
            .name("report")
            .args(&year)
            .get_or_compute(loads.of(format!("report {year}")))
            .unwrap()
    };
    assert_eq!(report(&cache, 2026), "report 2026");
    assert_eq!(report(&cache, 2026), "report 2026");
    assert_eq!(loads.count(), 1);
    assert_eq!(report(&cache, 2025), "report 2025"); // other arguments, other entry
    assert_eq!(loads.count(), 2);
    cache.on_insert("blog.article", &Article::new(2)).unwrap(); // category 2: unrelated
    report(&cache, 2026);
    assert_eq!(loads.count(), 2);
    cache
        .invalidate_obj("blog.author", &Row::new().with("id", 5))
        .unwrap(); // any author write
    report(&cache, 2026);
    assert_eq!(loads.count(), 3);
    cache.on_insert("blog.article", &Article::new(1)).unwrap(); // category 1
    report(&cache, 2026);
    assert_eq!(loads.count(), 4);
    // extra is part of the key
    let with_extra: String = cache
        .cached_as([Dep::table("blog.author")])
        .name("report")
        .args(&2026)
        .extra("v2")
        .get_or_compute(loads.of("v2".to_string()))
        .unwrap();
    assert_eq!(with_extra, "v2");
    assert_eq!(loads.count(), 5);
}

fn invalidation_inside_loader_leaves_nothing_served(b: Backend) {
    let cache = b.builder("race").build_for(b).unwrap();
    let loads = Loads::default();
    let c2 = cache.clone();
    let stale: Vec<i64> = cache
        .get_or_compute(&category_list(4), || {
            // The database is read, then a writer commits and invalidates before we store.
            let result = vec![4];
            c2.on_insert("blog.article", &Article::new(104)).unwrap();
            result
        })
        .unwrap();
    assert_eq!(stale, vec![4]);
    let fresh: Vec<i64> = cache
        .get_or_compute(&category_list(4), loads.of(vec![4, 104]))
        .unwrap();
    assert_eq!(
        fresh,
        vec![4, 104],
        "the value loaded before the write is not served"
    );
    assert_eq!(loads.count(), 1);
}

fn no_invalidation_handle_does_not_invalidate(b: Backend) {
    let cache = b.builder("noinval").build_for(b).unwrap();
    let loads = Loads::default();
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    let quiet = cache.no_invalidation();
    quiet.on_insert("blog.article", &Article::new(1)).unwrap();
    quiet.invalidate_model("blog.article").unwrap();
    let _: u64 = quiet
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 1);
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(2))
        .unwrap();
    assert_eq!(loads.count(), 2);
}

fn entries_expire_after_their_timeout(b: Backend) {
    let cache = b
        .builder("ttl")
        .profile("blog.*", Profile::new().timeout(Duration::from_millis(300)))
        .build_for(b)
        .unwrap();
    let loads = Loads::default();
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 1);
    std::thread::sleep(Duration::from_millis(450));
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 2);
}

fn prefixes_keep_caches_apart(b: Backend) {
    let url_builder = |p: &str| {
        let b0 = b.builder("prefix");
        b0.prefix(format!("{}{p}", common::unique_prefix("prefixes")))
    };
    let a = url_builder("a").build_for(b).unwrap();
    let bb = url_builder("b").build_for(b).unwrap();
    let loads = Loads::default();
    let _: u64 = a.get_or_compute(&category_count(1), loads.of(1)).unwrap();
    let _: u64 = bb.get_or_compute(&category_count(1), loads.of(1)).unwrap();
    assert_eq!(loads.count(), 2);
}

fn computed_prefix_reaches_reads_of_the_same_db(b: Backend) {
    let base = common::unique_prefix("computed");
    let cache = b
        .builder("computed")
        .prefix_fn(move |s| format!("{base}{}:", s.dbs.join("+")))
        .build_for(b);
    if b.kind() == Kind::RedisTracked {
        // Pushes are subscribed by prefix: a computed prefix cannot be tracked.
        assert!(matches!(cache, Err(Error::Config(_))));
        return;
    }
    let cache = cache.unwrap();
    let (main, other) = (Loads::default(), Loads::default());
    let read = |cache: &Cache| {
        let _: u64 = cache
            .get_or_compute(&category_count(1), main.of(1))
            .unwrap();
        let _: u64 = cache
            .get_or_compute(&category_count(1).db("tenant2"), other.of(1))
            .unwrap();
    };
    read(&cache);
    cache
        .using("tenant2")
        .on_insert("blog.article", &Article::new(1))
        .unwrap();
    read(&cache);
    assert_eq!((main.count(), other.count()), (1, 2));
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    read(&cache);
    assert_eq!((main.count(), other.count()), (2, 2));
}

fn db_agnostic_shares_entries_across_aliases(b: Backend) {
    let cache = b
        .builder("agnostic")
        .profile("blog.article", Profile::new())
        .profile("blog.author", Profile::new().db_agnostic(false))
        .build_for(b)
        .unwrap();
    let loads = Loads::default();
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    let _: u64 = cache
        .get_or_compute(&category_count(1).db("replica"), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 1, "db_agnostic: one entry for both aliases");
    let authors = Read::count("blog.author");
    let _: u64 = cache.get_or_compute(&authors, loads.of(1)).unwrap();
    let _: u64 = cache
        .get_or_compute(&authors.clone().db("replica"), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 3, "not db_agnostic: one entry per alias");
}

fn cache_on_save_fills_the_get(b: Backend) {
    let cache = b
        .builder("on_save")
        .profile("blog.article", Profile::new().cache_on_save("id"))
        .build_for(b)
        .unwrap();
    let a = Article::new(42);
    cache.on_insert("blog.article", &a).unwrap();
    let got: Article = cache
        .get_or_compute(&article_get(42), || {
            panic!("cache_on_save should have stored it")
        })
        .unwrap();
    assert_eq!(got, a);
    let b2 = Article {
        title: "new".into(),
        ..a.clone()
    };
    cache.on_update("blog.article", &a, &b2).unwrap();
    let got: Article = cache
        .get_or_compute(&article_get(42), || panic!("stored again on update"))
        .unwrap();
    assert_eq!(got.title, "new");
}

fn invalidate_model_and_all(b: Backend) {
    let cache = b.builder("model").build_for(b).unwrap();
    let (art, auth) = (Loads::default(), Loads::default());
    let read = |cache: &Cache| {
        let _: u64 = cache.get_or_compute(&category_count(1), art.of(1)).unwrap();
        let _: u64 = cache
            .get_or_compute(&Read::count("blog.author"), auth.of(1))
            .unwrap();
    };
    read(&cache);
    cache.invalidate_model("blog.article").unwrap();
    read(&cache);
    assert_eq!((art.count(), auth.count()), (2, 1));
    cache.invalidate_all().unwrap();
    read(&cache);
    assert_eq!((art.count(), auth.count()), (3, 2));
    // Granular invalidation still works after invalidate_all.
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    read(&cache);
    assert_eq!((art.count(), auth.count()), (4, 2));
}

fn disabled_cache_is_a_pass_through(b: Backend) {
    let cache = b.builder("disabled").enabled(false).build_for(b).unwrap();
    let loads = Loads::default();
    for _ in 0..3 {
        let _: u64 = cache
            .get_or_compute(&category_count(1), loads.of(1))
            .unwrap();
    }
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    cache.simple().set("k", &1, Duration::from_secs(5)).unwrap();
    assert!(matches!(
        cache.simple().get::<i32>("k"),
        Err(Error::CacheMiss)
    ));
    assert_eq!(loads.count(), 3);
}

fn profiles_decide_what_is_cached(b: Backend) {
    let cache = b
        .builder("profiles")
        .profile("blog.*", Profile::new().ops([Op::Get]))
        .no_cache("blog.log")
        .build_for(b)
        .unwrap();
    let loads = Loads::default();
    let twice = |read: &Read| {
        let before = loads.count();
        for _ in 0..2 {
            let _: u64 = cache.get_or_compute(read, loads.of(1)).unwrap();
        }
        loads.count() - before
    };
    assert_eq!(twice(&article_get(1)), 1, "get is cached");
    assert_eq!(twice(&category_count(1)), 2, "count is not in ops");
    assert_eq!(twice(&category_count(1).cache()), 1, "forced");
    assert_eq!(twice(&article_get(9).nocache()), 2, "forced off");
    assert_eq!(twice(&Read::get("blog.log")), 2, "never cached table");
    assert_eq!(twice(&Read::get("shop.item")), 1, "default profile");
}

fn events_report_reads_and_invalidations(b: Backend) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let cache = b
        .builder("events")
        .no_cache("blog.log")
        .on_event(move |e| {
            let s = match e {
                Event::Read {
                    target: Target::Table { table, op, .. },
                    outcome,
                } => {
                    // The local tier answers hits in process: the same answer here.
                    let outcome = match outcome {
                        Outcome::LocalHit => Outcome::Hit,
                        o => *o,
                    };
                    format!("read {table} {} {outcome:?}", op.name())
                }
                Event::Read {
                    target: Target::Func { name },
                    outcome,
                } => format!("func {name} {outcome:?}"),
                Event::Invalidated(Invalidation::Rows { table, rows }) => {
                    format!("rows {table} {rows}")
                }
                Event::Invalidated(Invalidation::Table { table }) => format!("table {table}"),
                Event::Invalidated(Invalidation::All) => "all".into(),
                _ => return,
            };
            sink.lock().unwrap().push(s);
        })
        .build_for(b)
        .unwrap();
    let _: u64 = cache.get_or_compute(&category_count(1), || 1).unwrap();
    let _: u64 = cache.get_or_compute(&category_count(1), || 1).unwrap();
    let _: u64 = cache
        .get_or_compute(&Read::count("blog.log"), || 1)
        .unwrap();
    let _: u64 = cache
        .cached_as([Dep::table("blog.x")])
        .name("f")
        .get_or_compute(|| 1)
        .unwrap();
    let a = Article::new(1);
    cache.on_update("blog.article", &a, &a).unwrap();
    cache.invalidate_model("blog.author").unwrap();
    cache.invalidate_all().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "read blog.article count Miss",
            "read blog.article count Hit",
            "read blog.log count Bypass",
            "func f Miss",
            "rows blog.article 2",
            "table blog.author",
            "all",
        ]
    );
    let _ = Outcome::Degraded; // covered by the failure tests
}

fn simple_cache_distinguishes_misses(b: Backend) {
    let cache = b.builder("simple").build_for(b).unwrap();
    let s = cache.simple();
    assert!(matches!(s.get::<Option<i32>>("k"), Err(Error::CacheMiss)));
    s.set("k", &None::<i32>, Duration::from_secs(5)).unwrap();
    assert_eq!(
        s.get::<Option<i32>>("k").unwrap(),
        None,
        "a cached None is a hit"
    );
    assert!(s.delete("k").unwrap());
    assert!(!s.delete("k").unwrap());
    assert!(matches!(s.get::<Option<i32>>("k"), Err(Error::CacheMiss)));

    let loads = Loads::default();
    let sq = |n: i64| -> i64 {
        s.cached("square", &n, Duration::from_secs(5), loads.of(n * n))
            .unwrap()
    };
    assert_eq!(sq(3), 9);
    assert_eq!(sq(3), 9);
    assert_eq!(sq(4), 16);
    assert_eq!(loads.count(), 2);
    assert_ne!(s.key("square", &3).unwrap(), s.key("square", &4).unwrap());
    assert!(s.invalidate("square", &3).unwrap());
    assert_eq!(sq(3), 9);
    assert_eq!(loads.count(), 3);

    s.set("short", &1u8, Duration::from_millis(100)).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    assert!(matches!(s.get::<u8>("short"), Err(Error::CacheMiss)));
}

fn loader_errors_store_nothing(b: Backend) {
    let cache = b.builder("loader_err").build_for(b).unwrap();
    let r: Result<u64, _> = cache.get_or_load(&category_count(1), || Err("db down"));
    assert!(matches!(r, Err(stampcache::LoadError::Loader("db down"))));
    let loads = Loads::default();
    let v: u64 = cache
        .get_or_compute(&category_count(1), loads.of(7))
        .unwrap();
    assert_eq!((v, loads.count()), (7, 1));
}

fn incomplete_row_image_invalidates_whole_table(b: Backend) {
    let cache = b.builder("incomplete").build_for(b).unwrap();
    let loads = Loads::default();
    let _: u64 = cache
        .get_or_compute(&category_count(9), loads.of(1))
        .unwrap();
    // This image lacks `category`: it cannot say which category lists it touches.
    cache
        .invalidate_obj("blog.article", &Row::new().with("id", 5))
        .unwrap();
    let _: u64 = cache
        .get_or_compute(&category_count(9), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 2);
}

fn values_of_equal_integers_share_keys(b: Backend) {
    let cache = b.builder("ints").build_for(b).unwrap();
    let loads = Loads::default();
    let _: u64 = cache
        .get_or_compute(&Read::count("t.x").filter(Cond::eq("n", 3_u8)), loads.of(1))
        .unwrap();
    let _: u64 = cache
        .get_or_compute(
            &Read::count("t.x").filter(Cond::eq("n", 3_i64)),
            loads.of(1),
        )
        .unwrap();
    assert_eq!(loads.count(), 1);
    cache
        .invalidate_obj("t.x", &Row::new().with("n", 3_i32))
        .unwrap();
    let _: u64 = cache
        .get_or_compute(&Read::count("t.x").filter(Cond::eq("n", 3.0)), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 2);
}

fn skipped_fields_widen_and_are_left_out(b: Backend) {
    let cache = b
        .builder("skip")
        .profile("blog.article", Profile::new().skip_fields(["body"]))
        .build_for(b)
        .unwrap();
    let loads = Loads::default();
    let by_body = Read::fetch("blog.article").filter(Cond::eq("body", "x"));
    let _: Vec<i64> = cache.get_or_compute(&by_body, loads.of(vec![])).unwrap();
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    let _: Vec<i64> = cache.get_or_compute(&by_body, loads.of(vec![])).unwrap();
    assert_eq!(
        loads.count(),
        2,
        "a condition on a skipped field depends on every row"
    );
}

fn concurrent_readers_never_see_a_value_older_than_a_finished_write(b: Backend) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const CATEGORIES: usize = 4;
    let name = common::unique_prefix("concurrent");
    // Two handles on one store: two processes, as far as Redis can tell.
    let writer = b.builder("c").prefix(name.clone()).build_for(b).unwrap();
    let other = b.builder("c").prefix(name).build_for(b).unwrap();
    // Embedded stores are per cache: both handles must share one. Tracked local tiers hear
    // of another process' writes a push later (local_tier.rs bounds that): here the
    // readers share the writer's process.
    let readers_cache = match b.kind() {
        Kind::Embedded | Kind::RedisTracked => writer.clone(),
        Kind::Redis | Kind::RedisStrict => other,
    };
    let db: Arc<Vec<AtomicU64>> = Arc::new((0..CATEGORIES).map(|_| AtomicU64::new(0)).collect());
    let committed: Arc<Vec<AtomicU64>> =
        Arc::new((0..CATEGORIES).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (cache, db, committed, stop) = (
            if t % 2 == 0 {
                readers_cache.clone()
            } else {
                writer.clone()
            },
            db.clone(),
            committed.clone(),
            stop.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let c = i % CATEGORIES;
                i += 1;
                let floor = committed[c].load(Ordering::SeqCst);
                let got: u64 = cache
                    .get_or_compute(&category_count(c as i64), || db[c].load(Ordering::SeqCst))
                    .unwrap();
                assert!(
                    got >= floor,
                    "category {c}: read {got} after write {floor} finished"
                );
                reads += 1;
            }
            reads
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    let mut writes = 0;
    while std::time::Instant::now() < deadline {
        let c = writes % CATEGORIES;
        let v = db[c].fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        writer
            .on_insert("blog.article", &Article::new(c as i64))
            .unwrap();
        committed[c].store(v, std::sync::atomic::Ordering::SeqCst);
        writes += 1;
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        writes > 100 && reads > 1000,
        "too little traffic: {writes} writes, {reads} reads"
    );
}

fn stale_while_revalidate_within_the_grace_only(b: Backend) {
    let cache = b
        .builder("swr")
        .profile(
            "blog.article",
            Profile::new().stale_while_revalidate(Duration::from_millis(600)),
        )
        .build_for(b)
        .unwrap();
    let first = cache
        .get_or_compute_answer(&category_count(1), || 1u64)
        .unwrap();
    assert!(!first.stale);
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    // The reloader's loader runs until this thread has read: no timing involved.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let c = cache.clone();
    let reloader = std::thread::spawn(move || {
        c.get_or_compute_answer(&category_count(1), || {
            started_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            2u64
        })
        .unwrap()
    });
    started_rx.recv().unwrap();
    let during = cache
        .get_or_compute_answer(&category_count(1), || -> u64 {
            panic!("a second loader ran")
        })
        .unwrap();
    assert_eq!((*during.value, during.stale), (1, true));
    done_tx.send(()).unwrap();
    let fresh = reloader.join().unwrap();
    assert_eq!((*fresh.value, fresh.stale), (2, false));
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let late = cache
        .get_or_compute_answer(&category_count(1), || 3u64)
        .unwrap();
    assert_eq!(
        (*late.value, late.stale),
        (3, false),
        "no stale value past the grace"
    );
}

fn a_snapshot_transaction_never_refills_a_stale_entry(b: Backend) {
    let cache = b
        .builder("rr_stale")
        .profile(
            "blog.article",
            Profile::new().stale_while_revalidate(Duration::from_secs(5)),
        )
        .build_for(b)
        .unwrap();
    let _: u64 = cache.get_or_compute(&category_count(1), || 1).unwrap();
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
    // A REPEATABLE READ transaction whose snapshot predates the insert reads the old count.
    let scope = cache.atomic_with(stampcache::Isolation::RepeatableRead);
    let seen: u64 = scope.get_or_compute(&category_count(1), || 1).unwrap();
    assert_eq!(seen, 1);
    scope.commit().unwrap();
    let loads = Loads::default();
    let now = cache
        .get_or_compute_answer(&category_count(1), loads.of(2u64))
        .unwrap();
    assert!(
        *now.value == 2 || now.stale,
        "the snapshot's old count was stored as fresh"
    );
}

fn absurd_timeouts_are_clamped_not_panics(b: Backend) {
    let cache = b
        .builder("huge_ttl")
        .profile("blog.article", Profile::new().timeout(Duration::MAX))
        .lock_timeout(Duration::MAX)
        .flight_timeout(Duration::MAX)
        .build_for(b)
        .unwrap();
    let loads = Loads::default();
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    let _: u64 = cache
        .get_or_compute(&category_count(1), loads.of(1))
        .unwrap();
    assert_eq!(loads.count(), 1);
}

fn prepared_reads_behave_like_reads(b: Backend) {
    let cache = b
        .builder("prepared")
        .no_cache("blog.log")
        .build_for(b)
        .unwrap();
    let loads = Loads::default();
    let hot = cache.prepare(&category_count(1));
    let v: u64 = hot.get_or_compute(loads.of(1)).unwrap();
    let w: u64 = cache
        .get_or_compute(&category_count(1), loads.of(9))
        .unwrap();
    let x: u64 = hot.get_or_compute(loads.of(9)).unwrap();
    assert_eq!(
        (v, w, x, loads.count()),
        (1, 1, 1, 1),
        "one entry for both forms"
    );
    cache.on_insert("blog.article", &Article::new(2)).unwrap(); // category 2
    let _: u64 = hot.get_or_compute(loads.of(9)).unwrap();
    assert_eq!(loads.count(), 1);
    cache.on_insert("blog.article", &Article::new(1)).unwrap(); // category 1
    let v: u64 = hot.get_or_compute(loads.of(2)).unwrap();
    assert_eq!((v, loads.count()), (2, 2));
    let never = cache.prepare(&Read::count("blog.log"));
    let _: u64 = never.get_or_compute(loads.of(0)).unwrap();
    let _: u64 = never.get_or_compute(loads.of(0)).unwrap();
    assert_eq!(loads.count(), 4, "a bypassed read stays bypassed");
}
