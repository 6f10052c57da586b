"""One limit shared by every worker: the FastAPI middleware on a Redis store.

Run several workers against one Redis and the limit holds across all of them:

    uvicorn redis_fastapi:app --app-dir examples --workers 4

Set REDIS_URL to point at your server (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from rust_py_rate_limit import RateLimiter
from rust_py_rate_limit.fastapi import RateLimitMiddleware

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = FastAPI(title="rust-py-rate-limit on Redis")
limiter = RateLimiter(
    rate="5/10s",
    storage=REDIS_URL,
    key_prefix=os.environ.get("RATE_LIMIT_PREFIX", "demo"),
    timeout=0.05,  # a slow Redis never stalls a request for long
    on_error="allow",  # fail open: an outage admits traffic (counted in stats)
)
app.add_middleware(RateLimitMiddleware, limiter=limiter, exempt=["/stats"])


@app.get("/api/users")
async def list_users() -> dict[str, object]:
    return {"users": ["ana", "bo"], "pid": os.getpid()}


@app.get("/stats")
async def stats() -> dict[str, object]:
    return {"pid": os.getpid(), "limiter": limiter.stats()}
