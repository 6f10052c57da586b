"""The decorator on plain and coroutine functions."""

from __future__ import annotations

import asyncio

from rust_py_rate_limit import RateLimiter, RateLimitExceeded

limiter = RateLimiter(limit=5, window_seconds=60)


@limiter.limit("login")
def login() -> str:
    return "ok"


@limiter.limit(lambda user_id: f"user:{user_id}")
async def fetch(user_id: int) -> dict[str, int]:
    return {"user": user_id}


async def main() -> None:
    print([login() for _ in range(5)])
    try:
        login()
    except RateLimitExceeded as exc:
        print(f"blocked: key={exc.key} limit={exc.limit} retry_after={exc.retry_after}")
    print(await fetch(1))


if __name__ == "__main__":
    asyncio.run(main())
