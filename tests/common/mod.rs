//! Test harness: real `redis-server` processes on free ports, and a counting loader.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stampcache::{Builder, Cache, LocalMode};

/// A `redis-server` owned by the test process. It dies with the test process: a shell
/// wrapper kills it when our end of its stdin closes.
pub struct RedisServer {
    pub port: u16,
    pid: u32,
    wrapper: Child,
    stdin: Option<ChildStdin>,
    extra: Vec<String>,
    tls: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

impl RedisServer {
    /// Starts a server on a free port with extra `redis-server` arguments.
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::start_on(
            free_port(),
            extra.iter().map(|s| s.to_string()).collect(),
            false,
        )
    }

    /// Starts a TLS-only server with a self-signed certificate made by `openssl` in `dir`.
    pub fn start_tls(dir: &std::path::Path) -> RedisServer {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "openssl is needed to make a test certificate");
        let extra = vec![
            format!("--tls-cert-file {}", cert.display()),
            format!("--tls-key-file {}", key.display()),
            format!("--tls-ca-cert-file {}", cert.display()),
            "--tls-auth-clients no".to_string(),
        ];
        Self::start_on(free_port(), extra, true)
    }

    fn start_on(port: u16, extra: Vec<String>, tls: bool) -> RedisServer {
        let ports = if tls {
            format!("--port 0 --tls-port {port}")
        } else {
            format!("--port {port}")
        };
        let mut args = format!(
            "redis-server {ports} --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning"
        );
        for a in &extra {
            args.push(' ');
            args.push_str(a);
        }
        let script = format!(
            "command -v redis-server >/dev/null || {{ echo missing; exit 1; }}; {args} >/dev/null 2>&1 & pid=$!; echo $pid; read _; kill -CONT $pid; kill $pid; wait $pid"
        );
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run sh");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.trim() != "missing" && !line.trim().is_empty(),
            "redis-server is not installed: install it (apt-get install redis-server) \
             or set STAMPCACHE_TEST_REDIS to a server these tests may write to"
        );
        let pid: u32 = line.trim().parse().expect("pid");
        let stdin = wrapper.stdin.take();
        let server = RedisServer {
            port,
            pid,
            wrapper,
            stdin,
            extra,
            tls,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            let last = match client.get_connection_with_timeout(Duration::from_millis(200)) {
                Ok(mut c) => match redis::cmd("PING").query::<String>(&mut c) {
                    Ok(_) => return,
                    // A server with a password answers, which is all we wait for.
                    Err(e) if e.to_string().contains("NOAUTH") => return,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start: {last}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        if self.tls {
            // Self-signed certificate: skip verification.
            format!("rediss://127.0.0.1:{}/#insecure", self.port)
        } else {
            format!("redis://127.0.0.1:{}/", self.port)
        }
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    /// Freezes the server (SIGSTOP): it keeps its data but answers nothing.
    pub fn pause(&self) {
        signal(self.pid, "STOP");
    }

    /// Thaws a paused server.
    pub fn resume(&self) {
        signal(self.pid, "CONT");
    }

    /// Stops the server; its data is gone.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::start_on(self.port, self.extra.clone(), self.tls);
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume_quietly();
        self.stop();
    }
}

impl RedisServer {
    fn resume_quietly(&self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

/// The Redis URL shared by the tests of one binary: `STAMPCACHE_TEST_REDIS`, or a server
/// started once. Tests keep apart by key prefix.
pub fn shared_redis_url() -> String {
    if let Ok(url) = std::env::var("STAMPCACHE_TEST_REDIS") {
        return url;
    }
    static SERVER: OnceLock<Mutex<RedisServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| Mutex::new(RedisServer::start(&[])))
        .lock()
        .unwrap()
        .url()
}

/// A prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{}-{}:",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(feature = "tokio")]
pub mod front;

/// Which front end a test cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEnd {
    Blocking,
    Async,
}

/// Where a test cache keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Redis,
    /// Redis with the local tier in strict mode.
    RedisStrict,
    /// Redis with the local tier in tracked mode.
    RedisTracked,
}

/// A backend and a front end (blocking or async) for a suite run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend(pub Kind, pub FrontEnd);

#[allow(non_upper_case_globals)]
impl Backend {
    pub const Embedded: Backend = Backend(Kind::Embedded, FrontEnd::Blocking);
    pub const Redis: Backend = Backend(Kind::Redis, FrontEnd::Blocking);
    pub const RedisStrict: Backend = Backend(Kind::RedisStrict, FrontEnd::Blocking);
    pub const RedisTracked: Backend = Backend(Kind::RedisTracked, FrontEnd::Blocking);
    pub const AsyncEmbedded: Backend = Backend(Kind::Embedded, FrontEnd::Async);
    pub const AsyncRedis: Backend = Backend(Kind::Redis, FrontEnd::Async);
    pub const AsyncRedisStrict: Backend = Backend(Kind::RedisStrict, FrontEnd::Async);
    pub const AsyncRedisTracked: Backend = Backend(Kind::RedisTracked, FrontEnd::Async);

    /// The store and tier.
    pub fn kind(self) -> Kind {
        self.0
    }

    /// The front end.
    pub fn front(self) -> FrontEnd {
        self.1
    }

    /// A builder for this backend, with a prefix of its own.
    pub fn builder(self, name: &str) -> Builder {
        let b = Cache::builder().prefix(unique_prefix(name));
        match self.0 {
            Kind::Embedded => b,
            Kind::Redis => b.redis(shared_redis_url()),
            Kind::RedisStrict => b.redis(shared_redis_url()).local(LocalMode::Strict),
            Kind::RedisTracked => b.redis(shared_redis_url()).local(LocalMode::Tracked),
        }
    }
}

/// Counts loader calls.
#[derive(Clone, Default)]
pub struct Loads(Arc<AtomicUsize>);

impl Loads {
    /// A loader returning `v` and counting the call.
    pub fn of<T: Clone>(&self, v: T) -> impl FnOnce() -> T {
        let n = self.0.clone();
        move || {
            n.fetch_add(1, Ordering::SeqCst);
            v
        }
    }
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The shared workload's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    pub id: i64,
    pub category: i64,
    pub author: i64,
    pub title: String,
    pub body: String,
    pub published: bool,
}

impl Article {
    pub fn new(i: i64) -> Article {
        Article {
            id: i,
            category: i % 100,
            author: i % 37,
            title: format!("title {i}"),
            body: "b".repeat(200),
            published: i % 3 != 0,
        }
    }
}

/// One module per backend, each with a `#[test]` per listed function taking a [`Backend`]:
/// `backend_suite!([embedded => Embedded, redis => Redis]; test_a, test_b);`
#[macro_export]
macro_rules! backend_suite {
    ($backends:tt; $($name:ident),* $(,)?) => {
        $crate::backend_suite!(@each $backends [$($name),*]);
    };
    (@each [$($module:ident => $backend:ident),*] $names:tt) => {
        $( $crate::backend_suite!(@one $module $backend $names); )*
    };
    (@one $module:ident $backend:ident [$($name:ident),*]) => {
        mod $module {
            $( #[test] fn $name() { super::$name(super::Backend::$backend) } )*
        }
    };
}

/// The runner of the test files with their own harness (they re-execute themselves as
/// other processes): runs each test (filtered by the first free argument) with a time
/// limit, prints `N passed, N failed` and exits non-zero on a failure.
pub fn run_tests(tests: &[(&'static str, fn())], limit: Duration) -> ! {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for &(name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test)).is_ok();
            let _ = tx.send(ok);
        });
        match rx.recv_timeout(limit) {
            Ok(true) => {
                passed += 1;
                println!("test {name} ... ok ({:?})", started.elapsed());
            }
            Ok(false) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED (still running after {limit:?})");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}
