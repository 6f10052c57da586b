"""The Django integration: RateLimitMiddleware, @ratelimit and the example.

Settings are configured once if nobody has (another test module may have
configured them first); everything a test needs is set with
``override_settings``, so the tests run alone or after others.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import django_settings  # noqa: F401  (configures Django's settings)
import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import (
    AsyncClient,
    AsyncRequestFactory,
    Client,
    RequestFactory,
    override_settings,
)
from django.urls import path, re_path
from django.utils.decorators import method_decorator
from django.views import View

from rust_py_rate_limit import ManualClock, RateLimiter
from rust_py_rate_limit import django as django_adapter
from rust_py_rate_limit.django import RateLimitMiddleware, client_ip, ratelimit

F = TypeVar("F", bound=Callable[..., Any])
MIDDLEWARE_PATH = "rust_py_rate_limit.django.RateLimitMiddleware"
SEED_CONFIG = {"LIMIT": 100, "WINDOW_SECONDS": 60, "KEY": "ip"}
LEGACY = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
IETF = ("RateLimit-Policy", "RateLimit")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_example"


# -- views and URLs ----------------------------------------------------------


def hello(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return JsonResponse({"ok": True, "method": request.method})


async def ahello(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    return JsonResponse({"ok": True, "async": True})


def boom(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"error": "teapot"}, status=418)


def on_method(decorator: Callable[[F], F]) -> Callable[[F], F]:
    """``method_decorator``, typed for mypy (Django ships no types)."""
    return cast("Callable[[F], F]", method_decorator(decorator))


decorated_clock = ManualClock()
decorated_limiter = RateLimiter(limit=2, window_seconds=60, clock=decorated_clock)


@ratelimit(limiter=decorated_limiter)
def limited(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return JsonResponse({"view": "limited"})


@ratelimit(limiter=decorated_limiter)
def other_limited(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"view": "other"})


@ratelimit(limiter=decorated_limiter)
async def alimited(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    return JsonResponse({"view": "alimited"})


@method_decorator(ratelimit(limiter=decorated_limiter), name="dispatch")
class LimitedView(View):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"view": "class"})

    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"view": "class-post"})


class LimitedGetView(View):  # type: ignore[misc]
    @on_method(ratelimit(limiter=decorated_limiter))
    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"view": "class-get"})


class AsyncLimitedView(View):  # type: ignore[misc]
    @on_method(ratelimit(limiter=decorated_limiter))
    async def get(self, request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0)
        return JsonResponse({"view": "async-class"})


@method_decorator(ratelimit(limiter=decorated_limiter), name="dispatch")
class AsyncDispatchView(View):  # type: ignore[misc]
    async def get(self, request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0)
        return JsonResponse({"view": "async-dispatch"})


# Views for the CORS preflight tests: each records the methods it ran for.
view_runs: list[str] = []


def counted(request: HttpRequest) -> HttpResponse:
    view_runs.append(request.method or "")
    return JsonResponse({"ok": True})


async def acounted(request: HttpRequest) -> HttpResponse:
    view_runs.append(request.method or "")
    return JsonResponse({"ok": True})


class PlainView(View):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        view_runs.append("GET")
        return JsonResponse({"ok": True})


class AsyncPlainView(View):  # type: ignore[misc]
    async def get(self, request: HttpRequest) -> HttpResponse:
        view_runs.append("GET")
        return JsonResponse({"ok": True})


class OwnOptionsView(View):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        view_runs.append("OPTIONS")
        return super().options(request, *args, **kwargs)


class OwnDispatchView(View):  # type: ignore[misc]
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        view_runs.append("dispatch")
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})


def _noting(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator (functools.wraps keeps the view's view_class)."""
    import functools

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        view_runs.append("decorator")
        return view(request, *args, **kwargs)

    return wrapper


urlpatterns = [
    path("counted", counted),
    path("acounted", acounted),
    path("plain-class", PlainView.as_view()),
    path("async-plain-class", AsyncPlainView.as_view()),
    path("own-options", OwnOptionsView.as_view()),
    path("own-dispatch", OwnDispatchView.as_view()),
    path("decorated-class", _noting(PlainView.as_view())),
    path("api/users", hello),
    path("async", ahello),
    path("teapot", boom),
    path("limited", limited),
    path("limited/<int:pk>", limited),
    path("other-limited", other_limited),
    path("alimited", alimited),
    path("class", LimitedView.as_view()),
    path("class-get", LimitedGetView.as_view()),
    path("async-class", AsyncLimitedView.as_view()),
    path("async-dispatch", AsyncDispatchView.as_view()),
    re_path(r"^.*$", hello),  # every other path: 200, so variants reach a view
]


class NO_URLS:
    """A URLconf without URLs: every path is a 404, no view."""

    urlpatterns: tuple[Any, ...] = ()


# -- helpers ---------------------------------------------------------------


def key_by_api_key(request: HttpRequest) -> str:
    return "api:" + str(request.headers.get("X-Api-Key", "anonymous"))


def not_a_str_key(request: HttpRequest) -> Any:
    return 42


def is_internal(request: HttpRequest) -> bool:
    return bool(request.headers.get("X-Internal") == "yes")


@contextmanager
def rate_limited(config: Any, *, middleware: list[str] | None = None) -> Iterator[None]:
    """Settings for a test: this module's URLs and the middleware."""
    with override_settings(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[MIDDLEWARE_PATH] if middleware is None else middleware,
        RUST_PY_RATE_LIMIT=config,
    ):
        yield


def manual(limit: int = 2, window: int = 60, **kwargs: Any) -> RateLimiter:
    return RateLimiter(
        limit=limit, window_seconds=window, clock=ManualClock(), **kwargs
    )


def ok(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


async def aok(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def middleware(config: Any, get_response: Any = ok) -> RateLimitMiddleware:
    with override_settings(RUST_PY_RATE_LIMIT=config):
        return RateLimitMiddleware(get_response)


def statuses(client: Client, url: str, n: int, **extra: Any) -> list[int]:
    return [client.get(url, **extra).status_code for _ in range(n)]


@pytest.fixture(autouse=True)
def _fresh_decorated_limiter() -> Iterator[None]:
    decorated_limiter.clear()
    view_runs.clear()
    yield
    decorated_limiter.clear()


# -- the seed settings snippet ----------------------------------------------


def test_seed_settings_limit_then_429_with_json_body() -> None:
    with rate_limited(SEED_CONFIG):
        client = Client()
        codes = statuses(client, "/api/users", 100)
        blocked = client.get("/api/users")
    assert codes == [200] * 100
    assert blocked.status_code == 429
    assert blocked["Content-Type"] == "application/json"
    assert blocked.json() == {"detail": "Too many requests"}
    assert blocked["X-RateLimit-Limit"] == "100"
    assert blocked["X-RateLimit-Remaining"] == "0"
    assert int(blocked["Retry-After"]) >= 1


def test_seed_limit_is_per_client_address() -> None:
    with rate_limited({**SEED_CONFIG, "LIMIT": 1}):
        client = Client()
        first = client.get("/api/users", REMOTE_ADDR="198.51.100.1")
        second = client.get("/api/users", REMOTE_ADDR="198.51.100.1")
        other = client.get("/api/users", REMOTE_ADDR="198.51.100.2")
    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)


def test_set_networks_replaces_the_lists_of_live_middleware() -> None:
    mw = middleware({"LIMIT": 1, "WINDOW_SECONDS": 60})
    factory = RequestFactory()

    def status(addr: str) -> int:
        return int(mw(factory.get("/", REMOTE_ADDR=addr)).status_code)

    assert django_adapter.set_networks(deny=["198.51.100.0/24"]) >= 1
    assert status("198.51.100.9") == 403
    assert django_adapter.set_networks(allow=["198.51.100.9"]) >= 1
    assert [status("198.51.100.9") for _ in range(3)] == [200] * 3  # unlimited
    assert status("192.0.2.1") == 200
    assert status("192.0.2.1") == 429  # the others are still limited
    with pytest.raises(ValueError, match="deny_networks"):
        django_adapter.set_networks(deny=["not-an-address"])
    assert [status("198.51.100.9") for _ in range(2)] == [200] * 2  # unchanged


def test_missing_remote_addr_is_a_clear_error() -> None:
    mw = middleware({"LIMIT": 2, "WINDOW_SECONDS": 60})
    request = RequestFactory().get("/")
    del request.META["REMOTE_ADDR"]
    with pytest.raises(ImproperlyConfigured, match=r"'KEY'.*REMOTE_ADDR"):
        mw(request)


# -- headers -----------------------------------------------------------------


def test_headers_on_every_response_and_retry_after_only_on_429() -> None:
    clock = ManualClock()
    limiter = RateLimiter(limit=2, window_seconds=60, clock=clock)
    with rate_limited({"LIMITER": limiter}):
        client = Client()
        first = client.get("/api/users")
        clock.advance(20)
        second = client.get("/api/users")
        teapot_blocked = client.get("/teapot")
        clock.advance(40)
        after_window = client.get("/teapot")
    assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"]) == ("2", "1")
    assert first["X-RateLimit-Reset"] == "60"
    assert "Retry-After" not in first
    assert (second["X-RateLimit-Remaining"], second["X-RateLimit-Reset"]) == ("0", "40")
    assert "Retry-After" not in second
    assert teapot_blocked.status_code == 429
    assert teapot_blocked["Retry-After"] == "40"
    assert teapot_blocked["X-RateLimit-Remaining"] == "0"
    # A response the view makes (not only 200) carries the headers too.
    assert after_window.status_code == 418
    assert after_window["X-RateLimit-Remaining"] == "1"
    assert "Retry-After" not in after_window


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        (None, (), LEGACY + IETF),
        ("legacy", LEGACY, IETF),
        ("ietf", IETF, LEGACY),
        ("both", LEGACY + IETF, ()),
    ],
)
def test_header_modes(
    mode: str | None, present: tuple[str, ...], absent: tuple[str, ...]
) -> None:
    config: dict[str, Any] = {"LIMITER": manual(limit=1)}
    if mode != "legacy":  # "legacy" is the default
        config["HEADERS"] = mode
    with rate_limited(config):
        client = Client()
        allowed = client.get("/api/users")
        blocked = client.get("/api/users")
    assert (allowed.status_code, blocked.status_code) == (200, 429)
    for name in present:
        assert name in allowed
        assert name in blocked
    for name in absent:
        assert name not in allowed
        assert name not in blocked
    assert "Retry-After" not in allowed
    assert blocked["Retry-After"] == "60"
    if "RateLimit" in present:
        assert allowed["RateLimit-Policy"] == '"default";q=1;w=60'
        assert allowed["RateLimit"] == '"default";r=0;t=60'


def test_bad_header_mode_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="'HEADERS'"):
        middleware({"LIMIT": 1, "WINDOW_SECONDS": 1, "HEADERS": "x-ratelimit"})


# -- KEY -----------------------------------------------------------------------


def test_key_user_keys_authenticated_users_by_pk_and_anonymous_by_ip() -> None:
    mw = middleware({"LIMIT": 1, "WINDOW_SECONDS": 60, "KEY": "user"})
    factory = RequestFactory()

    def as_user(user: object, ip: str) -> int:
        request = factory.get("/", REMOTE_ADDR=ip)
        request.user = user
        return int(mw(request).status_code)

    alice = SimpleNamespace(is_authenticated=True, pk=1)
    bob = SimpleNamespace(is_authenticated=True, pk=2)
    anonymous = SimpleNamespace(is_authenticated=False, pk=None)
    # One user from two addresses shares one allowance...
    assert as_user(alice, "192.0.2.1") == 200
    assert as_user(alice, "192.0.2.2") == 429
    # ...two users from one address do not.
    assert as_user(bob, "192.0.2.1") == 200
    # Anonymous requests are keyed on the address (192.0.2.1 is still fresh).
    assert as_user(anonymous, "192.0.2.1") == 200
    assert as_user(anonymous, "192.0.2.1") == 429
    assert as_user(anonymous, "192.0.2.3") == 200


def test_key_user_without_authentication_middleware_is_a_clear_error() -> None:
    mw = middleware({"LIMIT": 1, "WINDOW_SECONDS": 60, "KEY": "user"})
    with pytest.raises(ImproperlyConfigured, match="AuthenticationMiddleware"):
        mw(RequestFactory().get("/"))


@pytest.mark.asyncio
async def test_key_user_in_async_stack_uses_auser() -> None:
    mw = middleware({"LIMIT": 1, "WINDOW_SECONDS": 60, "KEY": "user"}, aok)
    loads: list[int] = []

    def request_of(pk: int) -> HttpRequest:
        request = AsyncRequestFactory().get("/")

        class Lazy:  # touching request.user in an async stack is an error
            @property
            def is_authenticated(self) -> bool:
                raise AssertionError("request.user was read instead of auser()")

        async def auser() -> object:
            loads.append(pk)
            return SimpleNamespace(is_authenticated=True, pk=pk)

        request.user = Lazy()
        request.auser = auser
        return request

    codes = [(await mw(request_of(pk))).status_code for pk in (1, 1, 2)]
    assert codes == [200, 429, 200]
    assert loads == [1, 1, 2]


def test_key_dotted_path() -> None:
    config = {"LIMIT": 1, "WINDOW_SECONDS": 60, "KEY": f"{__name__}.key_by_api_key"}
    with rate_limited(config):
        client = Client()
        a1 = client.get("/api/users", headers={"X-Api-Key": "a"})
        a2 = client.get("/api/users", headers={"X-Api-Key": "a"}, REMOTE_ADDR="9.9.9.9")
        b1 = client.get("/api/users", headers={"X-Api-Key": "b"})
    assert (a1.status_code, a2.status_code, b1.status_code) == (200, 429, 200)


def test_key_callable_must_return_str() -> None:
    mw = middleware({"LIMIT": 1, "WINDOW_SECONDS": 60, "KEY": not_a_str_key})
    with pytest.raises(TypeError, match="must return str, not int"):
        mw(RequestFactory().get("/"))


# -- RATE and ALGORITHM -------------------------------------------------------


def test_rate_string_instead_of_limit() -> None:
    with rate_limited({"RATE": "2/minute"}):
        client = Client()
        codes = statuses(client, "/api/users", 3)
        last = client.get("/api/users")
    assert codes == [200, 200, 429]
    assert last["X-RateLimit-Limit"] == "2"


def test_compound_rate_reports_every_policy() -> None:
    with rate_limited({"RATE": "2/minute;3/hour", "HEADERS": "ietf"}):
        client = Client()
        first = client.get("/api/users")
        codes = statuses(client, "/api/users", 2)
    assert first["RateLimit-Policy"] == '"p0";q=2;w=60, "p1";q=3;w=3600'
    assert first["RateLimit"] == '"p0";r=1;t=60'
    assert codes == [200, 429]


def test_algorithm_setting_is_used() -> None:
    config = {"RATE": "2/minute", "ALGORITHM": "token_bucket"}
    mw = middleware(config)
    assert mw.limiter.algorithm == "token_bucket"
    with rate_limited(config):
        client = Client()
        codes = statuses(client, "/api/users", 3)
        blocked = client.get("/api/users")
    assert codes == [200, 200, 429]
    # A token bucket refills one token every 30 s (a fixed window: 60 s).
    assert 0 < int(blocked["Retry-After"]) <= 30


def test_limiter_setting_with_manual_clock_resets_after_window() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate="2/minute", algorithm="sliding_log", clock=clock)
    with rate_limited({"LIMITER": limiter}):
        client = Client()
        codes = statuses(client, "/api/users", 3)
        clock.advance(59.9)
        still = client.get("/api/users").status_code
        clock.advance(0.1)
        again = client.get("/api/users").status_code
    assert codes == [200, 200, 429]
    assert (still, again) == (429, 200)


# -- EXEMPT -----------------------------------------------------------------


EXEMPT_VARIANTS = [
    "/health",
    "/health/",
    "//health",
    "///health//",
    "/health/live",
    "/health//live",
    "/%68ealth",  # percent-decoded once, as routing sees it
    "/%68ealth/live",
]
NOT_EXEMPT_VARIANTS = [
    "/healthz",
    "/api/health",
    "//api//health",
    "/health/../api/users",
    "/health/%2E%2E/api/users",
    "/./health",
    "/%2568ealth",  # double-encoded: routing sees "/%68ealth", not "/health"
    "/HEALTH",
]


@pytest.mark.parametrize("url", EXEMPT_VARIANTS)
def test_exempt_prefix_matches_path_variants(url: str) -> None:
    with rate_limited({"LIMITER": manual(limit=1), "EXEMPT": ["/health/"]}):
        client = Client()
        assert client.get("/api/users").status_code == 200  # limit now spent
        responses = [client.get("/", PATH_INFO=url) for _ in range(3)]
        if "%" in url:  # let the test client percent-decode, as a server does
            responses = [client.get(url) for _ in range(3)]
        assert client.get("/api/users").status_code == 429
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all("X-RateLimit-Limit" not in r for r in responses)


@pytest.mark.parametrize("url", NOT_EXEMPT_VARIANTS)
def test_exempt_prefix_cannot_be_dodged(url: str) -> None:
    with rate_limited({"LIMITER": manual(limit=1), "EXEMPT": ["/health"]}):
        client = Client()
        if "%" in url:
            codes = statuses(client, url, 2)
        else:
            codes = statuses(client, "/", 2, PATH_INFO=url)
    assert codes == [200, 429]


def test_exempt_path_is_path_info_below_script_name() -> None:
    mw = middleware({"LIMITER": manual(limit=1), "EXEMPT": ["/health"]})
    request = RequestFactory().get("/", SCRIPT_NAME="/app", PATH_INFO="/health")
    assert request.path == "/app/health"
    assert mw.is_exempt(request)
    assert not mw.is_exempt(
        RequestFactory().get("/", SCRIPT_NAME="/health", PATH_INFO="/api")
    )


@pytest.mark.parametrize("exempt", [f"{__name__}.is_internal", is_internal])
def test_exempt_predicate(exempt: Any) -> None:
    with rate_limited({"LIMITER": manual(limit=1), "EXEMPT": exempt}):
        client = Client()
        internal = [
            client.get("/api/users", headers={"X-Internal": "yes"}) for _ in range(3)
        ]
        codes = statuses(client, "/api/users", 2)
    assert [r.status_code for r in internal] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in internal[0]
    assert codes == [200, 429]


# -- OPTIONS preflight ----------------------------------------------------------


PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}


def test_cors_preflight_is_not_counted_by_default() -> None:
    # A class-based view keeping View.options(): Django answers without it.
    limiter = manual(limit=1)
    with rate_limited({"LIMITER": limiter}):
        client = Client()
        preflights = [
            client.options("/plain-class", headers=PREFLIGHT) for _ in range(3)
        ]
        codes = statuses(client, "/plain-class", 2)
        after = client.options("/plain-class", headers=PREFLIGHT)
    assert [r.status_code for r in preflights] == [200, 200, 200]
    assert all("X-RateLimit-Limit" not in r for r in preflights)
    assert preflights[0]["Allow"] == "GET, HEAD, OPTIONS"
    assert codes == [200, 429]
    assert after.status_code == 200  # even once the limit is spent
    assert view_runs == ["GET"]
    assert limiter.stats()["total_checks"] == 2


def test_preflight_to_a_function_view_is_counted() -> None:
    # A function view runs its body for any method: 20 preflights, limit 3.
    with rate_limited({"LIMITER": manual(limit=3)}):
        client = Client()
        responses = [client.options("/counted", headers=PREFLIGHT) for _ in range(20)]
    assert [r.status_code for r in responses] == [200] * 3 + [429] * 17
    assert view_runs == ["OPTIONS"] * 3
    assert [r["X-RateLimit-Remaining"] for r in responses[:3]] == ["2", "1", "0"]


@pytest.mark.asyncio
async def test_preflight_to_a_function_view_is_counted_in_an_async_stack() -> None:
    with rate_limited({"LIMITER": manual(limit=3)}):
        client = AsyncClient()
        responses = [
            await client.options("/acounted", headers=PREFLIGHT) for _ in range(20)
        ]
        sync_view = [
            await client.options("/counted", headers=PREFLIGHT) for _ in range(2)
        ]
    assert [r.status_code for r in responses] == [200] * 3 + [429] * 17
    assert [r.status_code for r in sync_view] == [429, 429]
    assert view_runs == ["OPTIONS"] * 3


@pytest.mark.asyncio
async def test_preflight_to_a_plain_class_view_is_exempt_in_an_async_stack() -> None:
    limiter = manual(limit=3)
    with rate_limited({"LIMITER": limiter}):
        client = AsyncClient()
        responses = [
            await client.options("/async-plain-class", headers=PREFLIGHT)
            for _ in range(20)
        ]
    assert [r.status_code for r in responses] == [200] * 20
    assert view_runs == []
    assert limiter.stats()["total_checks"] == 0


@pytest.mark.parametrize(
    ("url", "runs"),
    [
        ("/own-options", "OPTIONS"),
        ("/own-dispatch", "dispatch"),
        ("/decorated-class", "decorator"),
    ],
)
def test_preflight_to_a_view_with_code_of_its_own_is_counted(
    url: str, runs: str
) -> None:
    with rate_limited({"LIMITER": manual(limit=3)}):
        client = Client()
        codes = [client.options(url, headers=PREFLIGHT).status_code for _ in range(20)]
    assert codes == [200] * 3 + [429] * 17
    assert view_runs == [runs] * 3


def test_preflight_matching_no_url_reaches_no_view() -> None:
    limiter = manual(limit=1)
    with rate_limited({"LIMITER": limiter}), override_settings(ROOT_URLCONF=NO_URLS):
        client = Client()
        codes = [
            client.options("/nowhere", headers=PREFLIGHT).status_code for _ in range(3)
        ]
    assert codes == [404] * 3
    assert limiter.stats()["total_checks"] == 0


def test_plain_options_is_counted() -> None:
    with rate_limited({"LIMITER": manual(limit=1)}):
        client = Client()
        first = client.options("/api/users", headers={"Origin": "https://a.example"})
        second = client.options("/api/users")
    assert first["X-RateLimit-Remaining"] == "0"
    assert second.status_code == 429


def test_exempt_options_false_counts_preflights() -> None:
    with rate_limited({"LIMITER": manual(limit=1), "EXEMPT_OPTIONS": False}):
        client = Client()
        first = client.options("/plain-class", headers=PREFLIGHT)
        second = client.options("/plain-class", headers=PREFLIGHT)
    assert (first.status_code, second.status_code) == (200, 429)


# -- HEAD ------------------------------------------------------------------------


def test_head_counts_as_one_request() -> None:
    with rate_limited({"LIMITER": manual(limit=3)}):
        client = Client()
        head = client.head("/api/users")
        get = client.get("/api/users")
        head2 = client.head("/api/users")
        blocked = client.head("/api/users")
        blocked_get = client.get("/api/users")
    assert head.status_code == 200
    assert head.content == b""
    assert [r["X-RateLimit-Remaining"] for r in (head, get, head2)] == ["2", "1", "0"]
    assert (blocked.status_code, blocked_get.status_code) == (429, 429)


@pytest.mark.asyncio
async def test_head_counts_once_in_async_stack() -> None:
    with rate_limited({"LIMITER": manual(limit=2)}):
        client = AsyncClient()
        head = await client.head("/async")
        get = await client.get("/async")
        blocked = await client.head("/async")
    assert [r["X-RateLimit-Remaining"] for r in (head, get)] == ["1", "0"]
    assert blocked.status_code == 429


def test_head_on_decorated_class_view_spends_one_unit() -> None:
    with rate_limited({"LIMITER": manual(limit=100)}):
        client = Client()
        head = client.head("/class-get")
        get = client.get("/class-get")
        blocked = client.head("/class-get")
    assert head.status_code == 200
    assert (head["X-RateLimit-Limit"], head["X-RateLimit-Remaining"]) == ("2", "1")
    assert get["X-RateLimit-Remaining"] == "0"
    assert blocked.status_code == 429


# -- sync and async stacks --------------------------------------------------------


class SpyLimiter(RateLimiter):
    """Records which entry point the middleware used, and on which thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.calls: list[tuple[str, int]] = []

    def decide(self, key: str, cost: int = 1) -> Any:
        self.calls.append(("decide", threading.get_ident()))
        return super().decide(key, cost)

    async def adecide(self, key: str, cost: int = 1) -> Any:
        self.calls.append(("adecide", threading.get_ident()))
        return await super().adecide(key, cost)


def test_middleware_is_sync_and_async_capable() -> None:
    assert RateLimitMiddleware.sync_capable is True
    assert RateLimitMiddleware.async_capable is True
    config = {"LIMIT": 1, "WINDOW_SECONDS": 60}
    assert not iscoroutinefunction(middleware(config, ok))
    assert iscoroutinefunction(middleware(config, aok))


def test_sync_stack_decides_with_decide() -> None:
    spy = SpyLimiter(limit=1, window_seconds=60, clock=ManualClock())
    mw = middleware({"LIMITER": spy}, ok)
    codes = [mw(RequestFactory().get("/")).status_code for _ in range(2)]
    assert codes == [200, 429]
    assert [name for name, _ in spy.calls] == ["decide", "decide"]


@pytest.mark.asyncio
async def test_async_stack_awaits_adecide_on_the_loop_thread() -> None:
    spy = SpyLimiter(limit=1, window_seconds=60, clock=ManualClock())
    mw = middleware({"LIMITER": spy}, aok)
    first = await mw(AsyncRequestFactory().get("/"))
    second = await mw(AsyncRequestFactory().get("/"))
    assert (first.status_code, second.status_code) == (200, 429)
    assert json.loads(second.content) == {"detail": "Too many requests"}
    assert second["Retry-After"] == "60"
    assert first["X-RateLimit-Remaining"] == "0"
    loop_thread = threading.get_ident()
    names = [name for name, _ in spy.calls]
    assert names.count("adecide") == 2
    assert {thread for _, thread in spy.calls} == {loop_thread}


@pytest.mark.asyncio
async def test_async_client_through_the_middleware() -> None:
    with rate_limited({"LIMITER": manual(limit=2), "HEADERS": "both"}):
        client = AsyncClient()
        first = await client.get("/async")
        sync_view = await client.get("/api/users")
        blocked = await client.get("/async")
    assert first.json() == {"ok": True, "async": True}
    assert first["X-RateLimit-Remaining"] == "1"
    assert first["RateLimit"] == '"default";r=1;t=60'
    assert sync_view.status_code == 200
    assert blocked.status_code == 429
    assert blocked.json() == {"detail": "Too many requests"}
    assert blocked["Retry-After"] == "60"


# -- @ratelimit ---------------------------------------------------------------------


def test_decorator_on_sync_view() -> None:
    with rate_limited(None, middleware=[]):
        client = Client()
        first, second, blocked = (client.get("/limited") for _ in range(3))
        decorated_clock.advance(60)
        again = client.get("/limited")
    assert first.json() == {"view": "limited"}
    assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"]) == ("2", "1")
    assert "Retry-After" not in second
    assert blocked.status_code == 429
    assert blocked.json() == {"detail": "Too many requests"}
    assert blocked["Retry-After"] == "60"
    assert again.status_code == 200


def test_decorator_is_keyed_on_the_view_and_the_client() -> None:
    with rate_limited(None, middleware=[]):
        client = Client()
        # Two URLs routed to one view share its allowance...
        urls = ("/limited", "/limited/7", "/limited/8")
        same_view = [client.get(url).status_code for url in urls]
        # ...another view on the same limiter has its own...
        other = client.get("/other-limited").status_code
        # ...and so has another client.
        elsewhere = client.get("/limited", REMOTE_ADDR="203.0.113.50").status_code
    assert same_view == [200, 200, 429]
    assert (other, elsewhere) == (200, 200)


@pytest.mark.asyncio
async def test_decorator_on_async_view() -> None:
    assert iscoroutinefunction(alimited)
    assert asyncio.iscoroutinefunction(alimited)
    assert alimited.__name__ == "alimited"
    factory = AsyncRequestFactory()
    responses = [await alimited(factory.get("/alimited")) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0]["X-RateLimit-Remaining"] == "1"
    assert json.loads(responses[2].content) == {"detail": "Too many requests"}
    assert responses[2]["Retry-After"] == "60"
    other_client = factory.get("/alimited")
    other_client.META["REMOTE_ADDR"] = "203.0.113.9"
    assert (await alimited(other_client)).status_code == 200
    # End to end through URL routing (the client above is still refused).
    with rate_limited(None, middleware=[]):
        routed = await AsyncClient().get("/alimited")
    assert routed.status_code == 429
    assert routed["X-RateLimit-Limit"] == "2"


def test_decorator_on_class_based_view_dispatch() -> None:
    with rate_limited(None, middleware=[]):
        client = Client()
        get = client.get("/class")
        post = client.post("/class")
        blocked = client.get("/class")
    assert get.json() == {"view": "class"}
    assert post.json() == {"view": "class-post"}  # every method spends
    assert get["X-RateLimit-Remaining"] == "1"
    assert blocked.status_code == 429
    assert blocked["Retry-After"] == "60"


@pytest.mark.asyncio
async def test_decorator_on_async_class_based_views() -> None:
    assert iscoroutinefunction(AsyncLimitedView.get)
    with rate_limited(None, middleware=[]):
        client = AsyncClient()
        on_get = [await client.get("/async-class") for _ in range(3)]
        on_dispatch = [await client.get("/async-dispatch") for _ in range(3)]
    for responses, view in ((on_get, "async-class"), (on_dispatch, "async-dispatch")):
        assert [r.status_code for r in responses] == [200, 200, 429]
        assert responses[0].json() == {"view": view}
        assert responses[1]["X-RateLimit-Remaining"] == "0"
        assert responses[2].json() == {"detail": "Too many requests"}


def test_decorator_with_its_own_limit_and_options() -> None:
    @ratelimit("2/minute", headers="ietf", cost=2)
    def costly(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})

    @ratelimit(limit=3, window_seconds=60, headers=None)
    def quiet(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})

    factory = RequestFactory()
    first, second = (costly(factory.get("/")) for _ in range(2))
    assert first["RateLimit"] == '"default";r=0;t=60'
    assert "X-RateLimit-Limit" not in first
    assert second.status_code == 429
    quiet_codes = [quiet(factory.get("/")) for _ in range(4)]
    assert [r.status_code for r in quiet_codes] == [200, 200, 200, 429]
    assert "X-RateLimit-Limit" not in quiet_codes[0]
    assert quiet_codes[3]["Retry-After"] == "60"


def test_decorator_key_user_and_dotted_path() -> None:
    @ratelimit(limit=1, window_seconds=60, key="user")
    def per_user(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})

    @ratelimit(limit=1, window_seconds=60, key=f"{__name__}.key_by_api_key")
    def per_api_key(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})

    factory = RequestFactory()

    def as_user(pk: int, ip: str) -> int:
        request = factory.get("/", REMOTE_ADDR=ip)
        request.user = SimpleNamespace(is_authenticated=True, pk=pk)
        return int(per_user(request).status_code)

    codes = [as_user(1, "192.0.2.1"), as_user(1, "192.0.2.2"), as_user(2, "192.0.2.1")]
    assert codes == [200, 429, 200]
    api = [
        per_api_key(factory.get("/", headers={"X-Api-Key": k})).status_code
        for k in ("a", "a", "b")
    ]
    assert api == [200, 429, 200]


def test_decorator_headers_win_over_the_middleware() -> None:
    with rate_limited({"LIMITER": manual(limit=100), "HEADERS": "both"}):
        client = Client()
        view = client.get("/limited")
        plain = client.get("/api/users")
    # The view's own (tighter) limit is reported, not a mix of two limiters.
    assert view["X-RateLimit-Limit"] == "2"
    assert "RateLimit-Policy" not in view
    assert plain["X-RateLimit-Limit"] == "100"
    assert plain["RateLimit-Policy"] == '"default";q=100;w=60'
    assert plain["X-RateLimit-Remaining"] == "98"  # both requests counted


def test_decorator_misuse_is_refused_at_decoration_time() -> None:
    with pytest.raises(TypeError, match="with arguments"):
        ratelimit(hello)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate= or limit="):
        ratelimit()
    with pytest.raises(TypeError, match="not both"):
        ratelimit("1/second", limiter=manual())
    with pytest.raises(TypeError, match="limiter must be a RateLimiter"):
        ratelimit(limiter="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headers must be"):
        ratelimit("1/second", headers="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost must be between 1 and the limit"):
        ratelimit("1/second", cost=2)
    with pytest.raises(ValueError, match="'ip', 'user'"):
        ratelimit("1/second", key="client")
    with pytest.raises(ValueError, match="rate part"):
        ratelimit("lots")


def test_decorator_on_a_method_without_method_decorator_says_so() -> None:
    class Wrong(View):  # type: ignore[misc]
        @ratelimit("5/minute")
        def get(self, request: HttpRequest) -> HttpResponse:
            return JsonResponse({})

    with pytest.raises(TypeError, match="method_decorator"):
        Wrong().get(RequestFactory().get("/"))


# -- trusted proxies ------------------------------------------------------------------


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    with rate_limited({"LIMITER": manual(limit=1)}):
        client = Client()
        codes = [
            client.get(
                "/api/users", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=spoof
            ).status_code
            for spoof in ("1.1.1.1", "2.2.2.2", "3.3.3.3")
        ]
    assert codes == [200, 429, 429]
    request = RequestFactory().get(
        "/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="1.1.1.1"
    )
    assert client_ip(request) == "198.51.100.7"


def test_trusted_proxies_right_most_untrusted_entry_is_the_client() -> None:
    config = {"LIMITER": manual(limit=1), "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    with rate_limited(config):
        client = Client()

        def via_proxy(xff: str, peer: str = "10.0.0.1") -> int:
            response = client.get(
                "/api/users", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=xff
            )
            return int(response.status_code)

        first = via_proxy("1.1.1.1, 203.0.113.5")
        # Only the left part (written by the client) differs: same client.
        spoofed = via_proxy("9.9.9.9, 203.0.113.5, 10.0.0.2")
        other = via_proxy("203.0.113.6")
        # An untrusted peer's header is ignored: keyed on the peer itself.
        direct = via_proxy("203.0.113.7", peer="198.51.100.1")
        direct_again = via_proxy("203.0.113.8", peer="198.51.100.1")
    assert (first, spoofed, other) == (200, 429, 200)
    assert (direct, direct_again) == (200, 429)


def test_client_ip_reads_the_chosen_header_and_unmaps_ipv4() -> None:
    factory = RequestFactory()
    proxies = ["10.0.0.0/8"]
    forwarded = factory.get(
        "/",
        REMOTE_ADDR="10.1.2.3",
        HTTP_FORWARDED="for=203.0.113.9;proto=https",
        HTTP_X_FORWARDED_FOR="198.51.100.1",
        HTTP_X_REAL_IP="192.0.2.5",
    )
    assert client_ip(forwarded, proxies, "forwarded") == "203.0.113.9"
    assert client_ip(forwarded, proxies) == "198.51.100.1"
    real_ip: Any = "X-Real-IP"  # any case is accepted
    assert client_ip(forwarded, proxies, forwarded_header=real_ip) == "192.0.2.5"
    assert client_ip(forwarded) == "10.1.2.3"
    with pytest.raises(ValueError, match="forwarded_header must be one of"):
        client_ip(forwarded, proxies, "via")  # type: ignore[arg-type]
    mapped = factory.get("/", REMOTE_ADDR="::ffff:203.0.113.5")
    assert client_ip(mapped) == "203.0.113.5"
    chain = factory.get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7, 10.0.0.2"
    )
    assert client_ip(chain, proxies) == "203.0.113.7"


CLIENT = "203.0.113.9"


def forged(i: int) -> dict[str, Any]:
    """What nginx passes on: its X-Forwarded-For, and the client's own
    rotating Forwarded, from the trusted proxy 10.0.0.1."""
    return {
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_X_FORWARDED_FOR": CLIENT,
        "HTTP_FORWARDED": f"for=198.51.100.{i}",
    }


def test_a_forged_forwarded_does_not_beat_x_forwarded_for() -> None:
    limiter = manual(limit=3)
    with rate_limited({"LIMITER": limiter, "TRUSTED_PROXIES": ["10.0.0.1"]}):
        client = Client()
        codes = [client.get("/api/users", **forged(i)).status_code for i in range(20)]
    assert codes == [200] * 3 + [429] * 17
    assert limiter.remaining("ip:" + CLIENT) == 0


@pytest.mark.asyncio
async def test_a_forged_forwarded_does_not_beat_x_forwarded_for_async() -> None:
    limiter = manual(limit=3)
    with rate_limited({"LIMITER": limiter, "TRUSTED_PROXIES": ["10.0.0.1"]}):
        client = AsyncClient()
        codes = []
        for i in range(20):
            # AsyncClient.request takes ASGI scope parts: the peer is the proxy.
            response = await client.request(
                method="GET",
                path="/async",
                query_string="",
                client=["10.0.0.1", 4711],
                headers=[
                    (b"host", b"testserver"),
                    (b"x-forwarded-for", CLIENT.encode()),
                    (b"forwarded", f"for=198.51.100.{i}".encode()),
                ],
            )
            codes.append(response.status_code)
    assert codes == [200] * 3 + [429] * 17
    assert limiter.remaining("ip:" + CLIENT) == 0


def test_a_forged_forwarded_does_not_beat_x_forwarded_for_in_the_decorator() -> None:
    limiter = manual(limit=3)

    @ratelimit(limiter=limiter, trusted_proxies=["10.0.0.1"])
    def view(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})

    factory = RequestFactory()
    codes = [view(factory.get("/", **forged(i))).status_code for i in range(20)]
    assert codes == [200] * 3 + [429] * 17


@pytest.mark.parametrize(
    ("header", "extra"),
    [
        (
            "forwarded",
            lambda i: {
                "HTTP_FORWARDED": f'for="{CLIENT}:4711"',
                "HTTP_X_FORWARDED_FOR": f"198.51.100.{i}",
            },
        ),
        (
            "X-Real-IP",
            lambda i: {
                "HTTP_X_REAL_IP": CLIENT,
                "HTTP_X_FORWARDED_FOR": f"198.51.100.{i}",
                "HTTP_FORWARDED": f"for=192.0.2.{i}",
            },
        ),
        (
            "x-real-ip",
            # A client's own X-Real-IP before the proxy's (joined by a comma).
            lambda i: {"HTTP_X_REAL_IP": f"198.51.100.{i},{CLIENT}"},
        ),
    ],
)
def test_forwarded_header_setting_believes_that_header_only(
    header: str, extra: Callable[[int], dict[str, str]]
) -> None:
    limiter = manual(limit=3)
    config = {
        "LIMITER": limiter,
        "TRUSTED_PROXIES": ["10.0.0.1"],
        "FORWARDED_HEADER": header,
    }
    with rate_limited(config):
        client = Client()
        codes = [
            client.get("/api/users", REMOTE_ADDR="10.0.0.1", **extra(i)).status_code
            for i in range(20)
        ]
    assert codes == [200] * 3 + [429] * 17
    assert limiter.remaining("ip:" + CLIENT) == 0


def test_bad_forwarded_header_in_the_decorator() -> None:
    with pytest.raises(ValueError, match="forwarded_header must be one of"):
        ratelimit("1/minute", forwarded_header="via")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="forwarded_header must be a str"):
        ratelimit("1/minute", forwarded_header=None)  # type: ignore[arg-type]


def test_decorator_cost_is_checked_against_the_capacity() -> None:
    # A compound limit admits at most its tightest rule at once.
    with pytest.raises(
        ValueError, match="cost must be between 1 and the limit \\(2\\)"
    ):
        ratelimit("10/minute;2/second", cost=5)
    bucket = RateLimiter(10, 60, algorithm="token_bucket", burst=2)
    with pytest.raises(
        ValueError, match="cost must be between 1 and the limit \\(2\\)"
    ):
        ratelimit(limiter=bucket, cost=3)


# -- misconfiguration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (None, "RUST_PY_RATE_LIMIT"),
        ([100, 60], "RUST_PY_RATE_LIMIT"),
        ({"LIMTI": 100, "WINDOW_SECONDS": 60}, "'LIMTI'"),
        ({"WINDOW_SECONDS": 60}, "'LIMIT'"),
        ({"LIMIT": 100}, "'WINDOW_SECONDS'"),
        ({"LIMIT": 0, "WINDOW_SECONDS": 60}, "'LIMIT'"),
        ({"LIMIT": "100", "WINDOW_SECONDS": 60}, "'LIMIT'"),
        ({"LIMIT": 100, "WINDOW_SECONDS": 1.5}, "'WINDOW_SECONDS'"),
        ({"RATE": "100/fortnight"}, "'RATE'"),
        ({"RATE": "1/minute", "LIMIT": 1}, "'RATE'"),
        ({"RATE": "1/minute", "ALGORITHM": "nope"}, "'ALGORITHM'"),
        ({"RATE": "1/minute", "ALGORITHM": "token_bucket", "BURST": 0}, "'BURST'"),
        ({"LIMITER": "limiter"}, "'LIMITER'"),
        ({"LIMITER": RateLimiter(limit=1, window_seconds=1), "LIMIT": 1}, "'LIMITER'"),
        ({"RATE": "1/minute", "KEY": "client"}, "'KEY'"),
        ({"RATE": "1/minute", "KEY": "no_such_module.key"}, "'KEY'"),
        ({"RATE": "1/minute", "KEY": 42}, "'KEY'"),
        ({"RATE": "1/minute", "HEADERS": "rfc"}, "'HEADERS'"),
        ({"RATE": "1/minute", "EXEMPT": "/health"}, "'EXEMPT'"),
        ({"RATE": "1/minute", "EXEMPT": ["health"]}, "'EXEMPT'"),
        ({"RATE": "1/minute", "EXEMPT": ["/a/../b"]}, "'EXEMPT'"),
        ({"RATE": "1/minute", "EXEMPT": 5}, "'EXEMPT'"),
        ({"RATE": "1/minute", "EXEMPT": "no_such_module.pred"}, "'EXEMPT'"),
        ({"RATE": "1/minute", "EXEMPT_OPTIONS": "yes"}, "'EXEMPT_OPTIONS'"),
        ({"RATE": "1/minute", "TRUSTED_PROXIES": ["proxy.local"]}, "'TRUSTED_PROXIES'"),
        ({"RATE": "1/minute", "TRUSTED_PROXIES": 10}, "'TRUSTED_PROXIES'"),
        ({"RATE": "1/minute", "FORWARDED_HEADER": "via"}, "'FORWARDED_HEADER'"),
        ({"RATE": "1/minute", "FORWARDED_HEADER": 1}, "'FORWARDED_HEADER'"),
    ],
)
def test_bad_settings_raise_improperly_configured(config: Any, named: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        middleware(config)
    assert named in str(info.value)


def test_missing_setting_is_improperly_configured_through_the_client() -> None:
    with rate_limited(SEED_CONFIG):
        del settings.RUST_PY_RATE_LIMIT
        client = Client()
        with pytest.raises(ImproperlyConfigured, match="RUST_PY_RATE_LIMIT"):
            client.get("/api/users")


def test_one_limiter_per_middleware_instance() -> None:
    config = {"LIMIT": 1, "WINDOW_SECONDS": 60}
    first, second = middleware(config), middleware(config)
    assert first.limiter is not second.limiter
    request = RequestFactory().get("/")
    assert [first(request).status_code, first(request).status_code] == [200, 429]
    assert second(request).status_code == 200


# -- the example project ----------------------------------------------------------


def example_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def test_example_manage_py_check() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), "check"],
        capture_output=True,
        text=True,
        timeout=120,
        env=example_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


DRIVE_EXAMPLE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "ratelimit_demo.settings"
import django
django.setup()
from django.test import Client

client = Client()
def get(url, **extra):
    r = client.get(url, **extra)
    return [r.status_code, dict(r.headers), r.json()]

out = {
    "index": get("/"),
    "health": [get("/health") for _ in range(2)],
    "login": [get("/login") for _ in range(6)],
    "search": [get("/search?q=rust") for _ in range(4)],
    "other_client": get("/login", REMOTE_ADDR="192.0.2.77"),
}
print(json.dumps(out))
"""


def test_example_views_through_the_test_client() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", DRIVE_EXAMPLE, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=example_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    status, headers, body = out["index"]
    assert (status, body) == (200, {"hello": "world"})
    assert headers["X-RateLimit-Limit"] == "100"
    assert headers["X-RateLimit-Remaining"] == "99"
    assert [h[0] for h in out["health"]] == [200, 200]
    assert all("X-RateLimit-Limit" not in h[1] for h in out["health"])
    login = out["login"]
    assert [r[0] for r in login] == [200] * 5 + [429]
    assert login[0][1]["X-RateLimit-Limit"] == "5"
    assert login[5][2] == {"detail": "Too many requests"}
    assert "Retry-After" in login[5][1]
    search = out["search"]
    assert [r[0] for r in search] == [200, 200, 200, 429]
    assert search[0][2] == {"results": [], "q": "rust"}
    assert out["other_client"][0] == 200
