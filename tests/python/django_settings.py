"""Django settings for the tests, configured once by whichever test module
imports this first (unless something configured them already). Each test sets
what it needs, its URLs included, with ``override_settings``, so the tests run
alone or after others."""

from __future__ import annotations

from typing import Any

from django.conf import settings

#: No URLs unless a test's ``override_settings(ROOT_URLCONF=...)`` names some.
urlpatterns: list[Any] = []

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="tests-only",
        INSTALLED_APPS=[],
        DATABASES={},
        MIDDLEWARE=[],
        ROOT_URLCONF=__name__,
        LOGGING_CONFIG=None,
        USE_TZ=True,
    )
