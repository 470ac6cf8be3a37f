//! The coordinator: starts the servers and the proxy, creates the truth, runs the workers,
//! injects the faults on a schedule, and reports.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::proxy::Proxy;
use crate::server::{free_port, Server};
use crate::stats::{now_ms, Report};
use crate::truth::Truth;
use crate::Opts;

/// A `redis://` URL taken apart.
#[derive(Debug, Clone)]
struct Url {
    /// `user:password@`, or empty.
    auth: String,
    /// Host name or address.
    host: String,
    /// TCP port.
    port: u16,
    /// Database number.
    db: u32,
}

impl Url {
    fn parse(u: &str) -> Result<Url, String> {
        let rest = u.strip_prefix("redis://").ok_or_else(|| {
            format!("{u}: only redis:// URLs are supported (the proxy and the faults need TCP)")
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((a, h)) => (format!("{a}@"), h),
            None => (String::new(), authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{u}: bad port {p:?}"))?),
            None => (hostport, 6379),
        };
        let db = match path.split(['?', '#']).next().unwrap_or("") {
            "" => 0,
            d => d.parse().map_err(|_| format!("{u}: bad database {d:?}"))?,
        };
        if host.is_empty() {
            return Err(format!("{u}: no host"));
        }
        Ok(Url {
            auth,
            host: host.to_string(),
            port,
            db,
        })
    }

    fn with_addr(&self, host: &str, port: u16) -> String {
        format!("redis://{}{host}:{port}/{}", self.auth, self.db)
    }

    fn url(&self) -> String {
        self.with_addr(&self.host, self.port)
    }

    fn same_server(&self, o: &Url) -> bool {
        let local = |h: &str| matches!(h, "127.0.0.1" | "localhost" | "::1" | "[::1]");
        self.port == o.port && (self.host == o.host || (local(&self.host) && local(&o.host)))
    }
}

/// One injected fault.
struct Injected {
    /// The fault's name (`stop`, `maxmemory:allkeys-lru`, …).
    name: String,
    /// When it began, ms since the epoch.
    start_ms: u64,
    /// What it did (connections dropped, keys evicted).
    note: String,
}

/// What the fault thread hands back.
struct FaultLog {
    /// Every fault injected, in order.
    injected: Vec<Injected>,
    /// Faults that could not be injected, and why.
    skipped: BTreeMap<String, String>,
}

fn admin(url: &str) -> Result<redis::Connection, String> {
    let c = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|_| c.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    Ok(c)
}

fn info_field(info: &str, field: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Sleeps `d` unless `stop` is set first.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        thread::sleep(Duration::from_millis(10).min(end.saturating_duration_since(Instant::now())));
    }
}

/// Keys of 1 KiB written before each `maxmemory` fault.
const BALLAST: u64 = 2000;

/// The fault injector's handles.
struct Injector {
    /// The cache's Redis, directly (not through the proxy).
    url: String,
    /// The run's cache key prefix.
    prefix: String,
    /// The cache's server, when the checker started it.
    server: Option<Server>,
    /// The proxy, when there is one.
    proxy: Option<Arc<Proxy>>,
}

impl Injector {
    fn cmd<T: redis::FromRedisValue>(&self, c: &mut redis::Cmd) -> Result<T, String> {
        let mut conn = admin(&self.url)?;
        c.query(&mut conn).map_err(|e| e.to_string())
    }

    /// Injects one fault and undoes it; returns a note.
    fn inject(&mut self, f: &str, stop: &AtomicBool) -> Result<String, String> {
        match f {
            "restart" => {
                let s = self.server.as_mut().ok_or("needs --spawn-redis")?;
                s.restart(Duration::from_millis(200))?;
                Ok(String::new())
            }
            "stop" => {
                let s = self.server.as_ref().ok_or("needs --spawn-redis")?;
                s.signal("STOP")?;
                thread::sleep(Duration::from_millis(600));
                s.signal("CONT")?;
                Ok(String::new())
            }
            "kill-clients" => {
                let pubsub: i64 =
                    self.cmd(redis::cmd("CLIENT").arg(&["KILL", "TYPE", "pubsub"]))?;
                let normal: i64 = self
                    .cmd(redis::cmd("CLIENT").arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"]))?;
                Ok(format!("{pubsub} pub/sub, {normal} normal"))
            }
            "sleep" => {
                self.cmd::<()>(redis::cmd("DEBUG").arg(&["SLEEP", "0.2"]))?;
                Ok(String::new())
            }
            "flushdb" => {
                self.cmd::<()>(&mut redis::cmd("FLUSHDB"))?;
                Ok(String::new())
            }
            "evict-persistent" => {
                let mut c = admin(&self.url)?;
                let n = evict_persistent(&mut c, &self.prefix).map_err(|e| e.to_string())?;
                Ok(format!("{n} keys"))
            }
            "proxy-drop" => {
                let p = self.proxy.as_ref().ok_or("no proxy")?;
                Ok(format!("{} connections", p.drop_all()))
            }
            "proxy-stall" => {
                let p = self.proxy.as_ref().ok_or("no proxy")?;
                p.stall(true);
                thread::sleep(Duration::from_millis(500));
                p.stall(false);
                Ok(String::new())
            }
            f => {
                let policy = f.strip_prefix("maxmemory:").ok_or("unknown fault")?;
                self.maxmemory(policy, stop)
            }
        }
    }

    fn maxmemory(&mut self, policy: &str, stop: &AtomicBool) -> Result<String, String> {
        let mut c = admin(&self.url)?;
        let q = |c: &mut redis::Connection, cmd: &mut redis::Cmd| -> Result<String, String> {
            cmd.query::<redis::Value>(c)
                .map(|v| format!("{v:?}"))
                .map_err(|e| e.to_string())
        };
        let get = |c: &mut redis::Connection, key: &str| -> Result<String, String> {
            let v: Vec<String> = redis::cmd("CONFIG")
                .arg(&["GET", key])
                .query(c)
                .map_err(|e| e.to_string())?;
            v.get(1)
                .cloned()
                .ok_or_else(|| format!("CONFIG GET {key}: no value"))
        };
        let info = |c: &mut redis::Connection, section: &str| -> Result<String, String> {
            redis::cmd("INFO")
                .arg(section)
                .query(c)
                .map_err(|e| e.to_string())
        };
        // Ballast: evictable keys (with a TTL, so `volatile-*` may take them too) that make
        // up most of the data, so that a limit half-way through them evicts some of the
        // cache's keys, not all of them.
        let mut pipe = redis::pipe();
        let blob = vec![b'x'; 1024];
        for i in 0..BALLAST {
            pipe.cmd("SET")
                .arg(format!("{}ballast:{i}", self.prefix))
                .arg(&blob)
                .arg("PX")
                .arg(600_000)
                .ignore();
        }
        pipe.query::<()>(&mut c).map_err(|e| e.to_string())?;
        let old_policy = get(&mut c, "maxmemory-policy")?;
        let old_max = get(&mut c, "maxmemory")?;
        let mem = info(&mut c, "memory")?;
        let used = info_field(&mem, "used_memory").unwrap_or(0);
        let evicted = |c: &mut redis::Connection| {
            info(c, "stats")
                .ok()
                .and_then(|s| info_field(&s, "evicted_keys"))
                .unwrap_or(0)
        };
        let before = evicted(&mut c);
        let target = used.saturating_sub(BALLAST * 1024 / 2).max(1);
        q(
            &mut c,
            redis::cmd("CONFIG").arg(&["SET", "maxmemory-policy", policy]),
        )?;
        q(
            &mut c,
            redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(target),
        )?;
        // Keep up the pressure: fresh ballast every 100 ms evicts a few keys at a time, over
        // and over, rather than once.
        let hold = Instant::now();
        let mut next = BALLAST;
        while !stop.load(Ordering::SeqCst) && hold.elapsed() < Duration::from_millis(1500) {
            nap(Duration::from_millis(100), stop);
            let mut pipe = redis::pipe();
            for i in next..next + BALLAST / 10 {
                pipe.cmd("SET")
                    .arg(format!("{}ballast:{i}", self.prefix))
                    .arg(&blob)
                    .arg("PX")
                    .arg(600_000)
                    .ignore();
            }
            next += BALLAST / 10;
            // Refused under noeviction: that is the fault.
            let _ = pipe.query::<()>(&mut c);
        }
        // Undo on a fresh connection (this one may have been refused under noeviction).
        let mut c = admin(&self.url)?;
        q(
            &mut c,
            redis::cmd("CONFIG").arg(&["SET", "maxmemory", &old_max]),
        )?;
        q(
            &mut c,
            redis::cmd("CONFIG").arg(&["SET", "maxmemory-policy", &old_policy]),
        )?;
        let after = evicted(&mut c);
        Ok(format!("evicted {} keys", after.saturating_sub(before)))
    }
}

/// A worker process and the thread reading its report.
struct Worker {
    /// The process.
    child: Child,
    /// The thread collecting its stdout (its report).
    out: Option<JoinHandle<String>>,
    /// A reader (the run ends when every reader is done, with `--ops`).
    reader: bool,
}

fn spawn_worker(args: &[String], reader: bool) -> Result<Worker, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start a worker: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no worker stdout")?;
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    Ok(Worker {
        child,
        out: Some(out),
        reader,
    })
}

/// Runs the check; `Ok(true)` when no stale read was found.
pub fn run(mut o: Opts) -> Result<bool, String> {
    // The cache's server.
    let mut server = None;
    let cache = match (&o.redis, o.spawn_redis) {
        (Some(_), true) => return Err("give either --redis or --spawn-redis".into()),
        (None, false) => return Err("give --redis URL or --spawn-redis (see --help)".into()),
        (Some(u), false) => Url::parse(u)?,
        (None, true) => {
            let s = Server::start(free_port()?)?;
            let u = Url::parse(&s.url(0))?;
            server = Some(s);
            u
        }
    };
    // The truth: never behind the proxy, never faulted when on a server of its own.
    let mut truth_server = None;
    let truth = match &o.truth {
        Some(u) => Url::parse(u)?,
        None => {
            let s = Server::start(free_port()?)?;
            let u = Url::parse(&s.url(0))?;
            truth_server = Some(s);
            u
        }
    };
    let mut skipped = BTreeMap::new();
    if truth.same_server(&cache) {
        if truth.db == cache.db {
            return Err(
                "--truth-url must not be the cache's database (flushdb would wipe it)".into(),
            );
        }
        o.faults.retain(|f| {
            let disturbs =
                matches!(f.as_str(), "restart" | "stop" | "sleep") || f.starts_with("maxmemory");
            if disturbs {
                skipped.insert(f.clone(), "the truth shares the cache's server".to_string());
            }
            !disturbs
        });
    }
    if server.is_none() {
        o.faults.retain(|f| {
            let needs = matches!(f.as_str(), "restart" | "stop");
            if needs {
                skipped.insert(
                    f.clone(),
                    "needs --spawn-redis (process control)".to_string(),
                );
            }
            !needs
        });
    }
    let proxy = if o.proxy || o.faults.iter().any(|f| f.starts_with("proxy")) {
        let upstream = format!("{}:{}", cache.host, cache.port);
        Some(Arc::new(
            Proxy::start(upstream).map_err(|e| format!("proxy: {e}"))?,
        ))
    } else {
        None
    };
    let run_id = format!("{:x}", now_ms() ^ (std::process::id() as u64) << 20);
    o.cache_url = match &proxy {
        Some(p) => cache.with_addr("127.0.0.1", p.port),
        None => cache.url(),
    };
    o.truth_url = truth.url();
    o.cache_prefix = format!("chk{run_id}:");
    o.truth_prefix = format!("chktruth{run_id}:");

    let mut t = Truth::connect(&o.truth_url, &o.truth_prefix)?;
    t.init(o.rows, o.categories)?;

    // Workers.
    let groups: Vec<(String, String)> = o
        .tiers
        .iter()
        .flat_map(|t| o.fronts.iter().map(move |f| (t.clone(), f.clone())))
        .collect();
    let reader_procs = groups.len() as u64 * o.readers as u64;
    let per_reader = if o.ops > 0 {
        o.ops.div_ceil(reader_procs.max(1))
    } else {
        0
    };
    let common = |role: &str, n: u64| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--role".into(),
            role.into(),
            "--cache-url".into(),
            o.cache_url.clone(),
            "--truth-url-resolved".into(),
            o.truth_url.clone(),
            "--cache-prefix".into(),
            o.cache_prefix.clone(),
            "--truth-prefix".into(),
            o.truth_prefix.clone(),
        ];
        for (k, v) in [
            ("--rows", o.rows.to_string()),
            ("--categories", o.categories.to_string()),
            ("--threads", o.threads.to_string()),
            (
                "--seed",
                (o.seed.wrapping_mul(31).wrapping_add(n)).to_string(),
            ),
            ("--write-interval", format!("{}ms", o.write_interval_ms)),
            ("--tracked-slack", format!("{}ms", o.tracked_slack_ms)),
            ("--io-timeout", format!("{}ms", o.io_timeout_ms)),
            ("--retry-after", format!("{}ms", o.retry_after_ms)),
            ("--heartbeat", format!("{}ms", o.heartbeat_ms)),
            ("--break-invalidation", o.break_invalidation.to_string()),
        ] {
            a.push(k.into());
            a.push(v);
        }
        if o.idle_writers {
            a.push("--idle-writers".into());
        }
        a
    };
    let mut workers = Vec::new();
    let mut n = 0;
    for _ in 0..o.writers {
        n += 1;
        workers.push(spawn_worker(&common("writer", n), false)?);
    }
    for (tier, front) in &groups {
        for _ in 0..o.readers {
            n += 1;
            let mut a = common("reader", n);
            a.extend([
                "--tier".into(),
                tier.clone(),
                "--front".into(),
                front.clone(),
            ]);
            a.extend(["--ops".into(), per_reader.to_string()]);
            workers.push(spawn_worker(&a, true)?);
        }
    }

    // Faults, on a thread of their own.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let start_ms = now_ms();
    let fault_thread = {
        let (stop, faults, every) = (stop.clone(), o.faults.clone(), o.fault_every);
        let mut inj = Injector {
            url: cache.url(),
            prefix: o.cache_prefix.clone(),
            server,
            proxy: proxy.clone(),
        };
        thread::spawn(move || {
            let mut log = FaultLog {
                injected: Vec::new(),
                skipped: BTreeMap::new(),
            };
            let mut faults = faults;
            let mut i = 0;
            // Let the workers warm the cache first.
            nap(every, &stop);
            while !stop.load(Ordering::SeqCst) && !faults.is_empty() {
                let f = faults[i % faults.len()].clone();
                let at = now_ms();
                match inj.inject(&f, &stop) {
                    Ok(note) => log.injected.push(Injected {
                        name: f,
                        start_ms: at,
                        note,
                    }),
                    Err(e) => {
                        log.skipped.insert(f.clone(), e);
                        faults.retain(|g| *g != f);
                        continue;
                    }
                }
                i += 1;
                nap(every, &stop);
            }
            (log, inj.server)
        })
    };

    // Until the time is up or the readers are done.
    loop {
        thread::sleep(Duration::from_millis(50));
        if o.ops == 0 && started.elapsed() >= o.duration {
            break;
        }
        let mut readers_done = true;
        for w in workers.iter_mut().filter(|w| w.reader) {
            if matches!(w.child.try_wait(), Ok(None)) {
                readers_done = false;
            }
        }
        if readers_done {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (log, server) = fault_thread
        .join()
        .map_err(|_| "the fault thread panicked".to_string())?;
    if let Some(p) = &proxy {
        p.stall(false);
    }
    let elapsed = started.elapsed();

    // Stop the workers (closing stdin) and collect their reports.
    let mut reports: Vec<Report> = Vec::new();
    let mut failed = Vec::new();
    for w in &mut workers {
        drop(w.child.stdin.take());
    }
    for mut w in workers {
        let out = w
            .out
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let status = w.child.wait().map_err(|e| e.to_string())?;
        match out.lines().last().map(serde_json::from_str::<Report>) {
            Some(Ok(r)) if status.success() => reports.push(r),
            _ => failed.push(format!("a worker exited with {status}")),
        }
    }

    // Clean up: the cache's keys of this run (scheme sets last long) and the truth's.
    cleanup(&cache.url(), &o.cache_prefix);
    // Twice: a fault may have closed this connection (the first call then reopens it).
    if t.clear().is_err() {
        let _ = t.clear();
    }
    drop(server);
    drop(truth_server);

    let mut all_skipped = skipped;
    all_skipped.extend(log.skipped);
    let ok = print_report(&o, &reports, &log.injected, &all_skipped, elapsed, start_ms);
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    Ok(ok)
}

/// Deletes this run's cache keys that have no TTL, as an `allkeys-*` policy may evict them
/// (a `volatile-*` one never does), and its scheme sets (`…:m:{<table>}`, the metadata whose
/// loss matters most; they expire, but long after the entries). Returns how many.
fn evict_persistent(c: &mut redis::Connection, prefix: &str) -> redis::RedisResult<usize> {
    let mut cursor = 0u64;
    let mut n = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("PTTL").arg(k);
            }
            let ttls: Vec<i64> = pipe.query(c)?;
            let persistent: Vec<&String> = keys
                .iter()
                .zip(ttls)
                .filter(|(k, t)| *t == -1 || k.contains(":m:{"))
                .map(|(k, _)| k)
                .collect();
            if !persistent.is_empty() {
                redis::cmd("UNLINK").arg(&persistent).query::<()>(c)?;
                n += persistent.len();
            }
        }
        if next == 0 {
            return Ok(n);
        }
        cursor = next;
    }
}

fn cleanup(url: &str, prefix: &str) {
    let Ok(mut c) = admin(url) else { return };
    let mut cursor = 0u64;
    loop {
        let r: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut c);
        let Ok((next, keys)) = r else { return };
        if !keys.is_empty() {
            let _ = redis::cmd("UNLINK").arg(&keys).query::<()>(&mut c);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

fn print_report(
    o: &Opts,
    reports: &[Report],
    injected: &[Injected],
    skipped: &BTreeMap<String, String>,
    elapsed: Duration,
    start_ms: u64,
) -> bool {
    let mut groups: BTreeMap<String, Report> = BTreeMap::new();
    for r in reports {
        groups.entry(r.group.clone()).or_default().merge(r);
    }
    let readers: Vec<&Report> = reports.iter().filter(|r| r.role == "reader").collect();
    println!(
        "stampcache checker: {} reader and {} writer processes x {} threads, {} rows, {} categories, {:.1} s, seed {}",
        readers.len(),
        reports.len() - readers.len(),
        o.threads,
        o.rows,
        o.categories,
        elapsed.as_secs_f64(),
        o.seed
    );
    // Faults.
    let mut counts: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for f in injected {
        let e = counts.entry(&f.name).or_default();
        e.0 += 1;
        if !f.note.is_empty() {
            e.1.push(&f.note);
        }
    }
    if counts.is_empty() {
        println!("faults: none");
    } else {
        println!("faults injected:");
        for (name, (n, notes)) in &counts {
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            };
            println!("  {name:<28} {n}{notes}");
        }
    }
    for (f, why) in skipped {
        println!("  skipped {f}: {why}");
    }
    // Reads per group.
    println!(
        "{:<17} {:>9} {:>9} {:>9} {:>8} {:>15} {:>16} {:>9}",
        "readers",
        "get",
        "fetch",
        "count",
        "errors",
        "stale(returned)",
        "stale(delivered)",
        "unchecked"
    );
    let mut total = Report::default();
    for (g, r) in groups.iter().filter(|(g, _)| *g != "writer") {
        let op = |k: &str| r.ops.get(k).copied().unwrap_or(0);
        println!(
            "{g:<17} {:>9} {:>9} {:>9} {:>8} {:>15} {:>16} {:>9}",
            op("get"),
            op("fetch"),
            op("count"),
            r.errors.values().sum::<u64>(),
            r.stale_returned,
            r.stale_delivered,
            r.unchecked
        );
        total.merge(r);
    }
    if let Some(w) = groups.get("writer") {
        println!(
            "writes: {} returned Ok ({} delivered, {} queued{}), errors {}",
            w.ops.get("write").copied().unwrap_or(0),
            w.writes_delivered,
            w.writes_queued,
            if w.writes_skipped > 0 {
                format!(", {} invalidations skipped on purpose", w.writes_skipped)
            } else {
                String::new()
            },
            w.errors.values().sum::<u64>()
        );
        total.merge(w);
    }
    if !total.errors.is_empty() {
        let e: Vec<String> = total
            .errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("errors by kind: {}", e.join(", "));
    }
    println!(
        "latency (us):  {:<6} {:>9} {:>9} {:>9}",
        "op", "p50", "p99", "p999"
    );
    for (k, h) in &total.latency {
        println!(
            "               {k:<6} {:>9.0} {:>9.0} {:>9.0}",
            h.quantile(0.5),
            h.quantile(0.99),
            h.quantile(0.999)
        );
    }
    // Stale reads, by the last fault injected before them.
    let delivered_mode = o.finished == "delivered";
    let stale = if delivered_mode {
        total.stale_delivered
    } else {
        total.stale_returned
    };
    if total.stale_returned > 0 {
        let mut by_fault: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for &(t, delivered) in &total.stale_times {
            let last = injected
                .iter()
                .rev()
                .find(|f| f.start_ms <= t)
                .map(|f| format!("after {}", f.name))
                .unwrap_or_else(|| "before any fault".into());
            let e = by_fault.entry(last).or_default();
            e.0 += 1;
            e.1 += u64::from(delivered);
        }
        println!("stale reads by the last fault before them (returned / delivered):");
        for (f, (n, d)) in &by_fault {
            println!("  {f:<34} {n} / {d}");
        }
        println!("first stale reads:");
        let mut samples = Vec::new();
        for (g, r) in &groups {
            samples.extend(r.samples.iter().map(|s| (g, s)));
        }
        samples.sort_by_key(|(_, s)| s.at_ms);
        for (g, s) in samples.iter().take(8) {
            println!(
                "  {g}: key {} at +{:.3} s: expected version >= {} ({} delivered), got {}",
                s.key,
                s.at_ms.saturating_sub(start_ms) as f64 / 1000.0,
                s.returned,
                s.delivered,
                s.got
            );
        }
    }
    if stale == 0 {
        println!(
            "verdict: OK, no stale read in {} reads (a write counts as finished when {})",
            total
                .ops
                .iter()
                .filter(|(k, _)| *k != "write")
                .map(|(_, v)| v)
                .sum::<u64>(),
            if delivered_mode {
                "its invalidation reached Redis"
            } else {
                "its on_update returned Ok"
            }
        );
        true
    } else {
        println!(
            "verdict: FAIL, {stale} stale reads (a write counts as finished when {})",
            if delivered_mode {
                "its invalidation reached Redis"
            } else {
                "its on_update returned Ok"
            }
        );
        false
    }
}
