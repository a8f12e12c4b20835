/**
 * Lua scripts of the durable job store (redis-jobs.ts). Each state change is
 * one script: it checks the state it moves from, so a terminal state is
 * written exactly once even when two replicas ran the same job (execution is
 * at least once: a replica that died mid-run is replaced). Keys:
 *   job:<id>        HASH  the job (state, request, result, times, …)
 *   job:<id>:ev     STREAM its events (s = state, c = chunk); ids are event ids
 *   idem:<backend>:<key>  the job id holding an idempotency key
 *   jobs:queue      STREAM of job ids, consumer group "runners"
 *   jobs:counts     HASH "<backend>:<state>" → jobs queued and running now, and ended in total
 */

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * KEYS: idem, counts, queue, job, ev. ARGV: id, backend, request, key, deadline, max queued, traceparent.
 * Returns {id, 1} for a new job, {existing id, 0} for a repeated key, {'', -1} past the cap.
 */
export const ENQUEUE = `${NOW}
local key = ARGV[4]
if key ~= '' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return {existing, 0} end
end
local field = ARGV[2] .. ':queued'
if tonumber(redis.call('HGET', KEYS[2], field) or '0') >= tonumber(ARGV[6]) then return {'', -1} end
redis.call('HSET', KEYS[4], 'backend', ARGV[2], 'state', 'queued', 'request', ARGV[3], 'key', key,
  'createdAt', now, 'deadline', ARGV[5], 'startedAt', 0, 'finishedAt', 0, 'attempts', 0, 'workerId', '',
  'errorCode', '', 'errorMessage', '', 'cancel', 0, 'traceparent', ARGV[7])
redis.call('XADD', KEYS[5], '*', 's', 'queued')
local entry = redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[4], 'entry', entry)
redis.call('HINCRBY', KEYS[2], field, 1)
if key ~= '' then redis.call('SET', KEYS[1], ARGV[1]) end
return {ARGV[1], 1}
`;

/** KEYS: job, ev, counts. ARGV: worker id. 1 = run it; 0 = ended, cancelled or gone. */
export const STARTED = `${NOW}
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'queued' and st ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 0 end
local b = redis.call('HGET', KEYS[1], 'backend')
if st == 'queued' then
  redis.call('HINCRBY', KEYS[3], b .. ':queued', -1)
  redis.call('HINCRBY', KEYS[3], b .. ':running', 1)
end
redis.call('HSET', KEYS[1], 'state', 'running', 'startedAt', now, 'workerId', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('XADD', KEYS[2], '*', 's', 'running')
return 1
`;

/** KEYS: job, ev. ARGV: chunk. Appended only while the job runs. */
export const CHUNK = `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('XADD', KEYS[2], '*', 'c', ARGV[1])
return 1
`;

/**
 * KEYS: job, ev, counts, idem, queue. ARGV: state, result ('' for none), error code, error message, ttl ms, entry.
 * 1 when this call wrote the terminal state; 0 when one was already written.
 */
export const FINISH = `${NOW}
local st = redis.call('HGET', KEYS[1], 'state')
if ARGV[6] ~= '' then
  redis.call('XACK', KEYS[5], 'runners', ARGV[6])
  redis.call('XDEL', KEYS[5], ARGV[6])
end
if st ~= 'queued' and st ~= 'running' then return 0 end
local b = redis.call('HGET', KEYS[1], 'backend')
redis.call('HINCRBY', KEYS[3], b .. ':' .. st, -1)
redis.call('HINCRBY', KEYS[3], b .. ':' .. ARGV[1], 1)
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finishedAt', now, 'errorCode', ARGV[3], 'errorMessage', ARGV[4])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[2]) end
redis.call('XADD', KEYS[2], '*', 's', ARGV[1])
local ttl = tonumber(ARGV[5])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if redis.call('HGET', KEYS[1], 'key') ~= '' then redis.call('PEXPIRE', KEYS[4], ttl) end
return 1
`;

/** KEYS: job, ev, counts, idem, queue. ARGV: ttl ms. A queued job ends cancelled; a running one is marked. Returns its state. */
export const CANCEL = `${NOW}
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return '' end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', 1)
  return st
end
if st ~= 'queued' then return st end
local b = redis.call('HGET', KEYS[1], 'backend')
redis.call('HINCRBY', KEYS[3], b .. ':queued', -1)
redis.call('HINCRBY', KEYS[3], b .. ':cancelled', 1)
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finishedAt', now, 'errorCode', 'cancelled', 'errorMessage', 'cancelled by CancelJob while queued')
redis.call('XADD', KEYS[2], '*', 's', 'cancelled')
local entry = redis.call('HGET', KEYS[1], 'entry')
if entry then
  redis.call('XACK', KEYS[5], 'runners', entry)
  redis.call('XDEL', KEYS[5], entry)
end
local ttl = tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if redis.call('HGET', KEYS[1], 'key') ~= '' then redis.call('PEXPIRE', KEYS[4], ttl) end
return 'cancelled'
`;
