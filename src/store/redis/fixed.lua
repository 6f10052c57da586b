-- Fixed window: hash {s = window start, c = spent}.
local function decide(key, limit, window, burst)
  local v = redis.call('HMGET', key, 's', 'c')
  local start, count = tonumber(v[1]), tonumber(v[2])
  if start == nil or now - start >= window then
    start = now
    count = 0
  end
  local reset = start + window - now
  if reset > window then reset = window end
  local d = { remaining_now = limit - count, reset_now = reset }
  if count + cost <= limit then
    d.allowed = 1
    d.remaining = limit - count - cost
    d.reset = reset
    d.retry = 0
    d.write = function()
      redis.call('HSET', key, 's', int(start), 'c', int(count + cost))
      redis.call('PEXPIRE', key, int(expire_ms(reset, window)))
    end
  else
    d.allowed = 0
    d.remaining = limit - count
    d.reset = reset
    d.retry = reset
  end
  return d
end
