"""FastAPI / Starlette: the pure ASGI middleware and the per-route dependency."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from rust_py_rate_limit import Decision, ManualClock, RateLimiter
from rust_py_rate_limit.fastapi import RateLimit, RateLimitMiddleware
from rust_py_rate_limit.starlette import RateLimitMiddleware as StarletteMiddleware


def seed_app() -> FastAPI:
    app = FastAPI()
    limiter = RateLimiter(limit=100, window_seconds=60)

    @app.get("/api/users")
    def list_users(request: Request) -> dict[str, list[str]]:
        key = request.client.host  # type: ignore[union-attr]
        if not limiter.allow(key):
            raise HTTPException(status_code=429, detail="Too many requests")
        return {"users": []}

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    return app


def test_seed_middleware_snippet() -> None:
    app = seed_app()
    app.add_middleware(
        RateLimitMiddleware,
        limit=100,
        window_seconds=60,
        key_func=lambda request: request.client.host,  # type: ignore[union-attr]
    )
    client = TestClient(app)
    responses = [client.get("/health") for _ in range(101)]
    assert [r.status_code for r in responses] == [200] * 100 + [429]
    assert responses[-1].json() == {"detail": "Too many requests"}
    for i, r in enumerate(responses[:100]):
        assert r.headers["X-RateLimit-Limit"] == "100"
        assert r.headers["X-RateLimit-Remaining"] == str(99 - i)
        # Real time passes while 101 requests are served: 60, or 59 on a
        # slow machine.
        assert r.headers["X-RateLimit-Reset"] in ("59", "60")
        assert "Retry-After" not in r.headers
    blocked = responses[-1]
    assert blocked.headers["Retry-After"] in ("59", "60")
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.headers["content-type"] == "application/json"


def make_app(**options: Any) -> tuple[TestClient, ManualClock]:
    clock = ManualClock()
    options.setdefault("limiter", RateLimiter(2, 60, clock=clock))
    app = seed_app()
    app.add_middleware(RateLimitMiddleware, **options)
    return TestClient(app), clock


def test_limit_resets_with_the_window() -> None:
    client, clock = make_app()
    assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(60)
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        ("legacy", ["X-RateLimit-Limit"], ["RateLimit", "RateLimit-Policy"]),
        ("ietf", ["RateLimit", "RateLimit-Policy"], ["X-RateLimit-Limit"]),
        ("both", ["RateLimit", "X-RateLimit-Remaining"], []),
        (None, [], ["RateLimit", "X-RateLimit-Limit"]),
    ],
)
def test_header_modes(mode: str | None, present: list[str], absent: list[str]) -> None:
    client, _ = make_app(headers=mode)
    ok = client.get("/health")
    for name in present:
        assert name in ok.headers
    for name in absent:
        assert name not in ok.headers
    if mode in ("ietf", "both"):
        assert ok.headers["RateLimit-Policy"] == '"default";q=2;w=60'
        assert ok.headers["RateLimit"] == '"default";r=1;t=60'
    client.get("/health")
    blocked = client.get("/health")
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == "60", "Retry-After in every mode"


def test_ietf_policy_lists_every_rule_of_a_compound_limit() -> None:
    limiter = RateLimiter(rate="2/second;100/hour")
    client, _ = make_app(limiter=limiter, headers="ietf")
    r = client.get("/health")
    assert r.headers["RateLimit-Policy"] == '"p0";q=2;w=1, "p1";q=100;w=3600'
    assert r.headers["RateLimit"] == '"p0";r=1;t=1'


def test_exempt_paths_cannot_be_dodged_or_abused() -> None:
    client, _ = make_app(exempt=["/health"])
    for path in ["/health", "/health/", "//health", "/health//", "/health%2F"]:
        response = client.get("http://testserver" + path)
        assert "X-RateLimit-Limit" not in response.headers, path
    # A neighbouring path is not exempt.
    assert "X-RateLimit-Limit" in client.get("/healthz").headers


def test_exempt_predicate() -> None:
    client, _ = make_app(exempt=lambda request: request.url.path.startswith("/items"))
    assert all(client.get("/items/1").status_code == 200 for _ in range(5))
    assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 429]


def test_head_counts_as_get_once() -> None:
    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    # Starlette routes serve HEAD through the GET endpoint.
    app = Starlette(routes=[Route("/", home)])
    limiter = RateLimiter(2, 60)
    app.add_middleware(StarletteMiddleware, limiter=limiter)
    client = TestClient(app)
    head = client.head("/")
    assert head.status_code == 200
    assert head.headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/").headers["X-RateLimit-Remaining"] == "0"
    assert limiter.stats()["total_checks"] == 2


def test_cors_preflight_is_exempt_by_default_and_switchable() -> None:
    preflight = {"Origin": "https://a.example", "Access-Control-Request-Method": "GET"}
    client, _ = make_app()
    for _ in range(5):
        assert (
            "X-RateLimit-Limit"
            not in client.options("/health", headers=preflight).headers
        )
    client, _ = make_app(exempt_options=False)
    assert "X-RateLimit-Limit" in client.options("/health", headers=preflight).headers


def test_custom_blocked_response() -> None:
    seen: list[Decision] = []

    def on_blocked(request: Request, decision: Decision) -> PlainTextResponse:
        seen.append(decision)
        return PlainTextResponse(f"slow down {request.url.path}", status_code=503)

    client, _ = make_app(on_blocked=on_blocked)
    client.get("/health")
    client.get("/health")
    r = client.get("/health")
    assert (r.status_code, r.text) == (503, "slow down /health")
    assert r.headers["Retry-After"] == "60"
    assert seen[0].allowed is False


async def async_key(request: Request) -> str:
    return request.headers.get("x-api-key", "anonymous")


def test_async_key_func() -> None:
    client, _ = make_app(key_func=async_key)
    assert client.get("/health", headers={"x-api-key": "a"}).status_code == 200
    assert client.get("/health", headers={"x-api-key": "a"}).status_code == 200
    assert client.get("/health", headers={"x-api-key": "a"}).status_code == 429
    assert client.get("/health", headers={"x-api-key": "b"}).status_code == 200


def test_trusted_proxies() -> None:
    spoof = {"X-Forwarded-For": "1.2.3.4"}
    # Without trusted proxies a spoofed header is ignored: all share the peer.
    client, _ = make_app()
    client.get("/health", headers=spoof)
    client.get("/health", headers={"X-Forwarded-For": "5.6.7.8"})
    assert client.get("/health", headers=spoof).status_code == 429

    # Behind a trusted proxy, the right-most untrusted entry is the client.
    limiter = RateLimiter(1, 60)
    app = seed_app()
    app.add_middleware(
        RateLimitMiddleware, limiter=limiter, trusted_proxies=["10.0.0.0/8"]
    )
    behind = TestClient(app, client=("10.1.2.3", 5000))
    chain = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.7"}
    assert behind.get("/health", headers=chain).status_code == 200
    assert limiter.remaining("203.0.113.9") == 0
    # The attacker-controlled left part changes nothing.
    chain2 = {"X-Forwarded-For": "7.7.7.7, 203.0.113.9, 10.0.0.7"}
    assert behind.get("/health", headers=chain2).status_code == 429
    assert (
        behind.get("/health", headers={"X-Forwarded-For": "198.51.100.1"}).status_code
        == 200
    )


def test_websocket_and_lifespan_pass_through() -> None:
    events: list[str] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(
        routes=[Route("/", home), WebSocketRoute("/ws", endpoint)], lifespan=lifespan
    )
    limiter = RateLimiter(1, 60)
    app.add_middleware(StarletteMiddleware, limiter=limiter)
    with TestClient(app) as client:
        client.get("/")
        assert client.get("/").status_code == 429
        for _ in range(3):
            with client.websocket_connect("/ws") as ws:
                assert ws.receive_text() == "hi"
    assert events == ["startup", "shutdown"]
    assert limiter.stats()["total_checks"] == 2


def test_bad_middleware_arguments() -> None:
    app = FastAPI()
    with pytest.raises(ValueError, match="limit"):
        RateLimitMiddleware(app, limit=0, window_seconds=60)
    with pytest.raises(TypeError, match="limiter"):
        RateLimitMiddleware(app, limiter=RateLimiter(1, 1), limit=5, window_seconds=1)
    with pytest.raises(ValueError, match="headers"):
        RateLimitMiddleware(app, limit=5, window_seconds=1, headers="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exempt"):
        RateLimitMiddleware(app, limit=5, window_seconds=1, exempt=["health"])
    with pytest.raises(ValueError, match="trusted_proxies"):
        RateLimitMiddleware(app, limit=5, window_seconds=1, trusted_proxies=["nope"])
    with pytest.raises(ValueError, match="cost"):
        RateLimitMiddleware(app, limit=5, window_seconds=1, cost=6)


# -- the per-route dependency -------------------------------------------------


def dependency_app(**options: Any) -> tuple[FastAPI, ManualClock]:
    clock = ManualClock()
    app = FastAPI()
    per_item = RateLimit(limiter=RateLimiter(2, 60, clock=clock), **options)

    @app.get("/items/{item_id}", dependencies=[Depends(per_item)])
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/other", dependencies=[Depends(RateLimit("1/minute"))])
    def other() -> dict[str, bool]:
        return {"ok": True}

    return app, clock


def test_route_dependency_keys_on_the_template() -> None:
    app, clock = dependency_app()
    client = TestClient(app)
    first = client.get("/items/1")
    assert first.status_code == 200
    assert first.json() == {"item": 1}
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/items/2").status_code == 200
    blocked = client.get("/items/3")
    assert blocked.status_code == 429
    assert blocked.json() == {"detail": "Too many requests"}
    assert blocked.headers["Retry-After"] == "60"
    # Another route has its own limit.
    assert client.get("/other").status_code == 200
    assert client.get("/other").status_code == 429
    clock.advance(60)
    assert client.get("/items/4").status_code == 200


def test_route_dependency_header_mode_and_bad_args() -> None:
    app, _ = dependency_app(headers="ietf")
    r = TestClient(app).get("/items/1")
    assert r.headers["RateLimit"] == '"default";r=1;t=60'
    assert "X-RateLimit-Limit" not in r.headers
    with pytest.raises(ValueError, match="rate"):
        RateLimit("often")
    with pytest.raises(TypeError, match="key_func"):
        RateLimit("1/s", key_func=3)  # type: ignore[arg-type]


def test_user_key_keys_authenticated_users_apart() -> None:
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        BaseUser,
        SimpleUser,
    )
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection

    class HeaderAuth(AuthenticationBackend):
        async def authenticate(
            self, conn: HTTPConnection
        ) -> tuple[AuthCredentials, BaseUser] | None:
            name = conn.headers.get("x-user")
            return (
                (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None
            )

    app = seed_app()
    limiter = RateLimiter(1, 60)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, key_func="user")
    app.add_middleware(AuthenticationMiddleware, backend=HeaderAuth())
    client = TestClient(app)
    assert client.get("/health", headers={"x-user": "ana"}).status_code == 200
    assert client.get("/health", headers={"x-user": "ana"}).status_code == 429
    assert client.get("/health", headers={"x-user": "bo"}).status_code == 200
    assert client.get("/health").status_code == 200, "anonymous: keyed on the address"
    assert limiter.remaining("user:ana") == 0
    assert limiter.remaining("testclient") == 0
