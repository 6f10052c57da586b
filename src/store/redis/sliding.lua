-- Sliding window counter: hash {s = current window start, p = previous
-- window's count, c = current window's count}.
local function decide(key, limit, window, burst)
  local v = redis.call('HMGET', key, 's', 'p', 'c')
  local start, prev, curr = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if start == nil then
    start = now
  else
    local k = math.floor((now - start) / window)
    if now < start then k = 0 end
    if k == 1 then
      start = start + window
      prev = curr
      curr = 0
    elseif k >= 2 then
      start = now
      prev = 0
      curr = 0
    end
  end
  local e = now - start
  if e < 0 then e = 0 end
  -- free = floor((limit*W - prev*(W-e)) / W) - curr
  local free = math.floor((limit * window - prev * (window - e)) / window) - curr
  if free < 0 then free = 0 end
  local function reset_of(c)
    if c > 0 then return 2 * window - e end
    if prev > 0 then return window - e end
    return 0
  end
  local function admit_at(p, room)
    if p == 0 then return 0 end
    return window - math.floor(room * window / p)
  end
  local d = { remaining_now = free, reset_now = reset_of(curr) }
  if cost <= free then
    d.allowed = 1
    d.remaining = free - cost
    d.reset = reset_of(curr + cost)
    d.retry = 0
    d.write = function()
      redis.call('HSET', key, 's', int(start), 'p', int(prev), 'c', int(curr + cost))
      redis.call('PEXPIRE', key, int(expire_ms(2 * window - e, window)))
    end
  else
    d.allowed = 0
    d.remaining = free
    d.reset = reset_of(curr)
    if curr + cost <= limit then
      d.retry = admit_at(prev, limit - curr - cost) - e
    else
      d.retry = (window - e) + admit_at(curr, limit - cost)
    end
  end
  return d
end
