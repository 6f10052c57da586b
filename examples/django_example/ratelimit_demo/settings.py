"""Settings of the example project: the middleware and ``RUST_PY_RATE_LIMIT``.

For development only: the secret key is public and DEBUG is on.
"""

from __future__ import annotations

from typing import Any

SECRET_KEY = "django-insecure-example-only-do-not-deploy"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

ROOT_URLCONF = "ratelimit_demo.urls"
WSGI_APPLICATION = "ratelimit_demo.wsgi.application"
ASGI_APPLICATION = "ratelimit_demo.asgi.application"

# No models, so no apps and no database are needed.
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "rust_py_rate_limit.django.RateLimitMiddleware",
]

# Every client address gets 100 requests a minute; /health is not counted.
# Keys come from the network, so memory is bounded and expired keys swept.
RUST_PY_RATE_LIMIT = {
    "LIMIT": 100,
    "WINDOW_SECONDS": 60,
    "KEY": "ip",
    "EXEMPT": ["/health"],
    "MAX_KEYS": 100_000,
    "CLEANUP_INTERVAL": 60,
}
