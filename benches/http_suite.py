"""The "http" suite: rate-limiting middleware overhead per request, in ONE interpreter.

Each app is driven in-process, with no network and no test client: ASGI apps
through ``await app(scope, receive, send)`` with a pre-built scope (copied per
request, as a server builds a new one) and no-op ``receive``/``send``; WSGI
apps through ``app(environ, start_response)``, consuming and closing the
returned iterable. One route, ``GET /hello``, returns ``{"message": "hello"}``;
every request comes from the same client address, and the limit (10^9 per
minute) is never reached.

Scenarios are frameworks, rows are apps:

- ``fastapi``: ``fastapi`` (no limiting: the baseline), ``fastapi_ours``
  (``app.add_middleware(RateLimitMiddleware, limit=10**9, window_seconds=60)``),
  ``fastapi_noop`` (a pure ASGI middleware that only adds one header: the
  floor of any header-adding middleware, to read the target against),
  ``slowapi`` (``Limiter(key_func=get_remote_address)`` and
  ``@limiter.limit("1000000000/minute")`` on the route).
- ``flask``: ``flask`` (the baseline), ``flask_ours`` (``FlaskRateLimiter(app,
  limit=10**9, window_seconds=60)`` and ``@limiter.limit()`` on the view),
  ``flask_limiter`` (Flask-Limiter ``Limiter(get_remote_address, app=app,
  storage_uri="memory://")`` and ``@limiter.limit("1000000000/minute")``).
- ``drf``: a Django REST framework ``APIView`` through Django's WSGI handler,
  requests from 1,000 client addresses in turn (DRF's own throttle keeps a
  list of every admitted time per client, so one client at 10^9/minute would
  measure that list's growth): ``drf`` (no throttle, the baseline),
  ``drf_ours`` (``throttle_classes = [rust_py_rate_limit.drf.AnonRateThrottle]``),
  ``drf_own`` (DRF's ``AnonRateThrottle`` on Django's local-memory cache,
  DRF's default), both at ``"1000000000/minute"``.

Same machinery as ``scenarios.py``: interleaved repeats, rotated order,
median, a fresh app (and limiter) per run, warm-up, GC off while timed; each
row's ``ratio`` is to the baseline of its framework. Before measuring, every
row is built once with a limit of 2 and must answer 200, 200, then 429 (the
baselines and references: 200 three times), so a misconfigured limiter is caught.

Output is JSON on stdout (or in ``--json FILE``); progress goes to stderr.

    python benches/http_suite.py --impl fastapi,fastapi_ours --scenarios fastapi
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import io
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import scenarios as core
from scenarios import BIG_LIMIT, WINDOW, Handle, Impl, Scenario

OURS = "rust_py_rate_limit"
PATH = "/hello"
MESSAGE = {"message": "hello"}
CLIENT = ("203.0.113.7", 50123)
# ours / the baseline of the same framework
OVERHEAD_BUDGETS = {"fastapi": 1.05, "flask": 1.15, "drf": 1.10}
# peer / ours: how many times faster ours must be
PEER_FACTORS = {"fastapi": 1.0, "flask": 1.0, "drf": 2.0}

ALL_SCENARIOS = ("fastapi", "flask", "drf")
# Import name -> name on PyPI (as pinned in benches/requirements.txt).
PACKAGES = {
    "fastapi": "FastAPI",
    "flask": "Flask",
    "slowapi": "slowapi",
    "flask_limiter": "Flask-Limiter",
    "rest_framework": "djangorestframework",
    OURS: "rust-py-rate-limit",
}


@dataclass(frozen=True)
class HttpParams:
    repeats: int = 7
    requests: int = 20_000  # timed requests per run
    warmup: int = 1_000


QUICK = HttpParams(repeats=3, requests=3_000, warmup=300)


def _rate(limit: int) -> str:
    """The peers' rate string for ``limit`` per WINDOW (60 s)."""
    if WINDOW != 60:
        raise ValueError("the peers' rate strings are per minute")
    return f"{limit}/minute"


# --------------------------------------------------------------------------
# ASGI: a pre-built scope, no-op receive/send
# --------------------------------------------------------------------------

ASGI_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": PATH,
    "raw_path": PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"host", b"bench.local"),
        (b"user-agent", b"rprl-bench"),
        (b"accept", b"*/*"),
    ],
    "client": CLIENT,
    "server": ("bench.local", 80),
}

_REQUEST = {"type": "http.request", "body": b"", "more_body": False}

_loop: asyncio.AbstractEventLoop | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    """The one event loop every ASGI app runs on (asyncio's default loop)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


async def _receive() -> dict[str, Any]:
    return _REQUEST


async def _send(message: dict[str, Any]) -> None:
    pass


class AsgiHandle(Handle):
    """One request per key: ``await app(scope.copy(), receive, send)``.

    The timed loop runs as one task on the event loop (one
    ``run_until_complete`` per run, negligible next to the requests).
    """

    def __init__(self, app: Any, closers: Iterable[Callable[[], None]] = ()) -> None:
        self._app = app
        self._loop = _event_loop()
        self._closers = list(closers)

    async def _drive(self, keys: list[str]) -> None:
        app = self._app
        scope = ASGI_SCOPE
        receive = _receive
        send = _send
        for _ in keys:
            await app(scope.copy(), receive, send)

    async def _status(self) -> int:
        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self._app(ASGI_SCOPE.copy(), _receive, send)
        return status

    def run(self, keys: list[str]) -> None:
        self._loop.run_until_complete(self._drive(keys))

    def hit(self, key: str) -> bool:
        status = self._loop.run_until_complete(self._status())
        if status not in (200, 429):
            raise core.SanityError(f"unexpected status {status}")
        return status == 200

    def close(self) -> None:
        for close in self._closers:
            close()


# --------------------------------------------------------------------------
# WSGI: a pre-built environ, a no-op start_response
# --------------------------------------------------------------------------

WSGI_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": PATH,
    "QUERY_STRING": "",
    "SERVER_NAME": "bench.local",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": CLIENT[0],
    "REMOTE_PORT": str(CLIENT[1]),
    "HTTP_HOST": "bench.local",
    "HTTP_USER_AGENT": "rprl-bench",
    "HTTP_ACCEPT": "*/*",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(b""),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def _write(data: bytes) -> None:
    pass


def _start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    return _write


class WsgiHandle(Handle):
    """One request per key: ``app(environ.copy(), start_response)``, the body
    iterated and the iterable closed (as a WSGI server must)."""

    def __init__(self, app: Any, closers: Iterable[Callable[[], None]] = ()) -> None:
        self._app = app
        self._closers = list(closers)

    def run(self, keys: list[str]) -> None:
        app = self._app
        environ = WSGI_ENVIRON
        start_response = _start_response
        for _ in keys:
            body = app(environ.copy(), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def hit(self, key: str) -> bool:
        seen: list[str] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            seen.append(status)
            return _write

        body = self._app(WSGI_ENVIRON.copy(), start_response)
        try:
            for _chunk in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        status = int(seen[0].split()[0]) if seen else 0
        if status not in (200, 429):
            raise core.SanityError(f"unexpected status {status}")
        return status == 200

    def close(self) -> None:
        for close in self._closers:
            close()


def _stop_limits_timer(storage: Any) -> Callable[[], None]:
    """Cancels a ``limits`` MemoryStorage's expiry timer (it would steal the
    GIL while another row is timed), as the core suite does."""

    def close() -> None:
        timer = getattr(storage, "timer", None)
        if timer is not None:
            timer.cancel()
            if timer.is_alive():
                timer.join()

    return close


# --------------------------------------------------------------------------
# The apps. ``make(limit, window)`` builds a fresh app (and limiter).
# --------------------------------------------------------------------------


def _fastapi_app() -> tuple[Any, Any]:
    """A FastAPI app and the endpoint to register (not yet routed).

    Every FastAPI row has the same endpoint signature, ``(request: Request)``,
    which slowapi requires, so no row pays for a different one.
    """
    fastapi = importlib.import_module("fastapi")

    async def hello(request: Any) -> Any:
        return MESSAGE

    # Real objects, not the strings of ``from __future__ import annotations``:
    # FastAPI would resolve those in the module of slowapi's wrapper.
    hello.__annotations__ = {"request": fastapi.Request, "return": dict[str, str]}
    return fastapi.FastAPI(), hello


def _make_fastapi(limit: int, window: int) -> Handle:
    app, hello = _fastapi_app()
    app.get(PATH)(hello)
    return AsgiHandle(app)


def _make_fastapi_ours(limit: int, window: int) -> Handle:
    middleware = importlib.import_module(f"{OURS}.fastapi").RateLimitMiddleware
    app, hello = _fastapi_app()
    app.get(PATH)(hello)
    app.add_middleware(middleware, limit=limit, window_seconds=window)
    return AsgiHandle(app)


class _HeaderMiddleware:
    """The least a header-adding ASGI middleware does: pass the request on
    and add one header as the response starts (no decision)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def send_with_header(message: Any) -> Any:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), HEADER]
            return send(message)

        await self.app(scope, receive, send_with_header)


HEADER = (b"x-ratelimit-limit", b"1000000000")


def _make_fastapi_noop(limit: int, window: int) -> Handle:
    app, hello = _fastapi_app()
    app.get(PATH)(hello)
    app.add_middleware(_HeaderMiddleware)
    return AsgiHandle(app)


def _make_slowapi(limit: int, window: int) -> Handle:
    """slowapi as its docs show: app.state.limiter, the 429 handler, and
    ``@limiter.limit(...)`` under ``@app.get(...)``."""
    slowapi = importlib.import_module("slowapi")
    errors = importlib.import_module("slowapi.errors")
    util = importlib.import_module("slowapi.util")
    app, hello = _fastapi_app()
    limiter = slowapi.Limiter(key_func=util.get_remote_address)
    app.state.limiter = limiter
    app.add_exception_handler(
        errors.RateLimitExceeded, slowapi._rate_limit_exceeded_handler
    )
    app.get(PATH)(limiter.limit(_rate(limit))(hello))
    return AsgiHandle(app, [_stop_limits_timer(limiter._storage)])


def _flask_view() -> Any:
    def hello() -> dict[str, str]:
        return MESSAGE

    return hello


def _make_flask(limit: int, window: int) -> Handle:
    flask = importlib.import_module("flask")
    app = flask.Flask("bench_flask")
    app.get(PATH)(_flask_view())
    return WsgiHandle(app)


def _make_flask_ours(limit: int, window: int) -> Handle:
    ext = importlib.import_module(f"{OURS}.flask")
    flask = importlib.import_module("flask")
    app = flask.Flask("bench_flask_ours")
    limiter = ext.FlaskRateLimiter(app, limit=limit, window_seconds=window)
    app.get(PATH)(limiter.limit()(_flask_view()))
    return WsgiHandle(app)


def _make_flask_limiter(limit: int, window: int) -> Handle:
    """Flask-Limiter v4 as its docs show: ``Limiter(key_func, app=...,
    storage_uri="memory://")`` and ``@limiter.limit(...)`` under the route."""
    flask_limiter = importlib.import_module("flask_limiter")
    util = importlib.import_module("flask_limiter.util")
    flask = importlib.import_module("flask")
    app = flask.Flask("bench_flask_limiter")
    limiter = flask_limiter.Limiter(
        util.get_remote_address, app=app, storage_uri="memory://"
    )
    app.get(PATH)(limiter.limit(_rate(limit))(_flask_view()))
    return WsgiHandle(app, [_stop_limits_timer(limiter.storage)])


# --------------------------------------------------------------------------
# Django REST framework, through Django's WSGI handler
# --------------------------------------------------------------------------

DRF_URLS = "bench_drf_urls"
DRF_CLIENTS = [f"10.{i // 250}.{i % 250}.1" for i in range(1_000)]


def _django_ready() -> None:
    """Configures Django once for this process: no middleware, no auth app,
    a local-memory cache (DRF's own throttle keeps its history there)."""
    import types

    settings = importlib.import_module("django.conf").settings
    if not settings.configured:
        sys.modules[DRF_URLS] = types.ModuleType(DRF_URLS)
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            SECRET_KEY="bench-only",
            INSTALLED_APPS=[],
            DATABASES={},
            MIDDLEWARE=[],
            ROOT_URLCONF=DRF_URLS,
            USE_TZ=True,
            CACHES={
                "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
            },
            REST_FRAMEWORK={
                "UNAUTHENTICATED_USER": None,
                "DEFAULT_AUTHENTICATION_CLASSES": [],
                "DEFAULT_PERMISSION_CLASSES": [],
                "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            },
            LOGGING_CONFIG=None,
        )
        importlib.import_module("django").setup()


class DjangoHandle(WsgiHandle):
    """Django's WSGI handler; the timed requests come from 1,000 addresses
    in turn, the sanity hits from one."""

    def run(self, keys: list[str]) -> None:
        app = self._app
        start_response = _start_response
        environs = [
            {**WSGI_ENVIRON, "REMOTE_ADDR": addr, "wsgi.input": io.BytesIO(b"")}
            for addr in DRF_CLIENTS
        ]
        n = len(environs)
        for i in range(len(keys)):
            body = app(environs[i % n].copy(), start_response)
            for _chunk in body:
                pass
            body.close()


def _make_drf_app(throttle: Any | None) -> Handle:
    _django_ready()
    views = importlib.import_module("rest_framework.views")
    response = importlib.import_module("rest_framework.response").Response
    urls = importlib.import_module("django.urls")
    wsgi = importlib.import_module("django.core.wsgi")

    class Hello(views.APIView):  # type: ignore[misc,name-defined]
        authentication_classes = ()
        permission_classes = ()
        throttle_classes = () if throttle is None else (throttle,)

        def get(self, request: Any) -> Any:
            return response(MESSAGE)

    sys.modules[DRF_URLS].urlpatterns = [  # type: ignore[attr-defined]
        urls.path(PATH.lstrip("/"), Hello.as_view())
    ]
    urls.clear_url_caches()
    return DjangoHandle(wsgi.get_wsgi_application())


def _make_drf(limit: int, window: int) -> Handle:
    return _make_drf_app(None)


def _make_drf_ours(limit: int, window: int) -> Handle:
    _django_ready()
    drf = importlib.import_module(f"{OURS}.drf")
    drf.reset_throttles()
    throttle = type("Anon", (drf.AnonRateThrottle,), {"rate": _rate(limit)})
    return _make_drf_app(throttle)


def _make_drf_own(limit: int, window: int) -> Handle:
    _django_ready()
    throttling = importlib.import_module("rest_framework.throttling")
    importlib.import_module("django.core.cache").cache.clear()
    throttle = type("Anon", (throttling.AnonRateThrottle,), {"rate": _rate(limit)})
    return _make_drf_app(throttle)


@dataclass(frozen=True)
class Row:
    """One app."""

    name: str
    framework: str  # the scenario it runs in
    module: str  # module whose version is reported
    make: Callable[[int, int], Handle]
    what: str
    baseline: bool = False
    peer: bool = False
    reference: bool = False  # neither ours nor a peer: a floor to read against


ROWS: dict[str, Row] = {
    r.name: r
    for r in (
        Row(
            "fastapi",
            "fastapi",
            "fastapi",
            _make_fastapi,
            "FastAPI app, `GET /hello` -> small JSON, no limiting: the baseline",
            baseline=True,
        ),
        Row(
            "fastapi_ours",
            "fastapi",
            OURS,
            _make_fastapi_ours,
            "the same app + `app.add_middleware(RateLimitMiddleware, "
            "limit=10**9, window_seconds=60)`",
        ),
        Row(
            "fastapi_noop",
            "fastapi",
            "fastapi",
            _make_fastapi_noop,
            "the same app + a pure ASGI middleware that only adds one header "
            "as the response starts: the floor of any header-adding middleware",
            reference=True,
        ),
        Row(
            "slowapi",
            "fastapi",
            "slowapi",
            _make_slowapi,
            "the same app, slowapi `Limiter(key_func=get_remote_address)`, "
            '`@limiter.limit("1000000000/minute")` on the route',
            peer=True,
        ),
        Row(
            "flask",
            "flask",
            "flask",
            _make_flask,
            "Flask app, `GET /hello` -> small JSON, no limiting: the baseline",
            baseline=True,
        ),
        Row(
            "flask_ours",
            "flask",
            OURS,
            _make_flask_ours,
            "the same app + `FlaskRateLimiter(app, limit=10**9, window_seconds=60)`"
            ", `@limiter.limit()` on the view",
        ),
        Row(
            "flask_limiter",
            "flask",
            "flask_limiter",
            _make_flask_limiter,
            "the same app + Flask-Limiter `Limiter(get_remote_address, app=app, "
            'storage_uri="memory://")`, `@limiter.limit("1000000000/minute")`',
            peer=True,
        ),
        Row(
            "drf",
            "drf",
            "rest_framework",
            _make_drf,
            "DRF `APIView`, `GET /hello` -> small JSON, no throttle: the baseline",
            baseline=True,
        ),
        Row(
            "drf_ours",
            "drf",
            OURS,
            _make_drf_ours,
            "the same view, `throttle_classes = [rust_py_rate_limit.drf."
            'AnonRateThrottle]` at `"1000000000/minute"`',
        ),
        Row(
            "drf_own",
            "drf",
            "rest_framework",
            _make_drf_own,
            "the same view, DRF's own `AnonRateThrottle` (local-memory cache) at "
            '`"1000000000/minute"`',
            peer=True,
        ),
    )
}

BASELINES = {r.framework: r.name for r in ROWS.values() if r.baseline}
# Which row each framework's targets compare: ours, and the peer.
OURS_ROWS = {"fastapi": "fastapi_ours", "flask": "flask_ours", "drf": "drf_ours"}
PEER_ROWS = {"fastapi": "slowapi", "flask": "flask_limiter", "drf": "drf_own"}

IMPLS: dict[str, Impl] = {
    r.name: Impl(r.name, r.module, r.make, memory=False) for r in ROWS.values()
}


def _version(module: str) -> str | None:
    if module == OURS:
        return str(importlib.import_module(OURS).__version__)
    try:
        return importlib.metadata.version(PACKAGES.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return None


def _probe(row: Row) -> str | None:
    """None if the row builds and limits as it should, else why not.

    Limit 2: a limited row answers 200, 200, 429; a baseline 200 three times.
    """
    try:
        handle = row.make(2, WINDOW)
    except (ImportError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        got = [handle.hit("") for _ in range(3)]
    except Exception as exc:  # a broken app: report it, measure the rest
        return f"probe request failed: {type(exc).__name__}: {exc}"
    finally:
        handle.close()
    want = [True, True, True] if row.baseline or row.reference else [True, True, False]
    if got != want:
        shown = ["200" if ok else "429" for ok in got]
        return f"limit 2 answered {', '.join(shown)} (expected 200, 200, 429)"
    return None


# --------------------------------------------------------------------------
# The scenario: one per framework
# --------------------------------------------------------------------------


class Requests(Scenario):
    """``requests`` timed requests to a fresh app, after ``warmup`` untimed."""

    def __init__(self, p: core.Params, name: str) -> None:
        super().__init__(p)
        self.name = name
        self.description = (
            f"{name}: GET {PATH} -> small JSON, same client, never limited"
        )
        self.keys = [""] * p.n_hot
        self.warm = self.keys[: p.warmup]

    def sample(self, impl: Impl, repeat: int) -> core.Sample:
        with core._limiter(impl, BIG_LIMIT) as h:
            h.run(self.warm)
            ns = core._timed(h, self.keys)
            core._expect(h.hit(""), True, "request after the run")
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {
            "requests": len(self.keys),
            "warmup": len(self.warm),
            "limit": BIG_LIMIT,
            "window": WINDOW,
        }


def _add_vs(res: dict[str, Any], framework: str) -> None:
    """Each row's ``vs`` (its framework's baseline) and ``ratio_vs``."""
    base = BASELINES[framework]
    for name, row in res["results"].items():
        row["vs"] = None if name == base else base
        row["ratio_vs"] = row["ratio"]
        row["median_us"] = round(row["median_ns"] / 1000, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default=",".join(ROWS), help="comma list")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list")
    ap.add_argument("--repeats", type=int, help="repeats per scenario (default 7)")
    ap.add_argument("--quick", action="store_true", help="smaller, faster run")
    ap.add_argument("--requests", type=int, help="timed requests per run")
    ap.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    args = ap.parse_args(argv)

    params = QUICK if args.quick else HttpParams()
    if args.repeats is not None:
        params = replace(params, repeats=max(1, args.repeats))
    if args.requests is not None:
        params = replace(params, requests=max(1, args.requests))
    core_params = replace(
        core.Params(),
        repeats=params.repeats,
        n_hot=params.requests,
        warmup=params.warmup,
    )

    scenario_names = core._csv(args.scenarios, ALL_SCENARIOS, "scenario")
    problems: list[str] = []
    skipped: dict[str, str] = {}
    impls: list[Impl] = []
    for name in core._csv(args.impl, tuple(ROWS), "implementation"):
        if ROWS[name].framework not in scenario_names:
            continue
        reason = _probe(ROWS[name])
        if reason:
            skipped[name] = reason
            print(f"note: skipping {name}: {reason}", file=sys.stderr)
        else:
            impls.append(IMPLS[name])

    out: dict[str, Any] = {
        "meta": {
            "suite": "http",
            "python": sys.version.split()[0],
            "python_implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "params": asdict(params),
            "baselines": BASELINES,
            "impls": {i.name: _version(i.module) for i in impls},
            "frameworks": {
                f: _version(f)
                for f in scenario_names
                if any(ROWS[i.name].framework == f for i in impls)
            },
            "what": {i.name: ROWS[i.name].what for i in impls},
            "client": CLIENT[0],
            "skipped": skipped,
            "problems": problems,
        },
        "scenarios": {},
    }
    for name in scenario_names:
        these = [i for i in impls if ROWS[i.name].framework == name]
        if not these:
            continue
        if BASELINES[name] not in [i.name for i in these]:
            print(f"note: no {name} baseline; ratios will be null", file=sys.stderr)
        t0 = time.monotonic()
        print(f"{name} ...", file=sys.stderr)
        scn = Requests(core_params, name)
        res = core.run_timed(scn, these, params.repeats, problems, BASELINES[name])
        _add_vs(res, name)
        res["unit"] = "ns/request"
        del scn
        gc.collect()
        out["scenarios"][name] = res
        summary = ", ".join(
            f"{k}={v['median_us']}us" for k, v in res["results"].items()
        )
        print(f"  {summary}  [{time.monotonic() - t0:.1f}s]", file=sys.stderr)

    if _loop is not None:
        _loop.close()
    core.emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
