//! The worker processes: readers read through the cache (one tier and one front end per
//! process, several threads), writers change the truth and invalidate. Each prints one JSON
//! report on stdout when its stdin closes (or its share of `--ops` is done).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use stampcache::{Cache, Cond, Error, Event, LoadError, LocalMode, Profile, Read};

use crate::stats::{now_ms, Report, Stale};
use crate::truth::{Item, Truth};
use crate::Opts;

/// The cached table.
pub const TABLE: &str = "chk.item";

/// Most stale reads whose details a worker reports.
const SAMPLES: usize = 5;
/// Most stale-read times a worker reports (for attribution to faults).
const TIMES: usize = 20_000;

/// Set when the coordinator closes our stdin: finish and report.
static STOP: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set by the event listener when a batch this thread sent was queued instead.
    static QUEUED: Cell<bool> = const { Cell::new(false) };
}

/// A small deterministic generator (xorshift64*), enough to pick keys.
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Runs a worker to its end and prints its report. `Err` is a setup error.
pub fn run(o: &Opts) -> Result<(), String> {
    // The coordinator closes our stdin to stop us (and it closes when it dies).
    thread::spawn(|| {
        let mut sink = [0u8; 64];
        while let Ok(n) = std::io::stdin().read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        STOP.store(true, Ordering::SeqCst);
    });
    let report = match o.role.as_str() {
        "reader" => reader(o)?,
        "writer" => writer(o)?,
        other => return Err(format!("unknown role {other:?} (reader or writer)")),
    };
    let line = serde_json::to_string(&report).map_err(|e| format!("report: {e}"))?;
    println!("{line}");
    Ok(())
}

fn mode(tier: &str) -> Result<LocalMode, String> {
    match tier {
        "shared" => Ok(LocalMode::Off),
        "strict" => Ok(LocalMode::Strict),
        "tracked" => Ok(LocalMode::Tracked),
        other => Err(format!(
            "unknown tier {other:?} (shared, strict or tracked)"
        )),
    }
}

fn builder(o: &Opts, local: LocalMode) -> stampcache::Builder {
    Cache::builder()
        .redis(o.cache_url.clone())
        .prefix(o.cache_prefix.clone())
        .degrade_on_failure(true)
        .io_timeout(Duration::from_millis(o.io_timeout_ms))
        .connect_timeout(Duration::from_millis(o.io_timeout_ms))
        .retry_after(Duration::from_millis(o.retry_after_ms))
        .tracking_heartbeat(Duration::from_millis(o.heartbeat_ms))
        .pool_size(o.threads as usize + 2)
        .default_profile(Profile::new().timeout(Duration::from_secs(60)))
        .local(local)
        .on_event(|e| {
            if let Event::InvalidationQueued(_) = e {
                QUEUED.with(|q| q.set(true));
            }
        })
}

/// A short name for a cache error.
fn kind(e: &Error) -> String {
    match e {
        Error::Redis(r) if r.is_timeout() => "redis timeout".into(),
        Error::Redis(r) if r.is_connection_dropped() || r.is_io_error() => {
            "redis connection".into()
        }
        Error::Redis(r) if r.is_connection_refusal() => "redis refused".into(),
        Error::Redis(r) => format!("redis {:?}", r.kind()),
        Error::Unavailable(_) => "unavailable".into(),
        Error::Timeout { .. } => "redis timeout".into(),
        Error::InvalidationQueued(inner) => format!("queued ({})", kind(inner)),
        Error::Protocol(_) => "protocol".into(),
        Error::Codec(_) => "codec".into(),
        Error::LoaderFailed => "loader failed".into(),
        other => format!("other: {other}"),
    }
}

/// The front end a reader uses.
enum Front {
    /// `Cache`, called from the reader's threads.
    Blocking(Cache),
    /// `AsyncCache`, each read driven from a reader thread by the runtime's handle.
    Async(stampcache::AsyncCache, tokio::runtime::Handle),
}

/// Reads through the front end; the loader reads the truth.
macro_rules! through {
    ($front:expr, $read:expr, $load:expr) => {{
        #[allow(unused_mut)]
        let mut load = $load;
        match $front {
            Front::Blocking(c) => c.get_or_load(&$read, load),
            Front::Async(c, rt) => rt.block_on(c.get_or_load(&$read, || async move { load() })),
        }
    }};
}

/// Snapshots of every key's watermarks, each with the time its reply arrived.
type History = Arc<Mutex<VecDeque<(Instant, Arc<Vec<(u64, u64)>>)>>>;

/// Where a reader's watermarks come from: asked per read, or (tracked tier) a poller's
/// history, taken `slack` before the read starts.
enum Marks {
    Direct,
    Delayed { slack: Duration, history: History },
}

/// Every read key: rows, then lists, then counts.
fn all_keys(o: &Opts) -> Vec<String> {
    let mut keys: Vec<String> = (0..o.rows).map(|i| format!("r:{i}")).collect();
    keys.extend((0..o.categories).map(|c| format!("l:{c}")));
    keys.extend((0..o.categories).map(|c| format!("k:{c}")));
    keys
}

fn reader(o: &Opts) -> Result<Report, String> {
    let local = mode(&o.tier)?;
    let runtime;
    let front = match o.front.as_str() {
        "blocking" => Front::Blocking(builder(o, local).build().map_err(|e| e.to_string())?),
        "async" => {
            runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("tokio: {e}"))?;
            let cache = runtime
                .block_on(async { builder(o, local).build_async() })
                .map_err(|e| e.to_string())?;
            Front::Async(cache, runtime.handle().clone())
        }
        other => return Err(format!("unknown front end {other:?} (blocking or async)")),
    };
    let front = Arc::new(front);
    let keys = Arc::new(all_keys(o));
    let marks = if local == LocalMode::Tracked {
        let history: History = Arc::default();
        let (h, k) = (history.clone(), keys.clone());
        let slack = Duration::from_millis(o.tracked_slack_ms);
        let mut truth = Truth::connect(&o.truth_url, &o.truth_prefix)?;
        thread::spawn(move || {
            while !STOP.load(Ordering::SeqCst) {
                if let Ok(w) = truth.watermarks(&k) {
                    let now = Instant::now();
                    if let Ok(mut h) = h.lock() {
                        h.push_back((now, Arc::new(w)));
                        while h.len() > 2
                            && now.saturating_duration_since(h[1].0)
                                > slack + Duration::from_secs(1)
                        {
                            h.pop_front();
                        }
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        Marks::Delayed { slack, history }
    } else {
        Marks::Direct
    };
    let marks = Arc::new(marks);
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..o.threads {
        let (o, front, marks, done) = (o.clone(), front.clone(), marks.clone(), done.clone());
        let truth = Truth::connect(&o.truth_url, &o.truth_prefix)?;
        handles.push(thread::spawn(move || {
            read_loop(
                &o,
                &front,
                &marks,
                truth,
                o.seed ^ (t as u64 + 1) << 32,
                &done,
            )
        }));
    }
    let mut report = Report {
        role: "reader".into(),
        group: format!("{}/{}", o.tier, o.front),
        ..Report::default()
    };
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a reader thread panicked".to_string())?;
        report.merge(&r);
    }
    report.samples.truncate(SAMPLES);
    Ok(report)
}

fn read_loop(
    o: &Opts,
    front: &Front,
    marks: &Marks,
    mut truth: Truth,
    seed: u64,
    done: &AtomicU64,
) -> Report {
    let mut rng = Rng::new(seed);
    let mut r = Report::default();
    let rows = o.rows as u64;
    let cats = o.categories as u64;
    while !STOP.load(Ordering::SeqCst) {
        if o.ops > 0 && done.fetch_add(1, Ordering::SeqCst) >= o.ops {
            break;
        }
        let pick = rng.below(3);
        let (op, key, index) = match pick {
            0 => {
                let i = rng.below(rows);
                ("get", format!("r:{i}"), i)
            }
            1 => {
                let c = rng.below(cats);
                ("fetch", format!("l:{c}"), rows + c)
            }
            _ => {
                let c = rng.below(cats);
                ("count", format!("k:{c}"), rows + cats + c)
            }
        };
        // The watermark: taken before the read starts.
        let mark = match marks {
            Marks::Direct => truth
                .watermarks(std::slice::from_ref(&key))
                .ok()
                .and_then(|w| w.first().copied()),
            Marks::Delayed { slack, history } => {
                let now = Instant::now();
                history.lock().ok().and_then(|h| {
                    h.iter()
                        .rev()
                        .find(|(t, _)| now.saturating_duration_since(*t) >= *slack)
                        .and_then(|(_, w)| w.get(index as usize).copied())
                })
            }
        };
        let at = now_ms();
        let start = Instant::now();
        let id = key[2..].parse::<i64>().unwrap_or(0);
        let got: Result<u64, LoadError<String>> = match op {
            "get" => {
                let read = Read::get(TABLE).filter(Cond::eq("id", id));
                through!(front, read, || truth.get(id)).map(|v: (u64, Item)| v.0)
            }
            "fetch" => {
                let read = Read::fetch(TABLE).filter(Cond::eq("category", id));
                through!(front, read, || truth.list(id)).map(|v: (u64, Vec<Item>)| v.0)
            }
            _ => {
                let cond = Cond::eq("category", id).and(Cond::eq("flag", true));
                let read = Read::count(TABLE).filter(cond);
                through!(front, read, || truth.count(id)).map(|v: (u64, u64)| v.0)
            }
        };
        let elapsed = start.elapsed();
        match got {
            Ok(v) => {
                *r.ops.entry(op.into()).or_default() += 1;
                r.latency.entry(op.into()).or_default().record(elapsed);
                let Some((returned, delivered)) = mark else {
                    r.unchecked += 1;
                    continue;
                };
                if v < returned {
                    r.stale_returned += 1;
                    if v < delivered {
                        r.stale_delivered += 1;
                    }
                    if r.samples.len() < SAMPLES {
                        r.samples.push(Stale {
                            key: key.clone(),
                            returned,
                            delivered,
                            got: v,
                            at_ms: at,
                        });
                    }
                    if r.stale_times.len() < TIMES {
                        r.stale_times.push((at, v < delivered));
                    }
                }
            }
            Err(LoadError::Cache(e)) => *r.errors.entry(kind(&e)).or_default() += 1,
            Err(LoadError::Loader(_)) => *r.errors.entry("truth".into()).or_default() += 1,
        }
    }
    r
}

fn writer(o: &Opts) -> Result<Report, String> {
    let cache = builder(o, LocalMode::Off)
        .build()
        .map_err(|e| e.to_string())?;
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..o.threads {
        let (o, cache, done) = (o.clone(), cache.clone(), done.clone());
        let truth = Truth::connect(&o.truth_url, &o.truth_prefix)?;
        handles.push(thread::spawn(move || {
            write_loop(&o, &cache, truth, o.seed ^ (t as u64 + 1) << 40, &done)
        }));
    }
    let mut report = Report {
        role: "writer".into(),
        group: "writer".into(),
        ..Report::default()
    };
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a writer thread panicked".to_string())?;
        report.merge(&r);
    }
    Ok(report)
}

fn write_loop(o: &Opts, cache: &Cache, mut truth: Truth, seed: u64, done: &AtomicU64) -> Report {
    let mut rng = Rng::new(seed);
    let mut r = Report::default();
    let started = Instant::now();
    let mut n = 0u64;
    while !STOP.load(Ordering::SeqCst) {
        if o.ops > 0 && done.fetch_add(1, Ordering::SeqCst) >= o.ops {
            break;
        }
        if o.idle_writers {
            // Bursts of one second, then 1.5 s idle.
            let phase = (started.elapsed().as_millis() + (seed % 2500) as u128) % 2500;
            if phase >= 1000 {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        }
        n += 1;
        let id = rng.below(o.rows as u64) as i64;
        let category = rng.below(o.categories as u64) as i64;
        let flag = rng.below(2) == 1;
        let w = match truth.write(id, category, flag) {
            Ok(w) => w,
            Err(_) => {
                *r.errors.entry("truth".into()).or_default() += 1;
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let start = Instant::now();
        let skip = o.break_invalidation > 0 && n % o.break_invalidation == 0;
        let (res, queued) = if skip {
            r.writes_skipped += 1;
            (Ok(()), false)
        } else {
            QUEUED.with(|q| q.set(false));
            let res = cache.on_update(TABLE, &w.old, &w.new);
            (res, QUEUED.with(|q| q.get()))
        };
        let elapsed = start.elapsed();
        match res {
            Ok(()) => {
                *r.ops.entry("write".into()).or_default() += 1;
                r.latency.entry("write".into()).or_default().record(elapsed);
                let kinds: &[&str] = if queued {
                    r.writes_queued += 1;
                    &["fa"]
                } else {
                    if !skip {
                        r.writes_delivered += 1;
                    }
                    &["fa", "fd"]
                };
                if truth.raise(kinds, &w.versions).is_err() {
                    *r.errors.entry("truth".into()).or_default() += 1;
                }
            }
            Err(e) => *r.errors.entry(format!("write: {}", kind(&e))).or_default() += 1,
        }
        if o.write_interval_ms > 0 {
            thread::sleep(Duration::from_millis(o.write_interval_ms));
        }
    }
    r
}
