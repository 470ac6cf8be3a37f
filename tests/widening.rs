//! Widening is visible, and stale schemes go away (issue 20, item 4), on every backend and
//! both front ends: a read whose condition names a field the rows lack (a typo) makes each
//! write of its table invalidate the whole table, and says so in `Event::Widened`; once no
//! live entry depends on the typo'd scheme it is dropped and writes are granular again; a
//! read in use never loses the scheme it depends on. (`tests/redis_tier.rs` checks the
//! scores against the lifetimes of stamps and entries.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::front::{BuildFor, TestCache as Cache};
use common::{Article, Backend, Loads};
use stampcache::{Cond, Event, Profile, Read};

crate::backend_suite!(
    [embedded => Embedded, redis => Redis, redis_local_strict => RedisStrict, redis_local_tracked => RedisTracked,
     async_embedded => AsyncEmbedded, async_redis => AsyncRedis, async_redis_local_strict => AsyncRedisStrict,
     async_redis_local_tracked => AsyncRedisTracked];
    a_typo_widens_every_write_and_says_so,
    every_missing_field_is_named_once_per_scheme,
);

/// The slow one (a scheme's lifetime is 12 s here): every backend at once, each on a
/// thread named after it.
#[test]
fn a_fixed_typo_stops_widening_once_its_entries_expired_on_every_backend() {
    let all = [
        ("embedded", Backend::Embedded),
        ("redis", Backend::Redis),
        ("redis_local_strict", Backend::RedisStrict),
        ("redis_local_tracked", Backend::RedisTracked),
        ("async_embedded", Backend::AsyncEmbedded),
        ("async_redis", Backend::AsyncRedis),
        ("async_redis_local_strict", Backend::AsyncRedisStrict),
        ("async_redis_local_tracked", Backend::AsyncRedisTracked),
    ];
    let failed: Vec<&str> = std::thread::scope(|s| {
        let runs: Vec<_> = all
            .iter()
            .map(|&(name, b)| {
                let run = std::thread::Builder::new()
                    .name(name.to_owned())
                    .spawn_scoped(s, move || {
                        a_fixed_typo_stops_widening_once_its_entries_expired(b)
                    })
                    .unwrap();
                (name, run)
            })
            .collect();
        runs.into_iter()
            .filter_map(|(name, run)| run.join().is_err().then_some(name))
            .collect()
    });
    assert!(failed.is_empty(), "failed on {failed:?}");
}

/// A `Widened` event, owned.
#[derive(Debug, Clone, PartialEq)]
struct Widened {
    table: String,
    fields: Vec<String>,
    missing: Vec<String>,
    read: Option<String>,
    entry: Option<String>,
    first: bool,
}

type Seen = Arc<Mutex<Vec<Widened>>>;

fn cache(b: Backend, name: &str, timeout: Duration) -> (Cache, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let cache = b
        .builder(name)
        .profile("blog.article", Profile::new().timeout(timeout))
        .on_event(move |e| {
            if let Event::Widened {
                table,
                fields,
                missing,
                read,
                entry,
                first,
            } = e
            {
                sink.lock().unwrap().push(Widened {
                    table: table.to_string(),
                    fields: fields.to_vec(),
                    missing: missing.to_vec(),
                    read: read.map(str::to_owned),
                    entry: entry.map(str::to_owned),
                    first: *first,
                });
            }
        })
        .build_for(b)
        .unwrap();
    (cache, seen)
}

fn by_category(c: i64) -> Read {
    Read::count("blog.article").filter(Cond::eq("category", c))
}

/// The typo: `Article` has `category`, not `categroy`.
fn typo(c: i64) -> Read {
    Read::count("blog.article").filter(Cond::eq("categroy", c))
}

fn article(id: i64, category: i64) -> Article {
    Article {
        category,
        ..Article::new(id)
    }
}

/// Whether `read` is still cached: its loader does not run.
fn cached(cache: &Cache, read: &Read) -> bool {
    let loads = Loads::default();
    let _: u64 = cache.get_or_compute(read, loads.of(0)).unwrap();
    loads.count() == 0
}

fn a_typo_widens_every_write_and_says_so(b: Backend) {
    let (cache, seen) = cache(b, "widen", Duration::from_secs(60));
    let _: u64 = cache.get_or_compute(&by_category(2), || 1).unwrap();
    // Without the typo, a category-1 row leaves the category-2 count alone, silently.
    cache.on_insert("blog.article", &article(1, 1)).unwrap();
    assert!(cached(&cache, &by_category(2)));
    assert!(seen.lock().unwrap().is_empty());

    let _: u64 = cache.get_or_compute(&typo(1), || 1).unwrap();
    cache.on_insert("blog.article", &article(2, 1)).unwrap();
    assert!(
        !cached(&cache, &by_category(2)),
        "the row cannot name the typo's conjunction: the whole table went"
    );
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.table, "blog.article");
    assert_eq!(e.fields, ["categroy"]);
    assert_eq!(e.missing, ["categroy"]);
    assert!(e.first);
    let read = e.read.as_deref().expect("this process made the read");
    assert!(
        read.contains("count(blog.article") && read.contains("categroy"),
        "{read}"
    );
    assert!(e
        .entry
        .as_deref()
        .is_some_and(|k| k.contains("{blog.article}")));

    // Every such write says so; only the first is marked first.
    let _: u64 = cache.get_or_compute(&by_category(2), || 1).unwrap();
    cache.on_insert("blog.article", &article(3, 1)).unwrap();
    assert!(!cached(&cache, &by_category(2)));
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(!events[1].first);
    assert_eq!(events[1].missing, ["categroy"]);
}

fn a_fixed_typo_stops_widening_once_its_entries_expired(b: Backend) {
    // Entries live 1 s; a scheme stays registered 2 × 1 s + 10 s after its last miss.
    let (cache, seen) = cache(b, "fixed", Duration::from_secs(1));
    let _: u64 = cache.get_or_compute(&typo(1), || 1).unwrap();
    let _: u64 = cache.get_or_compute(&by_category(2), || 1).unwrap();
    cache.on_insert("blog.article", &article(1, 1)).unwrap();
    assert!(
        !cached(&cache, &by_category(2)),
        "widened while the typo lives"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The typo is fixed (nothing reads it any more); its entry and every copy expire.
    // Meanwhile the category-2 count stays in use: it misses every second and is stored
    // again, and it must never lose its scheme (checked by a matching write at the end).
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(12_500) {
        let _: u64 = cache.get_or_compute(&by_category(2), || 1).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    seen.lock().unwrap().clear();
    let _: u64 = cache.get_or_compute(&by_category(2), || 1).unwrap();
    cache.on_insert("blog.article", &article(2, 1)).unwrap();
    assert!(
        cached(&cache, &by_category(2)),
        "granular again: a category-1 row leaves the category-2 count alone"
    );
    assert!(seen.lock().unwrap().is_empty(), "no widening any more");
    // The live read kept its scheme: a category-2 row kills it.
    cache.on_insert("blog.article", &article(3, 2)).unwrap();
    assert!(!cached(&cache, &by_category(2)));
}

fn every_missing_field_is_named_once_per_scheme(b: Backend) {
    let (cache, seen) = cache(b, "several", Duration::from_secs(60));
    // A conjunction over a real field and two typos, and a whole-table read.
    let read = Read::fetch("blog.article").filter(
        Cond::eq("category", 1)
            .and(Cond::eq("tilte", "x"))
            .and(Cond::eq("publshed", true)),
    );
    let _: u64 = cache.get_or_compute(&read, || 1).unwrap();
    let _: u64 = cache
        .get_or_compute(&Read::count("blog.article"), || 1)
        .unwrap();
    // Three rows in one call, all lacking both typos: one event for the scheme.
    let rows: Vec<stampcache::Row> = (0..3)
        .map(|i| stampcache::Row::from_serialize(&article(i, 1)).unwrap())
        .collect();
    cache.invalidate_rows("blog.article", rows).unwrap();
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let mut fields = events[0].fields.clone();
    fields.sort();
    assert_eq!(fields, ["category", "publshed", "tilte"]);
    let mut missing = events[0].missing.clone();
    missing.sort();
    assert_eq!(missing, ["publshed", "tilte"]);
    assert!(events[0].first);
    assert!(events[0]
        .read
        .as_deref()
        .is_some_and(|r| r.contains("fetch(")));
}
