-- GCRA / token bucket: hash {t = time of the last write, d = debt}, where
-- debt = (TAT - t) * limit, the theoretical arrival time scaled by the limit
-- and kept relative to the write, so it stays below burst * window.
local function decide(key, limit, window, burst)
  local v = redis.call('HMGET', key, 't', 'd')
  local at, debt = tonumber(v[1]), tonumber(v[2])
  -- Debt now: what is left after (now - at) * limit has drained.
  local owed = 0
  if at ~= nil and debt ~= nil and debt > 0 then
    local elapsed = now - at
    if elapsed < 0 then elapsed = 0 end
    if elapsed < ceil_div(debt, limit) then
      owed = debt - elapsed * limit
    end
  end
  local tolerance = burst * window
  local after = owed + cost * window
  if after <= tolerance and mode ~= "peek" then
    return 1, math.floor((tolerance - after) / window), ceil_div(after, limit), 0, after
  end
  local remaining, reset = math.floor((tolerance - owed) / window), ceil_div(owed, limit)
  if after <= tolerance then return 1, remaining, reset, 0 end
  return 0, remaining, reset, ceil_div(after - tolerance, limit)
end

local function commit(key, limit, window, burst, sum, after)
  redis.call('HSET', key, 't', int(now), 'd', int(after))
  -- The state matters until the debt drains: a burst above the limit
  -- takes burst / limit windows, so that is the span the TTL is capped at.
  local span = window
  if burst > limit then span = ceil_div(burst * window, limit) end
  redis.call('PEXPIRE', key, int(expire_ms(ceil_div(after, limit), span)))
end
