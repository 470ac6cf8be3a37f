//! The async executor: one multiplexed connection shared by every task, made on first use
//! and remade after a connection-level failure, with the same breaker as the blocking
//! pool. Blocking commands get a connection of their own, so they never stall the shared
//! one.
//!
//! Timeouts are the builder's, whole: connecting (greeting included) within
//! `connect_timeout`, each request's answer within `io_timeout`, each reported as
//! [`Error::Timeout`] naming the phase.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value as RValue};
use tokio::time::{timeout_at, Instant};

use super::exec::{classify, timed_out, Breaker, Exec, Req};
use super::RedisOptions;
use crate::error::Error;
use crate::sync::{AsyncMutex, AtomicU64, Mutex, Ordering};

/// Clones of the shared connection kept for reuse at most (one per request in flight).
const IDLE_CLONES: usize = 256;

/// Shares one connection between tasks.
#[derive(Clone)]
pub(crate) struct Multiplexed {
    shared: Arc<MuxShared>,
}

struct MuxShared {
    client: Client,
    /// Where Redis is (`host:port` or a socket path), for errors.
    addr: String,
    opts: RedisOptions,
    breaker: Breaker,
    /// The connection in use and its number (`None`: the next request makes one).
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// The number of the connection in use (0: none).
    current: AtomicU64,
    /// Clones of connections, each used by one request at a time and put back after it, so
    /// a request neither clones the connection nor takes a lock (a clone is made only when
    /// every kept one is in use). Clones of a replaced connection are dropped when taken.
    idle: ArrayQueue<(u64, MultiplexedConnection)>,
    /// One connection attempt at a time; the others wait for it.
    connecting: AsyncMutex<()>,
    made: AtomicU64,
}

impl Multiplexed {
    /// Connects lazily (on the first command). Needs a tokio runtime.
    pub fn new(client: Client, opts: RedisOptions) -> Result<Multiplexed, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "the async cache must be built inside a tokio runtime".into(),
            ));
        }
        Ok(Multiplexed {
            shared: Arc::new(MuxShared {
                addr: client.get_connection_info().addr().to_string(),
                client,
                opts,
                breaker: Breaker::default(),
                conn: Mutex::new(None),
                current: AtomicU64::new(0),
                idle: ArrayQueue::new(IDLE_CLONES),
                connecting: AsyncMutex::new(()),
                made: AtomicU64::new(0),
            }),
        })
    }

    fn config(&self, response: Duration) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.shared.opts.connect_timeout))
            .set_response_timeout(Some(response))
    }

    /// A new connection within `connect_timeout`, or the timeout.
    async fn open(
        &self,
        response: Duration,
        deadline: Instant,
    ) -> Result<MultiplexedConnection, Error> {
        let sh = &*self.shared;
        let after = sh.opts.connect_timeout;
        let config = self.config(response);
        // Boxed: the redis crate's connect future is deep, and nested in every read's
        // future it would overflow the compiler's query depth in users' crates. Connecting
        // is rare; one allocation does not matter.
        let connect = Box::pin(
            sh.client
                .get_multiplexed_async_connection_with_config(&config),
        );
        match timeout_at(deadline, connect).await {
            Ok(made) => made.map_err(|e| classify(e, true, &sh.addr, after)),
            Err(_) => Err(timed_out(true, &sh.addr, after)),
        }
    }

    /// The shared connection, made if there is none (one attempt at a time): a kept clone
    /// if one is idle.
    async fn shared_conn(&self) -> Result<(u64, MultiplexedConnection), Error> {
        let sh = &*self.shared;
        let current = sh.current.load(Ordering::Acquire);
        while let Some((n, c)) = sh.idle.pop() {
            if n == current && n != 0 {
                return Ok((n, c));
            }
            // A clone of a connection since replaced: dropped.
        }
        if let Some(c) = sh.conn.lock().clone() {
            return Ok(c);
        }
        let after = sh.opts.connect_timeout;
        let deadline = Instant::now() + after;
        let Ok(_one) = timeout_at(deadline, sh.connecting.lock()).await else {
            return Err(timed_out(true, &sh.addr, after));
        };
        if let Some(c) = sh.conn.lock().clone() {
            return Ok(c);
        }
        let conn = self.open(sh.opts.io_timeout, deadline).await?;
        let n = sh.made.fetch_add(1, Ordering::Relaxed) + 1;
        *sh.conn.lock() = Some((n, conn.clone()));
        sh.current.store(n, Ordering::Release);
        Ok((n, conn))
    }

    /// Forgets connection `n` (after it failed), unless another replaced it already.
    fn drop_conn(&self, n: u64) {
        let mut slot = self.shared.conn.lock();
        if slot.as_ref().is_some_and(|(m, _)| *m == n) {
            *slot = None;
            self.shared.current.store(0, Ordering::Release);
        }
    }

    async fn shared_request(&self, req: Req<'_>) -> Result<RValue, Error> {
        let sh = &*self.shared;
        let (n, mut conn) = self.shared_conn().await?;
        let io = sh.opts.io_timeout;
        let reply = match req {
            // The connection's response timeout (`io`) bounds each whole request; no timer
            // of our own on the hot path.
            Req::Cmd(cmd) => cmd.query_async(&mut conn).await,
            Req::Pipe(pipe) => pipe.query_async(&mut conn).await,
            Req::Blocking(..) => unreachable!("blocking commands have their own connection"),
        };
        let result = reply.map_err(|e| classify(e, false, &sh.addr, io));
        match &result {
            Err(e) if e.is_unavailable() => self.drop_conn(n),
            // Kept for the next request (dropped if enough are kept already).
            _ => {
                let _ = sh.idle.push((n, conn));
            }
        }
        result
    }

    async fn blocking(&self, cmd: &redis::Cmd, wait: Duration) -> Result<RValue, Error> {
        let sh = &*self.shared;
        let after = wait.saturating_add(sh.opts.io_timeout);
        let deadline = Instant::now() + sh.opts.connect_timeout;
        let mut own = self.open(after, deadline).await?;
        // Its response timeout is `after`.
        cmd.query_async(&mut own)
            .await
            .map_err(|e| classify(e, false, &sh.addr, after))
    }
}

impl Exec for Multiplexed {
    async fn run<'a>(&'a self, req: Req<'a>) -> Result<RValue, Error> {
        let sh = &*self.shared;
        sh.breaker.check()?;
        let reply = match req {
            Req::Blocking(cmd, wait) => self.blocking(cmd, wait).await,
            req => self.shared_request(req).await,
        };
        reply.map_err(|e| sh.breaker.failed(e, sh.opts.retry_after).0)
    }
}
