//! The shared tier: Redis, through Lua scripts (EVALSHA, reloaded on `NOSCRIPT`).
//!
//! Stamps are random per call (a client nonce plus the key's position), so a deleted and
//! recreated stamp never equals an old one. An entry's first 40 bytes are the SHA-1 (hex) of
//! the stamps it was computed under, joined by `,`; the payload follows.
//!
//! A hit is one `MGET` of the entry and its stamps, checked here: no script runs on the hot
//! path (Lua copies large values slowly). A miss then runs `PREPARE` (stamps read before the
//! loader) and `STORE` (stored only if the stamps still match).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{Client, Connection, Script, Value as RValue};

use super::{millis, was_valid_before_deaths, EncodedRow, Fetch, HitBytes, Plan, Store, Token};
use crate::error::Error;
use crate::keys::{dead_key, TableKeys};

const CHECKSUM_LEN: usize = 40;

/// Prepares the stamps of a miss: reads them, creating absent ones, stretches their TTL and
/// registers the schemes. KEYS: stamps..., scheme sets...
/// ARGV: n_stamps, stamp_ttl_ms, nonce, then per scheme set: count, schemes...
/// Returns the checksum of the stamps.
const PREPARE: &str = r"
local n = tonumber(ARGV[1])
local stamps = {}
-- MGET in chunks: Lua's unpack has a limit of a few thousand values.
for i = 1, n, 1000 do
  local part = redis.call('MGET', unpack(KEYS, i, math.min(i + 999, n)))
  for j = 1, #part do stamps[i + j - 1] = part[j] end
end
local ttl = tonumber(ARGV[2])
for i = 1, n do
  local k = KEYS[i]
  if not stamps[i] then
    stamps[i] = ARGV[3] .. i
    redis.call('SET', k, stamps[i], 'PX', ttl)
  elseif redis.call('PTTL', k) < ttl / 2 then
    -- Too short for this entry (ttl / 2 > its timeout). Refreshing only then keeps
    -- tracked local tiers from hearing about every read.
    redis.call('PEXPIRE', k, ttl)
  end
end
local a = 4
for j = n + 1, #KEYS do
  local c = tonumber(ARGV[a])
  if c > 0 then redis.call('SADD', KEYS[j], unpack(ARGV, a + 1, a + c)) end
  a = a + 1 + c
end
return redis.sha1hex(table.concat(stamps, ','))
";

/// KEYS: entry, stamps...  ARGV: entry value (checksum + payload), ttl_ms.
/// Stores only if the stamps still match; returns 1 if stored.
const STORE: &str = r"
local stamps = {}
for i = 2, #KEYS, 1000 do
  local part = redis.call('MGET', unpack(KEYS, i, math.min(i + 999, #KEYS)))
  for j = 1, #part do stamps[i + j - 2] = part[j] end
end
for i = 1, #KEYS - 1 do if not stamps[i] then return 0 end end
if string.sub(ARGV[1], 1, 40) ~= redis.sha1hex(table.concat(stamps, ',')) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS: scheme set, generation.
/// ARGV: conj prefix, stale_ms, n_rows, per row: n_fields, (field, value)...
/// Deletes the conjunction stamp each row builds for each scheme. A row missing a field a
/// scheme needs cannot name its conjunction: the whole table is invalidated instead.
/// With stale_ms > 0, each deleted stamp's last value is kept that long under `<key>:dead`
/// (stale-while-revalidate). Returns the deleted keys.
const INVALIDATE: &str = r"
local schemes = redis.call('SMEMBERS', KEYS[1])
local del = {}
-- No scheme set (a restarted Redis, say): nothing here names this table's reads, but
-- local tiers may still hold some; the generation reaches every one of them.
local whole = #schemes == 0
local a = 4
for r = 1, tonumber(ARGV[3]) do
  local nf = tonumber(ARGV[a])
  local row = {}
  for f = 1, nf do row[ARGV[a + 2 * f - 1]] = ARGV[a + 2 * f] end
  a = a + 1 + 2 * nf
  for _, s in ipairs(schemes) do
    local parts = {}
    local complete = true
    for field in string.gmatch(s, '[^&]+') do
      local v = row[field]
      if v == nil then complete = false break end
      parts[#parts + 1] = field .. '=' .. v
    end
    if complete then del[#del + 1] = ARGV[1] .. table.concat(parts, '&') else whole = true end
  end
end
if whole then del[#del + 1] = KEYS[2] end
local stale = tonumber(ARGV[2])
if stale > 0 then
  for _, k in ipairs(del) do
    local v = redis.call('GET', k)
    if v then redis.call('SET', k .. ':dead', v, 'PX', stale) end
  end
end
for i = 1, #del, 1000 do
  redis.call('UNLINK', unpack(del, i, math.min(i + 999, #del)))
end
return del
";

/// Registers a waiter for an entry's loader lock, if the lock is still held.
/// KEYS: lock, waiters.  ARGV: waiter id, ttl_ms.
/// Returns the lock's remaining milliseconds (then wait at most that), or 0 when it is free.
const WAIT: &str = r"
local left = redis.call('PTTL', KEYS[1])
if left <= 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
-- Only ever lengthen: a waiter near its deadline must not expire the others' registrations.
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return left
";

/// Releases an entry's loader lock if `owner` holds it, and wakes every registered waiter
/// (each blocks on its own list, so no signal is left behind for later waiters).
/// KEYS: lock, waiters.  ARGV: owner, ttl_ms, signal key prefix.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
for _, id in ipairs(ids) do
  redis.call('RPUSH', ARGV[3] .. id, '1')
  redis.call('PEXPIRE', ARGV[3] .. id, ARGV[2])
end
return 1
";

/// Connection settings.
#[derive(Debug, Clone)]
pub(crate) struct RedisOptions {
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub retry_after: Duration,
}

/// Redis with a small pool of blocking connections.
pub(crate) struct RedisStore {
    client: Client,
    idle: Mutex<Vec<Connection>>,
    opts: RedisOptions,
    prepare: Script,
    store: Script,
    invalidate: Script,
    wait: Script,
    unlock: Script,
    nonce: AtomicU64,
    /// Set after a connection-level failure: until then, calls fail fast.
    down_until: Mutex<Option<Instant>>,
}

impl RedisStore {
    /// Parses the URL (`redis://`, `rediss://`, `unix://`, with db and password); connects lazily.
    pub fn open(url: &str, opts: RedisOptions) -> Result<RedisStore, Error> {
        let client =
            Client::open(url).map_err(|e| Error::Config(format!("bad Redis URL {url:?}: {e}")))?;
        Ok(RedisStore {
            client,
            idle: Mutex::new(Vec::new()),
            opts,
            prepare: Script::new(PREPARE),
            store: Script::new(STORE),
            invalidate: Script::new(INVALIDATE),
            wait: Script::new(WAIT),
            unlock: Script::new(UNLOCK),
            nonce: AtomicU64::new(seed()),
            down_until: Mutex::new(None),
        })
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped, not returned.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        if let Some(until) = *self.down_until.lock() {
            let now = Instant::now();
            if now < until {
                return Err(Error::Unavailable(format!(
                    "it failed to answer; next try in {:?}",
                    until - now
                )));
            }
        }
        let pooled = self.idle.lock().pop();
        let result = match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
        .and_then(|mut conn| f(&mut conn).map(|v| (v, conn)));
        match result {
            Ok((v, conn)) => {
                let mut idle = self.idle.lock();
                if idle.len() < self.opts.pool_size {
                    idle.push(conn);
                }
                Ok(v)
            }
            Err(e) => {
                let err = Error::Redis(e);
                if err.is_unavailable() {
                    // Connections made before the failure may be dead too.
                    self.idle.lock().clear();
                    *self.down_until.lock() = Some(Instant::now() + self.opts.retry_after);
                }
                Err(err)
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let c = self
            .client
            .get_connection_with_timeout(self.opts.connect_timeout)?;
        c.set_read_timeout(Some(self.opts.io_timeout))?;
        c.set_write_timeout(Some(self.opts.io_timeout))?;
        Ok(c)
    }

    /// A stamp prefix no other call has used: 64 random-looking bits, then a separator.
    fn next_nonce(&self) -> String {
        let n = self
            .nonce
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        format!("{:016x}.", mix(n))
    }
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

fn protocol(what: &str, v: &RValue) -> Error {
    Error::Protocol(format!("{what}: {v:?}"))
}

/// The checksum of stamp values, as the scripts compute it: SHA-1 hex of them joined by `,`.
fn checksum<'a>(stamps: impl Iterator<Item = &'a [u8]>) -> [u8; CHECKSUM_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = sha1_smol::Sha1::new();
    for (i, s) in stamps.enumerate() {
        if i > 0 {
            h.update(b",");
        }
        h.update(s);
    }
    let mut out = [0u8; CHECKSUM_LEN];
    for (i, b) in h.digest().bytes().iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

/// Checks the reply of `MGET entry stamps...`: the entry if present and every stamp
/// matches the checksum it was stored with.
fn parse_hit(v: RValue) -> Result<Option<(HitBytes, Token)>, Error> {
    let RValue::Array(mut items) = v else {
        return Err(protocol("mget", &v));
    };
    if items.is_empty() {
        return Err(protocol("mget", &RValue::Array(items)));
    }
    let mut stamps = Vec::with_capacity(items.len() - 1);
    for s in &items[1..] {
        match s {
            RValue::BulkString(b) => stamps.push(b.as_slice()),
            RValue::Nil => return Ok(None),
            other => return Err(protocol("mget stamp", other)),
        }
    }
    let valid = match &items[0] {
        RValue::BulkString(e) => {
            e.len() >= CHECKSUM_LEN && e[..CHECKSUM_LEN] == checksum(stamps.into_iter())
        }
        RValue::Nil => false,
        other => return Err(protocol("mget entry", other)),
    };
    if !valid {
        return Ok(None);
    }
    match items.swap_remove(0) {
        RValue::BulkString(buf) => {
            let token = Token(String::from_utf8_lossy(&buf[..CHECKSUM_LEN]).into_owned());
            Ok(Some((
                HitBytes::Owned {
                    buf,
                    start: CHECKSUM_LEN,
                },
                token,
            )))
        }
        _ => Ok(None),
    }
}

/// Checks the reply of `MGET entry stamps... dead...`: a valid hit, a stale one (valid
/// until stamps died within the grace), or nothing.
fn parse_hit_or_stale(v: RValue, n: usize) -> Result<Option<Fetch>, Error> {
    let RValue::Array(mut items) = v else {
        return Err(protocol("mget", &v));
    };
    if items.len() != 1 + 2 * n {
        return Err(protocol("mget", &RValue::Array(items)));
    }
    let dead = items.split_off(1 + n);
    let hit_part = RValue::Array(items.clone());
    if let Some((hit, token)) = parse_hit(hit_part)? {
        return Ok(Some(Fetch::Hit(hit, token)));
    }
    let bytes = |v: &RValue| match v {
        RValue::BulkString(b) => Some(b.clone()),
        _ => None,
    };
    let Some(entry) = items.first().and_then(bytes) else {
        return Ok(None);
    };
    if entry.len() < CHECKSUM_LEN {
        return Ok(None);
    }
    let current: Vec<Option<Vec<u8>>> = items[1..].iter().map(bytes).collect();
    let dead: Vec<Option<Vec<u8>>> = dead.iter().map(bytes).collect();
    let current: Vec<Option<&[u8]>> = current.iter().map(|v| v.as_deref()).collect();
    let dead: Vec<Option<&[u8]>> = dead.iter().map(|v| v.as_deref()).collect();
    let stored = &entry[..CHECKSUM_LEN];
    let matches = |values: &[&[u8]]| checksum(values.iter().copied()) == *stored;
    if was_valid_before_deaths(matches, &current, &dead) {
        return Ok(Some(Fetch::Stale(HitBytes::Owned {
            buf: entry,
            start: CHECKSUM_LEN,
        })));
    }
    Ok(None)
}

/// Parses the prepare script's reply.
fn parse_token(v: RValue) -> Result<Token, Error> {
    match v {
        RValue::BulkString(cs) if cs.len() == CHECKSUM_LEN => String::from_utf8(cs)
            .map(Token)
            .map_err(|_| Error::Protocol("prepare: checksum is not text".into())),
        other => Err(protocol("prepare", &other)),
    }
}

impl Store for RedisStore {
    fn fetch(&self, plan: &Plan, want_hit: bool) -> Result<Fetch, Error> {
        if want_hit && plan.stale.is_some() {
            // With stale-while-revalidate the MGET also reads the stamps' last values.
            let dead: Vec<String> = plan.stamps.iter().map(|k| dead_key(k)).collect();
            let mut mget = redis::cmd("MGET");
            mget.arg(&plan.entry).arg(&plan.stamps).arg(&dead);
            let reply: RValue = self.with_conn(|c| mget.query(c))?;
            if let Some(found) = parse_hit_or_stale(reply, plan.stamps.len())? {
                return Ok(found);
            }
        } else if want_hit {
            // A hit is one plain MGET (no script): entry and stamps, checked here.
            let mut mget = redis::cmd("MGET");
            mget.arg(&plan.entry).arg(&plan.stamps);
            let reply: RValue = self.with_conn(|c| mget.query(c))?;
            if let Some((hit, token)) = parse_hit(reply)? {
                return Ok(Fetch::Hit(hit, token));
            }
        }
        let mut inv = self.prepare.prepare_invoke();
        for k in &plan.stamps {
            inv.key(k);
        }
        inv.arg(plan.stamps.len())
            .arg(millis(plan.stamp_ttl()))
            .arg(self.next_nonce());
        for (key, schemes) in &plan.schemes {
            inv.key(key);
            inv.arg(schemes.len());
            for s in schemes {
                inv.arg(s);
            }
        }
        let reply: RValue = self.with_conn(|c| inv.invoke(c))?;
        parse_token(reply).map(Fetch::Miss)
    }

    fn store(&self, plan: &Plan, token: &Token, payload: &[u8]) -> Result<bool, Error> {
        let mut value = Vec::with_capacity(CHECKSUM_LEN + payload.len());
        value.extend_from_slice(token.0.as_bytes());
        value.extend_from_slice(payload);
        let mut inv = self.store.prepare_invoke();
        inv.key(&plan.entry);
        for k in &plan.stamps {
            inv.key(k);
        }
        inv.arg(value).arg(millis(plan.ttl));
        let stored: i64 = self.with_conn(|c| inv.invoke(c))?;
        Ok(stored == 1)
    }

    fn confirm(&self, stamps: &[String], token: &Token) -> Result<bool, Error> {
        if stamps.is_empty() {
            return Ok(token.0.as_bytes() == checksum(std::iter::empty()));
        }
        let mut mget = redis::cmd("MGET");
        mget.arg(stamps);
        let values: Vec<Option<Vec<u8>>> = self.with_conn(|c| mget.query(c))?;
        let mut present = Vec::with_capacity(values.len());
        for v in &values {
            match v {
                Some(v) => present.push(v.as_slice()),
                None => return Ok(false),
            }
        }
        Ok(token.0.as_bytes() == checksum(present.into_iter()))
    }

    fn invalidate_rows(
        &self,
        batches: &[(TableKeys, Vec<EncodedRow>)],
    ) -> Result<Vec<String>, Error> {
        // One pipeline (one round trip); large batches are split so no script call is huge.
        let mut pipe = redis::pipe();
        for (t, rows) in batches {
            for chunk in rows.chunks(500) {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.invalidate.get_hash())
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
        let run = |c: &mut Connection| pipe.query::<Vec<Vec<String>>>(c);
        let deleted = match self.with_conn(run) {
            Err(Error::Redis(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.with_conn(|c| self.invalidate.prepare_invoke().load(c))?;
                self.with_conn(run)?
            }
            r => r?,
        };
        Ok(deleted.into_iter().flatten().collect())
    }

    fn invalidate_tables(&self, gens: &[String]) -> Result<(), Error> {
        if gens.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for g in gens {
            // The generation's stale marker goes too: a whole-table invalidation ends the
            // grace of every entry of the table.
            pipe.unlink(&[g.clone(), dead_key(g)]).ignore();
        }
        self.with_conn(|c| pipe.query::<()>(c))
    }

    fn invalidate_all(&self, pattern: &str, keep: &str) -> Result<(), Error> {
        self.with_conn(|c| {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                let keys: Vec<&String> = keys.iter().filter(|k| !k.contains(keep)).collect();
                if !keys.is_empty() {
                    redis::cmd("UNLINK").arg(&keys).query::<()>(c)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })
    }

    fn try_lock(&self, plan: &Plan, owner: &str, ttl: Duration) -> Result<bool, Error> {
        let mut set = redis::cmd("SET");
        set.arg(plan.lock_key())
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let reply: Option<String> = self.with_conn(|c| set.query(c))?;
        Ok(reply.is_some())
    }

    fn unlock(&self, plan: &Plan, owner: &str, ttl: Duration) -> Result<(), Error> {
        let mut inv = self.unlock.prepare_invoke();
        inv.key(plan.lock_key())
            .key(plan.waiters_key())
            .arg(owner)
            .arg(millis(ttl))
            .arg(plan.wake_prefix());
        self.with_conn(|c| inv.invoke::<i64>(c)).map(|_| ())
    }

    fn wait_unlock(&self, plan: &Plan, wait: Duration) -> Result<(), Error> {
        let id = self.next_nonce();
        let mut register = self.wait.prepare_invoke();
        register
            .key(plan.lock_key())
            .key(plan.waiters_key())
            .arg(&id)
            .arg(millis(wait.saturating_mul(2)));
        let lock_left: i64 = self.with_conn(|c| register.invoke(c))?;
        if lock_left <= 0 {
            return Ok(()); // Unlocked already: look again now.
        }
        // Never past the lock's expiry: a dead holder's lock is taken over on time.
        let wait = wait.min(Duration::from_millis(lock_left as u64 + 5));
        let wake_key = format!("{}{id}", plan.wake_prefix());
        let io = self.opts.io_timeout;
        self.with_conn(|c| {
            // Blocking is the point here: the reply may take up to `wait`.
            c.set_read_timeout(Some(wait.saturating_add(io)))?;
            let woke: Option<(String, String)> = redis::cmd("BLPOP")
                .arg(&wake_key)
                .arg(wait.as_secs_f64().max(0.01))
                .query(c)?;
            c.set_read_timeout(Some(io))?;
            let _ = woke;
            Ok(())
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.with_conn(|c| redis::cmd("GET").arg(key).query(c))
    }

    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Error> {
        self.with_conn(|c| {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl))
                .query(c)
        })
    }

    fn delete(&self, keys: &[String]) -> Result<bool, Error> {
        if keys.is_empty() {
            return Ok(false);
        }
        let n: i64 = self.with_conn(|c| redis::cmd("UNLINK").arg(keys).query(c))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> RValue {
        RValue::BulkString(b.to_vec())
    }

    #[test]
    fn checksum_matches_redis_sha1hex_of_joined_stamps() {
        // redis.sha1hex("a,b") == sha1("a,b")
        assert_eq!(
            checksum([&b"a"[..], &b"b"[..]].into_iter()),
            sha1_smol::Sha1::from("a,b").digest().to_string().as_bytes()
        );
    }

    #[test]
    fn hits_are_checked_against_the_stamps() {
        let cs = checksum([&b"s1"[..], &b"s2"[..]].into_iter());
        let mut entry = cs.to_vec();
        entry.extend_from_slice(b"payload");
        let reply = |e: RValue, a: RValue| RValue::Array(vec![e, a, bulk(b"s2")]);
        let (hit, token) = parse_hit(reply(bulk(&entry), bulk(b"s1")))
            .unwrap()
            .unwrap();
        assert_eq!(hit.payload(), b"payload");
        assert_eq!(token.0.as_bytes(), cs);
        assert!(parse_hit(reply(bulk(&entry), bulk(b"s9")))
            .unwrap()
            .is_none());
        assert!(parse_hit(reply(bulk(&entry), RValue::Nil))
            .unwrap()
            .is_none());
        assert!(parse_hit(reply(RValue::Nil, bulk(b"s1")))
            .unwrap()
            .is_none());
        assert!(parse_hit(reply(bulk(b"short"), bulk(b"s1")))
            .unwrap()
            .is_none());
        assert!(matches!(parse_hit(RValue::Nil), Err(Error::Protocol(_))));
        assert!(matches!(
            parse_hit(reply(RValue::Int(1), bulk(b"s1"))),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn tokens_parse_or_fail_typed() {
        assert_eq!(parse_token(bulk(&[b'b'; 40])).unwrap().0, "b".repeat(40));
        assert!(matches!(
            parse_token(bulk(b"short")),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            parse_token(RValue::Int(3)),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn nonces_do_not_repeat() {
        let s = RedisStore::open(
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
        assert!(matches!(
            RedisStore::open("http://x", opts),
            Err(Error::Config(_))
        ));
    }
}
