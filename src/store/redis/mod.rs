//! The shared tier: Redis. This module decides which commands a store operation sends and
//! in which order; [`reply`] interprets the answers and [`lua`] holds the scripts, all
//! without I/O. An [`Exec`] carries the bytes: [`Pool`] (blocking) or `Multiplexed`
//! (async, with the `tokio` feature). One protocol, two ways to send it.
//!
//! Stamps are random per call (a client nonce plus the key's position), so a deleted and
//! recreated stamp never equals an old one. An entry's first 40 bytes are the SHA-1 (hex) of
//! the stamps it was computed under, joined by `,`; the payload follows.
//!
//! A hit is one `MGET` of the entry and its stamps, checked here: no script runs on the hot
//! path (Lua copies large values slowly). A miss then runs `PREPARE` (stamps read before the
//! loader) and `STORE` (stored only if the stamps still match).

mod exec;
mod lua;
#[cfg(feature = "tokio")]
mod mux;
pub(crate) mod reply;

use std::sync::Arc;
use std::time::Duration;

use redis::{Client, Value as RValue};

pub(crate) use exec::{Exec, Pool};
#[cfg(feature = "tokio")]
pub(crate) use mux::Multiplexed;

use super::{merge_widening, millis, EncodedRow, Fetch, KindClash, Plan, RowsInvalidated, Token};
use crate::error::{redact_url, scrub, Error};
use crate::keys::{dead_key, TableKeys};
use crate::keys::{kind_of_letter, unescape};
use crate::sync::{AtomicU64, Ordering};
use exec::Req;
use lua::{Lua, Scripts};
use reply::{
    checksum, parse_hit, parse_hit_or_stale, parse_token, stamps_match, typed, CHECKSUM_LEN,
};

/// Connection settings.
#[derive(Debug, Clone)]
pub(crate) struct RedisOptions {
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub retry_after: Duration,
}

/// The Redis store over an executor: [`Pool`] or `Multiplexed`.
#[derive(Clone)]
pub(crate) struct RedisStore<X: Exec> {
    exec: X,
    scripts: Arc<Scripts>,
    nonce: Arc<AtomicU64>,
}

/// How a Redis URL is written, for errors.
const URL_FORMS: &str = "redis://[[user]:password@]host[:port][/db], rediss://… (TLS, feature \
                         `tls`) or unix:///path/to/redis.sock[?db=N] (also valkey://, \
                         valkeys://, redis+unix://)";

/// The client of a URL, or a configuration error naming it (credentials redacted) and
/// saying what is wrong: a scheme Redis is not reached by lists the accepted ones.
pub(crate) fn client(url: &str) -> Result<Client, Error> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "valkey" | "unix" | "redis+unix" | "valkey+unix") => {}
        Some("rediss" | "valkeys") if cfg!(feature = "tls") => {}
        Some(s @ ("rediss" | "valkeys")) => {
            return Err(bad_url(
                url,
                format!("{s}:// is Redis over TLS, which needs stampcache's `tls` feature"),
            ))
        }
        Some(s) => {
            return Err(bad_url(
                url,
                format!("the scheme {s:?} is not one of Redis'; write {URL_FORMS}"),
            ))
        }
        None => return Err(bad_url(url, format!("no scheme; write {URL_FORMS}"))),
    }
    Client::open(url).map_err(|e| bad_url(url, e))
}

/// The configuration error of a bad URL: the URL and the parser's message, credentials
/// redacted from both.
pub(crate) fn bad_url(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "bad Redis URL {:?}: {}",
        redact_url(url),
        scrub(&why.to_string(), url)
    ))
}

impl RedisStore<Pool> {
    /// A blocking store (connections are made on first use).
    pub fn blocking(url: &str, opts: RedisOptions) -> Result<RedisStore<Pool>, Error> {
        Ok(RedisStore::over(Pool::new(client(url)?, opts)))
    }
}

#[cfg(feature = "tokio")]
impl RedisStore<Multiplexed> {
    /// An async store on one multiplexed connection (made on first use).
    pub fn multiplexed(url: &str, opts: RedisOptions) -> Result<RedisStore<Multiplexed>, Error> {
        Ok(RedisStore::over(Multiplexed::new(client(url)?, opts)?))
    }
}

impl<X: Exec> RedisStore<X> {
    fn over(exec: X) -> RedisStore<X> {
        RedisStore {
            exec,
            scripts: Arc::new(Scripts::new()),
            nonce: Arc::new(AtomicU64::new(seed())),
        }
    }

    fn next_nonce(&self) -> String {
        let n = self
            .nonce
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        format!("{:016x}.", mix(n))
    }

    async fn cmd<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        typed(what, self.exec.run(Req::Cmd(cmd)).await?)
    }

    /// Runs a script by SHA-1, loading it once if Redis does not know it.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        what: &str,
        script: &Lua,
        keys: &[&str],
        args: impl FnOnce(&mut redis::Cmd),
    ) -> Result<T, Error> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&script.sha).arg(keys.len()).arg(keys);
        args(&mut cmd);
        match self.exec.run(Req::Cmd(&cmd)).await {
            Err(e) if no_script(&e) => {
                self.load(script).await?;
                self.cmd(what, &cmd).await
            }
            r => typed(what, r?),
        }
    }

    async fn load(&self, script: &Lua) -> Result<(), Error> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(script.code);
        self.cmd::<String>("script load", &load).await.map(|_| ())
    }

    /// Step 1 of a read (see [`Store::fetch`](crate::store::Store::fetch)).
    pub async fn fetch(&self, plan: &Plan, want_hit: bool) -> Result<Fetch, Error> {
        if want_hit && plan.stale.is_some() {
            // With stale-while-revalidate the MGET also reads the stamps' last values.
            let dead: Vec<String> = plan.stamps.iter().map(|k| dead_key(k)).collect();
            let mut mget = redis::cmd("MGET");
            mget.arg(&plan.entry).arg(&plan.stamps).arg(&dead);
            let reply = self.exec.run(Req::Cmd(&mget)).await?;
            if let Some(found) = parse_hit_or_stale(reply, plan.stamps.len())? {
                return Ok(found);
            }
        } else if want_hit {
            // A hit is one plain MGET (no script): entry and stamps, checked here.
            let mut mget = redis::cmd("MGET");
            mget.arg(&plan.entry).arg(&plan.stamps);
            let reply = self.exec.run(Req::Cmd(&mget)).await?;
            if let Some((hit, token)) = parse_hit(reply)? {
                return Ok(Fetch::Hit(hit, token));
            }
        }
        let mut keys: Vec<&str> = plan.stamps.iter().map(String::as_str).collect();
        keys.extend(plan.schemes.iter().map(|set| set.key.as_str()));
        let nonce = self.next_nonce();
        let reply: RValue = self
            .eval("prepare", &self.scripts.prepare, &keys, |c| {
                c.arg(plan.stamps.len())
                    .arg(millis(plan.stamp_ttl()))
                    .arg(nonce)
                    .arg(millis(plan.scheme_ttl()));
                for set in &plan.schemes {
                    // The generation's position among the keys (1-based; 0: none).
                    let gen = plan.stamps.iter().position(|k| *k == set.gen);
                    // Kind members ride with the schemes (same lifetime, never a scheme).
                    c.arg(gen.map_or(0, |i| i + 1))
                        .arg(set.schemes.len() + set.kinds.len())
                        .arg(&set.schemes)
                        .arg(&set.kinds);
                }
            })
            .await?;
        parse_prepared(reply).map(Fetch::Miss)
    }

    /// Step 3 of a read: stores `payload` if the stamps still match `token`.
    pub async fn store(&self, plan: &Plan, token: &Token, payload: &[u8]) -> Result<bool, Error> {
        let mut value = Vec::with_capacity(CHECKSUM_LEN + payload.len());
        value.extend_from_slice(token.0.as_bytes());
        value.extend_from_slice(payload);
        let mut keys = vec![plan.entry.as_str()];
        keys.extend(plan.stamps.iter().map(String::as_str));
        keys.extend(plan.schemes.iter().map(|set| set.key.as_str()));
        let stored: i64 = self
            .eval("store", &self.scripts.store, &keys, |c| {
                c.arg(value)
                    .arg(millis(plan.ttl))
                    .arg(plan.stamps.len())
                    .arg(token.1)
                    .arg(millis(plan.scheme_ttl()));
                for set in &plan.schemes {
                    c.arg(set.schemes.len() + set.kinds.len())
                        .arg(&set.schemes)
                        .arg(&set.kinds);
                }
            })
            .await?;
        Ok(stored == 1)
    }

    /// Whether the stamps still match `token`.
    pub async fn confirm(&self, stamps: &[Arc<str>], token: &Token) -> Result<bool, Error> {
        if stamps.is_empty() {
            return Ok(token.0.as_bytes() == checksum(std::iter::empty()));
        }
        let mut mget = redis::cmd("MGET");
        for k in stamps {
            mget.arg(&**k);
        }
        stamps_match(&self.exec.run(Req::Cmd(&mget)).await?, token)
    }

    /// Deletes the stamps the rows match, per table, in one round trip; reports the
    /// schemes rows lacked fields of.
    pub async fn invalidate_rows(
        &self,
        batches: &[(TableKeys, Vec<EncodedRow>)],
    ) -> Result<RowsInvalidated, Error> {
        // One pipeline (one round trip); large batches are split so no script call is huge.
        let mut pipe = redis::pipe();
        for (t, rows) in batches {
            for chunk in rows.chunks(500) {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(&self.scripts.invalidate.sha)
                    .arg(2)
                    .arg(&t.schemes)
                    .arg(&t.gen)
                    .arg(&t.conj_prefix)
                    .arg(t.stale_ms)
                    .arg(chunk.len());
                for row in chunk {
                    cmd.arg(row.len());
                    for (f, v) in row {
                        cmd.arg(f).arg(v);
                    }
                }
                pipe.add_command(cmd);
            }
        }
        let replies: Vec<(Vec<String>, Vec<String>, Vec<String>)> =
            match self.exec.run(Req::Pipe(&pipe)).await {
                Err(e) if no_script(&e) => {
                    self.load(&self.scripts.invalidate).await?;
                    typed("invalidate", self.exec.run(Req::Pipe(&pipe)).await?)?
                }
                r => typed("invalidate", r?)?,
            };
        // The replies come in the order of the calls: per table, per chunk of rows.
        let tables = batches
            .iter()
            .flat_map(|(t, rows)| std::iter::repeat_n(t, rows.len().div_ceil(500)));
        let mut out = RowsInvalidated::default();
        for (t, (deleted, widened, clashes)) in tables.zip(replies) {
            out.deleted.extend(deleted);
            for pair in widened.chunks_exact(2) {
                merge_widening(&mut out.widened, t, &pair[0], &pair[1]);
            }
            for c in clashes.chunks_exact(3) {
                let (Some(condition), Some(row)) = (kind_of_letter(&c[1]), kind_of_letter(&c[2]))
                else {
                    continue;
                };
                out.clashes.push(KindClash {
                    table: t.table.clone(),
                    field: unescape(&c[0]),
                    condition,
                    row,
                });
            }
        }
        Ok(out)
    }

    /// Deletes generation stamps (and their stale markers).
    pub async fn invalidate_tables(&self, gens: &[String]) -> Result<(), Error> {
        if gens.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for g in gens {
            // The generation's stale marker goes too: a whole-table invalidation ends the
            // grace of every entry of the table.
            pipe.unlink(&[g.clone(), dead_key(g)]).ignore();
        }
        self.exec.run(Req::Pipe(&pipe)).await.map(|_| ())
    }

    /// Deletes every key matching `pattern`.
    pub async fn invalidate_all(&self, pattern: &str) -> Result<(), Error> {
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.cmd("scan", &scan).await?;
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                self.cmd::<i64>("unlink", &unlink).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Takes the entry's loader lock for `owner` if free (`SET NX PX`).
    pub async fn try_lock(&self, plan: &Plan, owner: &str, ttl: Duration) -> Result<bool, Error> {
        let mut set = redis::cmd("SET");
        set.arg(plan.lock_key())
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let reply: Option<String> = self.cmd("set nx", &set).await?;
        Ok(reply.is_some())
    }

    /// Releases the lock if `owner` holds it, and wakes the waiters.
    pub async fn unlock(&self, plan: &Plan, owner: &str, ttl: Duration) -> Result<(), Error> {
        let (lock, waiters) = (plan.lock_key(), plan.waiters_key());
        self.eval::<i64>("unlock", &self.scripts.unlock, &[&lock, &waiters], |c| {
            c.arg(owner).arg(millis(ttl)).arg(plan.wake_prefix());
        })
        .await
        .map(|_| ())
    }

    /// Waits until the lock's holder wakes the waiters, or `wait` passes.
    pub async fn wait_unlock(&self, plan: &Plan, wait: Duration) -> Result<(), Error> {
        let id = self.next_nonce();
        let (lock, waiters) = (plan.lock_key(), plan.waiters_key());
        let lock_left: i64 = self
            .eval("wait", &self.scripts.wait, &[&lock, &waiters], |c| {
                c.arg(&id).arg(millis(wait.saturating_mul(2)));
            })
            .await?;
        if lock_left <= 0 {
            return Ok(()); // Unlocked already: look again now.
        }
        // Never past the lock's expiry: a dead holder's lock is taken over on time.
        let wait = wait.min(Duration::from_millis(lock_left as u64 + 5));
        let mut blpop = redis::cmd("BLPOP");
        blpop
            .arg(format!("{}{id}", plan.wake_prefix()))
            .arg(wait.as_secs_f64().max(0.01));
        self.exec.run(Req::Blocking(&blpop, wait)).await.map(|_| ())
    }

    /// Simple cache: raw get.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut get = redis::cmd("GET");
        get.arg(key);
        self.cmd("get", &get).await
    }

    /// Simple cache: raw set with a lifetime.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Error> {
        let mut set = redis::cmd("SET");
        set.arg(key).arg(value).arg("PX").arg(millis(ttl));
        self.cmd::<RValue>("set", &set).await.map(|_| ())
    }

    /// Simple cache: delete; true if something was deleted.
    pub async fn delete(&self, keys: &[String]) -> Result<bool, Error> {
        if keys.is_empty() {
            return Ok(false);
        }
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(keys);
        let n: i64 = self.cmd("unlink", &unlink).await?;
        Ok(n > 0)
    }
}

/// The `PREPARE` script's reply: the checksum and Redis' clock in milliseconds.
fn parse_prepared(v: RValue) -> Result<Token, Error> {
    match v {
        RValue::Array(mut items) if items.len() == 2 => {
            let now: u64 = typed("prepare", items.pop().unwrap_or(RValue::Nil))?;
            let Token(sum, _) = parse_token(items.pop().unwrap_or(RValue::Nil))?;
            Ok(Token(sum, now))
        }
        other => Err(reply::protocol("prepare", &other)),
    }
}

fn no_script(e: &Error) -> bool {
    matches!(e, Error::Redis(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}

/// Seeds the nonce sequence from the process' random hasher keys, the pid and the clock.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// A bijective 64-bit mixer (splitmix64's finaliser): distinct inputs, distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_do_not_repeat() {
        let s = RedisStore::blocking(
            "redis://127.0.0.1:1/",
            RedisOptions {
                pool_size: 1,
                connect_timeout: Duration::from_millis(10),
                io_timeout: Duration::from_millis(10),
                retry_after: Duration::ZERO,
            },
        )
        .unwrap();
        let a: std::collections::HashSet<String> = (0..10_000).map(|_| s.next_nonce()).collect();
        assert_eq!(a.len(), 10_000);
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let opts = RedisOptions {
            pool_size: 1,
            connect_timeout: Duration::from_millis(10),
            io_timeout: Duration::from_millis(10),
            retry_after: Duration::ZERO,
        };
        for (url, says) in [
            (
                "http://x",
                "the scheme \"http\" is not one of Redis'; write redis://",
            ),
            ("127.0.0.1:6379", "no scheme; write redis://"),
            (
                "redis://:s3cret@127.0.0.1:notaport/5",
                "bad Redis URL \"redis://:***@127.0.0.1:notaport/5\"",
            ),
        ] {
            let Err(e) = RedisStore::blocking(url, opts.clone()) else {
                panic!("{url} is refused");
            };
            assert!(matches!(e, Error::Config(_)));
            let (shown, debug) = (e.to_string(), format!("{e:?}"));
            assert!(shown.contains(says), "{shown}");
            assert!(
                !shown.contains("s3cret") && !debug.contains("s3cret"),
                "{debug}"
            );
        }
    }
}
