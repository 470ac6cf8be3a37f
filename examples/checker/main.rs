//! stampcache-check: finds stale reads under faults, against a Redis you point it at (or
//! one it starts).
//!
//! Several worker processes (this program re-executed with `--role reader|writer`), each
//! with several threads, read and write a model table through the cache. The truth (the
//! "database") lives in a Redis the faults never touch; writers change a row there, call
//! `on_update` and record the write as finished with its versions. A **stale read** is a
//! read that started after a write to data it covers had finished and returns a value older
//! than that write. Any stale read makes the exit status 1.
//!
//! ```sh
//! cargo run --release --example checker -- --spawn-redis --faults all --duration 60s
//! cargo run --release --example checker -- --redis redis://127.0.0.1:6379/9 --truth-url redis://127.0.0.1:6379/10
//! ```
//!
//! Run with `--help` for every option; the README's "Checking for stale reads" explains the
//! verdict.

mod coord;
mod proxy;
mod server;
mod stats;
mod truth;
mod worker;

use std::time::Duration;

const USAGE: &str = "\
stampcache checker: finds stale reads under faults

USAGE:
  checker (--spawn-redis | --redis URL) [OPTIONS]

WHERE:
  --spawn-redis          start a redis-server for the cache on a free port (needed for the
                         restart and stop faults)
  --redis URL            the cache's Redis (redis://[:password@]host:port/db); the checker
                         writes only keys of its own run prefix there and removes them at the end
  --truth-url URL        where the model database lives (default: a redis-server the checker
                         starts). A database of the cache's server works, but then faults that
                         would disturb it (restart, stop, sleep, maxmemory:*) are left out

HOW LONG:
  --duration D           e.g. 30s, 2m, 500ms (default 20s)
  --ops N                stop after N reads in all (instead of --duration)

WORKLOAD:
  --tiers LIST           shared,strict,tracked (default: all three)
  --fronts LIST          blocking,async (default: both)
  --readers N            reader processes per tier and front end (default 1)
  --writers N            writer processes (default 2)
  --threads N            threads per process (default 2)
  --rows N               rows of the model table (default 64)
  --categories N         categories rows move between (default 6)
  --write-interval D     pause of each writer thread between writes (default 2ms)
  --idle-writers         writers alternate 1 s of writes with 1.5 s of idleness
  --seed N               seed of the key choices (default: from the clock)

FAULTS:
  --faults LIST          comma-separated, or `all`, or `none` (default none):
                           restart           stop and restart redis-server (data lost)
                           stop              SIGSTOP for 0.6 s, then SIGCONT
                           kill-clients      CLIENT KILL of every pub/sub (tracking) and
                                             normal client of the server but ours
                           sleep             DEBUG SLEEP 0.2
                           flushdb           FLUSHDB of the cache's database
                           evict-persistent  delete the run's cache keys that have no TTL,
                                             and its scheme sets, as allkeys-* eviction may
                           proxy-drop        the proxy closes every connection
                           proxy-stall       the proxy holds every byte for 0.5 s
                           maxmemory:P       maxmemory below the data for 1.5 s (2 MB of
                                             ballast keys with a TTL first) with policy P:
                                             allkeys-lru, allkeys-lfu, allkeys-random,
                                             volatile-lru, volatile-lfu, volatile-random,
                                             volatile-ttl, noeviction; `maxmemory`: all 8
  --fault-every D        pause between faults (default 1s)
  --proxy                route workers through the proxy even without proxy faults

VERDICT:
  --finished WHEN        when a write counts as finished: `returned` (its on_update returned
                         Ok, also when the invalidation was queued; default) or `delivered`
                         (its invalidation reached Redis)
  --tracked-slack D      the tracked tier may lag pushes: its reads are checked against writes
                         finished this long before they started (default 3 heartbeats + 100ms)

CACHE SETTINGS (every worker degrades on failure):
  --io-timeout D         (default 300ms)   --retry-after D   (default 200ms)
  --heartbeat D          tracked tier's push heartbeat (default 100ms)

Exit status: 0 no stale read, 1 stale reads found, 2 bad usage or setup failure.
";

/// Every option, for the coordinator and for the workers (which get theirs as arguments).
#[derive(Debug, Clone)]
pub struct Opts {
    /// `reader`, `writer`, or empty for the coordinator.
    pub role: String,
    /// Start a redis-server for the cache.
    pub spawn_redis: bool,
    /// The cache's Redis as the user gave it.
    pub redis: Option<String>,
    /// The truth's Redis as the user gave it.
    pub truth: Option<String>,
    /// The URL workers give the cache (through the proxy when there is one).
    pub cache_url: String,
    /// The truth's URL.
    pub truth_url: String,
    /// Key prefix of the cache (unique per run).
    pub cache_prefix: String,
    /// Key prefix of the truth (unique per run).
    pub truth_prefix: String,
    /// Run length, when not by operations.
    pub duration: Duration,
    /// Reads in all (coordinator) or for this process (worker); 0: until stopped.
    pub ops: u64,
    /// Tiers of the readers.
    pub tiers: Vec<String>,
    /// Front ends of the readers.
    pub fronts: Vec<String>,
    /// This reader's tier.
    pub tier: String,
    /// This reader's front end.
    pub front: String,
    /// Reader processes per tier and front end.
    pub readers: u32,
    /// Writer processes.
    pub writers: u32,
    /// Threads per process.
    pub threads: u32,
    /// Rows of the model table.
    pub rows: u32,
    /// Categories.
    pub categories: u32,
    /// Pause between writes, per writer thread.
    pub write_interval_ms: u64,
    /// Writers alternate bursts and idleness.
    pub idle_writers: bool,
    /// Seed.
    pub seed: u64,
    /// Faults, in schedule order.
    pub faults: Vec<String>,
    /// Pause between faults.
    pub fault_every: Duration,
    /// Route through the proxy.
    pub proxy: bool,
    /// `returned` or `delivered`.
    pub finished: String,
    /// Slack of the tracked tier's check.
    pub tracked_slack_ms: u64,
    /// Cache I/O timeout.
    pub io_timeout_ms: u64,
    /// Cache breaker delay.
    pub retry_after_ms: u64,
    /// Tracked tier heartbeat.
    pub heartbeat_ms: u64,
    /// Test only: skip the invalidation of every Nth write of each writer thread.
    pub break_invalidation: u64,
}

/// Every fault the checker knows.
pub const FAULTS: &[&str] = &[
    "restart",
    "stop",
    "kill-clients",
    "sleep",
    "flushdb",
    "evict-persistent",
    "proxy-drop",
    "proxy-stall",
];

/// The eviction policies of the `maxmemory:P` faults.
pub const POLICIES: &[&str] = &[
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "noeviction",
];

/// Parses `30s`, `2m`, `500ms`, `1.5s` or a plain number of seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("not a duration: {s:?} (e.g. 30s, 2m, 500ms)");
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(0.0..1e7).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn number<T: std::str::FromStr>(flag: &str, s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{flag}: not a number: {s:?}"))
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

fn faults(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for f in list(s) {
        match f.as_str() {
            "none" => {}
            "all" => {
                out.extend(FAULTS.iter().map(|f| f.to_string()));
                out.extend(POLICIES.iter().map(|p| format!("maxmemory:{p}")));
            }
            "maxmemory" => out.extend(POLICIES.iter().map(|p| format!("maxmemory:{p}"))),
            f if FAULTS.contains(&f) => out.push(f.to_string()),
            f if f
                .strip_prefix("maxmemory:")
                .is_some_and(|p| POLICIES.contains(&p)) =>
            {
                out.push(f.to_string())
            }
            f => {
                return Err(format!(
                    "unknown fault {f:?}: one of {}, maxmemory:<policy> ({}), maxmemory, all, none",
                    FAULTS.join(", "),
                    POLICIES.join(", ")
                ))
            }
        }
    }
    Ok(out)
}

/// Parses the command line. `Ok(None)`: help was asked for.
fn parse(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        role: String::new(),
        spawn_redis: false,
        redis: None,
        truth: None,
        cache_url: String::new(),
        truth_url: String::new(),
        cache_prefix: String::new(),
        truth_prefix: String::new(),
        duration: Duration::from_secs(20),
        ops: 0,
        tiers: list("shared,strict,tracked"),
        fronts: list("blocking,async"),
        tier: "shared".into(),
        front: "blocking".into(),
        readers: 1,
        writers: 2,
        threads: 2,
        rows: 64,
        categories: 6,
        write_interval_ms: 2,
        idle_writers: false,
        seed: stats::now_ms(),
        faults: Vec::new(),
        fault_every: Duration::from_secs(1),
        proxy: false,
        finished: "returned".into(),
        tracked_slack_ms: 0,
        io_timeout_ms: 300,
        retry_after_ms: 200,
        heartbeat_ms: 100,
        break_invalidation: 0,
    };
    let mut slack = None;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let mut value = || -> Result<String, String> {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--spawn-redis" => o.spawn_redis = true,
            "--idle-writers" => o.idle_writers = true,
            "--proxy" => o.proxy = true,
            "--redis" => o.redis = Some(value()?),
            "--truth-url" => o.truth = Some(value()?),
            "--duration" => o.duration = duration(&value()?)?,
            "--ops" => o.ops = number(flag, &value()?)?,
            "--tiers" => o.tiers = list(&value()?),
            "--fronts" => o.fronts = list(&value()?),
            "--readers" => o.readers = number(flag, &value()?)?,
            "--writers" => o.writers = number(flag, &value()?)?,
            "--threads" => o.threads = number(flag, &value()?)?,
            "--rows" => o.rows = number(flag, &value()?)?,
            "--categories" => o.categories = number(flag, &value()?)?,
            "--write-interval" => o.write_interval_ms = duration(&value()?)?.as_millis() as u64,
            "--seed" => o.seed = number(flag, &value()?)?,
            "--faults" => o.faults = faults(&value()?)?,
            "--fault-every" => o.fault_every = duration(&value()?)?,
            "--finished" => o.finished = value()?,
            "--tracked-slack" => slack = Some(duration(&value()?)?.as_millis() as u64),
            "--io-timeout" => o.io_timeout_ms = duration(&value()?)?.as_millis() as u64,
            "--retry-after" => o.retry_after_ms = duration(&value()?)?.as_millis() as u64,
            "--heartbeat" => o.heartbeat_ms = duration(&value()?)?.as_millis() as u64,
            // Used by tests only: makes writers skip some invalidations.
            "--break-invalidation" => o.break_invalidation = number(flag, &value()?)?,
            // Worker arguments, written by the coordinator.
            "--role" => o.role = value()?,
            "--cache-url" => o.cache_url = value()?,
            "--truth-url-resolved" => o.truth_url = value()?,
            "--cache-prefix" => o.cache_prefix = value()?,
            "--truth-prefix" => o.truth_prefix = value()?,
            "--tier" => o.tier = value()?,
            "--front" => o.front = value()?,
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
        i += 1;
    }
    o.tracked_slack_ms = slack.unwrap_or(3 * o.heartbeat_ms + 100);
    if !matches!(o.finished.as_str(), "returned" | "delivered") {
        return Err(format!(
            "--finished: {:?} is neither `returned` nor `delivered`",
            o.finished
        ));
    }
    for t in &o.tiers {
        if !matches!(t.as_str(), "shared" | "strict" | "tracked") {
            return Err(format!(
                "--tiers: unknown tier {t:?} (shared, strict, tracked)"
            ));
        }
    }
    for f in &o.fronts {
        if !matches!(f.as_str(), "blocking" | "async") {
            return Err(format!(
                "--fronts: unknown front end {f:?} (blocking, async)"
            ));
        }
    }
    if o.tiers.is_empty() || o.fronts.is_empty() {
        return Err("--tiers and --fronts need at least one entry".into());
    }
    if o.rows == 0 || o.categories == 0 || o.threads == 0 || o.readers == 0 {
        return Err("--rows, --categories, --threads and --readers must be at least 1".into());
    }
    if o.io_timeout_ms == 0 || o.heartbeat_ms == 0 {
        return Err("--io-timeout and --heartbeat must be positive".into());
    }
    Ok(Some(o))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("checker: {e}");
            std::process::exit(2);
        }
    };
    let result = if opts.role.is_empty() {
        coord::run(opts)
    } else {
        worker::run(&opts).map(|()| true)
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("checker: {e}");
            std::process::exit(2);
        }
    }
}
