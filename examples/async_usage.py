"""Awaitable checks, waiting for admission, and the async decorator."""

from __future__ import annotations

import asyncio

from rust_py_rate_limit import RateLimiter, RateLimitExceeded

limiter = RateLimiter(rate="5/second", algorithm="token_bucket")


@limiter.limit(lambda user: f"report:{user}")
async def build_report(user: str) -> str:
    return f"report for {user}"


async def main() -> None:
    # The awaitable twins decide immediately: no event-loop round trip.
    print("acheck:", await limiter.acheck("user:1"))
    print("aallow x5:", [await limiter.aallow("user:2") for _ in range(5)])
    print("aallow 6th:", await limiter.aallow("user:2"))

    # acquire() sleeps exactly until the bucket refills (0.2 s at 5/s).
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.acquire("user:2")
    print(f"acquire waited {loop.time() - start:.2f}s")
    print("acquire with timeout 0:", await limiter.acquire("user:2", timeout=0))

    results = []
    for _ in range(6):
        try:
            results.append(await build_report("ana"))
        except RateLimitExceeded as exc:
            results.append(f"refused, retry after {exc.retry_after}s")
    print("\n".join(results))


if __name__ == "__main__":
    asyncio.run(main())
