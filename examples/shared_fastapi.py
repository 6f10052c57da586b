"""One limit shared by every worker: the FastAPI middleware on a Redis or
PostgreSQL store.

Run several workers against one Redis (or one PostgreSQL database) and the
limit holds across all of them:

    uvicorn shared_fastapi:app --app-dir examples --workers 4

Set STORAGE_URL to point at your server: redis://127.0.0.1:6379/0 (the
default) or, say, postgresql://app:secret@127.0.0.1:5432/app.
STORAGE_URL=memory shows what a shared store buys: every worker then counts
on its own, so four workers admit up to four times the limit. Each response names the
worker that served it (X-Worker-Pid). RATE_LIMIT (default 5/10s),
RATE_LIMIT_PREFIX and RATE_LIMIT_TIMEOUT (seconds) tune the limiter.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from rust_py_rate_limit import RateLimiter
from rust_py_rate_limit.fastapi import RateLimitMiddleware

STORAGE_URL = os.environ.get("STORAGE_URL", "redis://127.0.0.1:6379/0")
RATE = os.environ.get("RATE_LIMIT", "5/10s")

app = FastAPI(title="rust-py-rate-limit, one limit for every worker")
if STORAGE_URL == "memory":
    limiter = RateLimiter(rate=RATE)  # one limit per worker process
else:
    limiter = RateLimiter(
        rate=RATE,
        storage=STORAGE_URL,
        key_prefix=os.environ.get("RATE_LIMIT_PREFIX", "demo"),
        # a slow store never stalls a request for long
        timeout=float(os.environ.get("RATE_LIMIT_TIMEOUT", "0.05")),
        on_error="allow",  # fail open: an outage admits traffic (counted in stats)
    )
app.add_middleware(RateLimitMiddleware, limiter=limiter, exempt=["/stats"])


@app.middleware("http")  # added last, so it is outermost: 429s carry it too
async def worker_pid(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


@app.get("/api/users")
async def list_users() -> dict[str, object]:
    return {"users": ["ana", "bo"], "pid": os.getpid()}


@app.get("/stats")
async def stats() -> dict[str, object]:
    return {"pid": os.getpid(), "limiter": limiter.stats()}
