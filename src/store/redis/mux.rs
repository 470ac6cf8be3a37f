//! The async executor: one multiplexed connection (`redis::aio::ConnectionManager`, which
//! reconnects by itself) shared by every task, with the same breaker as the blocking pool.
//! Blocking commands get a connection of their own, so they never stall the shared one.

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, Value as RValue};

use super::exec::{Breaker, Exec, Req};
use super::RedisOptions;
use crate::error::Error;

/// Shares one connection between tasks.
#[derive(Clone)]
pub(crate) struct Multiplexed {
    conn: ConnectionManager,
    client: Client,
    opts: RedisOptions,
    breaker: Arc<Breaker>,
}

impl Multiplexed {
    /// Connects lazily (on the first command). Needs a tokio runtime.
    pub fn new(client: Client, opts: RedisOptions) -> Result<Multiplexed, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "the async cache must be built inside a tokio runtime".into(),
            ));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.io_timeout))
            // One quick reconnection attempt per call: a down Redis trips the breaker
            // instead of stalling callers in reconnection back-off.
            .set_number_of_retries(1)
            .set_max_delay(opts.connect_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| Error::Config(format!("cannot set up the Redis connection: {e}")))?;
        Ok(Multiplexed {
            conn,
            client,
            opts,
            breaker: Arc::default(),
        })
    }

    async fn blocking(
        &self,
        cmd: &redis::Cmd,
        wait: std::time::Duration,
    ) -> redis::RedisResult<RValue> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.opts.connect_timeout))
            .set_response_timeout(Some(wait.saturating_add(self.opts.io_timeout)));
        let mut own = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        cmd.query_async(&mut own).await
    }
}

impl Exec for Multiplexed {
    async fn run<'a>(&'a self, req: Req<'a>) -> Result<RValue, Error> {
        self.breaker.check()?;
        let mut conn = self.conn.clone();
        let reply = match req {
            Req::Cmd(cmd) => cmd.query_async(&mut conn).await,
            Req::Pipe(pipe) => pipe.query_async(&mut conn).await,
            Req::Blocking(cmd, wait) => self.blocking(cmd, wait).await,
        };
        reply.map_err(|e| self.breaker.failed(e, self.opts.retry_after).0)
    }
}
