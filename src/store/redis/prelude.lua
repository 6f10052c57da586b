-- Shared by every decision script: arguments, time, and the compound rule.
--
-- One call decides a batch of decisions, in order, as if each were its own
-- call (concurrent callers of one limiter share a call; see batch.rs):
--
-- ARGV[1]              r, the number of rules
-- ARGV[2 + 3(i-1)..]   limit, window (microseconds), burst of rule i
-- then per decision j: mode ("hit": decide and spend; "peek": decide cost 1,
--                      spend nothing), cost, now in microseconds or "" for
--                      the server's TIME
-- KEYS[w(r(j-1) + i-1) + 1 ..]  the w keys holding the state of rule i for
--                      decision j (all in one slot; w is 2 for sliding_log,
--                      whose sum sits beside its log, else 1)
--
-- The reply is five integers per decision: allowed, limit, remaining,
-- reset and retry (microseconds).
--
-- Every number stays below 2^53: the store refuses limits and windows whose
-- products would not (see src/store/redis/mod.rs).
local rules = tonumber(ARGV[1])
local decisions = (#ARGV - 1 - 3 * rules) / 3
local width = #KEYS / (rules * decisions)
local server_now
-- The decision being decided; the algorithms below read them.
local mode, cost, now

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
