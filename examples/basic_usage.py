"""A limit being hit, the check() payload, and stats(), on the memory store.

Run it with ``python examples/basic_usage.py``.
"""

from __future__ import annotations

from rust_py_rate_limit import ManualClock, RateLimiter, RateLimitExceeded


def main() -> None:
    # A clock we move by hand, so the demo shows a window ending instantly.
    clock = ManualClock()
    limiter = RateLimiter(limit=3, window_seconds=60, clock=clock)
    print(limiter)

    for i in range(1, 5):
        verdict = "allowed" if limiter.allow("user:123") else "blocked"
        print(f"request {i} -> {verdict}")

    print("check() while blocked:", limiter.check("user:123"))
    clock.advance(60)
    print("... 60s later ...")
    print("check() in a new window:", limiter.check("user:123"))

    @limiter.limit(lambda user_id: f"report:{user_id}")
    def build_report(user_id: int) -> str:
        return f"report for {user_id}"

    try:
        for _ in range(4):
            print(build_report(7))
    except RateLimitExceeded as exc:
        print(f"decorator refused: {exc}")

    print("stats():", limiter.stats())


if __name__ == "__main__":
    main()
