"""One app per framework behind one interface, for the shared policy cases.

A harness makes an app limited by its framework's adapter with options given
by the request policy's names (``headers=``, ``trusted_proxies=``, ...) and
sends it requests with an exact method, path (as the framework routes it),
headers and peer address. Another adapter (a DRF throttle) plugs into the
same table by adding a harness here.

Every app has the same routes, each answering 200 (JSON) to GET and HEAD:

- ``/`` and any other path (a catch-all), whose view code runs for any
  method in Django (a function view) and for GET only elsewhere;
- ``/cors``: its code runs for GET and OPTIONS (a preflight to it is counted);
- ``/plain``: GET only; the framework answers OPTIONS without app code (a
  405 from Starlette's router, Flask's automatic OPTIONS, Django's
  ``View.options()``), so a CORS preflight to it is not counted.

App-wide limiting is the Starlette middleware, the Django middleware, and
Flask's ``default_limits=True``. ``on_blocked=True`` in the options stands
for the framework's own callback answering ``418 slow down``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import django_settings  # noqa: F401  (configures Django's settings)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client as DjangoClient
from django.test import override_settings
from django.urls import path, re_path
from django.views import View

from rust_py_rate_limit import Decision
from rust_py_rate_limit._policy import setting_of_option

HEADERS = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Sent:
    """What one request got back."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class App(Protocol):
    def send(
        self, method: str, path: str, headers: HEADERS, peer: str | None
    ) -> Sent: ...


class Harness(Protocol):
    """A framework: ``make(**options)`` is a context in which its app exists.

    ``lacks`` names the options and case tags (`policy_cases.Case.needs`)
    its adapter does not have: those cases are not run for it.
    """

    name: str
    lacks: frozenset[str]

    def make(self, **options: Any) -> AbstractContextManager[App]: ...


def _lower(pairs: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in pairs}


# -- Starlette / FastAPI ---------------------------------------------------------


@dataclass
class _Shim:
    """An ASGI wrapper setting the peer and the routed path from test headers
    (the test client cannot send a path such as ``/health/../api`` as is)."""

    app: Any

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            peer = headers.pop(b"x-test-peer").decode()
            scope["client"] = None if peer == "-" else (peer, 50000)
            scope["path"] = headers.pop(b"x-test-path").decode()
            scope["raw_path"] = scope["path"].encode()
            scope["headers"] = [
                (k, v) for k, v in scope["headers"] if not k.startswith(b"x-test-")
            ]
        await self.app(scope, receive, send)


@dataclass
class _StarletteApp:
    client: Any

    def send(self, method: str, path: str, headers: HEADERS, peer: str | None) -> Sent:
        extra = [("x-test-peer", peer or "-"), ("x-test-path", path)]
        r = self.client.request(method, "/", headers=[*headers, *extra])
        return Sent(r.status_code, _lower(r.headers.items()), r.content)


class StarletteHarness:
    name = "starlette"
    lacks: frozenset[str] = frozenset()

    @contextmanager
    def make(self, **options: Any) -> Iterator[App]:
        from fastapi import FastAPI
        from fastapi.responses import PlainTextResponse
        from starlette.testclient import TestClient

        from rust_py_rate_limit.fastapi import RateLimitMiddleware

        app = FastAPI()

        # FastAPI routes do not add HEAD to GET as Starlette's do.
        @app.api_route("/", methods=["GET", "HEAD"])
        @app.api_route("/plain", methods=["GET", "HEAD"])
        def ok() -> dict[str, bool]:
            return {"ok": True}

        @app.api_route("/cors", methods=["GET", "OPTIONS"])
        def cors() -> dict[str, bool]:
            return {"ok": True}

        @app.api_route("/{rest:path}", methods=["GET", "HEAD"])
        def rest(rest: str) -> dict[str, bool]:
            return {"ok": True}

        if options.pop("on_blocked", None):
            options["on_blocked"] = lambda request, decision: PlainTextResponse(
                "slow down", status_code=418
            )
        app.add_middleware(RateLimitMiddleware, **options)
        with TestClient(_Shim(app)) as client:
            yield _StarletteApp(client)


# -- Django ----------------------------------------------------------------------


def _ok(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return JsonResponse({"ok": True})


class _Plain(View):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})


def _slow_down(request: HttpRequest, decision: Decision) -> HttpResponse:
    return HttpResponse("slow down", status=418)


urlpatterns = [
    path("", _ok),
    path("cors", _ok),
    path("plain", _Plain.as_view()),
    re_path(r"^.*$", _ok),
]


@dataclass
class _DjangoApp:
    client: DjangoClient = field(default_factory=DjangoClient)

    def send(self, method: str, path: str, headers: HEADERS, peer: str | None) -> Sent:
        meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers}
        r = self.client.generic(
            method, path, PATH_INFO=path, REMOTE_ADDR=peer or "", **meta
        )
        return Sent(r.status_code, _lower(r.headers.items()), r.content)


class DjangoHarness:
    name = "django"
    lacks: frozenset[str] = frozenset()

    @contextmanager
    def make(self, **options: Any) -> Iterator[App]:
        if options.pop("on_blocked", None):
            options["on_blocked"] = _slow_down
        config = {setting_of_option(k): v for k, v in options.items()}
        with override_settings(
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            MIDDLEWARE=["rust_py_rate_limit.django.RateLimitMiddleware"],
            RUST_PY_RATE_LIMIT=config,
        ):
            yield _DjangoApp()


# -- Flask -----------------------------------------------------------------------


@dataclass
class _FlaskApp:
    client: Any

    def send(self, method: str, path: str, headers: HEADERS, peer: str | None) -> Sent:
        r = self.client.open(
            "/",
            method=method,
            headers=list(headers),
            environ_overrides={"PATH_INFO": path, "REMOTE_ADDR": peer or ""},
        )
        return Sent(r.status_code, _lower(r.headers.items()), r.get_data())


class FlaskHarness:
    name = "flask"
    lacks: frozenset[str] = frozenset()

    @contextmanager
    def make(self, **options: Any) -> Iterator[App]:
        from flask import Flask

        from rust_py_rate_limit.flask import FlaskRateLimiter

        app = Flask(__name__)
        app.testing = True

        @app.get("/")
        @app.get("/plain")
        @app.get("/<path:rest>")
        def ok(rest: str = "") -> dict[str, bool]:
            return {"ok": True}

        @app.route("/cors", methods=["GET", "OPTIONS"])
        def cors() -> dict[str, bool]:
            return {"ok": True}

        if options.pop("on_blocked", None):
            options["on_blocked"] = lambda decision: ("slow down", 418)
        FlaskRateLimiter(app, default_limits=True, **options)
        yield _FlaskApp(app.test_client())


# -- Django REST framework ---------------------------------------------------------


class _DrfApp:
    def __init__(self, view: Any) -> None:
        from rest_framework.test import APIRequestFactory

        self.view = view
        self.factory = APIRequestFactory()

    def send(self, method: str, path: str, headers: HEADERS, peer: str | None) -> Sent:
        meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers}
        request = self.factory.generic(method, path, REMOTE_ADDR=peer or "", **meta)
        r = self.view(request)
        r.render()
        return Sent(r.status_code, _lower(r.items()), r.content)


class DrfHarness:
    """A DRF view whose throttle is `rust_py_rate_limit.drf.AnonRateThrottle`.

    A throttle only admits or refuses: DRF answers the 429 (its own body,
    ``Retry-After`` from `wait()`), and no throttle adds rate-limit headers,
    exempts paths, sees preflights or answers with a callback. So the table
    checks statuses and ``Retry-After`` here, and skips the cases about what
    a throttle does not do.
    """

    name = "drf"
    statuses_only = True
    lacks: frozenset[str] = frozenset(
        {
            "headers",
            "detail",
            "on_blocked",
            "exempt",
            "exempt_options",
            "preflight",
            "allow_networks",
            "deny_networks",
            "shadow",
        }
    )
    _DEPLOYMENT: ClassVar[dict[str, str]] = {
        "storage": "STORAGE",
        "on_error": "ON_ERROR",
        "timeout": "TIMEOUT",
        "trusted_proxies": "TRUSTED_PROXIES",
        "forwarded_header": "FORWARDED_HEADER",
        "ipv6_prefix": "IPV6_PREFIX",
        "max_keys": "MAX_KEYS",
    }

    @contextmanager
    def make(self, **options: Any) -> Iterator[App]:
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()
        from rest_framework.response import Response
        from rest_framework.views import APIView

        from rust_py_rate_limit.drf import AnonRateThrottle, reset_throttles

        limit, window = options.pop("limit"), options.pop("window_seconds")
        throttle = type(
            "TableThrottle",
            (AnonRateThrottle,),
            {
                "rate": f"{limit}/{window}s",
                "algorithm": "fixed",
                "clock": options.pop("clock", None),
                "cost": options.pop("cost", 1),
            },
        )
        deployment = {self._DEPLOYMENT[k]: options.pop(k) for k in list(options)}
        assert not options, options

        class View(APIView):  # type: ignore[misc]
            authentication_classes = ()
            permission_classes = ()
            throttle_classes = (throttle,)

            def get(self, request: Any) -> Any:
                return Response({"ok": True})

            def options(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                return Response({"ok": True})

        drf = {"UNAUTHENTICATED_USER": None}
        with override_settings(RUST_PY_RATE_LIMIT=deployment, REST_FRAMEWORK=drf):
            reset_throttles()
            yield _DrfApp(View.as_view())
        reset_throttles()


HARNESSES: list[Harness] = [
    StarletteHarness(),
    DjangoHarness(),
    FlaskHarness(),
    DrfHarness(),
]
