"""The adapter options of 0.3.1 (README "Upgrading from 0.3.1"): ``detail``,
``max_keys`` and ``cleanup_interval`` everywhere, and Flask's route keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django_settings  # noqa: F401  (configures Django's settings)
import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory, override_settings
from fastapi import Depends, FastAPI
from flask import Flask, request
from starlette.testclient import TestClient

from rust_py_rate_limit import ManualClock, RateLimiter
from rust_py_rate_limit.django import RateLimitMiddleware as DjangoMiddleware
from rust_py_rate_limit.django import ratelimit
from rust_py_rate_limit.fastapi import RateLimit, RateLimitMiddleware
from rust_py_rate_limit.flask import FlaskRateLimiter


@pytest.fixture
def stop_janitors() -> Iterator[list[RateLimiter]]:
    limiters: list[RateLimiter] = []
    yield limiters
    for limiter in limiters:
        limiter.stop_cleanup()


def fastapi_app(**options: Any) -> tuple[FastAPI, RateLimitMiddleware]:
    app = FastAPI()

    @app.get("/")
    def home() -> dict[str, bool]:
        return {"ok": True}

    middleware = RateLimitMiddleware(app, **options)
    return app, middleware


def test_fastapi_middleware_takes_031_options(stop_janitors: list[RateLimiter]) -> None:
    # 0.3.1's README: limit, window_seconds, key_func, max_keys, cleanup_interval.
    _, middleware = fastapi_app(
        limit=1,
        window_seconds=60,
        key_func=lambda request: request.client.host,
        max_keys=100_000,
        cleanup_interval=60,
        detail="Slow down",
    )
    stop_janitors.append(middleware.limiter)
    assert middleware.limiter.max_keys == 100_000
    assert middleware.limiter.cleanup_interval == 60
    assert middleware.limiter.cleanup_running
    client = TestClient(middleware)
    assert client.get("/").status_code == 200
    blocked = client.get("/")
    assert (blocked.status_code, blocked.json()) == (429, {"detail": "Slow down"})


def test_fastapi_dependency_takes_the_same_options(
    stop_janitors: list[RateLimiter],
) -> None:
    limit = RateLimit("1/minute", detail="Slow down", max_keys=10, cleanup_interval=5)
    stop_janitors.append(limit.limiter)
    assert (limit.limiter.max_keys, limit.limiter.cleanup_interval) == (10, 5)
    app = FastAPI()

    @app.get("/", dependencies=[Depends(limit)])
    def home() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    client.get("/")
    blocked = client.get("/")
    assert (blocked.status_code, blocked.json()) == (429, {"detail": "Slow down"})


def test_031_options_cannot_be_mixed_with_a_limiter() -> None:
    with pytest.raises(TypeError, match="give either limiter or max_keys"):
        RateLimitMiddleware(FastAPI(), limiter=RateLimiter(1, 1), max_keys=5)
    with pytest.raises(TypeError, match="give either limiter or cleanup_interval"):
        FlaskRateLimiter(limiter=RateLimiter(1, 1), cleanup_interval=5)


def ok(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def test_django_settings_take_031_keys(stop_janitors: list[RateLimiter]) -> None:
    config = {
        "LIMIT": 1,
        "WINDOW_SECONDS": 60,
        "KEY": "ip",
        "DETAIL": "Slow down",
        "MAX_KEYS": 100_000,
        "CLEANUP_INTERVAL": 60,
    }
    with override_settings(RUST_PY_RATE_LIMIT=config):
        middleware = DjangoMiddleware(ok)
    stop_janitors.append(middleware.limiter)
    assert middleware.limiter.max_keys == 100_000
    assert middleware.limiter.cleanup_interval == 60
    request = RequestFactory().get("/")
    assert middleware(request).status_code == 200
    blocked = middleware(request)
    assert blocked.status_code == 429
    assert blocked.content == b'{"detail": "Slow down"}'


def test_django_decorator_takes_the_same_options(
    stop_janitors: list[RateLimiter],
) -> None:
    @ratelimit("1/minute", detail="Slow down", max_keys=5, cleanup_interval=1)
    def view(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})

    factory = RequestFactory()
    view(factory.get("/"))
    blocked = view(factory.get("/"))
    assert blocked.content == b'{"detail": "Slow down"}'


def test_flask_extension_takes_031_options(stop_janitors: list[RateLimiter]) -> None:
    app = Flask(__name__)
    limiter = FlaskRateLimiter(
        app,
        limit=1,
        window_seconds=60,
        detail="Slow down",
        max_keys=100_000,
        cleanup_interval=60,
    )
    assert limiter.limiter is not None
    stop_janitors.append(limiter.limiter)
    assert limiter.limiter.max_keys == 100_000
    assert limiter.limiter.cleanup_interval == 60

    @app.get("/api/users")
    @limiter.limit()
    def list_users() -> dict[str, list[str]]:
        return {"users": []}

    @app.get("/login")
    @limiter.limit("1/minute")
    def login() -> str:
        return "ok"

    client = app.test_client()
    client.get("/api/users")
    blocked = client.get("/api/users")
    assert (blocked.status_code, blocked.get_json()) == (429, {"detail": "Slow down"})
    # A route's own limiter is built with the extension's options too.
    client.get("/login")
    assert client.get("/login").get_json() == {"detail": "Slow down"}


def test_flask_route_key_as_in_031() -> None:
    app = Flask(__name__)
    clock = ManualClock()
    limiter = FlaskRateLimiter(app, limit=2, window_seconds=60, clock=clock)

    @app.post("/login")
    @limiter.limit(key="login")
    def login() -> str:
        return "ok"

    @app.post("/sign-in")
    @limiter.limit(key="login")
    def sign_in() -> str:
        return "ok"

    @app.get("/user/<name>")
    @limiter.limit(key=lambda: f"user:{request.view_args['name']}")  # type: ignore[index]
    def user(name: str) -> str:
        return name

    client = app.test_client()

    def post(path: str, address: str) -> int:
        return int(client.post(path, environ_base={"REMOTE_ADDR": address}).status_code)

    # One fixed key: every client and both routes share its allowance.
    assert [post("/login", "192.0.2.1"), post("/sign-in", "192.0.2.2")] == [200, 200]
    assert post("/login", "192.0.2.3") == 429
    assert limiter.limiter is not None
    assert limiter.limiter.remaining("login") == 0
    # A callable returns the whole key.
    assert [client.get("/user/ana").status_code for _ in range(3)] == [200, 200, 429]
    assert limiter.limiter.remaining("user:ana") == 0


def test_flask_positional_string_that_is_no_rate_names_key() -> None:
    limiter = FlaskRateLimiter(limit=2, window_seconds=60)
    with pytest.raises(
        ValueError, match=r"'login' is not a rate such as '100/minute'"
    ) as info:
        limiter.limit("login")
    assert "as 0.3.1's limit('login') did, pass key='login'" in str(info.value)
    # A rate string is still the route's own rate (Flask-Limiter's convention).
    assert limiter.limit("5/minute") is not None
    with pytest.raises(TypeError, match="key must be a str or a callable"):
        limiter.limit(key=5)  # type: ignore[arg-type]
