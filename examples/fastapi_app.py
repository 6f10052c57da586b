"""A FastAPI app limited by the middleware, a per-route dependency and a
manual check. Run it with ``uvicorn fastapi_app:app --app-dir examples``.

``make demo`` starts it under uvicorn and sends it a burst of requests.
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI, HTTPException, Request

from rust_py_rate_limit import RateLimiter
from rust_py_rate_limit.fastapi import RateLimit, RateLimitMiddleware

app = FastAPI(title="rust-py-rate-limit demo")

# Every request: 5 per 10 seconds per client, except the stats page and the
# routes below that have limits of their own.
limiter = RateLimiter(limit=5, window_seconds=10)
app.add_middleware(
    RateLimitMiddleware,
    limiter=limiter,
    exempt=["/stats", "/api/items", "/api/search"],
)

# A manual check with its own limiter, as in the README.
search_limiter = RateLimiter(rate="3/minute")


@app.get("/api/users")
async def list_users() -> dict[str, list[str]]:
    return {"users": ["ana", "bo"]}


@app.get("/api/items/{item_id}", dependencies=[Depends(RateLimit("2/minute"))])
async def get_item(item_id: int) -> dict[str, int]:
    return {"item": item_id}


@app.get("/api/search")
async def search(request: Request, q: str = "") -> dict[str, object]:
    key = request.client.host if request.client else "unknown"
    result = await search_limiter.acheck(f"search:{key}")
    if not result["allowed"]:
        raise HTTPException(status_code=429, detail="Too many searches")
    return {"q": q, "results": []}


@app.get("/stats")
async def stats() -> dict[str, object]:
    return {"pid": os.getpid(), "limiter": limiter.stats()}
