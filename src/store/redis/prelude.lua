-- Shared by every decision script: arguments, time, bans, and the compound
-- rule.
--
-- One call decides a batch of decisions, in order, as if each were its own
-- call (concurrent callers of one limiter share a call; see batch.rs):
--
-- ARGV[1]              r, the number of rules
-- ARGV[2 + 3(i-1)..]   limit, window (microseconds), burst of rule i
-- ARGV[2 + 3r..]       the ban policy: refusals that begin a ban (0: none),
--                      the span they fall within, the ban's length (µs)
-- then per decision j: mode ("hit": decide and spend; "peek": decide cost 1,
--                      spend nothing), cost, now in microseconds or "" for
--                      the server's TIME
-- KEYS                 per decision, p = w*r + 2 keys, all in one slot: the
--                      w keys holding the state of each rule i in turn (w is
--                      2 for sliding_log, whose sum sits beside its log, else
--                      1), then the key's ban (the time it ends, µs) and its
--                      recent refusals (a list, newest first)
--
-- The reply is six integers per decision: allowed, limit, remaining, reset
-- and retry (microseconds), and 0, 1 (refused by a ban) or 2 (this refusal
-- began a ban).
--
-- Every number stays below 2^53: the store refuses limits and windows whose
-- products would not (see src/store/redis/mod.rs).
local rules = tonumber(ARGV[1])
local ban_after = tonumber(ARGV[2 + 3 * rules])
local ban_within = tonumber(ARGV[3 + 3 * rules])
local ban_length = tonumber(ARGV[4 + 3 * rules])
local decisions = (#ARGV - 4 - 3 * rules) / 3
local per = #KEYS / decisions
local width = (per - 2) / rules
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

-- Counts a refusal of the key whose ban and refusals are bank and refk;
-- whether it began a ban (the ban_after-th refusal within ban_within).
local function refused(bank, refk)
  local recent = 0
  if ban_after > 1 then
    local times = redis.call('LRANGE', refk, 0, ban_after - 2)
    for i = 1, #times do
      if now - tonumber(times[i]) >= ban_within then break end
      recent = recent + 1
    end
  end
  if recent + 1 >= ban_after then
    redis.call('DEL', refk)
    redis.call('SET', bank, int(now + ban_length), 'PX', int(ceil_div(ban_length, 1000)))
    return true
  end
  redis.call('LPUSH', refk, int(now))
  redis.call('LTRIM', refk, 0, ban_after - 2)
  redis.call('PEXPIRE', refk, int(ceil_div(ban_within, 1000)))
  return false
end
