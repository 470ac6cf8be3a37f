//! Async cache hits under concurrency: 1, 8 and 64 tokio tasks sharing one multiplexed
//! connection, against a bare redis-rs multiplexed `GET` loop of the same bytes in the same
//! run, and against a bare `MGET` of one such value and two 20-byte keys (the shape of a
//! shared-tier hit: the entry and its two stamps). Modes: a shared-tier hit (no local tier), a prepared shared-tier hit, and a tracked
//! local hit (no round trip). 1,000 hot keys, one `Article` each, all cached before timing.
//!
//! Each measurement runs N tasks for a warm-up, then counts operations for a fixed time.
//! Every round measures the bare loop and each mode back to back (the order flips on odd
//! rounds), so machine noise hits them alike; ratios are medians of per-round ratios
//! (ours / bare). Prints readable lines, then one JSON object.
//!
//! `cargo bench --bench async_hits` (REDIS_URL to use a server that may be written to).
//!
//! For a profiler: `ASYNC_HITS_PROFILE=<mode>:<tasks>:<seconds>` (mode `shared`, `prepared`,
//! `tracked`, `bare_get` or `bare_mget3`) runs that one mode only, after the same set-up,
//! e.g. `ASYNC_HITS_PROFILE=shared:64:10 perf record -g target/release/deps/async_hits-*`.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Article;
use crossbeam_utils::CachePadded;
use redis::aio::MultiplexedConnection;
use stampcache::{AsyncCache, AsyncPrepared, Bitcode, Codec, Cond, DefaultCodec, LocalMode, Read};
use tokio::runtime::Runtime;

const KEYS: usize = 1000;
const TASKS: [usize; 3] = [1, 8, 64];
const ROUNDS: usize = 5;
const WARMUP: Duration = Duration::from_millis(200);
const MEASURE: Duration = Duration::from_secs(1);
/// Every task yields this often even when its operations never wait (local hits), so all
/// N tasks take turns on the workers.
const YIELD_EVERY: u64 = 256;
const PREFIX: &str = "bench-async:";
const BARE_PREFIX: &str = "bench-async-bare:";

/// Loader calls while timing (there should be none: every read is a hit).
static MISSES: AtomicU64 = AtomicU64::new(0);

async fn load(k: usize) -> Article {
    MISSES.fetch_add(1, Ordering::Relaxed);
    Article::new(k as i64)
}

/// One task's state; `hit` reads key `k`.
trait Worker: Send + 'static {
    fn hit(&mut self, k: usize) -> impl Future<Output = ()> + Send;
}

struct BareGet {
    conn: MultiplexedConnection,
    keys: Arc<Vec<String>>,
}

impl Worker for BareGet {
    async fn hit(&mut self, k: usize) {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(&self.keys[k])
            .query_async(&mut self.conn)
            .await
            .unwrap();
        black_box(v);
    }
}

/// The shape of a shared-tier hit without the cache: `MGET` of the value and two stamps.
struct BareMget {
    conn: MultiplexedConnection,
    keys: Arc<Vec<[String; 3]>>,
}

impl Worker for BareMget {
    async fn hit(&mut self, k: usize) {
        let v: Vec<Vec<u8>> = redis::cmd("MGET")
            .arg(&self.keys[k][..])
            .query_async(&mut self.conn)
            .await
            .unwrap();
        black_box(v);
    }
}

struct CacheHit {
    cache: AsyncCache,
    reads: Arc<Vec<Read>>,
}

impl Worker for CacheHit {
    async fn hit(&mut self, k: usize) {
        let v: Article = self
            .cache
            .get_or_compute(&self.reads[k], || load(k))
            .await
            .unwrap();
        black_box(v);
    }
}

struct PreparedHit {
    prepared: Arc<Vec<AsyncPrepared<DefaultCodec>>>,
}

impl Worker for PreparedHit {
    async fn hit(&mut self, k: usize) {
        let v: Article = self.prepared[k].get_or_compute(|| load(k)).await.unwrap();
        black_box(v);
    }
}

/// Operations per second of `workers.len()` tasks over [`MEASURE`] after [`WARMUP`], and
/// the operations done in all (warm-up and wind-down included).
fn measure<W: Worker>(rt: &Runtime, workers: Vec<W>) -> (f64, u64) {
    let n = workers.len();
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Arc<Vec<CachePadded<AtomicU64>>> = Arc::new(
        (0..n)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect(),
    );
    let handles: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(t, mut w)| {
            let (stop, counters) = (stop.clone(), counters.clone());
            rt.spawn(async move {
                let mut k = t * KEYS / n;
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    w.hit(k).await;
                    done += 1;
                    counters[t].store(done, Ordering::Relaxed);
                    k = if k + 1 == KEYS { 0 } else { k + 1 };
                    if done % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                done
            })
        })
        .collect();
    let sum = || -> u64 { counters.iter().map(|c| c.load(Ordering::Relaxed)).sum() };
    std::thread::sleep(WARMUP);
    let (c0, t0) = (sum(), Instant::now());
    std::thread::sleep(MEASURE);
    let (c1, t1) = (sum(), Instant::now());
    stop.store(true, Ordering::Relaxed);
    let total = rt.block_on(async {
        let mut total = 0;
        for h in handles {
            total += h.await.unwrap();
        }
        total
    });
    ((c1 - c0) as f64 / (t1 - t0).as_secs_f64(), total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    BareMget,
    Shared,
    Prepared,
    Tracked,
}

const MODES: [Mode; 5] = [
    Mode::Bare,
    Mode::BareMget,
    Mode::Shared,
    Mode::Prepared,
    Mode::Tracked,
];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bare => "bare_get",
            Mode::BareMget => "bare_mget3",
            Mode::Shared => "shared",
            Mode::Prepared => "prepared",
            Mode::Tracked => "tracked",
        }
    }
}

struct Setup {
    bare: MultiplexedConnection,
    bare_keys: Arc<Vec<String>>,
    mget_keys: Arc<Vec<[String; 3]>>,
    shared: AsyncCache,
    tracked: AsyncCache,
    reads: Arc<Vec<Read>>,
    prepared: Arc<Vec<AsyncPrepared<DefaultCodec>>>,
}

impl Setup {
    /// Runs `mode` with `n` tasks: (ops/s, operations in all).
    fn run(&self, rt: &Runtime, mode: Mode, n: usize) -> (f64, u64) {
        let cache = |cache: &AsyncCache| -> Vec<CacheHit> {
            (0..n)
                .map(|_| CacheHit {
                    cache: cache.clone(),
                    reads: self.reads.clone(),
                })
                .collect()
        };
        match mode {
            Mode::Bare => measure(
                rt,
                (0..n)
                    .map(|_| BareGet {
                        conn: self.bare.clone(),
                        keys: self.bare_keys.clone(),
                    })
                    .collect(),
            ),
            Mode::BareMget => measure(
                rt,
                (0..n)
                    .map(|_| BareMget {
                        conn: self.bare.clone(),
                        keys: self.mget_keys.clone(),
                    })
                    .collect(),
            ),
            Mode::Shared => measure(rt, cache(&self.shared)),
            Mode::Prepared => measure(
                rt,
                (0..n)
                    .map(|_| PreparedHit {
                        prepared: self.prepared.clone(),
                    })
                    .collect(),
            ),
            Mode::Tracked => measure(rt, cache(&self.tracked)),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list
    }
    let (_server, url) = common::bench_redis();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());

    let (shared, tracked, bare, value_bytes) = rt.block_on(async {
        let build = |local: Option<LocalMode>| {
            let b = stampcache::Cache::builder().redis(&url).prefix(PREFIX);
            match local {
                Some(m) => b.local(m).build_async().unwrap(),
                None => b.build_async().unwrap(),
            }
        };
        let shared = build(None);
        shared.invalidate_all().await.unwrap();
        let tracked = build(Some(LocalMode::Tracked));
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut bare = client.get_multiplexed_async_connection().await.unwrap();
        let mut value_bytes = 0;
        for k in 0..KEYS {
            let bytes = Bitcode::encode(&Article::new(k as i64)).unwrap();
            value_bytes = value_bytes.max(bytes.len());
            let _: () = redis::cmd("SET")
                .arg(format!("{BARE_PREFIX}{k}"))
                .arg(bytes)
                .query_async(&mut bare)
                .await
                .unwrap();
            for s in ["s1", "s2"] {
                let _: () = redis::cmd("SET")
                    .arg(format!("{BARE_PREFIX}{s}:{k}"))
                    .arg(format!("{:016x}.{k:03}", k * 7919))
                    .query_async(&mut bare)
                    .await
                    .unwrap();
            }
        }
        (shared, tracked, bare, value_bytes)
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tracked.push_channel_up() {
        assert!(Instant::now() < deadline, "push channel did not come up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let reads: Arc<Vec<Read>> = Arc::new(
        (0..KEYS)
            .map(|k| Read::get("blog.article").filter(Cond::eq("id", k as i64)))
            .collect(),
    );
    let prepared = Arc::new(reads.iter().map(|r| shared.prepare(r)).collect());
    let setup = Setup {
        bare,
        bare_keys: Arc::new((0..KEYS).map(|k| format!("{BARE_PREFIX}{k}")).collect()),
        mget_keys: Arc::new(
            (0..KEYS)
                .map(|k| {
                    [
                        format!("{BARE_PREFIX}{k}"),
                        format!("{BARE_PREFIX}s1:{k}"),
                        format!("{BARE_PREFIX}s2:{k}"),
                    ]
                })
                .collect(),
        ),
        shared,
        tracked,
        reads,
        prepared,
    };

    // Everything cached before timing: shared entries, then the tracked tier's local copies
    // (a whole pass of local hits).
    rt.block_on(async {
        for k in 0..KEYS {
            let _: Article = setup
                .shared
                .get_or_compute(&setup.reads[k], || load(k))
                .await
                .unwrap();
        }
        for pass in 0.. {
            assert!(pass < 20, "the tracked tier does not answer locally");
            let before = setup.tracked.stats().local.hits;
            for k in 0..KEYS {
                let _: Article = setup
                    .tracked
                    .get_or_compute(&setup.reads[k], || load(k))
                    .await
                    .unwrap();
            }
            if setup.tracked.stats().local.hits - before == KEYS as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for m in MODES {
        setup.run(&rt, m, 8); // connections up, scripts and plans warm
    }
    MISSES.store(0, Ordering::Relaxed);

    if let Ok(spec) = std::env::var("ASYNC_HITS_PROFILE") {
        let parts: Vec<&str> = spec.split(':').collect();
        let mode = MODES
            .into_iter()
            .find(|m| m.name() == parts[0])
            .expect("ASYNC_HITS_PROFILE=<mode>:<tasks>:<seconds>");
        let n: usize = parts.get(1).and_then(|p| p.parse().ok()).unwrap_or(64);
        let secs: u64 = parts.get(2).and_then(|p| p.parse().ok()).unwrap_or(10);
        let end = Instant::now() + Duration::from_secs(secs);
        let mut rates = Vec::new();
        while Instant::now() < end {
            rates.push(setup.run(&rt, mode, n).0);
        }
        println!(
            "{} at {n} tasks: {:.0} ops/s (median)",
            mode.name(),
            median(rates)
        );
        return;
    }

    println!(
        "async hits: {KEYS} keys of {value_bytes} B, {workers} tokio workers, \
         {ROUNDS} rounds of {:?} (+{:?} warm-up) per mode",
        MEASURE, WARMUP
    );
    let mut out: Vec<String> = vec![
        format!("\"keys\": {KEYS}"),
        format!("\"value_bytes\": {value_bytes}"),
        format!("\"workers\": {workers}"),
        format!("\"rounds\": {ROUNDS}"),
    ];
    let (mut tracked_ops, mut tracked_hits) = (0u64, 0u64);
    let mut pass_08 = true;
    for n in TASKS {
        // ops[mode][round]
        let mut ops = vec![Vec::new(); MODES.len()];
        for round in 0..ROUNDS {
            let mut order = MODES.to_vec();
            if round % 2 == 1 {
                order.reverse();
            }
            for m in order {
                let hits = setup.tracked.stats().local.hits;
                let (rate, total) = setup.run(&rt, m, n);
                if m == Mode::Tracked {
                    tracked_ops += total;
                    tracked_hits += setup.tracked.stats().local.hits - hits;
                }
                ops[m as usize].push(rate);
            }
            let line: Vec<String> = MODES
                .iter()
                .map(|&m| format!("{} {:.0}", m.name(), ops[m as usize][round]))
                .collect();
            println!("  {n:>2} tasks, round {round}: {}", line.join(", "));
        }
        let bare = ops[Mode::Bare as usize].clone();
        let mget = ops[Mode::BareMget as usize].clone();
        let bare_med = median(bare.clone());
        out.push(format!("\"bare_get_ops_s_{n}t\": {bare_med:.0}"));
        let mut line = format!("{n:>2} tasks: bare GET {bare_med:.0} ops/s");
        let mget_ratio = median(mget.iter().zip(&bare).map(|(o, b)| o / b).collect());
        out.push(format!(
            "\"bare_mget3_ops_s_{n}t\": {:.0}",
            median(mget.clone())
        ));
        out.push(format!(
            "\"ratio_bare_mget3_vs_bare_{n}t\": {mget_ratio:.3}"
        ));
        line.push_str(&format!(" | bare MGET(3) ({mget_ratio:.2}x)"));
        for m in [Mode::Shared, Mode::Prepared, Mode::Tracked] {
            let mine = &ops[m as usize];
            let med = median(mine.clone());
            let ratio = median(mine.iter().zip(&bare).map(|(o, b)| o / b).collect());
            let vs_mget = median(mine.iter().zip(&mget).map(|(o, b)| o / b).collect());
            out.push(format!(
                "\"ratio_{}_vs_bare_mget3_{n}t\": {vs_mget:.3}",
                m.name()
            ));
            if m != Mode::Tracked && ratio < 0.8 {
                pass_08 = false;
            }
            out.push(format!("\"{}_ops_s_{n}t\": {med:.0}", m.name()));
            out.push(format!("\"ratio_{}_vs_bare_{n}t\": {ratio:.3}", m.name()));
            line.push_str(&format!(" | {} {med:.0} ({ratio:.2}x)", m.name()));
        }
        println!("{line}");
    }
    let misses = MISSES.load(Ordering::Relaxed);
    let local_fraction = tracked_hits as f64 / tracked_ops.max(1) as f64;
    println!(
        "loader calls while timing: {misses}; tracked reads answered locally: {:.4}; \
         shared and prepared >= 0.8x bare GET at every N: {pass_08}",
        local_fraction
    );
    out.push(format!("\"misses\": {misses}"));
    out.push(format!("\"tracked_local_fraction\": {local_fraction:.4}"));
    out.push(format!("\"shared_at_least_0_8x\": {pass_08}"));
    println!("{{\"bench\": \"async_hits\", {}}}", out.join(", "));
}
