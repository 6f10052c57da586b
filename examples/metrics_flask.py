"""A Flask app with rate-limit metrics at /metrics, for gunicorn's workers.

Run with several workers and prometheus-client's multiprocess mode::

    export PROMETHEUS_MULTIPROC_DIR=$(mktemp -d)
    gunicorn --chdir examples --workers 3 \\
        --config examples/gunicorn_metrics.py metrics_flask:app

Each worker keeps its own limiter (the memory store; give ``storage=`` a
Redis URL to share one limit) and mirrors its counters into the directory;
/metrics, answered by any worker, reports the sums over all of them.
"""

from __future__ import annotations

import os

from flask import Flask
from prometheus_client import make_wsgi_app
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from rust_py_rate_limit.flask import FlaskRateLimiter
from rust_py_rate_limit.prometheus import register, scrape_registry

app = Flask(__name__)
limiter = FlaskRateLimiter(app, limit=5, window_seconds=60, name="hello")
# Mirrored every METRICS_INTERVAL seconds (and at exit) in multiprocess mode.
register(interval=float(os.environ.get("METRICS_INTERVAL", "1.0")))
# prometheus-client's own WSGI app answers /metrics, beside Flask's.
app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, {"/metrics": make_wsgi_app(registry=scrape_registry())}
)


@app.get("/hello")
@limiter.limit()
def hello() -> dict[str, object]:
    return {"message": "hello", "pid": os.getpid()}
