//! The model database: the source of truth the checker's loaders read, kept in a Redis the
//! faults never touch (its own server, or one given with `--truth-url`).
//!
//! Layout under the run's truth prefix `p`:
//!
//! ```text
//! p row:<id>      HASH id, category, flag (0/1), counter, ver (the row's version)
//! p cat:<c>       SET of the ids in category c
//! p cnt:<c>       number of flagged rows in category c
//! p v:l:<c>       version of "the rows of category c" (bumped by any write whose old or new
//!                 image is in c)
//! p v:k:<c>       version of "the flagged rows of category c" (bumped by any write whose old
//!                 or new image is in c and flagged)
//! p fa:<key>      watermark: highest version of <key> whose invalidation call returned Ok
//! p fd:<key>      watermark: the same, for calls that reached Redis (not queued)
//! ```
//!
//! A `<key>` is `r:<id>` (a row), `l:<c>` (a category's list) or `k:<c>` (a category's
//! flagged count). Every version bump and every read of a value with its version happens in
//! one script or one command: atomic.

use std::time::Duration;

use redis::Connection;
use serde::{Deserialize, Serialize};

/// A row of the model table `chk.item`, as written to the cache's `on_update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Primary key.
    pub id: i64,
    /// Moves between categories.
    pub category: i64,
    /// Toggled by some writes.
    pub flag: bool,
    /// Bumped by every write.
    pub counter: i64,
}

/// What a write changed: the old and new images and the versions it produced.
pub struct Written {
    /// The row before.
    pub old: Item,
    /// The row after.
    pub new: Item,
    /// `(key, version)` for every read key the write concerns (`r:<id>`, `l:<c>`, `k:<c>`).
    pub versions: Vec<(String, u64)>,
}

const WRITE: &str = r#"
local p, id, nc, nf = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = p .. 'row:' .. id
local old = redis.call('HMGET', rk, 'category', 'flag', 'counter', 'ver')
if not old[1] then return redis.error_reply('no row ' .. id) end
local oc, of, ocnt, over = old[1], old[2], tonumber(old[3]), tonumber(old[4])
local nver = over + 1
redis.call('HSET', rk, 'category', nc, 'flag', nf, 'counter', ocnt + 1, 'ver', nver)
if oc ~= nc then
  redis.call('SREM', p .. 'cat:' .. oc, id)
  redis.call('SADD', p .. 'cat:' .. nc, id)
end
if of == '1' then redis.call('DECR', p .. 'cnt:' .. oc) end
if nf == '1' then redis.call('INCR', p .. 'cnt:' .. nc) end
local out = {oc, of, tostring(ocnt), 'r:' .. id, tostring(nver)}
local function bump(k)
  table.insert(out, k)
  table.insert(out, tostring(redis.call('INCR', p .. 'v:' .. k)))
end
bump('l:' .. oc)
if nc ~= oc then bump('l:' .. nc) end
if of == '1' then bump('k:' .. oc) end
if nf == '1' and not (of == '1' and oc == nc) then bump('k:' .. nc) end
return out
"#;

const LIST: &str = r#"
local p, c = ARGV[1], ARGV[2]
local out = {redis.call('GET', p .. 'v:l:' .. c) or '0'}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'cat:' .. c)) do
  local r = redis.call('HMGET', p .. 'row:' .. id, 'category', 'flag', 'counter')
  table.insert(out, id); table.insert(out, r[1]); table.insert(out, r[2]); table.insert(out, r[3])
end
return out
"#;

const COUNT: &str = r#"
local p, c = ARGV[1], ARGV[2]
return {redis.call('GET', p .. 'v:k:' .. c) or '0', redis.call('GET', p .. 'cnt:' .. c) or '0'}
"#;

const RAISE: &str = r#"
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('GET', ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then redis.call('SET', ARGV[i], ARGV[i + 1]) end
end
return 1
"#;

/// A Lua script, sent with `EVAL` (no keys declared: the truth is one server).
struct Script(&'static str);

impl Script {
    fn new(src: &'static str) -> Script {
        Script(src)
    }

    /// `EVAL` of the script with `args`.
    fn call(&self) -> redis::Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(self.0).arg(0);
        c
    }
}

/// A connection to the truth, with the scripts.
pub struct Truth {
    /// Where the truth is.
    url: String,
    /// The connection, `None` after a failure until the next call reopens it.
    conn: Option<Connection>,
    /// The run's truth prefix.
    prefix: String,
    /// Applies a write and bumps the versions it concerns.
    write: Script,
    /// A category's rows and the list's version.
    list: Script,
    /// A category's flagged count and its version.
    count: Script,
    /// Raises watermarks (never lowers them).
    raise: Script,
}

/// Errors of the truth: a message saying what failed.
pub type TruthResult<T> = Result<T, String>;

fn open(url: &str) -> TruthResult<Connection> {
    let client = redis::Client::open(url).map_err(|e| format!("truth URL {url}: {e}"))?;
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to the truth at {url}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|_| conn.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| format!("truth: {e}"))?;
    Ok(conn)
}

fn int(s: &str) -> TruthResult<i64> {
    s.parse().map_err(|_| format!("truth: not a number: {s:?}"))
}

impl Truth {
    /// Connects to the truth at `url`; its keys start with `prefix`.
    pub fn connect(url: &str, prefix: &str) -> TruthResult<Truth> {
        let conn = Some(open(url)?);
        Ok(Truth {
            url: url.to_string(),
            conn,
            prefix: prefix.to_string(),
            write: Script::new(WRITE),
            list: Script::new(LIST),
            count: Script::new(COUNT),
            raise: Script::new(RAISE),
        })
    }

    /// Runs `f` on the connection, reopened after a failure. A call is never retried (a
    /// write whose reply was lost must not be applied twice); after an error that may have
    /// left the connection unusable, the next call opens a new one.
    fn run<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Connection, &Truth) -> redis::RedisResult<T>,
    ) -> TruthResult<T> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => open(&self.url)?,
        };
        let r = f(&mut conn, self);
        match r {
            Ok(v) => {
                self.conn = Some(conn);
                Ok(v)
            }
            Err(e) => {
                if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) {
                    self.conn = Some(conn);
                }
                Err(format!("truth {what}: {e}"))
            }
        }
    }

    /// Creates the rows: row `id` in category `id % categories`, flagged when `id` is odd.
    pub fn init(&mut self, rows: u32, categories: u32) -> TruthResult<()> {
        let p = &self.prefix;
        let mut pipe = redis::pipe();
        for id in 0..rows {
            let c = id % categories;
            let flag = id % 2;
            pipe.cmd("HSET")
                .arg(format!("{p}row:{id}"))
                .arg(&["category", &c.to_string(), "flag", &flag.to_string()])
                .arg(&["counter", "0", "ver", "1"])
                .ignore();
            pipe.cmd("SADD").arg(format!("{p}cat:{c}")).arg(id).ignore();
            pipe.cmd("SET").arg(format!("{p}fa:r:{id}")).arg(1).ignore();
            pipe.cmd("SET").arg(format!("{p}fd:r:{id}")).arg(1).ignore();
            if flag == 1 {
                pipe.cmd("INCR").arg(format!("{p}cnt:{c}")).ignore();
            }
        }
        self.run("init", |c, _| pipe.query::<()>(c))
    }

    /// Deletes every key of this run.
    pub fn clear(&mut self) -> TruthResult<()> {
        let pattern = format!("{}*", self.prefix);
        let keys: Vec<String> =
            self.run("clear", |c, _| redis::cmd("KEYS").arg(&pattern).query(c))?;
        for chunk in keys.chunks(500) {
            self.run("clear", |c, _| {
                redis::cmd("UNLINK").arg(chunk).query::<()>(c)
            })?;
        }
        Ok(())
    }

    /// Writes row `id`: moves it to `category`, sets `flag`, bumps its counter.
    pub fn write(&mut self, id: i64, category: i64, flag: bool) -> TruthResult<Written> {
        let out: Vec<String> = self.run("write", |c, t| {
            t.write
                .call()
                .arg(&t.prefix)
                .arg(id)
                .arg(category)
                .arg(u8::from(flag))
                .query(c)
        })?;
        if out.len() < 5 || out.len() % 2 == 0 {
            return Err(format!("truth write: unexpected reply {out:?}"));
        }
        let old = Item {
            id,
            category: int(&out[0])?,
            flag: out[1] == "1",
            counter: int(&out[2])?,
        };
        let new = Item {
            id,
            category,
            flag,
            counter: old.counter + 1,
        };
        let versions = out[3..]
            .chunks(2)
            .map(|kv| Ok((kv[0].clone(), int(&kv[1])? as u64)))
            .collect::<TruthResult<_>>()?;
        Ok(Written { old, new, versions })
    }

    /// Row `id` and its version, in one command.
    pub fn get(&mut self, id: i64) -> TruthResult<(u64, Item)> {
        let r: Vec<Option<String>> = self.run("get", |c, t| {
            redis::cmd("HMGET")
                .arg(format!("{}row:{id}", t.prefix))
                .arg(&["category", "flag", "counter", "ver"])
                .query(c)
        })?;
        match r.as_slice() {
            [Some(c), Some(f), Some(n), Some(v)] => Ok((
                int(v)? as u64,
                Item {
                    id,
                    category: int(c)?,
                    flag: f == "1",
                    counter: int(n)?,
                },
            )),
            _ => Err(format!("truth get: row {id} is missing")),
        }
    }

    /// The rows of `category` (by id) and the list's version, in one script.
    pub fn list(&mut self, category: i64) -> TruthResult<(u64, Vec<Item>)> {
        let out: Vec<String> = self.run("list", |c, t| {
            t.list.call().arg(&t.prefix).arg(category).query(c)
        })?;
        let Some((v, rest)) = out.split_first() else {
            return Err("truth list: empty reply".into());
        };
        let mut items = rest
            .chunks(4)
            .map(|r| match r {
                [id, c, f, n] => Ok(Item {
                    id: int(id)?,
                    category: int(c)?,
                    flag: f == "1",
                    counter: int(n)?,
                }),
                _ => Err(format!("truth list: unexpected reply {out:?}")),
            })
            .collect::<TruthResult<Vec<_>>>()?;
        items.sort_by_key(|i| i.id);
        Ok((int(v)? as u64, items))
    }

    /// The number of flagged rows of `category` and the count's version, in one script.
    pub fn count(&mut self, category: i64) -> TruthResult<(u64, u64)> {
        let out: Vec<String> = self.run("count", |c, t| {
            t.count.call().arg(&t.prefix).arg(category).query(c)
        })?;
        match out.as_slice() {
            [v, n] => Ok((int(v)? as u64, int(n)? as u64)),
            _ => Err(format!("truth count: unexpected reply {out:?}")),
        }
    }

    /// Raises the watermarks `<kind>:<key>` of each of `kinds` (`fa`, `fd`) to the versions
    /// given, in one script (a reader never sees one kind raised without the other).
    pub fn raise(&mut self, kinds: &[&str], versions: &[(String, u64)]) -> TruthResult<()> {
        self.run("raise", |c, t| {
            let mut cmd = t.raise.call();
            for kind in kinds {
                for (k, v) in versions {
                    cmd.arg(format!("{}{kind}:{k}", t.prefix)).arg(*v);
                }
            }
            cmd.query::<i64>(c).map(drop)
        })
    }

    /// The watermarks (returned, delivered) of each key, in one command.
    pub fn watermarks(&mut self, keys: &[String]) -> TruthResult<Vec<(u64, u64)>> {
        let v: Vec<Option<u64>> = self.run("watermarks", |c, t| {
            let mut cmd = redis::cmd("MGET");
            for k in keys {
                cmd.arg(format!("{}fa:{k}", t.prefix))
                    .arg(format!("{}fd:{k}", t.prefix));
            }
            cmd.query(c)
        })?;
        if v.len() != keys.len() * 2 {
            return Err("truth watermarks: short reply".into());
        }
        Ok(v.chunks(2)
            .map(|p| (p[0].unwrap_or(0), p[1].unwrap_or(0)))
            .collect())
    }
}
