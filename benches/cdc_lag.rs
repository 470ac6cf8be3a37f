//! Commit-to-applied lag of the change-stream consumer, and its highest sustained rate.
//!
//! A private PostgreSQL (`wal_level = logical`, `fsync = off`) and Redis; a 10,000-row
//! `article` table (`REPLICA IDENTITY FULL`) with category lists and rows by id cached, so
//! invalidations have stamps to delete. Writer threads commit `UPDATE`s of consecutive rows
//! through plain SQL at a paced rate; per transaction, the lag is the time from the
//! writer's commit returning to the consumer's handle reporting that position applied
//! (`pg_current_wal_lsn()` read right after the commit: with several writers it may include
//! a later commit, so the figure errs high). Then the writers run unpaced, and the
//! consumer's rows/s (from its first to its last applied row) is set beside the rows/s
//! PostgreSQL committed. Prints one JSON line.
//!
//! `cargo bench --features postgres-cdc --bench cdc_lag` (`REDIS_URL` to use a Redis the
//! bench may write to; `CDC_LAG_SECS` per phase, default 5).

mod common;
#[path = "../tests/common/pg.rs"]
mod pg;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stampcache::cdc::{Consumer, ConsumerHandle, Lsn};
use stampcache::{Cache, Cond, Read};

const ROWS: i64 = 10_000;

/// One writer's connection.
fn connect(pg: &pg::PgServer, db: &str) -> postgres::Client {
    postgres::Client::connect(&pg.conninfo(db), postgres::NoTls).expect("connect")
}

/// A writer: updates `per_tx` consecutive rows per transaction, every `period` (unpaced when
/// zero), until `stop`; sends `(commit returned, position)` per transaction.
fn writer(
    mut client: postgres::Client,
    seed: i64,
    per_tx: i64,
    period: Duration,
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
    sent: mpsc::Sender<(Instant, Lsn)>,
) {
    let update = client
        .prepare("UPDATE article SET title = md5(random()::text) WHERE id >= $1 AND id < $1 + $2")
        .unwrap();
    let mut next = Instant::now();
    let mut start = seed;
    while !stop.load(Ordering::Relaxed) {
        if !period.is_zero() {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += period;
        }
        start = (start * 7919 + 13) % (ROWS - per_tx);
        let n = client
            .execute(&update, &[&(start as i32), &(per_tx as i32)])
            .unwrap();
        let committed = Instant::now();
        let lsn: String = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .unwrap()
            .get(0);
        rows.fetch_add(n, Ordering::Relaxed);
        let _ = sent.send((committed, lsn.parse().unwrap()));
    }
}

/// Lags in order of arrival: each transaction's from its commit to the handle's applied
/// position reaching it.
fn collect(handle: &ConsumerHandle, rx: mpsc::Receiver<(Instant, Lsn)>) -> Vec<Duration> {
    let mut pending: BinaryHeap<Reverse<(Lsn, Instant)>> = BinaryHeap::new();
    let mut lags = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        loop {
            match rx.try_recv() {
                Ok((t, lsn)) => pending.push(Reverse((lsn, t))),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let Some(Reverse((lsn, _))) = pending.peek().copied() else {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        };
        if handle.wait_applied(lsn, Duration::from_millis(1)) {
            let now = Instant::now();
            let applied = handle.applied_lsn();
            while let Some(Reverse((lsn, t))) = pending.peek().copied() {
                if lsn > applied {
                    break;
                }
                pending.pop();
                lags.push(now.saturating_duration_since(t));
            }
        }
    }
    lags
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `writers` writers for `secs`; the JSON object of the phase.
#[allow(clippy::too_many_arguments)]
fn phase(
    pg: &pg::PgServer,
    db: &str,
    handle: &ConsumerHandle,
    target: Option<u64>,
    writers: usize,
    per_tx: i64,
    secs: Duration,
) -> String {
    let stop = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let period = match target {
        Some(rate) => Duration::from_secs_f64(writers as f64 * per_tx as f64 / rate as f64),
        None => Duration::ZERO,
    };
    let images_before = handle.stats().rows;
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|i| {
            let (client, stop, rows, tx) =
                (connect(pg, db), stop.clone(), rows.clone(), tx.clone());
            std::thread::spawn(move || {
                writer(client, i as i64 * 1000 + 1, per_tx, period, stop, rows, tx)
            })
        })
        .collect();
    drop(tx);
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(secs);
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut lags = collect(handle, rx);
    let caught_up = started.elapsed();
    stopper.join().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let committed = rows.load(Ordering::Relaxed);
    let images = handle.stats().rows - images_before;
    lags.sort();
    let pg_rate = committed as f64 / secs.as_secs_f64();
    let mut json = format!(
        "{{\"target_rows_per_s\":{},\"writers\":{writers},\"rows_per_tx\":{per_tx},\
         \"transactions\":{},\"pg_rows_per_s\":{:.0},\"p50_ms\":{},\"p99_ms\":{},\"max_ms\":{}",
        target.map_or("null".to_owned(), |t| t.to_string()),
        lags.len(),
        pg_rate,
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(percentile(&lags, 1.0)),
    );
    // Row changes applied per second, from the start until the last one was applied
    // (an update is two row images: old and new).
    json.push_str(&format!(
        ",\"consumer_rows_per_s\":{:.0},\"caught_up_after_s\":{:.3}}}",
        images as f64 / 2.0 / caught_up.as_secs_f64(),
        caught_up.as_secs_f64()
    ));
    json
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: keep that short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = Duration::from_secs(
        std::env::var("CDC_LAG_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if quick { 1 } else { 5 }),
    );
    let (_redis, url) = common::bench_redis();
    let pg = pg::PgServer::start(&[]);
    let db = "bench";
    pg.create_database(db);
    pg.psql(
        db,
        &[
            "CREATE TABLE article (id int PRIMARY KEY, category int NOT NULL, title text)",
            "ALTER TABLE article REPLICA IDENTITY FULL",
            "INSERT INTO article SELECT i, i % 100, 'title ' || i FROM generate_series(0, 9999) i",
            "CREATE PUBLICATION bench FOR TABLE article",
        ],
    );
    let cache = Cache::builder()
        .redis(url.as_str())
        .prefix(format!("cdclag{}:", std::process::id()))
        .build()
        .unwrap();
    let handle = Consumer::builder(&pg.conninfo(db))
        .publication("bench")
        .slot("bench")
        .create_slot(true)
        .spawn(cache.clone())
        .unwrap();
    // Reads to invalidate: every category list, and 1,000 rows by id.
    for c in 0..100 {
        let _: Vec<i64> = cache
            .get_or_compute(
                &Read::fetch("article").filter(Cond::eq("category", c)),
                || vec![c],
            )
            .unwrap();
    }
    for id in 0..1000 {
        let _: Vec<i64> = cache
            .get_or_compute(&Read::get("article").filter(Cond::eq("id", id)), || {
                vec![id]
            })
            .unwrap();
    }
    let phases = [
        phase(&pg, db, &handle, Some(1_000), 2, 10, secs),
        phase(&pg, db, &handle, Some(10_000), 4, 25, secs),
        phase(&pg, db, &handle, None, 4, 25, secs),
    ];
    println!(
        "{{\"bench\":\"cdc_lag\",\"phase_secs\":{},\"phases\":[{}]}}",
        secs.as_secs(),
        phases.join(",")
    );
    handle.stop();
}
