//! The stale-read checker with the change stream as the only invalidation (a short
//! schedule): writer threads commit random updates through plain SQL, no `on_*` call
//! anywhere; reader threads read through caches that share the consumer's Redis (one with
//! the consumer, one without, one with the strict local tier), each through its own
//! PostgreSQL connection. Once a write's position is reported applied, no read that starts
//! after returns an older value. Reports operations, stale reads (must be 0) and the
//! commit-to-applied lag.
//!
//! It found stale reads (one write behind, in about 4 of 10 runs) until the consumer
//! waited, before each apply, until new snapshots see the batch's transactions: PostgreSQL
//! writes a commit (and may stream it) before the commit is visible, and a read that
//! prepared its stamps after the invalidation but took its snapshot before visibility
//! stored the old value. The check must use the snapshot's `xmax` as well as its running
//! list: the newest commit is above `xmax` until it is visible, not in the list.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{shared_redis_url, unique_prefix};
use stampcache::cdc::{wait_published, Consumer, Lsn};
use stampcache::{Cache, Cond, LocalMode, Read};

const ROWS: i64 = 20;
const GROUPS: i64 = 4;
const RUN: Duration = Duration::from_secs(3);

fn connect(pg: &pg::PgServer, db: &str) -> postgres::Client {
    postgres::Client::connect(&pg.conninfo(db), postgres::NoTls).expect("connect")
}

/// A small deterministic generator (no dependency).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn no_stale_read_once_the_consumer_reports_a_write_applied() {
    let pg = pg::shared();
    let db = pg::fresh_database(pg, "checker");
    pg.psql(
        &db,
        &[
            "CREATE TABLE counter (id int PRIMARY KEY, grp int NOT NULL, v bigint NOT NULL)",
            "ALTER TABLE counter REPLICA IDENTITY FULL",
            &format!(
                "INSERT INTO counter SELECT i, i % {GROUPS}, 0 FROM generate_series(0, {}) i",
                ROWS - 1
            ),
        ],
    );
    let prefix = unique_prefix("checker");
    let build = |local: bool| {
        let b = Cache::builder()
            .redis(shared_redis_url())
            .prefix(prefix.as_str());
        let b = if local { b.local(LocalMode::Strict) } else { b };
        b.build().unwrap()
    };
    let consumer_cache = build(false);
    let consumer = Arc::new(
        Consumer::builder(&pg.conninfo(&db))
            .publication("checker")
            .create_publication(["counter"])
            .slot("checker")
            .create_slot(true)
            .status_interval(Duration::from_millis(100))
            .spawn(consumer_cache.clone())
            .expect("the consumer starts"),
    );
    // Per row, the highest value whose write is known applied (the floor for reads that
    // start after).
    let floors: Arc<Vec<AtomicI64>> = Arc::new((0..ROWS).map(|_| AtomicI64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, writes, stale) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let lags = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for w in 0..2u64 {
        let (mut client, floors, stop, writes, lags, consumer) = (
            connect(pg, &db),
            floors.clone(),
            stop.clone(),
            writes.clone(),
            lags.clone(),
            consumer.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (w + 1);
            while !stop.load(Ordering::Relaxed) {
                let id = (next(&mut seed) % ROWS as u64) as i32;
                let row = client
                    .query_one(
                        "UPDATE counter SET v = v + 1 WHERE id = $1 RETURNING v",
                        &[&id],
                    )
                    .unwrap();
                let committed = Instant::now();
                let v: i64 = row.get(0);
                let lsn: String = client
                    .query_one("SELECT pg_current_wal_lsn()::text", &[])
                    .unwrap()
                    .get(0);
                let lsn: Lsn = lsn.parse().unwrap();
                assert!(consumer.wait_applied(lsn, Duration::from_secs(20)));
                lags.lock().unwrap().push(committed.elapsed());
                floors[id as usize].fetch_max(v, Ordering::SeqCst);
                writes.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Readers: the consumer's own cache, another cache on the same Redis (another
    // process's view), and one with the strict local tier.
    for (r, cache) in [
        (0u64, consumer_cache.clone()),
        (1, build(false)),
        (2, build(true)),
    ] {
        let (mut client, floors, stop, reads, stale) = (
            connect(pg, &db),
            floors.clone(),
            stop.clone(),
            reads.clone(),
            stale.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut seed = 0xD1B5_4A32_D192_ED03 ^ (r + 1);
            while !stop.load(Ordering::Relaxed) {
                let before: Vec<i64> = floors.iter().map(|f| f.load(Ordering::SeqCst)).collect();
                let pick = next(&mut seed);
                let rows: Vec<(i32, i64)> = if pick % 2 == 0 {
                    let id = (pick / 2 % ROWS as u64) as i32;
                    let read = Read::get("counter").filter(Cond::eq("id", id));
                    cache
                        .get_or_load(&read, || {
                            client
                                .query_one("SELECT v FROM counter WHERE id = $1", &[&id])
                                .map(|row| vec![(id, row.get::<_, i64>(0))])
                        })
                        .unwrap()
                } else {
                    let grp = (pick / 2 % GROUPS as u64) as i32;
                    let read = Read::fetch("counter").filter(Cond::eq("grp", grp));
                    cache
                        .get_or_load(&read, || {
                            client
                                .query("SELECT id, v FROM counter WHERE grp = $1", &[&grp])
                                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                        })
                        .unwrap()
                };
                for (id, v) in rows {
                    if v < before[id as usize] {
                        stale.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "stale: reader {r} ({}) row {id} read {v}, applied {}",
                            if pick % 2 == 0 { "by id" } else { "by group" },
                            before[id as usize]
                        );
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // The same floor holds for a process with no handle, through the published position.
    let lsn: Lsn = pg.current_lsn(&db).parse().unwrap();
    assert!(wait_published(&build(false), "checker", lsn, Duration::from_secs(20)).unwrap());
    let mut lags = lags.lock().unwrap().clone();
    lags.sort();
    let pct = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
    eprintln!(
        "checker: {} writes, {} reads, {} stale; lag p50 {:?} p99 {:?}",
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        stale.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99)
    );
    assert!(writes.load(Ordering::Relaxed) > 20 && reads.load(Ordering::Relaxed) > 100);
    assert_eq!(stale.load(Ordering::Relaxed), 0, "stale reads");
    drop(consumer);
}
