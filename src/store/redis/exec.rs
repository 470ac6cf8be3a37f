//! Executors: how commands reach Redis. The store decides *which* commands to send
//! (`mod.rs`); an executor only sends one and returns the raw reply. [`Pool`] blocks the
//! calling thread on a pooled connection; `Multiplexed` (`mux.rs`) shares one connection
//! between tasks. Both trip the same [`Breaker`] when Redis stops answering.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::{Client, Connection, Value as RValue};

use super::RedisOptions;
use crate::error::Error;
use crate::sync::Mutex;

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
/// out a timeout.
#[derive(Default)]
pub(crate) struct Breaker {
    down_until: Mutex<Option<Instant>>,
}

impl Breaker {
    /// `Err(Unavailable)` while the breaker is open.
    pub fn check(&self) -> Result<(), Error> {
        if let Some(until) = *self.down_until.lock() {
            let now = Instant::now();
            if now < until {
                return Err(Error::Unavailable(format!(
                    "it failed to answer; next try in {:?}",
                    until - now
                )));
            }
        }
        Ok(())
    }

    /// Classifies a failure; opens the breaker when Redis is unreachable. Returns whether
    /// it did (so connections made before may be dropped).
    pub fn failed(&self, e: redis::RedisError, retry_after: Duration) -> (Error, bool) {
        let err = Error::Redis(e);
        let down = err.is_unavailable();
        if down {
            *self.down_until.lock() = Some(Instant::now() + retry_after);
        }
        (err, down)
    }
}

/// The blocking executor: a pool of connections, each used by one thread at a time.
#[derive(Clone)]
pub(crate) struct Pool {
    shared: std::sync::Arc<PoolShared>,
}

struct PoolShared {
    client: Client,
    idle: Mutex<Vec<Connection>>,
    opts: RedisOptions,
    breaker: Breaker,
}

impl Pool {
    pub fn new(client: Client, opts: RedisOptions) -> Pool {
        Pool {
            shared: std::sync::Arc::new(PoolShared {
                client,
                idle: Mutex::new(Vec::new()),
                opts,
                breaker: Breaker::default(),
            }),
        }
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let opts = &self.shared.opts;
        let c = self
            .shared
            .client
            .get_connection_with_timeout(opts.connect_timeout)?;
        c.set_read_timeout(Some(opts.io_timeout))?;
        c.set_write_timeout(Some(opts.io_timeout))?;
        Ok(c)
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
            let reply = match req {
                Req::Cmd(cmd) => cmd.query(&mut conn),
                Req::Pipe(pipe) => pipe.query(&mut conn),
                Req::Blocking(cmd, wait) => {
                    // Blocking is the point here: the reply may take up to `wait`.
                    conn.set_read_timeout(Some(wait.saturating_add(io)))?;
                    let reply = cmd.query(&mut conn);
                    conn.set_read_timeout(Some(io))?;
                    reply
                }
            };
            reply.map(|v| (v, conn))
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
