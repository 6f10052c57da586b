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


def test_a_route_limit_under_the_middleware_sends_one_set_of_headers() -> None:
    """The route's own limit is the one its responses describe (as on
    Django): the middleware adds no second set of headers beside it."""
    app, _ = dependency_app()
    app.add_middleware(RateLimitMiddleware, limit=100, window_seconds=60)
    client = TestClient(app)
    for expected in ("200", "200", "429"):
        response = client.get("/items/1")
        assert str(response.status_code) == expected
        assert response.headers.get_list("x-ratelimit-limit") == ["2"]
        assert len(response.headers.get_list("x-ratelimit-remaining")) == 1
    assert response.headers.get_list("retry-after") == ["60"]
    plain = FastAPI()
    plain.add_middleware(RateLimitMiddleware, limit=100, window_seconds=60)

    @plain.get("/")
    def root() -> dict[str, bool]:
        return {"ok": True}

    assert TestClient(plain).get("/").headers.get_list("x-ratelimit-limit") == ["100"]


@pytest.mark.parametrize(
    "inner",
    [
        [(b"X-RateLimit-Limit", b"2")],  # any case (Django's ASGI handler keeps it)
        [(b"ratelimit-policy", b'"default";q=2;w=60')],  # the other mode
    ],
)
def test_the_middleware_leaves_a_described_limit_alone(inner: Any) -> None:
    """Headers given as any iterable are read once and kept, with ours added
    only when no rate-limit header is there already."""

    def app_with(headers: list[tuple[bytes, bytes]]) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": (h for h in headers),  # a generator
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})

        return RateLimitMiddleware(app, limit=100, window_seconds=60)

    own = [(b"content-type", b"text/plain"), *inner]
    described = TestClient(app_with(own)).get("/")
    assert described.headers["content-type"] == "text/plain"
    assert "x-ratelimit-remaining" not in described.headers
    plain = TestClient(app_with([(b"content-type", b"text/plain")])).get("/")
    assert plain.headers["content-type"] == "text/plain"
    assert plain.headers.get_list("x-ratelimit-limit") == ["100"]


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


# -- one forwarding header, chosen by configuration ----------------------------

CLIENT = "203.0.113.9"


def proxied(**options: Any) -> tuple[TestClient, RateLimiter]:
    """The seed app behind a trusted proxy at 10.0.0.1, limit 3."""
    limiter = RateLimiter(3, 60, clock=ManualClock())
    app = seed_app()
    app.add_middleware(
        RateLimitMiddleware, limiter=limiter, trusted_proxies=["10.0.0.1"], **options
    )
    return TestClient(app, client=("10.0.0.1", 5000)), limiter


def test_a_forged_forwarded_header_does_not_beat_x_forwarded_for() -> None:
    # nginx appends X-Forwarded-For and passes the client's Forwarded through.
    client, limiter = proxied()
    codes = [
        client.get(
            "/health",
            headers={"X-Forwarded-For": CLIENT, "Forwarded": f"for=198.51.100.{i}"},
        ).status_code
        for i in range(20)
    ]
    assert codes == [200] * 3 + [429] * 17
    assert limiter.remaining(CLIENT) == 0


def test_forwarded_header_forwarded_ignores_x_forwarded_for() -> None:
    client, limiter = proxied(forwarded_header="forwarded")
    codes = [
        client.get(
            "/health",
            headers={
                "Forwarded": f'for="{CLIENT}";proto=https',
                "X-Forwarded-For": f"198.51.100.{i}",
            },
        ).status_code
        for i in range(20)
    ]
    assert codes == [200] * 3 + [429] * 17
    assert limiter.remaining(CLIENT) == 0


def test_forwarded_header_x_real_ip_ignores_the_others() -> None:
    client, limiter = proxied(forwarded_header="X-Real-IP")
    codes = [
        client.get(
            "/health",
            headers={
                "X-Real-IP": CLIENT,
                "X-Forwarded-For": f"198.51.100.{i}",
                "Forwarded": f"for=192.0.2.{i}",
            },
        ).status_code
        for i in range(20)
    ]
    assert codes == [200] * 3 + [429] * 17
    assert limiter.remaining(CLIENT) == 0
    # Several X-Real-IP (the client's own, then the proxy's): the last counts.
    codes = [
        client.get(
            "/health",
            headers=[("X-Real-IP", f"198.51.100.{i}"), ("X-Real-IP", "192.0.2.77")],
        ).status_code
        for i in range(5)
    ]
    assert codes == [200] * 3 + [429] * 2
    assert limiter.remaining("192.0.2.77") == 0


def test_route_dependency_believes_one_forwarding_header() -> None:
    limiter = RateLimiter(3, 60, clock=ManualClock())
    app = FastAPI()

    @app.get(
        "/r",
        dependencies=[
            Depends(RateLimit(limiter=limiter, trusted_proxies=["10.0.0.1"]))
        ],
    )
    def route() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app, client=("10.0.0.1", 5000))
    codes = [
        client.get(
            "/r",
            headers={"X-Forwarded-For": CLIENT, "Forwarded": f"for=198.51.100.{i}"},
        ).status_code
        for i in range(20)
    ]
    assert codes == [200] * 3 + [429] * 17


@pytest.mark.parametrize("make", ["middleware", "dependency"])
def test_bad_forwarded_header(make: str) -> None:
    def build(value: Any) -> object:
        if make == "middleware":
            return RateLimitMiddleware(
                FastAPI(), limit=5, window_seconds=1, forwarded_header=value
            )
        return RateLimit("5/minute", forwarded_header=value)

    with pytest.raises(
        ValueError,
        match="forwarded_header must be one of "
        "'x-forwarded-for', 'forwarded', 'x-real-ip'",
    ):
        build("x-client-ip")
    with pytest.raises(TypeError, match="forwarded_header must be a str"):
        build(1)


# -- CORS preflights never run an endpoint unlimited -------------------------------

PREFLIGHT = {"Origin": "https://a.example", "Access-Control-Request-Method": "GET"}


def cors_app(**options: Any) -> tuple[TestClient, RateLimiter, list[str]]:
    """An app with a route that answers OPTIONS itself, and one that does not."""
    calls: list[str] = []
    limiter = RateLimiter(3, 60, clock=ManualClock())
    app = FastAPI()

    @app.api_route("/cors", methods=["GET", "OPTIONS"])
    def cors(request: Request) -> dict[str, bool]:
        calls.append(request.method)
        return {"ok": True}

    @app.get("/plain")
    def plain() -> dict[str, bool]:
        calls.append("plain")
        return {"ok": True}

    app.add_middleware(RateLimitMiddleware, limiter=limiter, **options)
    return TestClient(app), limiter, calls


def test_preflight_to_an_endpoint_that_takes_options_is_counted() -> None:
    client, _, calls = cors_app()
    codes = [client.options("/cors", headers=PREFLIGHT).status_code for _ in range(20)]
    assert codes == [200] * 3 + [429] * 17
    assert calls == ["OPTIONS"] * 3


def test_preflight_the_router_answers_without_the_endpoint_stays_exempt() -> None:
    client, limiter, calls = cors_app()
    responses = [client.options("/plain", headers=PREFLIGHT) for _ in range(20)]
    assert {r.status_code for r in responses} == {405}
    assert all("X-RateLimit-Limit" not in r.headers for r in responses)
    # A path no route knows: a 404, also without an endpoint.
    assert client.options("/nowhere", headers=PREFLIGHT).status_code == 404
    assert calls == []
    assert limiter.stats()["total_checks"] == 0
    assert client.get("/plain").headers["X-RateLimit-Remaining"] == "2"


def test_preflight_into_a_mounted_app_is_counted() -> None:
    calls: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["method"])
        await PlainTextResponse("inner")(scope, receive, send)

    limiter = RateLimiter(3, 60, clock=ManualClock())
    app = FastAPI()
    app.mount("/sub", inner)
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    client = TestClient(app)
    codes = [client.options("/sub/x", headers=PREFLIGHT).status_code for _ in range(20)]
    assert codes == [200] * 3 + [429] * 17
    assert len(calls) == 3


def test_preflight_answered_by_an_inner_cors_middleware_stays_exempt() -> None:
    from starlette.middleware.cors import CORSMiddleware

    calls: list[str] = []
    limiter = RateLimiter(3, 60, clock=ManualClock())
    app = FastAPI()

    @app.api_route("/cors", methods=["GET", "OPTIONS"])
    def cors(request: Request) -> dict[str, bool]:
        calls.append(request.method)
        return {"ok": True}

    # add_middleware puts the last one outermost: the limiter wraps CORS.
    app.add_middleware(CORSMiddleware, allow_origins=["https://a.example"])
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    client = TestClient(app)
    codes = [client.options("/cors", headers=PREFLIGHT).status_code for _ in range(20)]
    assert codes == [200] * 20
    assert calls == []
    assert limiter.stats()["total_checks"] == 0

    # Without an Origin, CORSMiddleware hands the preflight to the route:
    # then it is counted, or the endpoint would run unlimited.
    bare = {"Access-Control-Request-Method": "GET"}
    codes = [client.options("/cors", headers=bare).status_code for _ in range(20)]
    assert codes == [200] * 3 + [429] * 17
    assert calls == ["OPTIONS"] * 3


# -- options validated at construction -------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ipv6_prefix": 200}, ValueError, "ipv6_prefix must be between 0 and 128"),
        ({"ipv6_prefix": -1}, ValueError, "ipv6_prefix must be between 0 and 128"),
        ({"ipv6_prefix": "64"}, TypeError, "ipv6_prefix must be an int"),
        ({"ipv6_prefix": True}, TypeError, "ipv6_prefix must be an int"),
        ({"exempt_options": "yes"}, TypeError, "exempt_options must be a bool"),
        ({"exempt": 5}, TypeError, "exempt must be"),
        ({"exempt": [b"/health"]}, ValueError, "exempt paths"),
        ({"trusted_proxies": 10}, TypeError, "trusted_proxies must be"),
        ({"key_func": "ip"}, TypeError, "key_func"),
        ({"on_blocked": 429}, TypeError, "on_blocked"),
        ({"headers": "x"}, ValueError, "headers"),
        ({"cost": 0}, ValueError, "cost must be between 1 and 5"),
        ({"cost": 6}, ValueError, "cost must be between 1 and 5"),
        ({"cost": 1.0}, TypeError, "cost must be an int"),
        ({"algorithm": "magic"}, ValueError, "algorithm"),
    ],
)
def test_middleware_options_are_checked_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RateLimitMiddleware(FastAPI(), limit=5, window_seconds=60, **options)


def test_middleware_algorithm_with_a_limiter_is_refused() -> None:
    with pytest.raises(TypeError, match="algorithm"):
        RateLimitMiddleware(FastAPI(), limiter=RateLimiter(1, 1), algorithm="gcra")


def test_middleware_accepts_a_trusted_proxies_object() -> None:
    from rust_py_rate_limit.keys import TrustedProxies

    limiter = RateLimiter(1, 60)
    app = seed_app()
    app.add_middleware(
        RateLimitMiddleware, limiter=limiter, trusted_proxies=TrustedProxies("10.0.0.1")
    )
    client = TestClient(app, client=("10.0.0.1", 5000))
    assert client.get("/health", headers={"X-Forwarded-For": CLIENT}).status_code == 200
    assert limiter.remaining(CLIENT) == 0


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"cost": 3}, ValueError, "cost must be between 1 and 2"),
        ({"cost": 0}, ValueError, "cost must be between 1 and 2"),
        ({"cost": "1"}, TypeError, "cost must be an int"),
        ({"ipv6_prefix": 200}, ValueError, "ipv6_prefix must be between 0 and 128"),
        ({"ipv6_prefix": 64.0}, TypeError, "ipv6_prefix must be an int"),
        ({"trusted_proxies": 10}, TypeError, "trusted_proxies must be"),
        ({"headers": "x"}, ValueError, "headers"),
        ({"key_func": "ip"}, TypeError, "key_func"),
        ({"algorithm": "magic"}, ValueError, "algorithm"),
    ],
)
def test_route_dependency_options_are_checked_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RateLimit("2/minute", **options)


def test_route_dependency_cost_is_checked_against_a_shared_limiter() -> None:
    shared = RateLimiter(4, 60, algorithm="token_bucket", burst=2)
    with pytest.raises(ValueError, match="cost must be between 1 and 2"):
        RateLimit(limiter=shared, cost=3)
    assert RateLimit(limiter=shared, cost=2).cost == 2
