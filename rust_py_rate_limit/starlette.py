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

from starlette.requests import Request
from starlette.responses import Response
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
from rust_py_rate_limit.keys import TrustedProxies, client_address
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
        trusted_proxies: Proxy addresses/networks whose ``X-Forwarded-For``
            and ``Forwarded`` headers are believed.
        ipv6_prefix: Key IPv6 clients by this prefix (e.g. 64).
        exempt_options: Let CORS preflight requests (``OPTIONS`` with
            ``Access-Control-Request-Method``) through unlimited (default).
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
        trusted_proxies: Iterable[str] | None = None,
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
        self.ipv6_prefix = ipv6_prefix
        self.exempt_options = bool(exempt_options)
        self.on_blocked = on_blocked
        # Fail at start-up, not on the first request.
        self.limiter.capacity  # noqa: B018
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise TypeError(f"cost must be an int, not {type(cost).__name__}")
        if not 1 <= cost <= self.limiter.capacity:
            raise ValueError(
                f"cost must be between 1 and {self.limiter.capacity}, got {cost}"
            )
        self.cost = cost

    def _client_key(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        if not self.trusted_proxies:
            return client_address(peer, ipv6_prefix=self.ipv6_prefix)
        return client_address(
            peer,
            _header(scope, b"x-forwarded-for"),
            _header(scope, b"forwarded"),
            trusted_proxies=self.trusted_proxies,
            ipv6_prefix=self.ipv6_prefix,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (
            self.exempt_options
            and scope["method"] == "OPTIONS"
            and _header(scope, b"access-control-request-method")
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
