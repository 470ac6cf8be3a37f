//! The `stampcache-cdc` binary end to end, and what it survives: a second consumer on the
//! same slot standing by and taking over when the first is killed, the consumer killed
//! between a commit and its apply, PostgreSQL restarted under it, a clean stop on SIGTERM,
//! and misconfiguration as a non-zero exit. Private PostgreSQL and Redis servers
//! (tests/common/); writes come from `psql`; the applications' side is a `Cache` with the
//! binary's prefix and version.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{shared_redis_url, unique_prefix, Loads, RedisServer};
use pg::PgServer;
use stampcache::cdc::Lsn;
use stampcache::{Cache, Cond, Read};

const WAIT: Duration = Duration::from_secs(30);

/// A `stampcache-cdc` process. A shell wrapper runs it and kills it (SIGKILL) when our end
/// of the wrapper's stdin closes, so it never outlives the test process; the wrapper then
/// logs the exit status to the captured stderr.
struct Bin {
    pid: u32,
    wrapper: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Bin {
    fn start(args: &[String]) -> Bin {
        let script = "exec 3<&0; \"$0\" \"$@\" </dev/null & pid=$!; echo $pid; \
                      (read _ <&3; kill -9 $pid 2>/dev/null) & \
                      wait $pid; echo \"exited with status $?\" >&2";
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_stampcache-cdc"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run sh");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line.trim().parse().expect("the consumer's pid");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (sink, stderr) = (lines.clone(), wrapper.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Bin {
            pid,
            stdin: wrapper.stdin.take(),
            wrapper,
            lines,
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a log line containing `what`.
    fn wait_log(&self, what: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the log within {WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {}", self.pid);
    }

    /// Waits until the process exited; its status.
    fn exit_status(&self) -> i32 {
        self.wait_log("exited with status ");
        let log = self.log();
        let tail = log.rsplit("exited with status ").next().unwrap();
        tail.trim().parse().expect("a status")
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }
}

/// One test's world: a database with an `article` table and a publication `pub` of it,
/// and the applications' cache (on `redis`, with a prefix of its own).
struct World<'a> {
    pg: &'a PgServer,
    db: String,
    redis: String,
    prefix: String,
    cache: Cache,
}

impl<'a> World<'a> {
    fn new(pg: &'a PgServer, name: &str, redis: String) -> World<'a> {
        let db = pg::fresh_database(pg, name);
        pg.psql(
            &db,
            &[
                "CREATE TABLE article (id int PRIMARY KEY, category int NOT NULL, title text)",
                "ALTER TABLE article REPLICA IDENTITY FULL",
                "INSERT INTO article VALUES (1, 1, 'one'), (2, 2, 'two')",
                "CREATE PUBLICATION pub FOR TABLE article",
            ],
        );
        let prefix = unique_prefix(name);
        let cache = Cache::builder()
            .redis(redis.as_str())
            .prefix(prefix.as_str())
            .version(3)
            .build()
            .unwrap();
        World {
            pg,
            db,
            redis,
            prefix,
            cache,
        }
    }

    /// The binary's arguments for slot `slot`, with this world's prefix and version.
    fn args(&self, slot: &str) -> Vec<String> {
        [
            "--postgres",
            &self.pg.conninfo(&self.db),
            "--redis",
            &self.redis,
            "--publication",
            "pub",
            "--slot",
            slot,
            "--create",
            "--prefix",
            &self.prefix,
            "--version",
            "3",
            "--status-every",
            "1",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// A consumer process, streaming.
    fn consumer(&self, slot: &str) -> Bin {
        let bin = Bin::start(&self.args(slot));
        bin.wait_log("streaming from slot");
        bin
    }

    fn update(&self, id: i64) -> Lsn {
        self.pg.psql(
            &self.db,
            &[&format!("UPDATE article SET title = 'x' WHERE id = {id}")],
        );
        self.pg.current_lsn(&self.db).parse().unwrap()
    }

    fn confirmed_flush(&self, slot: &str) -> Lsn {
        self.pg
            .psql(
                &self.db,
                &[&format!(
                    "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
                )],
            )
            .trim()
            .parse()
            .unwrap()
    }
}

/// A cached read of one category, and how often its loader ran.
struct Cached {
    read: Read,
    loads: Loads,
}

impl Cached {
    fn category(c: i64) -> Cached {
        Cached {
            read: Read::fetch("article").filter(Cond::eq("category", c)),
            loads: Loads::default(),
        }
    }

    fn read(&self, cache: &Cache) -> usize {
        let _: Vec<i64> = cache
            .get_or_compute(&self.read, self.loads.of(vec![1]))
            .unwrap();
        self.loads.count()
    }

    /// Reads until the loader ran `n` times in all (the read was invalidated).
    fn wait_loads(&self, cache: &Cache, n: usize, log: &dyn Fn() -> String) {
        let deadline = Instant::now() + WAIT;
        while self.read(cache) < n {
            assert!(
                Instant::now() < deadline,
                "never invalidated within {WAIT:?}:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.loads.count(), n);
    }
}

#[test]
fn a_standby_consumer_takes_over_when_the_first_is_killed() {
    let w = World::new(pg::shared(), "standby", shared_redis_url());
    let first = w.consumer("standby");
    let second = Bin::start(&w.args("standby"));
    second.wait_log("standing by to take over");
    second.wait_log("status: standby");
    let (cat1, cat2) = (Cached::category(1), Cached::category(2));
    assert_eq!((cat1.read(&w.cache), cat2.read(&w.cache)), (1, 1));

    first.signal("KILL");
    assert_eq!(first.exit_status(), 137, "{}", first.log());
    w.update(1); // committed after the kill: only the second consumer can deliver it
    cat1.wait_loads(&w.cache, 2, &|| second.log());
    assert_eq!(
        cat2.read(&w.cache),
        1,
        "exact: the slot resumed where it was"
    );
    second.wait_log("streaming from slot");
    assert_eq!(
        second.log().matches("invalidated all").count(),
        0,
        "the slot existed: nothing was widened"
    );
}

#[test]
fn a_consumer_killed_between_a_commit_and_its_apply_delivers_it_after_a_restart() {
    let redis = RedisServer::start(&[]);
    let w = World::new(pg::shared(), "killed", redis.url());
    let consumer = w.consumer("killed");
    let (cat1, cat2) = (Cached::category(1), Cached::category(2));
    assert_eq!((cat1.read(&w.cache), cat2.read(&w.cache)), (1, 1));

    redis.pause(); // the consumer receives the transaction but cannot apply it
    let lsn = w.update(1);
    consumer.wait_log("status: holding a transaction");
    consumer.signal("KILL");
    assert_eq!(consumer.exit_status(), 137);
    assert!(
        w.confirmed_flush("killed") < lsn,
        "the unapplied transaction was not acknowledged"
    );
    redis.resume();
    assert_eq!(cat1.read(&w.cache), 1, "nobody invalidated it yet");

    let restarted = w.consumer("killed");
    cat1.wait_loads(&w.cache, 2, &|| restarted.log());
    assert_eq!(cat2.read(&w.cache), 1, "exact");
    let deadline = Instant::now() + WAIT;
    while w.confirmed_flush("killed") < lsn {
        assert!(Instant::now() < deadline, "acknowledged once applied");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_consumer_follows_postgresql_through_a_restart() {
    let pg = PgServer::start(&[]);
    let w = World::new(&pg, "pgrestart", shared_redis_url());
    let consumer = w.consumer("pgrestart");
    let (cat1, cat2) = (Cached::category(1), Cached::category(2));
    assert_eq!((cat1.read(&w.cache), cat2.read(&w.cache)), (1, 1));

    pg.restart();
    w.update(1); // committed after the restart, maybe before the consumer is back
    cat1.wait_loads(&w.cache, 2, &|| consumer.log());
    assert_eq!(cat2.read(&w.cache), 1, "exact");
    assert!(
        consumer.log().contains("disconnected"),
        "{}",
        consumer.log()
    );
    assert_eq!(consumer.log().matches("streaming from slot").count(), 2);
}

#[test]
fn sigterm_stops_cleanly_and_reports_status() {
    let w = World::new(pg::shared(), "sigterm", shared_redis_url());
    let consumer = w.consumer("sigterm");
    let cat1 = Cached::category(1);
    cat1.read(&w.cache);
    let lsn = w.update(1);
    cat1.wait_loads(&w.cache, 2, &|| consumer.log());
    consumer.wait_log("streaming: applied "); // the periodic status line
    consumer.wait_log(" rows/s");
    consumer.signal("TERM");
    assert_eq!(consumer.exit_status(), 0, "{}", consumer.log());
    assert!(consumer.log().contains("SIGTERM: stopping"));
    assert!(
        w.confirmed_flush("sigterm") >= lsn,
        "acknowledged before the stop"
    );
}

#[test]
fn misconfiguration_exits_with_status_2_and_says_what_to_change() {
    let w = World::new(pg::shared(), "misconf", shared_redis_url());
    let mut args = w.args("misconf");
    let at = args.iter().position(|a| a == "pub").unwrap();
    args[at] = "nope".into();
    let bin = Bin::start(&args);
    assert_eq!(bin.exit_status(), 2, "{}", bin.log());
    assert!(
        bin.log().contains("CREATE PUBLICATION nope"),
        "{}",
        bin.log()
    );

    let bin = Bin::start(&["--postgres".into(), "x".into()]);
    assert_eq!(bin.exit_status(), 2);
    assert!(bin.log().contains("--redis is required"), "{}", bin.log());
    assert!(bin.log().contains("usage: stampcache-cdc"), "{}", bin.log());
}
