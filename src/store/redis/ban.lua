-- Manual ban control of one key: KEYS[1] its ban (the time it ends, µs),
-- KEYS[2] its recent refusals. ARGV: the operation ("ban", "unban" or
-- "left"), now in microseconds or "" for the server's TIME, and for "ban"
-- the ban's length (µs).
--
-- "ban" answers 1; "unban" 1 if a ban was lifted, else 0 (and forgets the
-- refusals either way); "left" the microseconds the ban has left, or -1.
local now
if ARGV[2] ~= "" then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local op = ARGV[1]
if op == "ban" then
  local length = tonumber(ARGV[3])
  redis.call('SET', KEYS[1], string.format('%d', now + length),
    'PX', string.format('%d', math.floor((length + 999) / 1000)))
  return 1
end
local ban_end = tonumber(redis.call('GET', KEYS[1]))
local banned = ban_end ~= nil and ban_end > now
if op == "unban" then
  redis.call('DEL', KEYS[1], KEYS[2])
  if banned then return 1 end
  return 0
end
if banned then return ban_end - now end
return -1
