"""Against abuse: temporary bans, allow and deny lists, shadow mode.

Run it: ``python examples/abuse.py``. Time comes from a ManualClock, so the
ten-minute ban passes in an instant.
"""

from __future__ import annotations

from rust_py_rate_limit import ManualClock, RateLimiter

clock = ManualClock()
limiter = RateLimiter(
    limit=3,
    window_seconds=60,
    clock=clock,
    ban_after=2,  # two refusals within a minute ...
    ban_seconds=600,  # ... ban the key for ten minutes
    allow_keys=["ip:10.0.0.2"],
    deny_keys=["ip:203.0.113.66"],
)

for i in range(1, 7):
    d = limiter.decide("ip:198.51.100.7")
    print(f"hit {i}: allowed={d.allowed} banned={d.banned} retry_after={d.retry_after}")
print("banned for:", limiter.banned_for("ip:198.51.100.7"))
clock.advance(600)
print("after the ban:", limiter.allow("ip:198.51.100.7"))

print("allow-listed:", [limiter.allow("ip:10.0.0.2") for _ in range(5)])
print("deny-listed denied:", limiter.decide("ip:203.0.113.66").denied)

# Shadow mode: a new, stricter limit that refuses nothing yet.
trial = RateLimiter(limit=2, window_seconds=60, shadow=True)
got = [trial.decide("user:42") for _ in range(4)]
print("shadow allowed:", [d.allowed for d in got])
print("shadow would refuse:", [d.shadow_refused for d in got])
print("stats:", {k: trial.stats()[k] for k in ("allowed", "blocked", "shadow_refused")})
