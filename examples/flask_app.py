"""A small Flask app limited to 5 requests a minute per client on /hello.

Run it with Flask's development server (``PORT`` picks the port, 5000 by
default)::

    python examples/flask_app.py
    curl -i http://127.0.0.1:5000/hello

or under gunicorn, where each worker process keeps its own counters (so with
2 workers a client may get up to 2 x 5 requests a minute through)::

    gunicorn --chdir examples --workers 2 --bind 127.0.0.1:8000 flask_app:app

``/stats`` (not limited) shows the answering worker's pid and its limiter's
``stats()``; every response names its worker in ``X-Worker-Pid``.
"""

from __future__ import annotations

import os

from flask import Flask, Response

from rust_py_rate_limit import RateLimiter
from rust_py_rate_limit.flask import FlaskRateLimiter

LIMIT = 5
WINDOW_SECONDS = 60

app = Flask(__name__)
rate_limiter = RateLimiter(limit=LIMIT, window_seconds=WINDOW_SECONDS)
limiter = FlaskRateLimiter(app, limiter=rate_limiter)


@app.get("/hello")
@limiter.limit()
def hello() -> dict[str, object]:
    """A limited route."""
    return {"message": "hello", "pid": os.getpid()}


@app.get("/stats")
def stats() -> dict[str, object]:
    """This worker's pid and its limiter's counters."""
    return {"pid": os.getpid(), "stats": rate_limiter.stats()}


@app.after_request
def add_worker_pid(response: Response) -> Response:
    """Names the worker process that answered, 429s included."""
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
