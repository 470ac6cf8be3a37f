//! Test harness: a private PostgreSQL server (`initdb` + `postgres`) on a free port, with
//! `wal_level = logical`, and `psql` to write to it as a separate client would.
//!
//! The server dies with the test process: a shell wrapper stops it (and removes its data
//! directory) when our end of its stdin closes, which also happens when the process exits
//! without running destructors (a shared server in a `static`). Dropping a [`PgServer`]
//! does the same at once.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A PostgreSQL server owned by the test process.
pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    wrapper: Child,
    stdin: Option<ChildStdin>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory of `initdb` and `postgres`: `STAMPCACHE_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("STAMPCACHE_TEST_PG_BIN") {
        return d.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => {
            let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            assert!(
                bin.join("initdb").exists(),
                "no initdb in {}: install PostgreSQL's server (apt-get install postgresql)",
                bin.display()
            );
            bin
        }
        _ => panic!(
            "PostgreSQL's server binaries (initdb, postgres) were not found: install them \
             (apt-get install postgresql) or set STAMPCACHE_TEST_PG_BIN"
        ),
    }
}

/// `sh` words running `cmd` as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root), else as ourselves.
fn as_postgres(root: bool, cmd: &str) -> String {
    if root {
        format!("runuser -u postgres -- {cmd}")
    } else {
        cmd.to_owned()
    }
}

impl PgServer {
    /// Initialises a data directory and starts a server with `wal_level = logical`, plus
    /// `extra` settings (`name=value`, later ones win).
    pub fn start(extra: &[&str]) -> PgServer {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_dir();
        let root = is_root();
        let dir = std::env::temp_dir().join(format!(
            "stampcache-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create the data directory");
        if root {
            run("chown", &["postgres:postgres", dir.to_str().unwrap()]);
        }
        let initdb = format!(
            "{} -D {} -A trust -U postgres -E UTF8 --locale=C --no-sync",
            bin.join("initdb").display(),
            dir.display()
        );
        run(
            "sh",
            &["-c", &format!("{} >/dev/null", as_postgres(root, &initdb))],
        );

        let port = free_port();
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_owned(),
            "wal_level=logical".to_owned(),
            "max_replication_slots=30".to_owned(),
            "max_wal_senders=30".to_owned(),
            "fsync=off".to_owned(),
            "full_page_writes=off".to_owned(),
        ];
        settings.extend(extra.iter().map(|s| s.to_string()));
        let mut postgres = format!(
            "{} -D {d} -p {port} -k {d}",
            bin.join("postgres").display(),
            d = dir.display()
        );
        for s in &settings {
            postgres.push_str(" -c ");
            postgres.push_str(s);
        }
        // Stops the postmaster itself (by its pid file: signals to runuser are not passed
        // on), waits for it and removes the data directory.
        let script = format!(
            "{postgres} >{d}.log 2>&1 & pid=$!; echo $pid; read _; \
             kill -QUIT $(head -n 1 {d}/postmaster.pid 2>/dev/null) 2>/dev/null; wait $pid; \
             rm -rf {d} {d}.log",
            postgres = as_postgres(root, &postgres),
            d = dir.display()
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
        let stdin = wrapper.stdin.take();
        let server = PgServer {
            port,
            dir,
            wrapper,
            stdin,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_psql("postgres", &["SELECT 1"]) {
                Ok(_) => return,
                Err(e) => {
                    if Instant::now() > deadline {
                        let log = std::fs::read_to_string(self.dir.with_extension("log"))
                            .unwrap_or_default();
                        panic!("PostgreSQL on port {} did not start: {e}\n{log}", self.port);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A libpq connection string for database `db`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// Runs each statement with its own `-c` (its own transaction unless inside an
    /// explicit `BEGIN`) in one `psql` session; returns the output (unaligned, tuples only).
    pub fn try_psql(&self, db: &str, statements: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("psql");
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db]);
        for s in statements {
            cmd.args(["-c", s]);
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql (apt-get install postgresql-client): {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`try_psql`](PgServer::try_psql), failing the test on an error.
    pub fn psql(&self, db: &str, statements: &[&str]) -> String {
        self.try_psql(db, statements)
            .unwrap_or_else(|e| panic!("psql {statements:?} failed: {e}"))
    }

    /// A new, empty database.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &[&format!("CREATE DATABASE {name}")]);
    }

    /// The server's current WAL position, taken after every statement before it committed.
    pub fn current_lsn(&self, db: &str) -> String {
        self.psql(db, &["SELECT pg_current_wal_lsn()"])
            .trim()
            .to_owned()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Restarts the server as an administrator would (`pg_ctl restart -m fast`: every
    /// session is disconnected), on the same port and settings; returns once it answers.
    pub fn restart(&self) {
        let bin = bin_dir();
        let d = self.dir.display();
        let pg_ctl = format!(
            "{} -D {d} -m fast -w -t 60 -l {d}/restart.log restart",
            bin.join("pg_ctl").display()
        );
        run(
            "sh",
            &[
                "-c",
                &format!("{} >/dev/null", as_postgres(is_root(), &pg_ctl)),
            ],
        );
        self.wait_ready();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }
}

/// The server shared by the tests of one binary (they keep apart by database).
pub fn shared() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start(&[]))
}

/// A database of its own for one test.
pub fn fresh_database(pg: &PgServer, name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let db = format!("{name}_{}", N.fetch_add(1, Ordering::Relaxed));
    pg.create_database(&db);
    db
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}
