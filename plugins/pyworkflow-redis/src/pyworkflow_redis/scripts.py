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

__all__ = [
    "APPEND",
    "APPEND_HOOK_PAYLOAD",
    "CLAIM_RUN",
    "CLAIM_RUNS",
    "CREATE_RUN",
    "EXPIRED_STEP_LEASES",
    "RELEASE_LEASE",
    "RENEW_LEASE",
    "SET_STEP_LEASE",
]

#: How long (seconds) the outcome of a hook delivery is remembered for a retried call.
DELIVERY_TTL = 3600

_PRELUDE = """
local P = ARGV[1]
local HOOKS = P .. ':hooks'
local TIMERS = P .. ':timers'
local READY = P .. ':ready'
local IDEM = P .. ':idem'
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

local function set_status(id, key, status)
  local old, wf, created = unpack(
    redis.call('HMGET', key, 'status', 'workflow_name', 'created_at'))
  if old == status then return end
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

#: ARGV: prefix, run_id, idempotency key ('' = none), retry,
#: n + field/value pairs of the row, n + events, n + created hooks (token/json pairs).
CREATE_RUN = (
    _PRELUDE
    + """
local id, ikey, retry = ARGV[2], ARGV[3], ARGV[4] == '1'
local fields, i = read_list(5)
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
local status, wf, at, wake = unpack(
  redis.call('HMGET', key, 'status', 'workflow_name', 'created_at', 'wake_at'))
redis.call('ZADD', P .. ':idx:all', at, id)
redis.call('ZADD', P .. ':idx:status:' .. status, at, id)
redis.call('ZADD', P .. ':idx:wf:' .. wf, at, id)
redis.call('ZADD', P .. ':idx:wfs:' .. status .. ':' .. wf, at, id)
local parent = redis.call('HGET', key, 'parent_run_id')
if parent and parent ~= '' then redis.call('ZADD', P .. ':idx:parent:' .. parent, at, id) end
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
