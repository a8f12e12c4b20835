/**
 * Lua scripts of the shared limit store (redis-limits.ts). Each runs
 * atomically in Redis, so replicas never race between checking a limit and
 * charging it, and each reads Redis' own clock (TIME): replicas' clocks never
 * decide a window. Per limit key K the store keeps:
 *   K:log   ZSET charge id → from when the window counts it (ms): its grant +
 *           ARRIVAL_BOUND_MS, moved back to its attempt's end if sooner (limits.ts)
 *   K:tok   HASH charge id → tokens charged (settled in place)
 *   K:sum   tokens charged in the window
 *   K:conc  ZSET lease id → expiry (ms): leases held, renewed while held
 *   K:pause set while an upstream 429 pauses K (PX = the pause)
 */

/** Shared by the scripts: the time, and dropping the charges that left K's window. */
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function prune(log, tok, sum, window)
  local gone = redis.call('ZRANGEBYSCORE', log, '-inf', '(' .. (now - window))
  if #gone == 0 then return end
  local freed = 0
  for _, id in ipairs(gone) do
    local n = redis.call('HGET', tok, id)
    if n then freed = freed + tonumber(n) end
  end
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', '(' .. (now - window))
    redis.call('HDEL', tok, unpack(gone))
  end
  if freed ~= 0 then redis.call('DECRBY', sum, freed) end
end
`;

/**
 * KEYS: 5 per limit (log, tok, sum, conc, pause).
 * ARGV: lease id, tokens, lease ttl ms, arrival bound ms, then 4 per limit (window ms, rpm, tpm, max concurrency; -1 = unset).
 * Returns {1} when every limit was charged, else {0, limit index (1-based), kind, retry in ms}.
 */
export const ACQUIRE = `${PRELUDE}
local id = ARGV[1]
local tokens = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local bound = tonumber(ARGV[4])
local n = #KEYS / 5
for i = 0, n - 1 do
  local log, tok, sum, conc, pause = KEYS[i*5+1], KEYS[i*5+2], KEYS[i*5+3], KEYS[i*5+4], KEYS[i*5+5]
  local window, rpm, tpm, maxc = tonumber(ARGV[5+i*4]), tonumber(ARGV[6+i*4]), tonumber(ARGV[7+i*4]), tonumber(ARGV[8+i*4])
  local paused = redis.call('PTTL', pause)
  if paused > 0 then return {0, i + 1, 'paused', paused} end
  prune(log, tok, sum, window)
  if rpm >= 0 then
    local count = redis.call('ZCARD', log)
    if count + 1 > rpm then
      local oldest = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
      return {0, i + 1, 'requests_per_minute', math.ceil(tonumber(oldest[2]) + window - now + 1)}
    end
  end
  if tpm >= 0 and tokens > 0 then
    local want = math.min(tokens, tpm)
    local used = tonumber(redis.call('GET', sum) or '0')
    local excess = used + want - tpm
    if excess > 0 then
      local wait = window
      local walk = redis.call('ZRANGE', log, 0, 999, 'WITHSCORES')
      for j = 1, #walk, 2 do
        excess = excess - tonumber(redis.call('HGET', tok, walk[j]) or '0')
        if excess <= 0 then wait = math.ceil(tonumber(walk[j+1]) + window - now + 1) break end
      end
      return {0, i + 1, 'tokens_per_minute', wait}
    end
  end
  if maxc >= 0 then
    redis.call('ZREMRANGEBYSCORE', conc, '-inf', now)
    if redis.call('ZCARD', conc) + 1 > maxc then return {0, i + 1, 'max_concurrency', 25} end
  end
end
for i = 0, n - 1 do
  local log, tok, sum, conc = KEYS[i*5+1], KEYS[i*5+2], KEYS[i*5+3], KEYS[i*5+4]
  local window, rpm, tpm, maxc = tonumber(ARGV[5+i*4]), tonumber(ARGV[6+i*4]), tonumber(ARGV[7+i*4]), tonumber(ARGV[8+i*4])
  if rpm >= 0 or tpm >= 0 then
    redis.call('ZADD', log, now + bound, id)
    redis.call('PEXPIRE', log, window * 2 + bound)
  end
  if tpm >= 0 then
    local want = math.min(tokens, tpm)
    redis.call('HSET', tok, id, want)
    redis.call('INCRBY', sum, want)
    redis.call('PEXPIRE', tok, window * 2 + bound)
    redis.call('PEXPIRE', sum, window * 2 + bound)
  end
  if maxc >= 0 then
    redis.call('ZADD', conc, now + ttl, id)
    redis.call('PEXPIRE', conc, ttl * 2)
  end
end
return {1}
`;

/**
 * Frees a lease, counts its charges from now if that is before their arrival bound, and settles
 * its tokens in place (while its charge is still in the window).
 * KEYS: 4 per limit (log, tok, sum, conc). ARGV: lease id, tokens used (-1 = keep the reservation).
 */
export const RELEASE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local id = ARGV[1]
local used = tonumber(ARGV[2])
for i = 0, #KEYS / 4 - 1 do
  local log, tok, sum, conc = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3], KEYS[i*4+4]
  redis.call('ZREM', conc, id)
  local at = redis.call('ZSCORE', log, id)
  if at and tonumber(at) > now then redis.call('ZADD', log, 'XX', now, id) end
  if used >= 0 then
    local old = redis.call('HGET', tok, id)
    if old then
      redis.call('HSET', tok, id, used)
      redis.call('INCRBY', sum, used - tonumber(old))
    end
  end
end
return 1
`;

/** Extends held leases. KEYS: conc keys; ARGV: ttl ms, then one lease id per key. */
export const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[i + 1])
end
return 1
`;

/** Pauses K for ARGV[1] ms, never shortening a longer pause. KEYS: pause. */
export const PAUSE = `
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 1
`;

/**
 * What WorkerMetrics shows of each limit. KEYS: 5 per limit; ARGV: 4 per limit as ACQUIRE.
 * Returns per limit {requests used, tokens used, leases held, pause ms left}.
 */
export const STATUS = `${PRELUDE}
local out = {}
for i = 0, #KEYS / 5 - 1 do
  local log, tok, sum, conc, pause = KEYS[i*5+1], KEYS[i*5+2], KEYS[i*5+3], KEYS[i*5+4], KEYS[i*5+5]
  local window = tonumber(ARGV[1+i*4])
  prune(log, tok, sum, window)
  redis.call('ZREMRANGEBYSCORE', conc, '-inf', now)
  out[#out+1] = redis.call('ZCARD', log)
  out[#out+1] = tonumber(redis.call('GET', sum) or '0')
  out[#out+1] = redis.call('ZCARD', conc)
  out[#out+1] = math.max(0, redis.call('PTTL', pause))
end
return out
`;
