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

-- Each rule's answer for the decision at hand (reused across decisions):
-- allowed, remaining, reset, retry, and what commit needs.
local A, R, S, T, W1, W2, W3, W4 = {}, {}, {}, {}, {}, {}, {}, {}

-- Whether rule i's answer is more restrictive than rule w's: refused before
-- admitted, then the longer retry, the fewer remaining, the longer reset.
local function worse(i, w)
  if A[i] ~= A[w] then return A[i] < A[w] end
  if T[i] ~= T[w] then return T[i] > T[w] end
  if R[i] ~= R[w] then return R[i] < R[w] end
  return S[i] > S[w]
end

local out = {}
for j = 1, decisions do
  local a = 5 + 3 * rules + 3 * (j - 1)
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

  local first = per * (j - 1) -- KEYS before this decision's
  local bank, refk = KEYS[first + per - 1], KEYS[first + per]
  local ban_end = tonumber(redis.call('GET', bank))
  local o = #out
  if ban_end ~= nil and ban_end > now then
    -- Banned: refused, counters untouched, until the ban ends.
    local left = ban_end - now
    out[o + 1] = 0
    out[o + 2] = limits[1]
    out[o + 3] = 0
    out[o + 4] = left
    out[o + 5] = left
    out[o + 6] = 1
  else
    local worst = 1
    local all = true
    for i = 1, rules do
      local k = first + width * (i - 1) + 1
      A[i], R[i], S[i], T[i], W1[i], W2[i], W3[i], W4[i] =
        decide(KEYS[k], limits[i], windows[i], bursts[i], KEYS[k + 1])
      if A[i] == 0 then all = false end
      if i > 1 and worse(i, worst) then worst = i end
    end
    local banned = 0
    if all then
      if mode == "hit" then
        for i = 1, rules do
          local k = first + width * (i - 1) + 1
          commit(KEYS[k], limits[i], windows[i], bursts[i], KEYS[k + 1], W1[i], W2[i], W3[i], W4[i])
        end
      end
    elseif mode == "hit" and ban_after > 0 and refused(bank, refk) then
      -- This refusal began a ban: the next admission waits for it.
      banned = 2
      if T[worst] < ban_length then T[worst] = ban_length end
      if S[worst] < ban_length then S[worst] = ban_length end
    end
    out[o + 1] = A[worst]
    out[o + 2] = limits[worst]
    out[o + 3] = R[worst]
    out[o + 4] = S[worst]
    out[o + 5] = T[worst]
    out[o + 6] = banned
  end
end
return out