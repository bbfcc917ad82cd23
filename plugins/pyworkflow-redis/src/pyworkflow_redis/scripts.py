"""The Lua scripts: every Redis write that depends on state is one script (atomic).

Each script gets the key prefix as ``ARGV[1]`` and builds its key names from
it (which is why Redis Cluster is not supported). Times travel as the
decimal text Python wrote (``repr`` of epoch seconds) and are stored as
given: Lua only compares them with ``tonumber``, never formats a float, so
no precision is lost. Replies are tables whose first element says what
happened (``ok``, ``conflict``, ``missing``, ...).

When the client retries a call after a lost connection it passes
``retry = '1'``; a script then first checks whether the earlier attempt
already took effect and, if so, answers as that attempt would have.
"""

from __future__ import annotations

from pyworkflow.models import ACTIVE_STATUSES, RunStatus

__all__ = [
    "ACQUIRE_STEP_SLOT",
    "ADMIT_QUEUED_RUNS",
    "ADVANCE_SCHEDULE",
    "APPEND",
    "APPEND_HOOK_PAYLOAD",
    "APPEND_STREAM_CHUNK",
    "CLAIM_RUN",
    "CLAIM_RUNS",
    "CLAIM_SCHEDULES",
    "CREATE_RUN",
    "EXPIRED_STEP_LEASES",
    "PUT_SCHEDULE",
    "QUEUE_STATS",
    "READ_STREAM",
    "RELEASE_LEASE",
    "RENEW_LEASE",
    "RENEW_STEP_SLOT",
    "SAVE_STEP_CHECKPOINT",
    "SET_STEP_LEASE",
]

#: How long (seconds) the outcome of a hook delivery is remembered for a retried call.
DELIVERY_TTL = 3600


def _lua_set(values: list[str]) -> str:
    """A Lua table literal used as a set of strings."""
    return "{" + ", ".join(f"[{v!r}] = true" for v in sorted(values)) + "}"


#: The statuses are those of the models, so the scripts cannot drift from them.
_STATUSES = f"""
local QUEUED = {RunStatus.QUEUED.value!r}
local PENDING = {RunStatus.PENDING.value!r}
-- statuses of a run that holds a place in its queue
local ACTIVE = {_lua_set([s.value for s in ACTIVE_STATUSES])}
-- statuses of a run that has not ended (it holds its dedup key)
local LIVE = {_lua_set([s.value for s in RunStatus if not s.is_terminal])}
"""

_PRELUDE = (
    _STATUSES
    + """
local P = ARGV[1]
local HOOKS = P .. ':hooks'
local TIMERS = P .. ':timers'
local READY = P .. ':ready'
local IDEM = P .. ':idem'
local DEDUP = P .. ':dedup'
local QUEUES = P .. ':queues'
local STEP_LEASES = P .. ':stepleases'
local WAKE = P .. ':wake'

local function run_key(id) return P .. ':run:' .. id end
local function log_key(id) return P .. ':log:' .. id end

-- ARGV[i] is a count n, followed by n values: returns them and the index after.
local function read_list(i)
  local n = tonumber(ARGV[i])
  local out = {}
  for j = 1, n do out[j] = ARGV[i + j] end
  return out, i + n + 1
end

-- Keep the timer index (by wake_at) and the ready index (by when the run can
-- be claimed: wake_at, or its lease's expiry if later) in line with the row.
local function sync_wake(id)
  local wake, owner, expires = unpack(
    redis.call('HMGET', run_key(id), 'wake_at', 'lease_owner', 'lease_expires_at'))
  if not wake then
    redis.call('ZREM', TIMERS, id)
    redis.call('ZREM', READY, id)
    return
  end
  redis.call('ZADD', TIMERS, wake, id)
  local ready = wake
  if owner then
    if not expires then
      ready = '+inf'
    elseif (tonumber(expires) or 0) > (tonumber(wake) or 0) then
      ready = expires
    end
  end
  redis.call('ZADD', READY, ready, id)
end

-- Due at now, and the lease free, expired or (with a prefix) a placeholder.
local function claimable(key, now, takeover)
  local wake, owner, expires = unpack(
    redis.call('HMGET', key, 'wake_at', 'lease_owner', 'lease_expires_at'))
  local w = tonumber(wake)
  if not w or w > now then return false end
  if not owner then return true end
  local e = tonumber(expires)
  if e and e < now then return true end
  return takeover ~= nil and string.sub(owner, 1, #takeover) == takeover
end

local function waiting_key(queue) return P .. ':queue:waiting:' .. queue end
local function active_key(queue) return P .. ':queue:active:' .. queue end
local function admitted_key(queue) return P .. ':queue:admitted:' .. queue end

-- Keep the run's queue indexes in line with its status (old is nil for a new
-- run): waiting while queued, in the active set while pending, running or
-- suspended. Every status change goes through here, so the counts are exact.
local function queue_sync(id, key, old, new)
  local queue, member, rank = unpack(
    redis.call('HMGET', key, 'queue', 'queue_member', 'queue_rank'))
  if not queue then return end
  if member then
    if new == QUEUED then
      redis.call('ZADD', waiting_key(queue), rank or '0', member)
    elseif old == QUEUED then
      redis.call('ZREM', waiting_key(queue), member)
    end
  end
  if ACTIVE[new] then
    redis.call('SADD', active_key(queue), id)
  else
    redis.call('SREM', active_key(queue), id)
  end
end

local function set_status(id, key, status)
  local old, wf, created = unpack(
    redis.call('HMGET', key, 'status', 'workflow_name', 'created_at'))
  if old == status then return end
  queue_sync(id, key, old, status)
  redis.call('HSET', key, 'status', status)
  if old then
    redis.call('ZREM', P .. ':idx:status:' .. old, id)
    redis.call('ZREM', P .. ':idx:wfs:' .. old .. ':' .. wf, id)
  end
  redis.call('ZADD', P .. ':idx:status:' .. status, created, id)
  redis.call('ZADD', P .. ':idx:wfs:' .. status .. ':' .. wf, created, id)
end

-- The first created hook whose token a live hook holds (unless this append
-- disposes that very hook): {token, holder}, or nil.
local function hook_conflict(id, created, disposed)
  local freed = {}
  for _, token in ipairs(disposed) do freed[token] = true end
  for j = 1, #created, 2 do
    local current = redis.call('HGET', HOOKS, created[j])
    if current then
      local ok, hook = pcall(cjson.decode, current)
      local holder = ok and hook['run_id'] or '?'
      if not (freed[created[j]] and holder == id) then return {created[j], holder} end
    end
  end
  return nil
end

local function apply_hooks(id, created, disposed)
  for _, token in ipairs(disposed) do
    local current = redis.call('HGET', HOOKS, token)
    if current then
      local ok, hook = pcall(cjson.decode, current)
      if ok and hook['run_id'] == id then redis.call('HDEL', HOOKS, token) end
    end
  end
  for j = 1, #created, 2 do redis.call('HSET', HOOKS, created[j], created[j + 1]) end
end
"""
)

#: ARGV: prefix, run_id, idempotency key ('' = none), dedup field ('' = none), retry,
#: n + field/value pairs of the row, n + events, n + created hooks (token/json pairs).
#: The dedup field names (queue, dedup_key) in ``P:dedup``; its run holds it while live.
CREATE_RUN = (
    _PRELUDE
    + """
local id, ikey, dkey, retry = ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'
local fields, i = read_list(6)
local events
events, i = read_list(i)
local created = read_list(i)
local key = run_key(id)
if ikey ~= '' then
  local existing = redis.call('HGET', IDEM, ikey)
  if existing then
    if retry and existing == id then return {'created'} end
    return {'exists', redis.call('HGETALL', run_key(existing))}
  end
end
if dkey ~= '' then
  local holder = redis.call('HGET', DEDUP, dkey)
  if holder then
    if retry and holder == id then return {'created'} end
    if LIVE[redis.call('HGET', run_key(holder), 'status')] then
      return {'exists', redis.call('HGETALL', run_key(holder))}
    end
  end
end
if redis.call('EXISTS', key) == 1 then
  if retry then return {'created'} end
  return {'duplicate', redis.call('HGET', key, 'last_seq')}
end
local conflict = hook_conflict(id, created, {})
if conflict then return {'hook', conflict[1], conflict[2]} end
redis.call('HSET', key, unpack(fields))
for _, event in ipairs(events) do redis.call('RPUSH', log_key(id), event) end
apply_hooks(id, created, {})
if ikey ~= '' then redis.call('HSET', IDEM, ikey, id) end
if dkey ~= '' then redis.call('HSET', DEDUP, dkey, id) end
local status, wf, at, wake = unpack(
  redis.call('HMGET', key, 'status', 'workflow_name', 'created_at', 'wake_at'))
redis.call('ZADD', P .. ':idx:all', at, id)
redis.call('ZADD', P .. ':idx:status:' .. status, at, id)
redis.call('ZADD', P .. ':idx:wf:' .. wf, at, id)
redis.call('ZADD', P .. ':idx:wfs:' .. status .. ':' .. wf, at, id)
local parent = redis.call('HGET', key, 'parent_run_id')
if parent and parent ~= '' then redis.call('ZADD', P .. ':idx:parent:' .. parent, at, id) end
local queue, admitted = unpack(redis.call('HMGET', key, 'queue', 'admitted_at'))
if queue then
  redis.call('SADD', QUEUES, queue)
  queue_sync(id, key, nil, status)
  if admitted then redis.call('ZADD', admitted_key(queue), admitted, id) end
end
sync_wake(id)
if wake then redis.call('PUBLISH', WAKE, wake) end
return {'created'}
"""
)

#: ARGV: prefix, run_id, expected seq, updated_at, owner ('' = none), retry,
#: patch JSON ('' = none), n + events, n + created hooks (pairs), n + disposed tokens.
APPEND = (
    _PRELUDE
    + """
local id, expected, now, owner = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local retry, patch = ARGV[6] == '1', ARGV[7]
local events, i = read_list(8)
local created
created, i = read_list(i)
local disposed = read_list(i)
local key = run_key(id)
local last = redis.call('HGET', key, 'last_seq')
if not last then return {'missing'} end
last = tonumber(last)
if last ~= expected then
  if retry and #events > 0 and last >= expected + #events then
    -- a retried call whose first attempt went through: the same events are there
    local stored = redis.call('LRANGE', log_key(id), expected, expected + #events - 1)
    local same = #stored == #events
    for j = 1, #events do
      if stored[j] ~= events[j] then same = false end
    end
    if same then return {'ok', expected + #events} end
  end
  return {'conflict', last}
end
local conflict = hook_conflict(id, created, disposed)
if conflict then return {'hook', conflict[1], conflict[2]} end
for _, event in ipairs(events) do redis.call('RPUSH', log_key(id), event) end
apply_hooks(id, created, disposed)
local new_last = expected + #events
redis.call('HSET', key, 'last_seq', new_last, 'updated_at', now)
if patch ~= '' then
  local p = cjson.decode(patch)
  if p['clear'] then
    redis.call('HDEL', key, 'result', 'error', 'error_message', 'completed_at')
  end
  for _, field in ipairs({'result', 'error', 'error_message', 'completed_at'}) do
    if p[field] then redis.call('HSET', key, field, p[field]) end
  end
  if p['status'] then set_status(id, key, p['status']) end
  if p['release'] and owner ~= '' and redis.call('HGET', key, 'lease_owner') == owner then
    redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
  end
  if p['set_wake'] then
    if p['wake_at'] then
      redis.call('HSET', key, 'wake_at', p['wake_at'])
      redis.call('PUBLISH', WAKE, p['wake_at'])
    else
      redis.call('HDEL', key, 'wake_at')
    end
  end
  sync_wake(id)
end
return {'ok', new_last}
"""
)

#: ARGV: prefix, token, payload JSON, now, delivery id, retry.
APPEND_HOOK_PAYLOAD = (
    _PRELUDE
    + f"""
local token, payload, now, retry = ARGV[2], ARGV[3], ARGV[4], ARGV[6] == '1'
local delivery = P .. ':delivery:' .. ARGV[5]
if retry then
  local done = redis.call('GET', delivery)
  if done then return {{'ok', done}} end
end
local raw = redis.call('HGET', HOOKS, token)
if not raw then return {{'missing'}} end
local ok, hook = pcall(cjson.decode, raw)
if not ok then return {{'corrupt', raw}} end
local id = hook['run_id']
local key = run_key(id)
local last = redis.call('HGET', key, 'last_seq')
if not last then return {{'missing'}} end
local seq = tonumber(last) + 1
local event = '{{"type":"hook_received","cid":' .. cjson.encode(hook['correlation_id'])
  .. ',"ts":' .. now .. ',"payload":' .. payload .. '}}'
redis.call('RPUSH', log_key(id), event)
redis.call('HSET', key, 'last_seq', seq, 'updated_at', now, 'wake_at', now)
sync_wake(id)
redis.call('PUBLISH', WAKE, now)
local outcome = seq .. ' ' .. id
redis.call('SET', delivery, outcome, 'EX', {DELIVERY_TTL})
return {{'ok', outcome}}
"""
)

#: ARGV: prefix, owner, now, lease until, limit, retry.
CLAIM_RUNS = (
    _PRELUDE
    + """
local owner, now, lease_until, limit = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local out = {}
if ARGV[6] == '1' then
  -- a retried call whose first attempt went through: the runs it leased
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', READY, lease_until, lease_until)) do
    local o, e = unpack(redis.call('HMGET', run_key(id), 'lease_owner', 'lease_expires_at'))
    if o == owner and e == lease_until then out[#out + 1] = redis.call('HGETALL', run_key(id)) end
  end
  if #out > 0 then return out end
end
local offset = 0
while #out < limit do
  local ids = redis.call('ZRANGEBYSCORE', READY, '-inf', ARGV[3], 'LIMIT', offset, limit - #out)
  if #ids == 0 then break end
  local skipped = 0
  for _, id in ipairs(ids) do
    local key = run_key(id)
    if claimable(key, now, nil) then
      redis.call('HSET', key, 'lease_owner', owner, 'lease_expires_at', lease_until)
      sync_wake(id)  -- moves it out of the due range: its lease ends after now
      out[#out + 1] = redis.call('HGETALL', key)
    else
      skipped = skipped + 1
    end
  end
  offset = offset + skipped
end
return out
"""
)

#: ARGV: prefix, run_id, owner, now, lease until, has take-over prefix, prefix, retry.
CLAIM_RUN = (
    _PRELUDE
    + """
local id, owner, now, lease_until = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local key = run_key(id)
if ARGV[8] == '1' then
  local o, e = unpack(redis.call('HMGET', key, 'lease_owner', 'lease_expires_at'))
  if o == owner and e == lease_until then return redis.call('HGETALL', key) end
end
local takeover = nil
if ARGV[6] == '1' then takeover = ARGV[7] end
if not claimable(key, now, takeover) then return {} end
redis.call('HSET', key, 'lease_owner', owner, 'lease_expires_at', lease_until)
sync_wake(id)
return redis.call('HGETALL', key)
"""
)

#: ARGV: prefix, run_id, owner, lease until.
RENEW_LEASE = (
    _PRELUDE
    + """
local key = run_key(ARGV[2])
if redis.call('HGET', key, 'lease_owner') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'lease_expires_at', ARGV[4])
sync_wake(ARGV[2])
return 1
"""
)

#: ARGV: prefix, run_id, owner.
RELEASE_LEASE = (
    _PRELUDE
    + """
local key = run_key(ARGV[2])
if redis.call('HGET', key, 'lease_owner') ~= ARGV[3] then return 0 end
redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
sync_wake(ARGV[2])
return 1
"""
)

#: ARGV: prefix, run_id, step_id, has owner, lease JSON, until, has if_owner, if_owner, retry.
SET_STEP_LEASE = (
    _PRELUDE
    + """
local id, step = ARGV[2], ARGV[3]
local steps = P .. ':steps:' .. id
local member = #id .. ':' .. id .. step
local current = redis.call('HGET', steps, step)
local holder = false
if current then
  local ok, lease = pcall(cjson.decode, current)
  if ok and type(lease) == 'table' then holder = lease[1] end
end
if ARGV[7] == '1' and holder ~= ARGV[8] then
  -- a retried call whose first attempt went through finds its own lease
  if ARGV[9] == '1' and ARGV[4] == '1' and current == ARGV[5] then return 1 end
  return 0
end
if ARGV[4] == '0' then
  if current then
    redis.call('HDEL', steps, step)
    redis.call('ZREM', STEP_LEASES, member)
    return 1
  end
  if ARGV[7] == '1' then return 0 end
  return 1
end
redis.call('HSET', steps, step, ARGV[5])
redis.call('ZADD', STEP_LEASES, ARGV[6], member)
return 1
"""
)

#: ARGV: prefix, now, limit. Read-only: {run_id, step_id, lease JSON} triples.
EXPIRED_STEP_LEASES = (
    _PRELUDE
    + """
local out = {}
local members = redis.call(
  'ZRANGEBYSCORE', STEP_LEASES, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(members) do
  local colon = string.find(member, ':', 1, true)
  local n = tonumber(string.sub(member, 1, colon - 1))
  local id = string.sub(member, colon + 1, colon + n)
  local step = string.sub(member, colon + n + 1)
  local lease = redis.call('HGET', P .. ':steps:' .. id, step)
  if lease then
    out[#out + 1] = id
    out[#out + 1] = step
    out[#out + 1] = lease
  end
end
return out
"""
)

#: ARGV: prefix, queue, owner, now, lease until, limit, has worker, worker, concurrency,
#: worker concurrency, partition concurrency, rate count ('' = no limit for each),
#: rate window start (admissions after it count), retry. Returns the admitted rows.
#:
#: ``P:queue:waiting:<q>`` is ordered by score ``queue_rank``, then by member
#: ``<created_at in µs, 19 digits>:<run_id>`` (the order of equal scores), which
#: is the admission order ``(queue_rank, created_at, run_id)``.
ADMIT_QUEUED_RUNS = (
    _PRELUDE
    + """
local queue, owner, now, lease_until = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local limit = tonumber(ARGV[6])
local worker = nil
if ARGV[7] == '1' then worker = ARGV[8] end
local conc, wconc, pconc = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local rate_count, rate_since = tonumber(ARGV[12]), ARGV[13]
local WAITING, ACTIVE_SET, ADMITTED = waiting_key(queue), active_key(queue), admitted_key(queue)
local out = {}
if ARGV[14] == '1' then
  -- a retried call whose first attempt went through: the runs it admitted
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', ADMITTED, now, now)) do
    local o, e, by = unpack(redis.call(
      'HMGET', run_key(id), 'lease_owner', 'lease_expires_at', 'admitted_by'))
    if o == owner and e == lease_until and ((worker == nil and not by) or by == worker) then
      out[#out + 1] = redis.call('HGETALL', run_key(id))
    end
  end
  if #out > 0 then return out end
end
-- what the queue holds now: active runs, by worker and by partition, and recent admissions
local count = redis.call('SCARD', ACTIVE_SET)
local by_worker, by_key = 0, {}
if (worker and wconc) or pconc then
  for _, id in ipairs(redis.call('SMEMBERS', ACTIVE_SET)) do
    local by, pk = unpack(redis.call('HMGET', run_key(id), 'admitted_by', 'partition_key'))
    if worker and by == worker then by_worker = by_worker + 1 end
    if pk then by_key[pk] = (by_key[pk] or 0) + 1 end
  end
end
local recent = 0
if rate_count then recent = redis.call('ZCOUNT', ADMITTED, '(' .. rate_since, '+inf') end
local function full()
  return #out >= limit
    or (conc ~= nil and count >= conc)
    or (worker ~= nil and wconc ~= nil and by_worker >= wconc)
    or (rate_count ~= nil and recent >= rate_count)
end
local offset = 0
while not full() do
  local members = redis.call('ZRANGE', WAITING, offset, offset + 99)
  if #members == 0 then break end
  local passed = 0
  for _, member in ipairs(members) do
    if full() then break end
    local id = string.sub(member, 21)
    local key = run_key(id)
    local status, pk = unpack(redis.call('HMGET', key, 'status', 'partition_key'))
    if status ~= QUEUED then
      redis.call('ZREM', WAITING, member)  -- not waiting any more (kept for safety)
    elseif pconc and pk and (by_key[pk] or 0) >= pconc then
      passed = passed + 1  -- its partition is full: the runs behind it may go
    else
      set_status(id, key, PENDING)  -- leaves the waiting set, joins the active one
      redis.call('HSET', key, 'wake_at', now, 'lease_owner', owner,
        'lease_expires_at', lease_until, 'admitted_at', now)
      if worker then
        redis.call('HSET', key, 'admitted_by', worker)
      else
        redis.call('HDEL', key, 'admitted_by')
      end
      redis.call('ZADD', ADMITTED, now, id)
      sync_wake(id)
      out[#out + 1] = redis.call('HGETALL', key)
      count = count + 1
      by_worker = by_worker + 1
      recent = recent + 1
      if pk then by_key[pk] = (by_key[pk] or 0) + 1 end
    end
  end
  offset = offset + passed
end
return out
"""
)

#: ARGV: prefix, since. Read-only: {queue, waiting, active, admitted since} per queue
#: with any of the three.
QUEUE_STATS = (
    _PRELUDE
    + """
local out = {}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local waiting = redis.call('ZCARD', waiting_key(queue))
  local active = redis.call('SCARD', active_key(queue))
  local admitted = redis.call('ZCOUNT', admitted_key(queue), ARGV[2], '+inf')
  if waiting + active + admitted > 0 then
    out[#out + 1] = {queue, waiting, active, admitted}
  end
end
return out
"""
)

_STEP_SLOT_PRELUDE = """
local P, queue, holder = ARGV[1], ARGV[2], ARGV[3]
-- the queue's places not released, by until (held while until > now)
local HELD = P .. ':stepq:held:' .. queue
-- the queue's places by acquired_at (one member per holder, as one row per
-- holder: taking a place again replaces the holder's acquisition)
local TAKEN = P .. ':stepq:taken:' .. queue
"""

#: ARGV: prefix, queue, holder, now, until (now + lease_for), concurrency ('' = none),
#: rate count ('' = none), rate window start (acquisitions after it count), forget before
#: (released or expired places, and acquisitions, older than this are deleted).
#: Returns 1 if ``holder`` holds its place now, 0 if the limits refused it (nothing
#: written). A retried call whose first attempt went through finds the place held: 1.
ACQUIRE_STEP_SLOT = (
    _STEP_SLOT_PRELUDE
    + """
local now, held_until = tonumber(ARGV[4]), ARGV[5]
local conc, rate_count, rate_since = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local mine = tonumber(redis.call('ZSCORE', HELD, holder))
if mine and mine > now then
  redis.call('ZADD', HELD, held_until, holder)
  return 1
end
redis.call('ZREMRANGEBYSCORE', HELD, '-inf', '(' .. ARGV[9])
redis.call('ZREMRANGEBYSCORE', TAKEN, '-inf', '(' .. ARGV[9])
-- held by others: holder's own place, if any, has until <= now and is not counted
if conc and redis.call('ZCOUNT', HELD, '(' .. ARGV[4], '+inf') >= conc then return 0 end
if rate_count and redis.call('ZCOUNT', TAKEN, '(' .. rate_since, '+inf') >= rate_count then
  return 0
end
redis.call('ZADD', HELD, held_until, holder)
redis.call('ZADD', TAKEN, ARGV[4], holder)
return 1
"""
)

#: ARGV: prefix, queue, holder, until. 1 if the place was not released (and is renewed).
RENEW_STEP_SLOT = (
    _STEP_SLOT_PRELUDE
    + """
if not redis.call('ZSCORE', HELD, holder) then return 0 end
redis.call('ZADD', HELD, ARGV[4], holder)
return 1
"""
)

_SCHEDULE_PRELUDE = """
local P = ARGV[1]
local SCHEDULES = P .. ':schedules'
local DUE = P .. ':schedules:due'
local OWNER = P .. ':schedules:owner'
local UNTIL = P .. ':schedules:until'

-- A schedule is in the due index (by next_fire_at) unless paused or done.
local function index_schedule(name, next_at, paused)
  if next_at ~= '' and paused ~= '1' then
    redis.call('ZADD', DUE, next_at, name)
  else
    redis.call('ZREM', DUE, name)
  end
end
"""

#: ARGV: prefix, name, schedule JSON, next_fire_at ('' = none), paused, only if new, retry.
#: Replies {'created'} or {'exists', JSON}; a lease on the schedule is left as it is.
PUT_SCHEDULE = (
    _SCHEDULE_PRELUDE
    + """
local name, data = ARGV[2], ARGV[3]
if ARGV[6] == '1' then
  local current = redis.call('HGET', SCHEDULES, name)
  if current then
    -- a retried call whose first attempt went through finds its own row
    if ARGV[7] == '1' and current == data then return {'created'} end
    return {'exists', current}
  end
end
redis.call('HSET', SCHEDULES, name, data)
index_schedule(name, ARGV[4], ARGV[5])
return {'created'}
"""
)

#: ARGV: prefix, owner, now, lease until, limit, retry. Returns the leased rows (JSON),
#: earliest next_fire_at first (then by name).
CLAIM_SCHEDULES = (
    _SCHEDULE_PRELUDE
    + """
local owner, now, lease_until, limit = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local out = {}
if ARGV[6] == '1' then
  -- a retried call whose first attempt went through: the schedules it leased
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', DUE, '-inf', ARGV[3])) do
    if redis.call('HGET', OWNER, name) == owner
        and redis.call('HGET', UNTIL, name) == lease_until then
      out[#out + 1] = redis.call('HGET', SCHEDULES, name)
    end
  end
  if #out > 0 then return out end
end
local offset = 0
while #out < limit do
  local names = redis.call('ZRANGEBYSCORE', DUE, '-inf', ARGV[3], 'LIMIT', offset, limit - #out)
  if #names == 0 then break end
  for _, name in ipairs(names) do
    local holder = redis.call('HGET', OWNER, name)
    local expires = tonumber(redis.call('HGET', UNTIL, name))
    if not holder or not expires or expires < now then
      redis.call('HSET', OWNER, name, owner)
      redis.call('HSET', UNTIL, name, lease_until)
      out[#out + 1] = redis.call('HGET', SCHEDULES, name)
    end
  end
  offset = offset + #names
end
return out
"""
)

#: ARGV: prefix, name, owner, the row as the caller read it, write ('1') or only release,
#: new row JSON, its next_fire_at ('' = none), its paused flag, retry.
#: Replies 'ok' (written), 'no' (not the lease holder, or only released) or 'changed'
#: (the row is no longer the one read: read again).
ADVANCE_SCHEDULE = (
    _SCHEDULE_PRELUDE
    + """
local name, owner, seen, write, new = ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1', ARGV[6]
local current = redis.call('HGET', SCHEDULES, name)
if redis.call('HGET', OWNER, name) ~= owner then
  -- a retried call whose first attempt went through finds the row it wrote
  if ARGV[9] == '1' and write and current == new then return 'ok' end
  return 'no'
end
if current ~= seen then return 'changed' end
redis.call('HDEL', OWNER, name)
redis.call('HDEL', UNTIL, name)
if not write then return 'no' end
redis.call('HSET', SCHEDULES, name, new)
index_schedule(name, ARGV[7], ARGV[8])
return 'ok'
"""
)

_STREAM_PRELUDE = """
local P = ARGV[1]
local run_id, stream = ARGV[2], ARGV[3]
local NAMES = P .. ':streams:' .. run_id
local function missing() return redis.call('EXISTS', P .. ':run:' .. run_id) == 0 end
"""

#: ARGV: prefix, run id, stream, chunk JSON, dedup key ('' = none). Replies {'missing'} for
#: an unknown run, else {'ok', seq}: the stored chunk's seq when the key is taken (dedup).
APPEND_STREAM_CHUNK = (
    _STREAM_PRELUDE
    + """
if missing() then return {'missing'} end
local n = redis.call('HGET', NAMES, stream)
if not n then
  n = tostring(redis.call('HLEN', NAMES) + 1)
  redis.call('HSET', NAMES, stream, n)
end
local KEYS_ = P .. ':streamkeys:' .. run_id .. ':' .. n
local key = ARGV[5]
if key ~= '' then
  local seq = redis.call('HGET', KEYS_, key)
  if seq then return {'ok', seq} end
end
local seq = redis.call('RPUSH', P .. ':stream:' .. run_id .. ':' .. n, ARGV[4])
if key ~= '' then redis.call('HSET', KEYS_, key, seq) end
return {'ok', tostring(seq)}
"""
)

#: ARGV: prefix, run id, stream, after seq, limit. Replies {'missing'} for an unknown run,
#: else {'ok', chunk JSON...} of seqs after + 1, after + 2, ...
READ_STREAM = (
    _STREAM_PRELUDE
    + """
if missing() then return {'missing'} end
local n = redis.call('HGET', NAMES, stream)
local out = {'ok'}
if not n then return out end
local after, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
if limit <= 0 then return out end
for _, chunk in ipairs(redis.call('LRANGE', P .. ':stream:' .. run_id .. ':' .. n,
                                  after, after + limit - 1)) do
  table.insert(out, chunk)
end
return out
"""
)

#: ARGV: prefix, run id, step id, attempt, checkpoint JSON (``[attempt, data, saved_at]``).
#: Replies {'missing'} for an unknown run, {'stale'} when a later attempt's checkpoint is
#: stored (``checkpoint_rules.supersedes``: nothing written), else {'ok'}. The hash
#: ``P:checkpoints:<run id>`` holds per step ``a:<step id>`` (the attempt) and
#: ``d:<step id>`` (the JSON).
SAVE_STEP_CHECKPOINT = """
local P = ARGV[1]
local run_id, step_id, attempt = ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', P .. ':run:' .. run_id) == 0 then return {'missing'} end
local H = P .. ':checkpoints:' .. run_id
local stored = redis.call('HGET', H, 'a:' .. step_id)
if stored and tonumber(stored) > attempt then return {'stale'} end
redis.call('HSET', H, 'a:' .. step_id, ARGV[4], 'd:' .. step_id, ARGV[5])
return {'ok'}
"""
