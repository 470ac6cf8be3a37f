//! Executors: how commands reach Redis. The store decides *which* commands to send
//! (`mod.rs`); an executor only sends one and returns the raw reply. [`Pool`] blocks the
//! calling thread on a pooled connection; `Multiplexed` (`mux.rs`) shares one connection
//! between tasks. Both trip the same [`Breaker`] when Redis stops answering.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::{Client, Connection, Value as RValue};

use super::RedisOptions;
use crate::error::Error;
use crate::sync::{AtomicBool, Mutex, Ordering};

/// One request to Redis.
pub(crate) enum Req<'a> {
    /// A command.
    Cmd(&'a redis::Cmd),
    /// Commands in one round trip; the reply is an array of their replies.
    Pipe(&'a redis::Pipeline),
    /// A blocking command (`BLPOP`) that may take up to the duration to answer.
    Blocking(&'a redis::Cmd, Duration),
}

/// Sends requests to Redis.
pub(crate) trait Exec: Clone + Send + Sync + 'static {
    /// Sends `req` and returns its reply. Errors are classified by [`Breaker::check`].
    fn run<'a>(&'a self, req: Req<'a>) -> impl Future<Output = Result<RValue, Error>> + Send + 'a;
}

/// After Redis fails to answer, calls fail fast for `retry_after` instead of each waiting
/// out a timeout. The happy path is one relaxed load: `open` is set (under the lock) only
/// while a deadline is recorded, and cleared by the first check past it.
#[derive(Default)]
pub(crate) struct Breaker {
    open: AtomicBool,
    down_until: Mutex<Option<Instant>>,
}

impl Breaker {
    /// `Err(Unavailable)` while the breaker is open.
    #[inline]
    pub fn check(&self) -> Result<(), Error> {
        if !self.open.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.check_open()
    }

    #[cold]
    fn check_open(&self) -> Result<(), Error> {
        let mut until = self.down_until.lock();
        if let Some(t) = *until {
            let now = Instant::now();
            if now < t {
                return Err(Error::Unavailable(format!(
                    "it failed to answer; next try in {:?}",
                    t - now
                )));
            }
            *until = None;
            self.open.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Notes a failure; opens the breaker when Redis is unreachable. Returns the error and
    /// whether it did (so connections made before may be dropped).
    pub fn failed(&self, err: Error, retry_after: Duration) -> (Error, bool) {
        let down = err.is_unavailable();
        if down {
            let mut until = self.down_until.lock();
            *until = Some(Instant::now() + retry_after);
            self.open.store(true, Ordering::Relaxed);
        }
        (err, down)
    }
}

/// A Redis error as the crate's: a timeout of the socket (`EAGAIN` from a read timeout
/// included) becomes [`Error::Timeout`], naming the phase, the address and the timeout.
pub(crate) fn classify(
    e: redis::RedisError,
    connecting: bool,
    addr: &str,
    after: Duration,
) -> Error {
    if e.is_timeout() {
        timed_out(connecting, addr, after)
    } else {
        Error::Redis(e)
    }
}

/// The [`Error::Timeout`] of a phase.
pub(crate) fn timed_out(connecting: bool, addr: &str, after: Duration) -> Error {
    Error::Timeout {
        connecting,
        addr: addr.to_owned(),
        after,
    }
}

/// The blocking executor: a pool of connections, each used by one thread at a time.
#[derive(Clone)]
pub(crate) struct Pool {
    shared: std::sync::Arc<PoolShared>,
}

struct PoolShared {
    client: Client,
    /// Where Redis is (`host:port` or a socket path), for errors.
    addr: String,
    idle: Mutex<Vec<Pooled>>,
    opts: RedisOptions,
    breaker: Breaker,
}

impl Pool {
    pub fn new(client: Client, opts: RedisOptions) -> Pool {
        Pool {
            shared: std::sync::Arc::new(PoolShared {
                addr: client.get_connection_info().addr().to_string(),
                client,
                idle: Mutex::new(Vec::new()),
                opts,
                breaker: Breaker::default(),
            }),
        }
    }

    /// A new connection within `connect_timeout`, greeting included. The redis crate bounds
    /// each read of its greeting (`AUTH`, `SELECT`, `CLIENT SETINFO`) by the timeout, not
    /// the whole: a server that accepts and never answers would cost one timeout per
    /// command. So the connection is made on a thread of its own, and abandoned (it ends by
    /// itself) when the deadline passes. Connections are pooled: this is rare.
    fn connect(&self) -> Result<Pooled, Error> {
        let sh = &self.shared;
        let timeout = sh.opts.connect_timeout;
        let io = sh.opts.io_timeout;
        let client = sh.client.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("stampcache-connect".into())
            .spawn(move || {
                let made = client.get_connection_with_timeout(timeout).and_then(|c| {
                    c.set_write_timeout(Some(io))?;
                    Ok(c)
                });
                let _ = tx.send(made);
            });
        if let Err(e) = spawned {
            return Err(Error::Redis(e.into()));
        }
        match rx.recv_timeout(timeout) {
            Ok(made) => made
                .map(|conn| Pooled {
                    conn,
                    read_timeout: None,
                })
                .map_err(|e| classify(e, true, &sh.addr, timeout)),
            Err(_) => Err(timed_out(true, &sh.addr, timeout)),
        }
    }

    /// Runs `req` on a pooled connection, now.
    fn run_now(&self, req: Req<'_>) -> Result<RValue, Error> {
        let sh = &*self.shared;
        sh.breaker.check()?;
        let pooled = sh.idle.lock().pop();
        let io = sh.opts.io_timeout;
        let result = match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
        .and_then(|mut conn| {
            // The whole answer within the timeout (a pipeline's too, not each reply's).
            let (after, reply) = match req {
                Req::Cmd(cmd) => (io, cmd.query(&mut Timed::new(&mut conn, io))),
                Req::Pipe(pipe) => (io, pipe.query(&mut Timed::new(&mut conn, io))),
                Req::Blocking(cmd, wait) => {
                    // Blocking is the point here: the reply may take up to `wait`.
                    let after = wait.saturating_add(io);
                    (after, cmd.query(&mut Timed::new(&mut conn, after)))
                }
            };
            reply
                .map(|v| (v, conn))
                .map_err(|e| classify(e, false, &sh.addr, after))
        });
        match result {
            Ok((v, conn)) => {
                let mut idle = sh.idle.lock();
                if idle.len() < sh.opts.pool_size {
                    idle.push(conn);
                }
                Ok(v)
            }
            Err(e) => {
                // The connection is dropped: a late answer must not meet the next request.
                let (err, down) = sh.breaker.failed(e, sh.opts.retry_after);
                if down {
                    // Connections made before the failure may be dead too.
                    sh.idle.lock().clear();
                }
                Err(err)
            }
        }
    }
}

impl Exec for Pool {
    fn run<'a>(&'a self, req: Req<'a>) -> impl Future<Output = Result<RValue, Error>> + Send + 'a {
        // The work is done here, in the call: the future is ready when returned.
        std::future::ready(self.run_now(req))
    }
}

/// A pooled connection and the read timeout its socket has (set only when it must change:
/// a `setsockopt` per request would cost more than the rest of a hit's client side).
struct Pooled {
    conn: Connection,
    read_timeout: Option<Duration>,
}

/// A connection whose requests must be answered, whole, by a deadline: before each reply
/// the socket's read timeout is brought within [`SLACK`] of what is left (the redis
/// crate's own pipelines wait the full timeout for each reply). The first failure ends the
/// request; the caller drops the connection.
struct Timed<'c> {
    pooled: &'c mut Pooled,
    deadline: Instant,
}

/// How far past its deadline a reply may be waited for (the socket's timeout is left alone
/// within it, so a request answered in time sets no timeout).
const SLACK: Duration = Duration::from_millis(10);

impl<'c> Timed<'c> {
    fn new(pooled: &'c mut Pooled, within: Duration) -> Timed<'c> {
        Timed {
            pooled,
            deadline: Instant::now() + within,
        }
    }

    /// The next reply (push messages skipped), or a timeout when the deadline passed.
    fn recv(&mut self) -> redis::RedisResult<RValue> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
            }
            let p = &mut *self.pooled;
            let keep = p
                .read_timeout
                .is_some_and(|t| t <= left.saturating_add(SLACK) && t + SLACK >= left);
            if !keep {
                p.conn.set_read_timeout(Some(left))?;
                p.read_timeout = Some(left);
            }
            match p.conn.recv_response()? {
                RValue::Push { .. } => continue,
                v => return Ok(v),
            }
        }
    }
}

impl redis::ConnectionLike for Timed<'_> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<RValue> {
        self.pooled.conn.send_packed_command(cmd)?;
        self.recv()
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<RValue>> {
        self.pooled.conn.send_packed_command(cmd)?;
        let mut replies = Vec::with_capacity(count);
        for i in 0..offset + count {
            let v = self.recv()?;
            if i >= offset {
                replies.push(v);
            }
        }
        Ok(replies)
    }

    fn get_db(&self) -> i64 {
        self.pooled.conn.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.pooled.conn.check_connection()
    }

    fn is_open(&self) -> bool {
        self.pooled.conn.is_open()
    }
}
