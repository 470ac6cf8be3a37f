//! `stampcache-cdc`: the change-stream consumer as a process of its own (feature
//! `postgres-cdc`).
//!
//! One consumer per database is enough for any number of application processes sharing one
//! Redis: it reads the publication's committed writes from a logical replication slot and
//! invalidates the cache in Redis, so the applications report no writes at all. It must use
//! the key prefix and version the applications' caches use (`Builder::prefix`,
//! `Builder::version`): keys are `<prefix>sc<version>:…`, and a consumer with other ones
//! invalidates keys nobody reads. Only a static prefix can be shared this way (a computed
//! `prefix_fn` cannot be given on a command line).
//!
//! A second consumer started on the same slot stands by and takes over when the first one
//! stops or dies (PostgreSQL lets one session at a time stream from a slot).
//!
//! Exit status: 0 after SIGTERM or SIGINT (a clean stop: nothing unapplied is acknowledged),
//! 2 on a usage or setup error (the message says what to change), 1 on other failures.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use stampcache::cdc::{CdcError, CdcEvent, Consumer, ConsumerHandle, SlotKind, Status};
use stampcache::Cache;

/// The usage text (`--help`).
const USAGE: &str = "\
usage: stampcache-cdc --postgres CONNINFO --redis URL --publication P --slot S [options]

Invalidates a stampcache cache in Redis from PostgreSQL's logical replication stream:
every committed write to the publication's tables, from any client.

required:
  --postgres CONNINFO   libpq key=value string or postgres:// URL; the user needs the
                        REPLICATION attribute (wal_level must be logical)
  --redis URL           the Redis the applications' caches use (redis://, rediss://)
  --publication P       the publication to stream (CREATE PUBLICATION P FOR TABLE ...;
                        it must publish insert, update, delete and truncate)
  --slot S              the replication slot (lowercase letters, digits, _)

options:
  --create              create the slot if it does not exist (a new slot invalidates
                        every published table once)
  --temporary           use a temporary slot: nothing is retained while the consumer is
                        away, so every published table is invalidated on each connect
  --prefix PFX          the applications' key prefix (Builder::prefix; default empty)
  --version N           the applications' key version (Builder::version; default 1)
                        prefix and version must be the applications' own: keys are
                        <prefix>sc<version>:..., other values invalidate nothing they read
  --map REL=TABLE       writes to relation REL (schema.table) invalidate the cache's
                        table TABLE (repeatable; default: the bare name for schema public,
                        schema.table otherwise)
  --status-every SECS   a status line (applied position, lag, rows/s) every SECS seconds
                        (default 10; 0: never)
  --verbose             also log every applied transaction
  -h, --help            this text

A second consumer on the same slot stands by and takes over when the first stops or dies.
Stops cleanly on SIGTERM or SIGINT. Exit status: 0 after a signal, 2 on a usage or setup
error, 1 on other failures.
";

/// The command line, parsed. `Debug` hides the connection strings (they hold passwords).
#[derive(Clone, PartialEq, Eq)]
struct Args {
    postgres: String,
    redis: String,
    publication: String,
    slot: String,
    create: bool,
    temporary: bool,
    prefix: String,
    version: u32,
    maps: Vec<(String, String)>,
    status_every: Duration,
    verbose: bool,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("postgres", &"<redacted>")
            .field("redis", &"<redacted>")
            .field("publication", &self.publication)
            .field("slot", &self.slot)
            .field("create", &self.create)
            .field("temporary", &self.temporary)
            .field("prefix", &self.prefix)
            .field("version", &self.version)
            .field("maps", &self.maps)
            .field("status_every", &self.status_every)
            .field("verbose", &self.verbose)
            .finish()
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run(Args),
    Help,
}

/// A command line that cannot be used; says why.
#[derive(Debug, PartialEq, Eq)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments (without the program's name): `--name value`, `--name=value`, or
/// a flag.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let bad = |m: String| UsageError(m);
    let mut args = args.into_iter();
    let (mut postgres, mut redis, mut publication, mut slot) = (None, None, None, None);
    let mut a = Args {
        postgres: String::new(),
        redis: String::new(),
        publication: String::new(),
        slot: String::new(),
        create: false,
        temporary: false,
        prefix: String::new(),
        version: 1,
        maps: Vec::new(),
        status_every: Duration::from_secs(10),
        verbose: false,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let flag = |a: &mut bool| -> Result<(), UsageError> {
            if inline.is_some() {
                return Err(bad(format!("{name} takes no value")));
            }
            *a = true;
            Ok(())
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--create" => flag(&mut a.create)?,
            "--temporary" => flag(&mut a.temporary)?,
            "--verbose" => flag(&mut a.verbose)?,
            "--postgres" | "--redis" | "--publication" | "--slot" | "--prefix" | "--version"
            | "--map" | "--status-every" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .ok_or_else(|| bad(format!("{name} needs a value")))?,
                };
                match name.as_str() {
                    "--postgres" => postgres = Some(value),
                    "--redis" => redis = Some(value),
                    "--publication" => publication = Some(value),
                    "--slot" => slot = Some(value),
                    "--prefix" => a.prefix = value,
                    "--version" => {
                        a.version = value.parse().map_err(|_| {
                            bad(format!(
                                "--version {value:?}: a whole number (0 to 4294967295)"
                            ))
                        })?;
                    }
                    "--map" => {
                        let (rel, table) = value
                            .split_once('=')
                            .filter(|(r, t)| !r.is_empty() && !t.is_empty())
                            .ok_or_else(|| {
                                bad(format!("--map {value:?}: say relation=cache_table"))
                            })?;
                        a.maps.push((rel.to_owned(), table.to_owned()));
                    }
                    _ => {
                        let secs: u64 = value
                            .parse()
                            .map_err(|_| bad(format!("--status-every {value:?}: whole seconds")))?;
                        a.status_every = Duration::from_secs(secs);
                    }
                }
            }
            // Only options are quoted: a stray word may be part of a connection string
            // (and its password) that lost its quotes.
            other if other.starts_with('-') => {
                return Err(bad(format!("unknown argument {other:?}")))
            }
            _ => {
                return Err(bad(
                    "a word that is no option: quote values that hold spaces \
                     (--postgres \"host=… password=…\")"
                        .into(),
                ))
            }
        }
    }
    let required = |v: Option<String>, name: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("{name} is required")))
    };
    a.postgres = required(postgres, "--postgres")?;
    a.redis = required(redis, "--redis")?;
    a.publication = required(publication, "--publication")?;
    a.slot = required(slot, "--slot")?;
    Ok(Command::Run(a))
}

/// Writes one log line to stderr.
fn log(line: &str) {
    eprintln!("stampcache-cdc: {line}");
}

/// An event worth a log line (applied transactions only with `--verbose`).
fn log_event(e: &CdcEvent<'_>, verbose: bool) {
    match e {
        CdcEvent::Connected { slot } => log(&format!("streaming from slot {slot}")),
        CdcEvent::Standby { slot, pid } => log(&format!(
            "slot {slot} is held by another consumer{}: standing by to take over",
            pid.map(|p| format!(" (server PID {p})"))
                .unwrap_or_default()
        )),
        CdcEvent::Disconnected { error } => log(&format!("disconnected: {error}")),
        CdcEvent::ReplicaIdentity { table, fix, .. } => log(&format!(
            "table {table}: updates and deletes invalidate the whole table; for exact \
             invalidation run {fix}"
        )),
        CdcEvent::UnknownColumnType { table, column, .. } => log(&format!(
            "column {table}.{column}: its type has no safe conversion; reads on it are \
             invalidated by any write to the table"
        )),
        CdcEvent::InvalidatedPublished { tables } => log(&format!(
            "invalidated all {tables} published tables (changes before the slot are unknown)"
        )),
        // Attempts 1, 2, 4, 8, …: a long outage does not flood the log.
        CdcEvent::ApplyFailed { error, attempt } if attempt.is_power_of_two() => log(&format!(
            "cannot invalidate (attempt {attempt}), holding the transaction: {error}"
        )),
        CdcEvent::Applied {
            lsn,
            transactions,
            rows,
            tables,
            lag,
            ..
        } if verbose => log(&format!(
            "applied {lsn}: {transactions} transactions, {rows} row images, {tables} whole \
             tables, {:.1} ms after the first one's commit",
            lag.as_secs_f64() * 1e3
        )),
        _ => {}
    }
}

fn describe(status: &Status) -> String {
    match status {
        Status::Starting => "starting".into(),
        Status::Streaming => "streaming".into(),
        Status::Holding { attempt, error } => {
            format!("holding a transaction (attempt {attempt}): {error}")
        }
        Status::Reconnecting { attempt, error } => {
            format!("reconnecting (attempt {attempt}): {error}")
        }
        Status::Standby { active_pid } => format!(
            "standby{}",
            active_pid
                .map(|p| format!(" (slot held by server PID {p})"))
                .unwrap_or_default()
        ),
        Status::Stopped => "stopped".into(),
        other => format!("{other:?}"),
    }
}

/// The periodic status line: position, lag and rates since the last line.
struct Meter {
    at: Instant,
    rows: u64,
    transactions: u64,
}

impl Meter {
    fn new(h: &ConsumerHandle) -> Meter {
        let s = h.stats();
        Meter {
            at: Instant::now(),
            rows: s.rows,
            transactions: s.transactions,
        }
    }

    fn line(&mut self, h: &ConsumerHandle) -> String {
        let s = h.stats();
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        let mut line = format!(
            "{}: applied {} lag {} B, last apply {} after its commit, {:.1} rows/s, {:.1} tx/s",
            describe(&h.status()),
            h.applied_lsn(),
            h.lag_bytes(),
            h.last_apply_lag().map_or("-".to_owned(), |d| format!(
                "{:.1} ms",
                d.as_secs_f64() * 1e3
            )),
            (s.rows - self.rows) as f64 / secs,
            (s.transactions - self.transactions) as f64 / secs,
        );
        let _ = write!(
            line,
            " (total {} rows, {} tables whole, {} apply failures, {} reconnects)",
            s.rows, s.tables, s.apply_failures, s.reconnects
        );
        *self = Meter {
            at: Instant::now(),
            rows: s.rows,
            transactions: s.transactions,
        };
        line
    }
}

/// Why the process ends.
enum End {
    Signal(&'static str),
    Fatal(CdcError),
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Command::Run(a)) => a,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            log(&e.0);
            eprintln!("\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(&format!("cannot start a runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(args))
}

/// Resolves on SIGTERM or SIGINT (SIGINT only where there is no SIGTERM), with its name.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

async fn run(args: Args) -> ExitCode {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            log(&format!("cannot handle signals: {e}"));
            return ExitCode::from(1);
        }
    };
    let cache = match Cache::builder()
        .redis(args.redis.as_str())
        .prefix(args.prefix.as_str())
        .version(args.version)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            log(&format!("cache: {e}"));
            return ExitCode::from(2);
        }
    };
    log(&format!(
        "slot {} ({}), publication {}, keys <{}sc{}.{}:...>",
        args.slot,
        if args.temporary {
            "temporary"
        } else {
            "persistent"
        },
        args.publication,
        args.prefix,
        args.version,
        stampcache::KEY_LAYOUT
    ));
    let handle = match start(&args, &cache, &mut signals).await {
        Ok(h) => h,
        Err(End::Signal(name)) => {
            log(&format!("{name}: stopped before streaming"));
            return ExitCode::SUCCESS;
        }
        Err(End::Fatal(e)) => {
            log(&e.to_string());
            return ExitCode::from(if e.is_transient() { 1 } else { 2 });
        }
    };
    let mut last = handle.status();
    log(&format!("status: {}", describe(&last)));
    let mut meter = Meter::new(&handle);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut next_line = Instant::now() + args.status_every;
    let name = loop {
        tokio::select! {
            name = signals.recv() => break name,
            _ = tick.tick() => {
                let now = handle.status();
                if std::mem::discriminant(&now) != std::mem::discriminant(&last) {
                    log(&format!("status: {}", describe(&now)));
                    last = now;
                }
                if !args.status_every.is_zero() && Instant::now() >= next_line {
                    log(&meter.line(&handle));
                    next_line = Instant::now() + args.status_every;
                }
            }
        }
    };
    log(&format!("{name}: stopping"));
    let applied = handle.applied_lsn();
    let _ = tokio::task::spawn_blocking(move || handle.stop()).await;
    log(&format!(
        "stopped; applied and acknowledged up to {applied}"
    ));
    ExitCode::SUCCESS
}

/// Starts the consumer. A server that cannot be reached yet is waited for (it may be
/// starting too); any other error ends the process.
async fn start(args: &Args, cache: &Cache, signals: &mut Signals) -> Result<ConsumerHandle, End> {
    let mut delay = Duration::from_millis(200);
    loop {
        let mut b = Consumer::builder(&args.postgres)
            .publication(args.publication.as_str())
            .slot(args.slot.as_str())
            .create_slot(args.create)
            .slot_kind(if args.temporary {
                SlotKind::Temporary
            } else {
                SlotKind::Persistent
            });
        for (rel, table) in &args.maps {
            b = b.map_table(rel.as_str(), table.as_str());
        }
        let verbose = args.verbose;
        let b = b.on_event(move |e| log_event(e, verbose));
        let cache = cache.clone();
        let started = tokio::task::spawn_blocking(move || b.spawn(cache));
        let result = tokio::select! {
            r = started => r,
            name = signals.recv() => return Err(End::Signal(name)),
        };
        match result {
            Ok(Ok(h)) => return Ok(h),
            Ok(Err(e)) if unreachable(&e) => {
                log(&format!("{e}; retrying in {delay:?}"));
            }
            Ok(Err(e)) => return Err(End::Fatal(e)),
            Err(e) => {
                return Err(End::Fatal(CdcError::Config(format!(
                    "the start failed: {e}"
                ))))
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            name = signals.recv() => return Err(End::Signal(name)),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The server could not be reached (no answer, refused, reset): worth waiting for, unlike
/// a refusal or a setup error.
fn unreachable(e: &CdcError) -> bool {
    matches!(e, CdcError::Connection(m) if m.starts_with("io error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Command, UsageError> {
        parse(s.split_whitespace().map(str::to_owned))
    }

    const BASE: &str = "--postgres host=db --redis redis://r/ --publication p --slot s";

    #[test]
    fn every_option_is_read() {
        let Ok(Command::Run(a)) = args(&format!(
            "{BASE} --create --temporary --prefix app: --version=7 --map public.a=b \
             --map x.y=z --status-every 3 --verbose"
        )) else {
            panic!("parses")
        };
        assert_eq!(
            (
                a.postgres.as_str(),
                a.redis.as_str(),
                a.publication.as_str()
            ),
            ("host=db", "redis://r/", "p")
        );
        assert_eq!(
            (a.slot.as_str(), a.prefix.as_str(), a.version),
            ("s", "app:", 7)
        );
        assert!(a.create && a.temporary && a.verbose);
        assert_eq!(
            a.maps,
            [("public.a".into(), "b".into()), ("x.y".into(), "z".into())]
        );
        assert_eq!(a.status_every, Duration::from_secs(3));
        let Ok(Command::Run(d)) = args(BASE) else {
            panic!("parses")
        };
        assert_eq!((d.prefix.as_str(), d.version, d.create), ("", 1, false));
        assert_eq!(args(&format!("{BASE} --help")), Ok(Command::Help));
    }

    #[test]
    fn passwords_never_reach_messages_or_debug() {
        // A connection string that lost its quotes: its password is a word of its own.
        let line = "--postgres host=db password=s3cret --redis redis://:s3cret@r/ \
                    --publication p --slot s";
        match args(line) {
            Err(UsageError(m)) => assert!(!m.contains("s3cret"), "{m}"),
            other => panic!("{other:?}"),
        }
        let line = "--postgres postgres://u:s3cret@db/app --redis redis://:s3cret@r/ \
                    --publication p --slot s";
        let parsed = args(line).unwrap();
        assert!(!format!("{parsed:?}").contains("s3cret"));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        for (line, says) in [
            (
                "--redis r --publication p --slot s",
                "--postgres is required",
            ),
            (
                "--postgres x --redis r --publication p",
                "--slot is required",
            ),
            (&format!("{BASE} --version x"), "--version \"x\""),
            (&format!("{BASE} --version -1"), "--version"),
            (&format!("{BASE} --map nothing"), "relation=cache_table"),
            (&format!("{BASE} --map =b"), "relation=cache_table"),
            (&format!("{BASE} --create=yes"), "takes no value"),
            (&format!("{BASE} --slot"), "--slot needs a value"),
            (&format!("{BASE} --bogus"), "unknown argument \"--bogus\""),
            (&format!("{BASE} stray"), "a word that is no option"),
        ] {
            match args(line) {
                Err(UsageError(m)) => assert!(m.contains(says), "{line}: {m}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
