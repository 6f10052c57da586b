"""The Flask extension, through Flask's test client (time by ManualClock)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, abort, request
from werkzeug.test import TestResponse

from rust_py_rate_limit import Decision, ManualClock, RateLimiter
from rust_py_rate_limit.flask import EXTENSION_KEY, FlaskRateLimiter
from rust_py_rate_limit.keys import TrustedProxies

SEED = textwrap.dedent(
    """
    from flask import Flask
    from rust_py_rate_limit.flask import FlaskRateLimiter

    app = Flask(__name__)
    limiter = FlaskRateLimiter(app, limit=100, window_seconds=60)

    @app.get("/api/users")
    @limiter.limit()
    def list_users():
        return {"users": []}
    """
)

LEGACY = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
IETF = ("RateLimit-Policy", "RateLimit")
PEER = {"REMOTE_ADDR": "192.0.2.1"}
PREFLIGHT = {
    "Origin": "https://example.com",
    "Access-Control-Request-Method": "GET",
}


def app_with(
    clock: ManualClock | None = None, **options: Any
) -> tuple[Flask, FlaskRateLimiter]:
    """An app with a limited /limited, an unlimited /free, a route with a
    parameter and a route with a trailing slash."""
    app = Flask(__name__)
    app.testing = True
    if "rate" not in options and "limiter" not in options:
        options.setdefault("limit", 3)
        options.setdefault("window_seconds", 60)
    limiter = FlaskRateLimiter(app, clock=clock, **options)

    @app.get("/limited")
    @limiter.limit()
    def limited() -> str:
        return "ok"

    @app.get("/free")
    def free() -> str:
        return "free"

    @app.get("/items/<int:item_id>")
    @limiter.limit()
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/dir/")
    @limiter.limit()
    def directory() -> str:
        return "dir"

    return app, limiter


def codes(responses: list[TestResponse]) -> list[int]:
    return [r.status_code for r in responses]


# -- the seed snippet --------------------------------------------------------


def test_seed_snippet_exactly_as_written() -> None:
    namespace: dict[str, Any] = {"__name__": "seed"}
    exec(compile(SEED, "seed", "exec"), namespace)
    app: Flask = namespace["app"]
    client = app.test_client()
    responses = [client.get("/api/users") for _ in range(101)]
    assert codes(responses) == [200] * 100 + [429]
    assert responses[0].get_json() == {"users": []}
    blocked = responses[-1]
    assert blocked.get_json() == {"detail": "Too many requests"}
    assert blocked.mimetype == "application/json"
    assert blocked.headers["Retry-After"] == "60"
    assert app.extensions[EXTENSION_KEY] is namespace["limiter"]


# -- headers -----------------------------------------------------------------


def test_headers_on_every_limited_response(clock: ManualClock) -> None:
    app, _ = app_with(clock)
    client = app.test_client()
    for remaining in (2, 1, 0):
        response = client.get("/limited")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert response.headers["X-RateLimit-Reset"] == "60"
        assert "Retry-After" not in response.headers
    clock.advance(45)
    blocked = client.get("/limited")
    assert blocked.status_code == 429
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.headers["X-RateLimit-Reset"] == "15"
    assert blocked.headers["Retry-After"] == "15"
    clock.advance(15)
    again = client.get("/limited")
    assert again.status_code == 200
    assert again.headers["X-RateLimit-Remaining"] == "2"
    assert "Retry-After" not in again.headers


def test_unlimited_routes_get_no_headers() -> None:
    app, _ = app_with()
    response = app.test_client().get("/free")
    assert response.status_code == 200
    for name in (*LEGACY, *IETF, "Retry-After"):
        assert name not in response.headers


def test_ietf_headers() -> None:
    app, _ = app_with(headers="ietf")
    client = app.test_client()
    response = client.get("/limited")
    assert response.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert response.headers["RateLimit"] == '"default";r=2;t=60'
    assert not any(name in response.headers for name in LEGACY)
    client.get("/limited")
    client.get("/limited")
    blocked = client.get("/limited")
    assert blocked.status_code == 429
    assert blocked.headers["RateLimit"] == '"default";r=0;t=60'
    assert blocked.headers["Retry-After"] == "60"


def test_both_header_modes() -> None:
    app, _ = app_with(headers="both")
    response = app.test_client().get("/limited")
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert response.headers["RateLimit"] == '"default";r=2;t=60'


def test_no_rate_limit_headers_but_retry_after_on_429() -> None:
    app, _ = app_with(headers=None, limit=1)
    client = app.test_client()
    allowed = client.get("/limited")
    assert allowed.status_code == 200
    assert not any(name in allowed.headers for name in (*LEGACY, *IETF))
    blocked = client.get("/limited")
    assert blocked.status_code == 429
    assert not any(name in blocked.headers for name in (*LEGACY, *IETF))
    assert blocked.headers["Retry-After"] == "60"


def test_compound_rate_ietf_policy_lists_every_window(clock: ManualClock) -> None:
    app, _ = app_with(clock, headers="ietf", rate="2/second;3/minute")
    client = app.test_client()
    response = client.get("/limited")
    assert response.headers["RateLimit-Policy"] == '"p0";q=2;w=1, "p1";q=3;w=60'


def test_error_responses_of_a_limited_view_carry_the_headers() -> None:
    app = Flask(__name__)
    limiter = FlaskRateLimiter(app, limit=5, window_seconds=60)

    @app.get("/missing")
    @limiter.limit()
    def missing() -> str:
        abort(404)

    response = app.test_client().get("/missing")
    assert response.status_code == 404
    assert response.headers["X-RateLimit-Remaining"] == "4"


def test_headers_do_not_leak_into_the_next_request_of_a_pushed_app_context() -> None:
    app, _ = app_with()
    client = app.test_client()
    with app.app_context():
        assert client.get("/limited").headers["X-RateLimit-Remaining"] == "2"
        assert "X-RateLimit-Remaining" not in client.get("/free").headers


# -- init_app, sharing a limiter -------------------------------------------


def test_init_app_pattern() -> None:
    limiter = FlaskRateLimiter(limit=2, window_seconds=60)
    bp = Blueprint("api", __name__)

    @bp.get("/ping")
    @limiter.limit()
    def ping() -> str:
        return "pong"

    def create_app() -> Flask:
        app = Flask(__name__)
        limiter.init_app(app)
        app.register_blueprint(bp)
        return app

    app = create_app()
    assert app.extensions[EXTENSION_KEY] is limiter
    client = app.test_client()
    assert codes([client.get("/ping") for _ in range(3)]) == [200, 200, 429]


def test_limited_view_on_an_app_without_the_extension_raises() -> None:
    limiter = FlaskRateLimiter(limit=2, window_seconds=60)
    app = Flask(__name__)
    app.testing = True

    @app.get("/ping")
    @limiter.limit()
    def ping() -> str:
        return "pong"

    with pytest.raises(RuntimeError, match="init_app"):
        app.test_client().get("/ping")


def test_init_app_twice_registers_the_hooks_once() -> None:
    app = Flask(__name__)
    limiter = FlaskRateLimiter(app, limit=2, window_seconds=60, default_limits=True)
    limiter.init_app(app)

    @app.get("/")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert [client.get("/").headers["X-RateLimit-Remaining"] for _ in range(2)] == [
        "1",
        "0",
    ]


def test_headers_join_after_after_request_replacing_same_names() -> None:
    # The headers are added as the response starts (the extension wraps
    # app.wsgi_app), so an after_request function cannot drop them and a
    # header of the same name it set is replaced, not doubled.
    app, _ = app_with()
    seen: list[bool] = []

    @app.after_request
    def stamp(response: Response) -> Response:
        seen.append("X-RateLimit-Remaining" in response.headers)
        response.headers["X-RateLimit-Limit"] = "999"
        response.headers["X-Other"] = "kept"
        return response

    response = app.test_client().get("/limited")
    assert seen == [False]
    assert response.headers.getlist("X-RateLimit-Limit") == ["3"]
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert response.headers["X-Other"] == "kept"


def test_wsgi_middleware_applied_after_init_app_still_sees_limits() -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app, _ = app_with(limit=1)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = app.test_client()
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    assert client.get("/limited", headers=forwarded).status_code == 200
    assert client.get("/limited", headers=forwarded).status_code == 429
    other = client.get("/limited", headers={"X-Forwarded-For": "203.0.113.8"})
    assert other.status_code == 200, "ProxyFix's REMOTE_ADDR keys the client"


def test_request_outside_the_wsgi_callable_is_still_limited() -> None:
    # app.test_request_context() skips app.wsgi_app: the decision is taken
    # (the view's limit holds), only the headers are not added.
    app, limiter = app_with(limit=1)
    for expected in (200, 429):
        with app.test_request_context("/limited", environ_base=PEER):
            response = app.full_dispatch_request()
            assert response.status_code == expected
    assert limiter.limiter is not None
    assert limiter.limiter.stats()["total_checks"] == 2


def test_automatic_options_outside_the_wsgi_callable_is_limited() -> None:
    app, _ = app_with(limit=1)
    for expected in (200, 429):
        with app.test_request_context("/limited", method="OPTIONS", environ_base=PEER):
            assert app.full_dispatch_request().status_code == expected


def test_a_second_extension_on_one_app_is_refused() -> None:
    app = Flask(__name__)
    FlaskRateLimiter(app, limit=2, window_seconds=60)
    with pytest.raises(RuntimeError, match="already has"):
        FlaskRateLimiter(app, limit=5, window_seconds=60)


def test_init_app_needs_a_flask_app() -> None:
    limiter = FlaskRateLimiter(limit=2, window_seconds=60)
    with pytest.raises(TypeError, match="app"):
        limiter.init_app("app")  # type: ignore[arg-type]


def test_shared_limiter(clock: ManualClock) -> None:
    shared = RateLimiter(limit=2, window_seconds=60, clock=clock)
    app, limiter = app_with(limiter=shared)
    assert limiter.limiter is shared
    client = app.test_client()
    assert codes([client.get("/limited") for _ in range(3)]) == [200, 200, 429]
    stats = shared.stats()
    assert (stats["allowed"], stats["blocked"]) == (2, 1)
    clock.advance(60)
    assert client.get("/limited").status_code == 200


# -- per-route limits and keys ---------------------------------------------


def test_per_route_rate_string_has_its_own_limiter(clock: ManualClock) -> None:
    app, limiter = app_with(clock, limit=100)

    @app.get("/login")
    @limiter.limit("2/minute")
    def login() -> str:
        return "ok"

    client = app.test_client()
    responses = [client.get("/login") for _ in range(3)]
    assert codes(responses) == [200, 200, 429]
    assert responses[0].headers["X-RateLimit-Limit"] == "2"
    assert client.get("/limited").headers["X-RateLimit-Limit"] == "100"
    assert limiter.limiter is not None
    assert limiter.limiter.stats()["total_checks"] == 1
    clock.advance(60)  # the route's limiter runs on the extension's clock
    assert client.get("/login").status_code == 200


def test_per_route_compound_rate(clock: ManualClock) -> None:
    app, limiter = app_with(clock)

    @app.get("/search")
    @limiter.limit("2/second;3/minute")
    def search() -> str:
        return "ok"

    client = app.test_client()
    assert codes([client.get("/search") for _ in range(3)]) == [200, 200, 429]
    clock.advance(1)
    assert codes([client.get("/search") for _ in range(2)]) == [200, 429]
    clock.advance(59)
    assert client.get("/search").status_code == 200


def test_two_routes_have_independent_limits() -> None:
    app, limiter = app_with(limit=2)

    @app.get("/other")
    @limiter.limit()
    def other() -> str:
        return "other"

    client = app.test_client()
    assert codes([client.get("/limited") for _ in range(3)]) == [200, 200, 429]
    assert codes([client.get("/other") for _ in range(3)]) == [200, 200, 429]


def test_one_route_with_different_parameters_shares_its_limit() -> None:
    app, _ = app_with(limit=2)
    client = app.test_client()
    assert client.get("/items/1").status_code == 200
    assert client.get("/items/2").status_code == 200
    blocked = client.get("/items/3")
    assert blocked.status_code == 429
    assert client.get("/limited").status_code == 200


def test_path_variants_do_not_get_a_fresh_limit() -> None:
    app, _ = app_with(limit=2)
    client = app.test_client()
    assert codes([client.get("/limited") for _ in range(2)]) == [200, 200]
    # Variants Flask routes to the same view share its limit.
    assert client.get("/%6Cimited").status_code == 429
    assert client.get("/%6c%69mited").status_code == 429
    double_slash = client.get("/", environ_overrides={"PATH_INFO": "//limited"})
    assert double_slash.status_code == 429
    # A trailing slash Flask does not route never reaches the view.
    assert client.get("/limited/").status_code == 404

    assert codes([client.get("/items/1") for _ in range(2)]) == [200, 200]
    assert client.get("/items/%31").status_code == 429
    assert client.get("/items/01").status_code == 429
    assert client.get("/items/%32").status_code == 429

    assert codes([client.get("/dir/") for _ in range(2)]) == [200, 200]
    redirect = client.get("/dir")
    assert redirect.status_code == 308
    assert client.get("/dir", follow_redirects=True).status_code == 429
    assert client.get("/%64ir/").status_code == 429


def test_custom_key_func() -> None:
    def api_key() -> str:
        return request.headers.get("X-API-Key", "anonymous")

    app, _ = app_with(limit=2, key_func=api_key)
    client = app.test_client()

    def get(key: str, address: str) -> int:
        return client.get(
            "/limited",
            headers={"X-API-Key": key},
            environ_base={"REMOTE_ADDR": address},
        ).status_code

    assert [get("alice", "192.0.2.1"), get("alice", "192.0.2.2")] == [200, 200]
    assert get("alice", "192.0.2.3") == 429, "one key, whatever the address"
    assert get("bob", "192.0.2.1") == 200


def test_per_route_key_func_overrides_the_extension_one() -> None:
    app, limiter = app_with(limit=1, key_func=lambda: "everyone")

    @app.get("/user/<name>")
    @limiter.limit(
        key_func=lambda: request.view_args["name"] if request.view_args else ""
    )
    def user(name: str) -> str:
        return name

    client = app.test_client()
    assert codes([client.get("/user/ann"), client.get("/user/bo")]) == [200, 200]
    assert client.get("/user/ann").status_code == 429


def test_key_func_must_return_a_str() -> None:
    app, _ = app_with(key_func=lambda: 42)
    with pytest.raises(TypeError, match="key_func must return a str"):
        app.test_client().get("/limited")


def test_cost() -> None:
    app, limiter = app_with(limit=5)

    @app.post("/upload")
    @limiter.limit(cost=2)
    def upload() -> str:
        return "ok"

    client = app.test_client()
    remaining = [client.post("/upload").headers["X-RateLimit-Remaining"] for _ in "ab"]
    assert remaining == ["3", "1"]
    assert client.post("/upload").status_code == 429


def test_stacked_limits_report_the_tightest() -> None:
    app, limiter = app_with()

    @app.get("/stacked")
    @limiter.limit("10/minute")
    @limiter.limit("2/minute")
    def stacked() -> str:
        return "ok"

    client = app.test_client()
    first = client.get("/stacked")
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert codes([client.get("/stacked") for _ in range(2)]) == [200, 429]


def test_async_view() -> None:
    app, limiter = app_with(limit=1)

    @app.get("/async")
    @limiter.limit()
    async def async_view() -> str:
        return "async"

    client = app.test_client()
    response = client.get("/async")
    assert (response.status_code, response.text) == (200, "async")
    assert client.get("/async").status_code == 429


def test_decorator_above_the_route_warns() -> None:
    app, limiter = app_with()

    def late() -> str:
        return "late"

    app.add_url_rule("/late", view_func=late)
    with pytest.warns(UserWarning, match="below"):
        limiter.limit()(late)


# -- HEAD, OPTIONS -----------------------------------------------------------


def test_head_counts_as_get_exactly_once() -> None:
    app, limiter = app_with()
    client = app.test_client()
    assert client.get("/limited").headers["X-RateLimit-Remaining"] == "2"
    head = client.head("/limited")
    assert head.status_code == 200
    assert head.headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/limited").headers["X-RateLimit-Remaining"] == "0"
    assert client.head("/limited").status_code == 429
    assert client.get("/limited").status_code == 429
    assert limiter.limiter is not None
    assert limiter.limiter.stats()["total_checks"] == 5, "one decision per request"


def test_head_counts_once_under_default_limits() -> None:
    app, limiter = app_with(default_limits=True)
    client = app.test_client()
    assert client.head("/free").headers["X-RateLimit-Remaining"] == "2"
    assert client.get("/free").headers["X-RateLimit-Remaining"] == "1"
    assert limiter.limiter is not None
    assert limiter.limiter.stats()["total_checks"] == 2


def test_cors_preflight_is_exempt_by_default() -> None:
    app, limiter = app_with(limit=1)
    client = app.test_client()
    assert client.get("/limited").status_code == 200
    assert client.get("/limited").status_code == 429
    preflight = client.options("/limited", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert "X-RateLimit-Remaining" not in preflight.headers
    assert limiter.limiter is not None
    assert limiter.limiter.stats()["total_checks"] == 2, "a preflight spends nothing"


def test_plain_options_is_limited() -> None:
    app, _ = app_with(limit=1)
    client = app.test_client()
    assert client.options("/limited").status_code == 200
    blocked = client.options("/limited")
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == "60"


def test_cors_preflight_is_limited_when_not_exempt() -> None:
    app, _ = app_with(limit=2, exempt_options=False)
    client = app.test_client()
    first = client.options("/limited", headers=PREFLIGHT)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert client.options("/limited", headers=PREFLIGHT).status_code == 200
    assert client.options("/limited", headers=PREFLIGHT).status_code == 429
    assert client.get("/limited").status_code == 429


def test_preflight_under_default_limits() -> None:
    for exempt, expected in ((True, 200), (False, 429)):
        app, _ = app_with(limit=1, default_limits=True, exempt_options=exempt)
        client = app.test_client()
        assert client.get("/free").status_code == 200
        assert client.options("/free", headers=PREFLIGHT).status_code == expected


def test_preflight_to_a_view_that_handles_options_itself_is_counted() -> None:
    # The view lists OPTIONS: Flask calls it for a preflight, so the body
    # runs and the preflight is counted: 20 preflights, limit 3.
    app, limiter = app_with(limit=3)
    calls: list[str] = []

    @app.route("/cors", methods=["GET", "OPTIONS"])
    @limiter.limit()
    def cors() -> str:
        calls.append(request.method)
        return "cors"

    client = app.test_client()
    responses = [client.options("/cors", headers=PREFLIGHT) for _ in range(20)]
    assert codes(responses) == [200] * 3 + [429] * 17
    assert calls == ["OPTIONS"] * 3
    assert responses[0].headers["X-RateLimit-Remaining"] == "2"
    assert client.get("/cors").status_code == 429


def test_preflight_to_a_view_listing_options_under_default_limits_is_counted() -> None:
    app, _ = app_with(limit=3, default_limits=True)
    calls: list[str] = []

    @app.route("/cors", methods=["GET", "OPTIONS"])
    def cors() -> str:
        calls.append(request.method)
        return "cors"

    client = app.test_client()
    responses = [client.options("/cors", headers=PREFLIGHT) for _ in range(20)]
    assert codes(responses) == [200] * 3 + [429] * 17
    assert calls == ["OPTIONS"] * 3


def test_automatic_options_preflight_stays_exempt() -> None:
    # /limited does not list OPTIONS: Flask answers it without the view.
    app, limiter = app_with(limit=3, default_limits=True)
    client = app.test_client()
    for url in ("/limited", "/free"):
        responses = [client.options(url, headers=PREFLIGHT) for _ in range(20)]
        assert codes(responses) == [200] * 20
        assert all("X-RateLimit-Remaining" not in r.headers for r in responses)
        assert "GET" in responses[0].headers["Allow"]
    assert limiter.limiter is not None
    assert limiter.limiter.stats()["total_checks"] == 0


# -- default_limits, exempt ------------------------------------------------


def test_default_limits_limit_every_route(tmp_path: Path) -> None:
    (tmp_path / "site.css").write_text("body {}")
    app = Flask(__name__, static_folder=str(tmp_path), static_url_path="/static")
    limiter = FlaskRateLimiter(app, limit=2, window_seconds=60, default_limits=True)

    @app.get("/a")
    def a() -> str:
        return "a"

    @app.post("/b")
    def b() -> str:
        return "b"

    @app.get("/health")
    @limiter.exempt
    def health() -> str:
        return "ok"

    @limiter.exempt
    @app.get("/exempt-above")
    def exempt_above() -> str:
        return "ok"

    client = app.test_client()
    a_responses = [client.get("/a") for _ in range(3)]
    assert codes(a_responses) == [200, 200, 429]
    assert a_responses[0].headers["X-RateLimit-Remaining"] == "1"
    assert a_responses[2].get_json() == {"detail": "Too many requests"}
    assert codes([client.post("/b") for _ in range(3)]) == [200, 200, 429]
    for path in ("/health", "/exempt-above", "/static/site.css"):
        responses = [client.get(path) for _ in range(5)]
        assert codes(responses) == [200] * 5, path
        assert "X-RateLimit-Limit" not in responses[0].headers
        for response in responses:
            response.close()
    not_found = client.get("/nowhere")
    assert not_found.status_code == 404
    assert "X-RateLimit-Limit" not in not_found.headers


def test_a_route_limit_replaces_the_default_limit() -> None:
    app, limiter = app_with(default_limits=True, limit=100)

    @app.get("/own")
    @limiter.limit("2/minute")
    def own() -> str:
        return "own"

    client = app.test_client()
    responses = [client.get("/own") for _ in range(3)]
    assert codes(responses) == [200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert limiter.limiter is not None
    assert limiter.limiter.stats()["total_checks"] == 0


def test_exempt_does_not_lift_a_route_limit() -> None:
    app, limiter = app_with(default_limits=True, limit=1)

    @app.get("/both")
    @limiter.exempt
    @limiter.limit()
    def both() -> str:
        return "both"

    client = app.test_client()
    assert codes([client.get("/both") for _ in range(2)]) == [200, 429]


# -- on_blocked ----------------------------------------------------------------


def test_on_blocked_makes_the_response() -> None:
    seen: list[Decision] = []

    def on_blocked(decision: Decision) -> tuple[dict[str, Any], int]:
        seen.append(decision)
        return {"error": "slow down", "wait": decision.retry_after_seconds}, 429

    app, _ = app_with(limit=1, on_blocked=on_blocked)
    client = app.test_client()
    assert client.get("/limited").status_code == 200
    assert seen == []
    blocked = client.get("/limited")
    assert blocked.status_code == 429
    assert blocked.get_json() == {"error": "slow down", "wait": 60}
    assert blocked.headers["Retry-After"] == "60"
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert len(seen) == 1
    assert not seen[0].allowed


def test_on_blocked_may_return_any_response_value() -> None:
    def on_blocked(decision: Decision) -> Response:
        return Response("busy", status=503, mimetype="text/plain")

    app, _ = app_with(limit=1, on_blocked=on_blocked, default_limits=True)
    client = app.test_client()
    client.get("/free")
    blocked = client.get("/free")
    assert (blocked.status_code, blocked.text) == (503, "busy")
    assert blocked.headers["Retry-After"] == "60"


def test_on_blocked_returning_none_is_an_error() -> None:
    app, _ = app_with(limit=1, on_blocked=lambda decision: None)
    client = app.test_client()
    client.get("/limited")
    with pytest.raises(TypeError, match="on_blocked"):
        client.get("/limited")


# -- client addresses ----------------------------------------------------------


def get_from(client: Any, address: str, **headers: str) -> int:
    response = client.get(
        "/limited",
        headers={k.replace("_", "-"): v for k, v in headers.items()},
        environ_base={"REMOTE_ADDR": address},
    )
    return int(response.status_code)


def test_clients_are_keyed_by_address() -> None:
    app, _ = app_with(limit=1)
    client = app.test_client()
    assert get_from(client, "192.0.2.1") == 200
    assert get_from(client, "192.0.2.1") == 429
    assert get_from(client, "192.0.2.2") == 200


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    app, _ = app_with(limit=1)
    client = app.test_client()
    assert get_from(client, "10.0.0.1", X_Forwarded_For="1.1.1.1") == 200
    assert get_from(client, "10.0.0.1", X_Forwarded_For="2.2.2.2") == 429
    assert get_from(client, "10.0.0.1", Forwarded="for=3.3.3.3") == 429


def test_forwarded_for_is_honoured_from_trusted_proxies() -> None:
    app, _ = app_with(limit=1, trusted_proxies=["10.0.0.0/8"])
    client = app.test_client()
    assert get_from(client, "10.0.0.1", X_Forwarded_For="1.1.1.1, 2.2.2.2") == 200
    # The right-most untrusted entry is the client; what is left of it is
    # whatever the client wrote.
    assert get_from(client, "10.0.0.1", X_Forwarded_For="9.9.9.9, 2.2.2.2") == 429
    assert get_from(client, "10.0.0.2", X_Forwarded_For="2.2.2.2, 10.0.0.9") == 429
    assert get_from(client, "10.0.0.1", X_Forwarded_For="2.2.2.2, 3.3.3.3") == 200
    assert get_from(client, "10.0.0.1", Forwarded='for="4.4.4.4"') == 200
    assert get_from(client, "10.0.0.1", Forwarded="for=4.4.4.4") == 429
    # From a peer that is not a trusted proxy, the header is not believed.
    assert get_from(client, "192.0.2.7", X_Forwarded_For="5.5.5.5") == 200
    assert get_from(client, "192.0.2.7", X_Forwarded_For="6.6.6.6") == 429


def test_trusted_proxies_accepts_a_trusted_proxies_object() -> None:
    app, _ = app_with(limit=1, trusted_proxies=TrustedProxies(["10.0.0.1"]))
    client = app.test_client()
    assert get_from(client, "10.0.0.1", X_Forwarded_For="1.1.1.1") == 200
    assert get_from(client, "10.0.0.1", X_Forwarded_For="1.1.1.2") == 200
    assert get_from(client, "10.0.0.1", X_Forwarded_For="1.1.1.1") == 429


def test_ipv6_prefix_groups_clients() -> None:
    app, _ = app_with(limit=1, ipv6_prefix=64)
    client = app.test_client()
    assert get_from(client, "2001:db8::1") == 200
    assert get_from(client, "2001:db8::2") == 429
    assert get_from(client, "2001:db8:0:1::1") == 200


CLIENT = "203.0.113.9"


def test_a_forged_forwarded_does_not_beat_x_forwarded_for() -> None:
    # nginx appends X-Forwarded-For and passes the client's Forwarded on.
    app, limiter = app_with(limit=3, trusted_proxies=["10.0.0.1"])
    client = app.test_client()
    statuses = [
        get_from(
            client, "10.0.0.1", X_Forwarded_For=CLIENT, Forwarded=f"for=198.51.100.{i}"
        )
        for i in range(20)
    ]
    assert statuses == [200] * 3 + [429] * 17
    assert limiter.limiter is not None
    assert limiter.limiter.remaining(f"limited:{CLIENT}") == 0


def test_a_forged_forwarded_does_not_beat_x_forwarded_for_under_default_limits() -> (
    None
):
    app, _ = app_with(limit=3, trusted_proxies=["10.0.0.1"], default_limits=True)
    client = app.test_client()
    statuses = [
        int(
            client.get(
                "/free",
                headers={"X-Forwarded-For": CLIENT, "Forwarded": f"for=198.51.100.{i}"},
                environ_base={"REMOTE_ADDR": "10.0.0.1"},
            ).status_code
        )
        for i in range(20)
    ]
    assert statuses == [200] * 3 + [429] * 17


def test_forwarded_header_forwarded() -> None:
    app, limiter = app_with(
        limit=3, trusted_proxies=["10.0.0.1"], forwarded_header="Forwarded"
    )
    client = app.test_client()
    statuses = [
        get_from(
            client,
            "10.0.0.1",
            Forwarded=f'for="{CLIENT}";proto=https',
            X_Forwarded_For=f"198.51.100.{i}",
        )
        for i in range(20)
    ]
    assert statuses == [200] * 3 + [429] * 17
    assert limiter.limiter is not None
    assert limiter.limiter.remaining(f"limited:{CLIENT}") == 0


def test_forwarded_header_x_real_ip() -> None:
    app, limiter = app_with(
        limit=3, trusted_proxies=["10.0.0.1"], forwarded_header="x-real-ip"
    )
    client = app.test_client()
    statuses = [
        get_from(
            client,
            "10.0.0.1",
            X_Real_IP=CLIENT,
            X_Forwarded_For=f"198.51.100.{i}",
            Forwarded=f"for=192.0.2.{i}",
        )
        for i in range(20)
    ]
    assert statuses == [200] * 3 + [429] * 17
    # Several X-Real-IP (the client's own first, the proxy's last): the last.
    other = "192.0.2.77"
    statuses = [
        int(
            client.get(
                "/limited",
                headers=[("X-Real-IP", f"198.51.100.{i}"), ("X-Real-IP", other)],
                environ_base={"REMOTE_ADDR": "10.0.0.1"},
            ).status_code
        )
        for i in range(5)
    ]
    assert statuses == [200] * 3 + [429] * 2
    assert limiter.limiter is not None
    assert limiter.limiter.remaining(f"limited:{other}") == 0


# -- bad arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"app": "app"}, TypeError, "app"),
        ({"limit": 5}, TypeError, "window_seconds"),
        ({"window_seconds": 5}, TypeError, "limit"),
        ({"limit": 0, "window_seconds": 60}, ValueError, "limit"),
        ({"rate": "often"}, ValueError, "rate"),
        ({"rate": 5}, TypeError, "rate"),
        ({"rate": "5/minute", "limit": 5, "window_seconds": 60}, TypeError, "rate"),
        ({"rate": "5/minute", "algorithm": "magic"}, ValueError, "algorithm"),
        ({"algorithm": "magic"}, ValueError, "algorithm"),
        ({"rate": "5/minute", "key_func": "ip"}, TypeError, "key_func"),
        ({"rate": "5/minute", "default_limits": 1}, TypeError, "default_limits"),
        ({"default_limits": True}, ValueError, "default_limits"),
        ({"rate": "5/minute", "headers": "x"}, ValueError, "headers"),
        (
            {"rate": "5/minute", "trusted_proxies": ["proxy"]},
            ValueError,
            "trusted_proxies",
        ),
        ({"rate": "5/minute", "trusted_proxies": 10}, TypeError, "trusted_proxies"),
        ({"rate": "5/minute", "ipv6_prefix": 129}, ValueError, "ipv6_prefix"),
        ({"rate": "5/minute", "ipv6_prefix": "64"}, TypeError, "ipv6_prefix"),
        ({"rate": "5/minute", "ipv6_prefix": True}, TypeError, "ipv6_prefix"),
        (
            {"rate": "5/minute", "forwarded_header": "via"},
            ValueError,
            "forwarded_header must be one of 'x-forwarded-for', 'forwarded', "
            "'x-real-ip'",
        ),
        (
            {"rate": "5/minute", "forwarded_header": 1},
            TypeError,
            "forwarded_header must be a str",
        ),
        ({"rate": "5/minute", "exempt_options": None}, TypeError, "exempt_options"),
        ({"rate": "5/minute", "on_blocked": 429}, TypeError, "on_blocked"),
        ({"rate": "5/minute", "clock": "now"}, TypeError, "clock"),
        ({"limiter": "shared"}, TypeError, "limiter"),
        (
            {"limiter": RateLimiter(limit=1, window_seconds=1), "rate": "5/minute"},
            TypeError,
            "limiter",
        ),
        (
            {"limiter": RateLimiter(limit=1, window_seconds=1), "algorithm": "gcra"},
            TypeError,
            "algorithm",
        ),
        (
            {"limiter": RateLimiter(limit=1, window_seconds=1), "clock": "now"},
            TypeError,
            "clock",
        ),
    ],
)
def test_bad_arguments(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        FlaskRateLimiter(**options)


def test_no_default_rate_is_allowed_with_per_route_rates() -> None:
    app = Flask(__name__)
    limiter = FlaskRateLimiter(app)
    assert limiter.limiter is None

    @app.get("/x")
    @limiter.limit("1/minute")
    def x() -> str:
        return "x"

    client = app.test_client()
    assert codes([client.get("/x"), client.get("/x")]) == [200, 429]
    with pytest.raises(ValueError, match="rate"):
        limiter.limit()


@pytest.mark.parametrize(
    ("rate", "options", "error", "name"),
    [
        ("sometimes", {}, ValueError, "rate"),
        (None, {"cost": 0}, ValueError, "cost"),
        (None, {"cost": 4}, ValueError, "cost"),
        ("2/minute", {"cost": 3}, ValueError, "cost"),
        (None, {"cost": True}, TypeError, "cost"),
        (None, {"cost": 1.5}, TypeError, "cost"),
        (None, {"key_func": "ip"}, TypeError, "key_func"),
    ],
)
def test_bad_decorator_arguments(
    rate: str | None, options: dict[str, Any], error: type[Exception], name: str
) -> None:
    _, limiter = app_with()
    with pytest.raises(error, match=name):
        limiter.limit(rate, **options)


def test_limit_without_parentheses_is_explained() -> None:
    _, limiter = app_with()

    def view() -> str:
        return "x"

    with pytest.raises(TypeError, match="parentheses"):
        limiter.limit(view)  # type: ignore[arg-type]


def test_decorators_need_a_function() -> None:
    _, limiter = app_with()
    with pytest.raises(TypeError, match="view function"):
        limiter.limit()("view")  # type: ignore[type-var]
    with pytest.raises(TypeError, match="view function"):
        limiter.exempt("view")  # type: ignore[type-var]
