"""Rate limiting for Starlette and FastAPI: a pure ASGI middleware.

Example:
    from fastapi import FastAPI
    from rust_py_rate_limit.starlette import RateLimitMiddleware

    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limit=100, window_seconds=60)

Every HTTP request is keyed (by default on the client address, see
`rust_py_rate_limit.keys`) and decided with ``await limiter.adecide(...)``
before the app sees it. Admitted responses get the rate-limit headers added as
they are sent; refused requests get a 429 (``{"detail": "Too many
requests"}`` and ``Retry-After``) without reaching the app. Websocket and
lifespan scopes pass through untouched. It is not a ``BaseHTTPMiddleware``:
the request and response bodies stream through without being buffered.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rust_py_rate_limit._http import (
    BLOCKED_STATUS,
    HeaderMode,
    blocked_body,
    check_header_mode,
    rate_limit_headers,
)
from rust_py_rate_limit._native import Decision
from rust_py_rate_limit.exceptions import StorageError
from rust_py_rate_limit.keys import (
    ForwardedHeader,
    TrustedProxies,
    check_forwarded_header,
    check_ipv6_prefix,
    client_address,
    client_address_from_header,
)
from rust_py_rate_limit.limiter import RateLimiter

__all__ = [
    "RateLimitMiddleware",
    "build_limiter",
    "exempt_paths",
    "normalize_path",
    "user_key",
]

KeyFunc = Callable[[Request], "str | Awaitable[str]"]
ExemptFunc = Callable[[Request], bool]
OnBlocked = Callable[[Request, Decision], "Response | Awaitable[Response]"]


def normalize_path(path: str) -> str:
    """A path with repeated slashes collapsed and no trailing slash.

    ASGI servers hand over ``scope["path"]`` already percent-decoded, so
    ``/a%2Fb``-style spellings arrive here decoded too.
    """
    while "//" in path:
        path = path.replace("//", "/")
    return path.rstrip("/") or "/"


def exempt_paths(exempt: Iterable[str] | None) -> Callable[[str], bool] | None:
    """A matcher for exempt paths: each exempts itself and everything below
    it, compared after `normalize_path`."""
    if exempt is None:
        return None
    if isinstance(exempt, str):
        exempt = [exempt]
    if not isinstance(exempt, Iterable):
        raise TypeError(
            "exempt must be a list of paths or a predicate (request) -> bool, "
            f"not {type(exempt).__name__}"
        )
    prefixes = []
    for entry in exempt:
        if not isinstance(entry, str) or not entry.startswith("/"):
            raise ValueError(
                f"exempt paths must be str starting with '/', got {entry!r}"
            )
        prefixes.append(normalize_path(entry))
    if not prefixes:
        return None

    def matches(path: str) -> bool:
        path = normalize_path(path)
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)

    return matches


def build_limiter(
    limiter: RateLimiter | None,
    limit: int | None,
    window_seconds: int | None,
    rate: str | list[str] | None,
    algorithm: str,
    **storage: Any,
) -> RateLimiter:
    """The limiter an adapter uses: the one given, or one built from options
    (``storage=`` and its ``key_prefix=``, ``timeout=``, ``on_error=``
    included, so several workers can share one Redis-backed limit)."""
    if limiter is not None:
        if not isinstance(limiter, RateLimiter):
            raise TypeError(
                f"limiter must be a RateLimiter, not {type(limiter).__name__}"
            )
        given = [limit, window_seconds, rate, *storage.values()]
        if any(v is not None for v in given):
            raise TypeError(
                "give either limiter or limit/window_seconds/rate/storage, not both"
            )
        if algorithm != "fixed":
            raise TypeError(
                "algorithm cannot be given with limiter: the limiter's "
                f"algorithm ({limiter.algorithm!r}) is used"
            )
        return limiter
    options = {k: v for k, v in storage.items() if v is not None}
    return RateLimiter(
        limit,
        window_seconds,
        rate=rate,
        algorithm=algorithm,  # type: ignore[arg-type]
        **options,
    )


UNAVAILABLE_BODY = b'{"detail": "Rate limiter unavailable"}'


def user_key(request: Request) -> str:
    """Key on the authenticated user, else on the client address.

    Reads ``request.user`` as set by Starlette's ``AuthenticationMiddleware``
    (``user:<identity>`` when authenticated); anonymous requests are keyed on
    the client address as the default key is.
    """
    user = request.scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        identity = getattr(user, "identity", None) or getattr(user, "display_name", "")
        return f"user:{identity}"
    client = request.client
    return client_address(client.host if client else None)


def _header(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope["headers"] if k == name]


def check_cost(cost: object, capacity: int) -> int:
    """Validates a ``cost=`` option against the limiter's capacity."""
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, not {type(cost).__name__}")
    if not 1 <= cost <= capacity:
        raise ValueError(f"cost must be between 1 and {capacity}, got {cost}")
    return cost


def check_bool(name: str, value: object) -> bool:
    """Validates a True/False option."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


# What a CORS preflight reaches, found once per middleware: the router that
# will route it, or a CORSMiddleware that answers it.
_CORS = "cors"
_MAX_HOPS = 64


def _downstream(app: object) -> Router | str | None:
    """Follows ``app`` through middleware (each calling its ``.app``) to the
    router, or to a `CORSMiddleware` (which answers every preflight itself).
    None when the chain leads anywhere else (a plain ASGI app, a middleware
    that keeps its app elsewhere): then nothing is proved."""
    for _ in range(_MAX_HOPS):
        if isinstance(app, CORSMiddleware):
            return _CORS
        if isinstance(app, Router):
            return app
        router = getattr(app, "router", None)
        if isinstance(router, Router):  # a Starlette or FastAPI app
            return router
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _endpoint_may_run(router: Router, scope: Scope) -> bool:
    """Whether routing ``scope`` may run an endpoint (or any app but the
    router's own answers: 405, a slash redirect, its default 404)."""
    partial = False
    try:
        for route in router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                # A route takes this method (a route listing OPTIONS, a Mount,
                # a class endpoint): its code runs.
                return True
            partial = partial or match is Match.PARTIAL
    except Exception:
        return True
    if partial:
        return False  # 405 Method Not Allowed, from the router
    # No route: a redirect or the 404 of the router, unless it was given a
    # default app of its own.
    return bool(router.default != router.not_found)


class RateLimitMiddleware:
    """Pure ASGI rate-limiting middleware.

    Args:
        app: The ASGI app to protect.
        limit: Requests per window (with ``window_seconds``), as in the seed.
        window_seconds: The window length in seconds.
        key_func: ``(request) -> str`` (or an awaitable of one), or ``"user"``
            for `user_key`; by default the client address, honouring
            forwarding headers only from ``trusted_proxies``.
        limiter: A `RateLimiter` to share instead of limit/window/rate.
        rate: A rate string such as ``"100/minute"`` (or compound).
        algorithm: Algorithm of the limiter built from limit/window/rate.
        exempt: Paths (each exempting itself and everything below it) or a
            predicate ``(request) -> bool``.
        headers: ``"legacy"`` (default), ``"ietf"``, ``"both"`` or None.
        trusted_proxies: Proxy addresses/networks whose forwarding header
            is believed.
        forwarded_header: The one header believed from a trusted proxy:
            ``"x-forwarded-for"`` (default), ``"forwarded"`` or
            ``"x-real-ip"`` (see `rust_py_rate_limit.keys`). The others are
            never read.
        ipv6_prefix: Key IPv6 clients by this prefix (e.g. 64).
        exempt_options: Let a CORS preflight (``OPTIONS`` with
            ``Access-Control-Request-Method``) through uncounted (default)
            when it is answered without an endpoint: by a `CORSMiddleware`
            inside this one, or by the router because no route takes
            ``OPTIONS`` at that path (405, 404). A preflight that would run
            an endpoint (a route listing ``OPTIONS``, a mounted app) is
            counted like any request.
        on_blocked: ``(request, decision) -> Response`` (or an awaitable)
            answering a refused request instead of the default 429; the
            rate-limit headers are added to it.
        cost: Units each request spends.
        storage: ``"memory"`` (default) or a ``redis://`` URL, so that several
            workers share one limit; with ``key_prefix``, ``timeout`` and
            ``on_error`` as for `RateLimiter`. A storage failure never
            escapes: with ``on_error="raise"`` the request gets a 503.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int | None = None,
        window_seconds: int | None = None,
        key_func: KeyFunc | Literal["user"] | None = None,
        *,
        limiter: RateLimiter | None = None,
        rate: str | list[str] | None = None,
        algorithm: str = "fixed",
        exempt: Iterable[str] | ExemptFunc | None = None,
        headers: HeaderMode = "legacy",
        trusted_proxies: Iterable[str] | TrustedProxies | None = None,
        forwarded_header: ForwardedHeader = "x-forwarded-for",
        ipv6_prefix: int | None = None,
        exempt_options: bool = True,
        on_blocked: OnBlocked | None = None,
        cost: int = 1,
        storage: str | None = None,
        key_prefix: str | None = None,
        timeout: float | None = None,
        on_error: str | None = None,
    ) -> None:
        self.app = app
        self.limiter = build_limiter(
            limiter,
            limit,
            window_seconds,
            rate,
            algorithm,
            storage=storage,
            key_prefix=key_prefix,
            timeout=timeout,
            on_error=on_error,
        )
        if key_func == "user":
            key_func = user_key
        if key_func is not None and not callable(key_func):
            raise TypeError("key_func must be callable or 'user'")
        if on_blocked is not None and not callable(on_blocked):
            raise TypeError("on_blocked must be callable")
        self.key_func: KeyFunc | None = key_func
        self.exempt_request: ExemptFunc | None = exempt if callable(exempt) else None
        self.exempt_path = None if callable(exempt) else exempt_paths(exempt)
        self.headers = check_header_mode(headers)
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.forwarded_header = check_forwarded_header(forwarded_header)
        self._forwarded_name = self.forwarded_header.encode("latin-1")
        self.ipv6_prefix = check_ipv6_prefix(ipv6_prefix)
        self.exempt_options = check_bool("exempt_options", exempt_options)
        self.on_blocked = on_blocked
        # Fail at start-up, not on the first request.
        self.cost = check_cost(cost, self.limiter.capacity)
        self._preflight_target: Router | str | None = None
        self._preflight_target_found = False

    def _client_key(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        if not self.trusted_proxies:
            return client_address(peer, ipv6_prefix=self.ipv6_prefix)
        # Only the configured header is read: the client cannot pick.
        return client_address_from_header(
            peer,
            _header(scope, self._forwarded_name),
            forwarded_header=self.forwarded_header,
            trusted_proxies=self.trusted_proxies,
            ipv6_prefix=self.ipv6_prefix,
        )

    def _preflight_is_exempt(self, scope: Scope) -> bool:
        """Whether this CORS preflight is answered without an endpoint."""
        if not self._preflight_target_found:
            self._preflight_target = _downstream(self.app)
            self._preflight_target_found = True
        target = self._preflight_target
        if target == _CORS:
            # CORSMiddleware answers a preflight itself only when it carries
            # an Origin; without one it passes the request on to the app.
            return bool(_header(scope, b"origin"))
        if isinstance(target, Router):
            return not _endpoint_may_run(target, scope)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (
            self.exempt_options
            and scope["method"] == "OPTIONS"
            and _header(scope, b"access-control-request-method")
            and self._preflight_is_exempt(scope)
        ):
            await self.app(scope, receive, send)
            return
        request: Request | None = None
        if self.exempt_request is not None:
            request = Request(scope, receive)
            if self.exempt_request(request):
                await self.app(scope, receive, send)
                return
        elif self.exempt_path is not None and self.exempt_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.key_func is None:
            key = self._client_key(scope)
        else:
            request = request or Request(scope, receive)
            result: Any = self.key_func(request)
            key = await result if inspect.isawaitable(result) else result
        try:
            decision = await self.limiter.adecide(key, self.cost)
        except StorageError:
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(UNAVAILABLE_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})
            return
        extra = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in rate_limit_headers(decision, self.limiter, self.headers)
        ]
        if decision.allowed:

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            await self.app(scope, receive, send_with_headers)
        elif self.on_blocked is not None:
            request = request or Request(scope, receive)
            response: Any = self.on_blocked(request, decision)
            if inspect.isawaitable(response):
                response = await response
            for name, value in extra:
                response.raw_headers.append((name, value))
            await response(scope, receive, send)
        else:
            body = blocked_body()
            await send(
                {
                    "type": "http.response.start",
                    "status": BLOCKED_STATUS,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *extra,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
