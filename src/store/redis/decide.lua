-- Decide every rule, spend in all of them only if all admit, and report the
-- most restrictive: when admitted the least remaining (then the longest
-- reset); when refused the refusing rule with the longest retry.
local worst
local all = true
local parts = {}
for i = 1, #KEYS do
  local base = 3 + (i - 1) * 3
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local burst = tonumber(ARGV[base + 3])
  local d = decide(KEYS[i], limit, window, burst)
  d.limit = limit
  if mode == "peek" then
    d.remaining = d.remaining_now
    d.reset = d.reset_now
  end
  parts[i] = d
  if d.allowed == 0 then all = false end
  if worst == nil then
    worst = d
  else
    local function rank(x)
      return { 1 - x.allowed, x.retry, -x.remaining, x.reset }
    end
    local a, b = rank(d), rank(worst)
    for j = 1, 4 do
      if a[j] ~= b[j] then
        if a[j] > b[j] then worst = d end
        break
      end
    end
  end
end
if mode == "hit" and all then
  for i = 1, #parts do parts[i].write() end
end
return { worst.allowed, worst.limit, worst.remaining, worst.reset, worst.retry }
