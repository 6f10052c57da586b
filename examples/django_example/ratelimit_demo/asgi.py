"""ASGI entry point (``uvicorn ratelimit_demo.asgi:application``).

Under ASGI the middleware decides with ``await limiter.adecide(...)``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ratelimit_demo.settings")

application = get_asgi_application()
