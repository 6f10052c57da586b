-- Shared by every decision script: arguments, time, and the compound rule.
--
-- KEYS[i]            the state of rule i (one key per rule, one hash slot)
-- ARGV[1]            "hit" (decide and spend) or "peek" (decide cost 1, spend nothing)
-- ARGV[2]            cost
-- ARGV[3]            now in microseconds, or "" for the server's TIME
-- ARGV[4 + 3(i-1)..] limit, window (microseconds), burst of rule i
--
-- Every number stays below 2^53: the store refuses limits and windows whose
-- products would not (see src/store/redis/mod.rs).
local mode = ARGV[1]
local cost = tonumber(ARGV[2])
local now
if ARGV[3] ~= "" then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if mode == "peek" then cost = 1 end

local function ceil_div(a, b)
  return math.floor((a + b - 1) / b)
end

-- A number as a redis.call argument, formatted as an integer: Redis 7.0
-- formats a Lua number with "%.17g", whose exact conversion costs more than
-- the rest of a small script's arithmetic.
local function int(x)
  return string.format('%d', x)
end

-- A write's TTL: positive and at most twice the window, in milliseconds.
local function expire_ms(us, window)
  local ms = ceil_div(us, 1000)
  if ms < 1 then ms = 1 end
  local cap = ceil_div(2 * window, 1000)
  if ms > cap then ms = cap end
  return ms
end
