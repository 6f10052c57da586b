-- Fixed window: hash {s = window start, c = spent}.
--
-- Every algorithm defines decide and commit (see decide.lua):
-- decide(key, limit, window, burst, sum) -> allowed, remaining, reset,
--   retry, and when admitted what commit needs. A peek reports remaining
--   and reset as they stand, before the hit it asks about.
-- commit(key, limit, window, burst, sum, ...) writes an admitted hit.
local function decide(key, limit, window, burst)
  local v = redis.call('HMGET', key, 's', 'c')
  local start, count = tonumber(v[1]), tonumber(v[2])
  if start == nil or now - start >= window then
    start = now
    count = 0
  end
  local reset = start + window - now
  if reset > window then reset = window end
  if count + cost <= limit then
    if mode == "peek" then return 1, limit - count, reset, 0 end
    return 1, limit - count - cost, reset, 0, start, count + cost, reset
  end
  return 0, limit - count, reset, reset
end

local function commit(key, limit, window, burst, sum, start, spent, reset)
  redis.call('HSET', key, 's', int(start), 'c', int(spent))
  redis.call('PEXPIRE', key, int(expire_ms(reset, window)))
end
