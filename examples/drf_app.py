"""Django REST framework throttles from rust-py-rate-limit, in one file.

Run it: ``python examples/drf_app.py``. It configures Django, serves a DRF
view through Django's test client, and prints what each request got. In a
project, the two settings below go in ``settings.py``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

settings.configure(
    SECRET_KEY="example-only",
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=[],
    DATABASES={},
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    REST_FRAMEWORK={
        "DEFAULT_THROTTLE_CLASSES": [
            "rust_py_rate_limit.drf.AnonRateThrottle",
            "rust_py_rate_limit.drf.UserRateThrottle",
        ],
        "DEFAULT_THROTTLE_RATES": {
            "anon": "3/minute",
            "user": "1000/day",
            "uploads": "1/hour",  # for views with throttle_scope = "uploads"
        },
        # This example has no django.contrib.auth: every request is anonymous.
        "UNAUTHENTICATED_USER": None,
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
    },
    # Optional: one limit for every worker and host, and the proxy in front.
    # RUST_PY_RATE_LIMIT={
    #     "STORAGE": "redis://localhost:6379/0",
    #     "TRUSTED_PROXIES": ["10.0.0.1"],
    # },
)

import django  # noqa: E402

django.setup()

from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from rust_py_rate_limit.drf import ScopedRateThrottle  # noqa: E402


class Users(APIView):  # type: ignore[misc]
    def get(self, request: Any) -> Response:
        return Response({"users": []})


class Upload(APIView):  # type: ignore[misc]
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "uploads"

    def get(self, request: Any) -> Response:
        return Response({"uploaded": True})


urlpatterns = [path("api/users", Users.as_view()), path("api/upload", Upload.as_view())]

if __name__ == "__main__":
    client = Client(REMOTE_ADDR="203.0.113.7")
    for i in range(1, 5):
        response = client.get("/api/users")
        print(f"GET /api/users #{i}: {response.status_code}", end="")
        if response.status_code == 429:
            print(f" Retry-After: {response['Retry-After']}", end="")
        print()
    for i in range(1, 3):
        print(f"GET /api/upload #{i}: {client.get('/api/upload').status_code}")
