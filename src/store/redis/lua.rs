//! The Lua scripts of the shared tier. Each runs atomically in Redis; they are sent by
//! SHA-1 (`EVALSHA`) and loaded again when Redis answers `NOSCRIPT` (after a restart, say).

/// A script: its source and SHA-1, computed once.
pub(super) struct Lua {
    /// The source.
    pub code: &'static str,
    /// Its SHA-1 in hex, as `SCRIPT LOAD` returns it.
    pub sha: String,
}

impl Lua {
    fn new(code: &'static str) -> Lua {
        Lua {
            code,
            sha: sha1_smol::Sha1::from(code).digest().to_string(),
        }
    }
}

/// Every script, hashed once per store.
pub(super) struct Scripts {
    /// Reads (or creates) the stamps and registers schemes: before a loader runs.
    pub prepare: Lua,
    /// Stores an entry if its stamps still match.
    pub store: Lua,
    /// Deletes the stamps the given rows match.
    pub invalidate: Lua,
    /// Registers a waiter for a loader lock.
    pub wait: Lua,
    /// Releases a loader lock and wakes its waiters.
    pub unlock: Lua,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            prepare: Lua::new(PREPARE),
            store: Lua::new(STORE),
            invalidate: Lua::new(INVALIDATE),
            wait: Lua::new(WAIT),
            unlock: Lua::new(UNLOCK),
        }
    }
}

/// KEYS: stamps..., scheme sets...
/// ARGV: n_stamps, stamp_ttl_ms, nonce, per scheme set: generation index (1-based among
/// KEYS, 0: none), n_schemes, schemes...
/// Reads the stamps (creating absent ones, stretching short TTLs), registers the schemes,
/// and returns the checksum of the stamps.
pub(super) const PREPARE: &str = r"
local n = tonumber(ARGV[1])
-- A scheme set that does not exist was never made, or was lost (eviction under an
-- allkeys-* policy, FLUSHDB, a restart). Entries of its table may then be stored under
-- schemes the set no longer lists, which later writes would not find: the table's
-- generation dies first, and every such entry with it (local copies included).
local a = 4
for j = n + 1, #KEYS do
  local g = tonumber(ARGV[a])
  local c = tonumber(ARGV[a + 1])
  if g > 0 and c > 0 and redis.call('EXISTS', KEYS[j]) == 0 then
    redis.call('DEL', KEYS[g])
  end
  a = a + 2 + c
end
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
a = 4
for j = n + 1, #KEYS do
  local c = tonumber(ARGV[a + 1])
  if c > 0 then redis.call('SADD', KEYS[j], unpack(ARGV, a + 2, a + 1 + c)) end
  a = a + 2 + c
end
return redis.sha1hex(table.concat(stamps, ','))
";

/// KEYS: entry, stamps...  ARGV: entry value (checksum + payload), ttl_ms.
/// Stores only if the stamps still match; returns 1 if stored.
pub(super) const STORE: &str = r"
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
pub(super) const INVALIDATE: &str = r"
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
pub(super) const WAIT: &str = r"
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
pub(super) const UNLOCK: &str = r"
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
