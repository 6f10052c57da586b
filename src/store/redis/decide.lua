-- Decide every rule, spend in all of them only if all admit, and report the
-- most restrictive: when admitted the least remaining (then the longest
-- reset); when refused the refusing rule with the longest retry.
local limits, windows, bursts = {}, {}, {}
for i = 1, rules do
  local base = 1 + 3 * (i - 1)
  limits[i] = tonumber(ARGV[base + 1])
  windows[i] = tonumber(ARGV[base + 2])
  bursts[i] = tonumber(ARGV[base + 3])
end

local function rank(x)
  return { 1 - x.allowed, x.retry, -x.remaining, x.reset }
end

local out = {}
for j = 1, decisions do
  local a = 2 + 3 * rules + 3 * (j - 1)
  mode = ARGV[a]
  cost = tonumber(ARGV[a + 1])
  if ARGV[a + 2] ~= "" then
    now = tonumber(ARGV[a + 2])
  else
    if server_now == nil then
      local t = redis.call('TIME')
      server_now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    end
    now = server_now
  end
  if mode == "peek" then cost = 1 end

  local worst
  local all = true
  local parts = {}
  for i = 1, rules do
    local k = width * (rules * (j - 1) + i - 1) + 1
    local d = decide(KEYS[k], limits[i], windows[i], bursts[i], KEYS[k + 1])
    d.limit = limits[i]
    if mode == "peek" then
      d.remaining = d.remaining_now
      d.reset = d.reset_now
    end
    parts[i] = d
    if d.allowed == 0 then all = false end
    if worst == nil then
      worst = d
    else
      local x, y = rank(d), rank(worst)
      for k = 1, 4 do
        if x[k] ~= y[k] then
          if x[k] > y[k] then worst = d end
          break
        end
      end
    end
  end
  if mode == "hit" and all then
    for i = 1, #parts do parts[i].write() end
  end
  local o = #out
  out[o + 1] = worst.allowed
  out[o + 2] = worst.limit
  out[o + 3] = worst.remaining
  out[o + 4] = worst.reset
  out[o + 5] = worst.retry
end
return out
