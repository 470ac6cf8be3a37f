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
/// ARGV: n_stamps, stamp_ttl_ms, nonce, scheme_ttl_ms, per scheme set: generation index
/// (1-based among KEYS, 0: none), n_schemes, schemes...
/// Reads the stamps (creating absent ones, stretching short TTLs), registers the schemes
/// until `now + scheme_ttl` (dropping members whose time has passed), and returns the
/// checksum of the stamps and `now` (Redis `TIME`, in milliseconds).
pub(super) const PREPARE: &str = r"
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A scheme set that does not exist was never made, or was lost (eviction under an
-- allkeys-* policy, FLUSHDB, a restart, invalidate_all). Entries of its table may then be
-- stored under schemes the set no longer lists, which later writes would not find: the
-- table's generation dies first, and every such entry with it (local copies included).
-- (A set that expired, or whose last member did, had no live entry depending on it.)
local a = 5
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
-- Each member's score is the time until which some entry may depend on it. Scores only
-- grow, and a member goes only once its score has passed.
local sttl = tonumber(ARGV[4])
local upto = string.format('%.0f', now + sttl)
local past = string.format('(%.0f', now)
a = 5
for j = n + 1, #KEYS do
  local c = tonumber(ARGV[a + 1])
  if c > 0 then
    local k = KEYS[j]
    redis.call('ZREMRANGEBYSCORE', k, '-inf', past)
    for i = a + 2, a + 1 + c do
      local s = redis.call('ZSCORE', k, ARGV[i])
      if not s or tonumber(s) < now + sttl then redis.call('ZADD', k, upto, ARGV[i]) end
    end
    -- The set outlives its members: its own expiry is the latest score.
    if redis.call('PTTL', k) < sttl then redis.call('PEXPIRE', k, sttl) end
  end
  a = a + 2 + c
end
return {redis.sha1hex(table.concat(stamps, ',')), now}
";

/// KEYS: entry, stamps..., scheme sets...
/// ARGV: entry value (checksum + payload), ttl_ms, n_stamps, prepared_ms (the `now` of the
/// `PREPARE` whose stamps the checksum names), scheme_ttl_ms, per scheme set: n_schemes,
/// schemes...
/// Stores only if the stamps still match, the `PREPARE` is recent enough that none of its
/// schemes can have been dropped since (scores only grow, and go only once passed), and
/// every scheme set still exists; then keeps the schemes until `now + scheme_ttl`, past
/// the entry's life and its local copies'. Returns 1 if stored.
pub(super) const STORE: &str = r"
local n = tonumber(ARGV[3])
local stamps = {}
for i = 2, n + 1, 1000 do
  local part = redis.call('MGET', unpack(KEYS, i, math.min(i + 999, n + 1)))
  for j = 1, #part do stamps[i + j - 2] = part[j] end
end
for i = 1, n do if not stamps[i] then return 0 end end
if string.sub(ARGV[1], 1, 40) ~= redis.sha1hex(table.concat(stamps, ',')) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sttl = tonumber(ARGV[5])
if now >= tonumber(ARGV[4]) + sttl then return 0 end
-- A set lost since (eviction, invalidate_all) is not made again here: the next PREPARE
-- finds it missing and kills the generation, and INVALIDATE meanwhile widens.
for j = n + 2, #KEYS do
  if redis.call('EXISTS', KEYS[j]) == 0 then return 0 end
end
local upto = string.format('%.0f', now + sttl)
local a = 6
for j = n + 2, #KEYS do
  local k = KEYS[j]
  local c = tonumber(ARGV[a])
  for i = a + 1, a + c do
    local s = redis.call('ZSCORE', k, ARGV[i])
    if not s or tonumber(s) < now + sttl then redis.call('ZADD', k, upto, ARGV[i]) end
  end
  if redis.call('PTTL', k) < sttl then redis.call('PEXPIRE', k, sttl) end
  a = a + 1 + c
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS: scheme set, generation.
/// ARGV: conj prefix, stale_ms, n_rows, per row: n_fields, (field, value)...
/// Drops the schemes whose time has passed, then deletes the conjunction stamp each row
/// builds for each scheme. A row missing a field a scheme needs cannot name its
/// conjunction: the whole table is invalidated instead, and the scheme reported.
/// With stale_ms > 0, each deleted stamp's last value is kept that long under `<key>:dead`
/// (stale-while-revalidate). Members `=<field>=<kind>` are no schemes: they say a read's
/// condition compares that field with values of that kind (`n`, `s`, `x`); a row value of
/// another kind (by its encoding's first letter) is a clash. Returns the deleted keys; per
/// scheme a row lacked fields of: the scheme and those fields (joined by `&`), flat; per
/// clash: the field, the condition's kind and the row's, flat.
pub(super) const INVALIDATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now))
local schemes = {}
local kinds = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, 1) == '=' then
    local f, k = string.match(m, '^=(.*)=(%a)$')
    if f then
      kinds[f] = kinds[f] or {}
      kinds[f][k] = true
    end
  else
    schemes[#schemes + 1] = m
  end
end
local letter = {i = 'n', r = 'n', s = 's', x = 'x'}
local clash = {}
local del = {}
-- No scheme set (a restarted Redis, say): nothing here names this table's reads, but
-- local tiers may still hold some; the generation reaches every one of them.
local whole = #schemes == 0
local lacked = {}
local a = 4
for r = 1, tonumber(ARGV[3]) do
  local nf = tonumber(ARGV[a])
  local row = {}
  for f = 1, nf do
    local field, v = ARGV[a + 2 * f - 1], ARGV[a + 2 * f]
    row[field] = v
    local rk = letter[string.sub(v, 1, 1)]
    if rk and kinds[field] then
      for ck, _ in pairs(kinds[field]) do
        if ck ~= rk then clash[field .. '=' .. ck .. '=' .. rk] = true end
      end
    end
  end
  a = a + 1 + 2 * nf
  for i, s in ipairs(schemes) do
    local parts = {}
    local missing = {}
    for field in string.gmatch(s, '[^&]+') do
      local v = row[field]
      if v == nil then missing[#missing + 1] = field
      else parts[#parts + 1] = field .. '=' .. v end
    end
    if #missing == 0 then
      del[#del + 1] = ARGV[1] .. table.concat(parts, '&')
    else
      whole = true
      local m = table.concat(missing, '&')
      lacked[i] = lacked[i] or {}
      lacked[i][m] = true
    end
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
local widened = {}
for i, s in ipairs(schemes) do
  if lacked[i] then
    for m, _ in pairs(lacked[i]) do
      widened[#widened + 1] = s
      widened[#widened + 1] = m
    end
  end
end
local clashes = {}
for c, _ in pairs(clash) do
  local f, ck, rk = string.match(c, '^(.*)=(%a)=(%a)$')
  clashes[#clashes + 1] = f
  clashes[#clashes + 1] = ck
  clashes[#clashes + 1] = rk
end
return {del, widened, clashes}
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
