-- GCRA slot reservation for streampixel-distribute (DESIGN.md §6), run atomically by Redis, with
-- the account's queue: who holds which slot (ledger/queue.py has the same logic in Python, for
-- the other backends; the ledger contract tests run both the same way).
--
-- KEYS[1]  the account's next_free (streampixel-distribute:slot:<account key>): a number, as
--          every release has kept it, so a release without queues keeps working beside this one
-- KEYS[2]  the account's queue (KEYS[1] .. ":queue"): JSON {"v": 1, "slots": [...]}, each slot
--          {"at": "<us>", "until": "<us>", "by": {holder}, "released": true?}, times as strings
--          of whole microseconds (cjson would round numbers to 14 digits)
-- ARGV[1]  interval (how long the slot holds the account), microseconds
-- ARGV[2]  min_delay, microseconds: how far after "now" the caller's not_before lies (>= 0)
-- ARGV[3]  the operation: "0" reserve, "1" peek, "2" give back, "3" move up, "4" read,
--          "5" stretch (the slot ends min_delay after now)
-- ARGV[4]  optional server time in microseconds, read by the client with TIME just before this
--          call; only for managed Redis services that refuse TIME inside scripts. Empty: read
--          TIME here, which is both atomic with the operation and independent of runner clocks.
-- ARGV[5]  reserve: the holder as JSON ("" for none); give back, move up, stretch: the holder's id
--
-- Returns {server_now, result, queue}: microseconds on the Redis server's clock; the client
-- converts them to its own clock as caller_now + (t - server_now), so runner clock skew cancels
-- out. result: reserve, peek: the slot; give back: 0 absent, 1 released, 2 marked; move up: the
-- new slot or -1; read: next_free (0 if none); stretch: 1 if the slot changed, else 0.
-- queue: the stored queue's JSON for read, else "".

-- Redis 3.2-4.x replicate scripts verbatim unless asked otherwise, and then refuse a write after
-- TIME (non-deterministic). 5.0+ always replicate effects; 7.0+ deprecate the call, so guard it.
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local MAX_AHEAD = 32
local interval = tonumber(ARGV[1])
local min_delay = tonumber(ARGV[2])
local op = ARGV[3]

local now
if ARGV[4] ~= nil and ARGV[4] ~= "" then
  now = tonumber(ARGV[4])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local next_free = nil
local raw = redis.call("GET", KEYS[1])
if raw then
  next_free = tonumber(raw)
  if next_free == nil then
    return redis.error_reply("CORRUPT streampixel-distribute slot value is not a number")
  end
end

-- The queue; a damaged one, or one of another format, is treated as empty (it only names
-- holders: next_free alone decides the spacing).
local function load_queue()
  local stored = redis.call("GET", KEYS[2])
  local slots = {}
  if not stored then
    return slots
  end
  local ok, q = pcall(cjson.decode, stored)
  if not ok or type(q) ~= "table" or q.v ~= 1 or type(q.slots) ~= "table" then
    return slots
  end
  for _, s in ipairs(q.slots) do
    if type(s) == "table" then
      local at, u = tonumber(s.at), tonumber(s["until"])
      if at and u and u >= at then
        slots[#slots + 1] = {at = at, u = u, by = s.by, released = s.released == true}
      end
    end
  end
  table.sort(slots, function(a, b) return a.at < b.at end)
  return slots
end

local function holder_id(s)
  if type(s.by) == "table" and type(s.by.id) == "string" then
    return s.by.id
  end
  return nil
end

-- What is still running or ahead (MAX_AHEAD at most), plus the last slot that ended.
local function prune(slots)
  local out, last = {}, nil
  for _, s in ipairs(slots) do
    if s.u <= now then
      if not s.released then last = s end
    elseif #out < MAX_AHEAD then
      out[#out + 1] = s
    end
  end
  if last then table.insert(out, 1, last) end
  return out
end

local function store(slots, free)
  local items = {}
  local last_until = free
  for _, s in ipairs(slots) do
    local item = {at = string.format("%.0f", s.at), ["until"] = string.format("%.0f", s.u)}
    if s.by ~= nil then item.by = s.by end
    if s.released then item.released = true end
    items[#items + 1] = item
    if s.u > last_until then last_until = s.u end
  end
  -- Keep both keys until everything in them has passed by one more interval, then let Redis
  -- drop them: an expired key and a past next_free mean the same thing.
  local ttl_ms = math.ceil((last_until - now + interval) / 1000)
  if ttl_ms < 1000 then ttl_ms = 1000 end
  redis.call("SET", KEYS[1], string.format("%.0f", free), "PX", ttl_ms)
  local body = '{"v":1,"slots":[]}'
  if #items > 0 then body = cjson.encode({v = 1, slots = items}) end
  redis.call("SET", KEYS[2], body, "PX", ttl_ms)
end

local function find_live(slots, id)
  for i, s in ipairs(slots) do
    if not s.released and holder_id(s) == id then return i end
  end
  return nil
end

-- Give back slot i: released (next_free rolls back) when nobody is after it, else marked.
local function release(slots, free, i)
  local mine = slots[i]
  local last_until = mine.u
  local all_released = true
  for j = i + 1, #slots do
    if not slots[j].released then all_released = false end
    last_until = slots[j].u
  end
  if all_released and free == last_until then
    local kept = {}
    for j = 1, i - 1 do kept[#kept + 1] = slots[j] end
    local rolled_back = mine.at
    while #kept > 0 and kept[#kept].released and kept[#kept].u == rolled_back do
      rolled_back = kept[#kept].at
      table.remove(kept)
    end
    return prune(kept), rolled_back, 1
  end
  mine.released = true
  return prune(slots), free, 2
end

if op == "1" then  -- peek
  local slot = now + min_delay
  if next_free and next_free > slot then slot = next_free end
  return {now, slot, ""}
end

if op == "4" then  -- read
  return {now, next_free or 0, redis.call("GET", KEYS[2]) or ""}
end

local slots = load_queue()

if op == "0" then  -- reserve
  local earliest = now + min_delay
  local duration = interval
  local by = nil
  if ARGV[5] ~= nil and ARGV[5] ~= "" then by = cjson.decode(ARGV[5]) end
  for _, s in ipairs(slots) do
    if s.released and s.at >= earliest and s.u - s.at >= duration then
      s.released = false
      s.by = by
      store(prune(slots), next_free or 0)
      return {now, s.at, ""}
    end
  end
  local slot = earliest
  if next_free and next_free > slot then slot = next_free end
  slots = prune(slots)
  -- An older release's reservation past the queue (it keeps no queue): kept in view, in place.
  local last_until = nil
  for _, s in ipairs(slots) do
    if last_until == nil or s.u > last_until then last_until = s.u end
  end
  if next_free and next_free > now and (last_until == nil or next_free > last_until) then
    local start = next_free - duration
    if last_until ~= nil and last_until > start then start = last_until end
    slots[#slots + 1] = {at = start, u = next_free, by = nil, released = false}
  end
  slots[#slots + 1] = {at = slot, u = slot + duration, by = by, released = false}
  store(slots, slot + duration)
  return {now, slot, ""}
end

if next_free == nil then
  return {now, op == "3" and -1 or 0, ""}
end
local i = find_live(slots, ARGV[5])

if op == "5" then  -- stretch a slot whose call was answered late; it has begun, and never shrinks
  local target = now + min_delay
  if i == nil or slots[i].u >= target then
    return {now, 0, ""}
  end
  slots[i].u = target
  if target > next_free then next_free = target end
  store(slots, next_free)
  return {now, 1, ""}
end

if i == nil or slots[i].at <= now then
  return {now, op == "3" and -1 or 0, ""}
end

if op == "2" then  -- give back
  local kept, free, outcome = release(slots, next_free, i)
  store(kept, free)
  return {now, outcome, ""}
end

if op == "3" then  -- move up into the earliest slot given back ahead, at or after now + delay
  local earliest = now + min_delay
  local mine = slots[i]
  for j = 1, i - 1 do
    local s = slots[j]
    if s.released and s.at >= earliest and s.u - s.at >= mine.u - mine.at then
      local target_at = s.at
      slots[j] = {at = s.at, u = s.u, by = mine.by, released = false}
      local kept, free = release(slots, next_free, i)
      store(kept, free)
      return {now, target_at, ""}
    end
  end
  return {now, -1, ""}
end

return redis.error_reply("ERR unknown operation " .. tostring(op))
