-- GCRA slot reservation for streampixel-distribute (DESIGN.md §6), run atomically by Redis.
--
-- KEYS[1]  the account's key (streampixel-distribute:slot:<account key>)
-- ARGV[1]  interval, microseconds
-- ARGV[2]  min_delay, microseconds: how far after "now" the caller's not_before lies (>= 0)
-- ARGV[3]  "1" to peek (compute the slot, store nothing), "0" to reserve
-- ARGV[4]  optional server time in microseconds, read by the client with TIME just before this
--          call; only for managed Redis services that refuse TIME inside scripts. Empty: read
--          TIME here, which is both atomic with the reservation and independent of runner clocks.
--
-- Returns {server_now, slot}, both microseconds on the Redis server's clock. The client converts
-- the slot to its own clock as caller_now + (slot - server_now), so runner clock skew cancels out.
--
-- Times are kept in whole microseconds: about 1.7e15 today, exact in a Lua double (< 2^53), and
-- written with "%.0f" because tostring() would round to 14 significant digits.

-- Redis 3.2-4.x replicate scripts verbatim unless asked otherwise, and then refuse a write after
-- TIME (non-deterministic). 5.0+ always replicate effects; 7.0+ deprecate the call, so guard it.
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local interval = tonumber(ARGV[1])
local min_delay = tonumber(ARGV[2])
local peek = ARGV[3] == "1"

local now
if ARGV[4] ~= nil and ARGV[4] ~= "" then
  now = tonumber(ARGV[4])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local slot = now + min_delay
local raw = redis.call("GET", KEYS[1])
if raw then
  local next_free = tonumber(raw)
  if next_free == nil then
    return redis.error_reply("CORRUPT streampixel-distribute slot value is not a number")
  end
  if next_free > slot then
    slot = next_free
  end
end

if not peek then
  local next_free = slot + interval
  -- Keep the key until its next_free has passed by one more interval, then let Redis drop it:
  -- an expired key and a past next_free mean the same thing, so nothing accumulates.
  local ttl_ms = math.ceil((next_free - now + interval) / 1000)
  if ttl_ms < 1000 then
    ttl_ms = 1000
  end
  redis.call("SET", KEYS[1], string.format("%.0f", next_free), "PX", ttl_ms)
end

return {now, slot}
