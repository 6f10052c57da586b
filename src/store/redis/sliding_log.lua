-- Sliding log: a sorted set of admitted hits scored by time, each member
-- "time:cost:n" (n keeps members unique), and beside it (`sum`, a second
-- key in the same slot) the total cost of the set's entries. A decision
-- reads only the entries that left the window, never every live one, so its
-- cost does not grow with the hits in the window; only a refusal's retry
-- time reads the oldest live entries, a few at a time. Entries at least a
-- window old are dead; they are removed only when a hit is admitted (a
-- refusal writes nothing).
local function cost_of(member)
  return tonumber(string.match(member, '^[^:]+:([^:]+)'))
end

-- When the newest of the n entries leaves the window (all spent units
-- return), if any of them is live.
local function last_reset(key, n, dead, edge)
  if n == dead then return 0 end
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  return tonumber(newest[2]) - edge
end

local function decide(key, limit, window, burst, sum)
  local edge = now - window -- an entry is live while its time is after this
  local n = redis.call('ZCARD', key)
  local total, dead = 0, 0
  if n > 0 then
    total = tonumber(redis.call('GET', sum))
    if total == nil then
      -- The sum is gone (evicted under maxmemory): count it again, once.
      total = 0
      for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
        total = total + cost_of(member)
      end
    end
    local gone = redis.call('ZRANGEBYSCORE', key, '-inf', int(edge))
    dead = #gone
    for i = 1, dead do
      total = total - cost_of(gone[i])
    end
  end
  local remaining = limit - total
  if cost <= remaining then
    if mode == "peek" then return 1, remaining, last_reset(key, n, dead, edge), 0 end
    return 1, remaining - cost, window, 0, n, dead, total
  end
  -- Wait for the oldest live entries to leave until `cost` fits.
  local need = cost - remaining
  local retry, offset, page = 0, 0, 8
  while need > 0 do
    local entries = redis.call('ZRANGEBYSCORE', key, string.format('(%d', edge), '+inf',
      'WITHSCORES', 'LIMIT', offset, page)
    if #entries == 0 then break end
    for i = 1, #entries, 2 do
      retry = tonumber(entries[i + 1]) - edge
      local c = cost_of(entries[i])
      if c >= need then
        need = 0
        break
      end
      need = need - c
    end
    offset = offset + page
    page = page * 4
  end
  return 0, remaining, last_reset(key, n, dead, edge), retry
end

local function commit(key, limit, window, burst, sum, n, dead, total)
  local edge = now - window
  if dead > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(edge))
  end
  -- '%d': `now ..` would round the time to 14 digits (10 µs), and two
  -- members could then share a name and count as one.
  redis.call('ZADD', key, int(now), string.format('%d:%d:%d', now, cost, n - dead + 1))
  local ttl = int(expire_ms(window, window))
  redis.call('PEXPIRE', key, ttl)
  redis.call('SET', sum, int(total + cost), 'PX', ttl)
end
