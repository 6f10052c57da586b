-- Sliding window counter: hash {s = current window start, p = previous
-- window's count, c = current window's count}.
-- When the window's spent units (c, of this window, and prev, of the last)
-- have all left, e into the current window.
local function reset_of(c, prev, window, e)
  if c > 0 then return 2 * window - e end
  if prev > 0 then return window - e end
  return 0
end

-- How far into its window a count p must fall to leave room units.
local function admit_at(p, room, window)
  if p == 0 then return 0 end
  return window - math.floor(room * window / p)
end

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
  if cost <= free then
    if mode == "peek" then return 1, free, reset_of(curr, prev, window, e), 0 end
    return 1, free - cost, reset_of(curr + cost, prev, window, e), 0, start, prev, curr + cost, e
  end
  local retry
  if curr + cost <= limit then
    retry = admit_at(prev, limit - curr - cost, window) - e
  else
    retry = (window - e) + admit_at(curr, limit - cost, window)
  end
  return 0, free, reset_of(curr, prev, window, e), retry
end

local function commit(key, limit, window, burst, sum, start, prev, spent, e)
  redis.call('HSET', key, 's', int(start), 'p', int(prev), 'c', int(spent))
  redis.call('PEXPIRE', key, int(expire_ms(2 * window - e, window)))
end
