-- Sliding log: a sorted set of admitted hits scored by time; each member is
-- "time:cost:n" (n keeps members unique). Entries at least a window old are
-- dead; they are removed only when a hit is admitted (a refusal writes
-- nothing).
local function decide(key, limit, window, burst)
  local live = redis.call('ZRANGEBYSCORE', key, string.format('(%d', now - window), '+inf', 'WITHSCORES')
  local entries = {}
  local total = 0
  for i = 1, #live, 2 do
    local c = tonumber(string.match(live[i], '^[^:]+:([^:]+)'))
    local at = tonumber(live[i + 1])
    entries[#entries + 1] = { at, c }
    total = total + c
  end
  local remaining = limit - total
  local last_reset = 0
  if #entries > 0 then last_reset = entries[#entries][1] + window - now end
  local d = { remaining_now = remaining, reset_now = last_reset }
  if cost <= remaining then
    d.allowed = 1
    d.remaining = remaining - cost
    d.reset = window
    d.retry = 0
    d.write = function()
      redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - window))
      local n = redis.call('ZCARD', key) + 1
      -- '%d': `now ..` would round the time to 14 digits (10 µs), and
      -- two members could then share a name and count as one.
      redis.call('ZADD', key, int(now), string.format('%d:%d:%d', now, cost, n))
      redis.call('PEXPIRE', key, int(expire_ms(window, window)))
    end
  else
    d.allowed = 0
    d.remaining = remaining
    d.reset = last_reset
    local need = cost - remaining
    local retry = 0
    for i = 1, #entries do
      retry = entries[i][1] + window - now
      if entries[i][2] >= need then break end
      need = need - entries[i][2]
    end
    d.retry = retry
  end
  return d
end
