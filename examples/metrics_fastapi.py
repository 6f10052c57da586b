"""A FastAPI app whose rate-limit metrics Prometheus scrapes at /metrics.

Run: ``uvicorn --app-dir examples metrics_fastapi:app``, then
``curl localhost:8000/hello`` a few times and ``curl localhost:8000/metrics``.
With several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
first: every worker then reports into it and /metrics sums them.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from rust_py_rate_limit.fastapi import RateLimitMiddleware
from rust_py_rate_limit.prometheus import register, scrape_registry

app = FastAPI()
app.add_middleware(
    RateLimitMiddleware,
    limit=5,
    window_seconds=60,
    name="api",  # the `limiter` label of its metrics
    exempt=["/metrics"],  # Prometheus is not rate-limited
)
register()  # once per process: every live limiter, read at each scrape
app.mount("/metrics", make_asgi_app(registry=scrape_registry()))


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}
