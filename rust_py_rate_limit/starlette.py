"""Rate limiting for Starlette and FastAPI: a pure ASGI middleware.

``app.add_middleware(RateLimitMiddleware, limit=100, window_seconds=60)``:
every HTTP request is keyed (by default on the client address, see
`rust_py_rate_limit.keys`) and decided with ``await limiter.adecide(...)``
before the app sees it. Admitted responses get the rate-limit headers added as
they are sent; refused requests get a 429 (``{"detail": "Too many
requests"}`` and ``Retry-After``) without reaching the app. Websocket and
lifespan scopes pass through untouched. It is not a ``BaseHTTPMiddleware``:
the request and response bodies stream through without being buffered.
The options and what they do are those of the request policy
(`rust_py_rate_limit._policy`); this module translates ASGI to it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rust_py_rate_limit._native import Decision
from rust_py_rate_limit._policy import (
    LimitOptions,
    RequestPolicy,
    Rule,
    Verdict,
    build_limiter,
    check_names,
    exempt_paths,
    normalize_path,
)
from rust_py_rate_limit.keys import client_address
from rust_py_rate_limit.limiter import RateLimiter

if TYPE_CHECKING:
    from typing_extensions import Unpack

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


class MiddlewareOptions(LimitOptions, total=False):
    """The keyword options of `RateLimitMiddleware`."""

    rate: str | list[str] | None
    exempt: Iterable[str] | ExemptFunc | None
    exempt_options: bool
    on_blocked: OnBlocked | None


def _identity(user: object) -> str | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(getattr(user, "identity", None) or getattr(user, "display_name", ""))


def user_key(request: Request) -> str:
    """Key on the authenticated user, else on the client address.

    Reads ``request.user`` as set by Starlette's ``AuthenticationMiddleware``
    (``user:<identity>`` when authenticated); anonymous requests are keyed on
    the client address as the default key is.
    """
    identity = _identity(request.scope.get("user"))
    if identity is not None:
        return f"user:{identity}"
    client = request.client
    return client_address(client.host if client else None)


class ScopeView:
    """The policy's view of an ASGI HTTP scope (read lazily)."""

    __slots__ = ("_request", "receive", "route", "scope")

    def __init__(
        self, scope: Scope, receive: Receive, route: str = "", request: Any = None
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.route = route
        self._request = request

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def peer(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    @property
    def user(self) -> str | None:
        return _identity(self.scope.get("user"))

    @property
    def request(self) -> Request:
        if self._request is None:
            self._request = Request(self.scope, self.receive)
        return self._request  # type: ignore[no-any-return]

    def header(self, name: str) -> list[str]:
        raw = name.encode("latin-1")
        return [v.decode("latin-1") for k, v in self.scope["headers"] if k == raw]


# The names that say a response already describes a rate limit (both
# header modes; not Retry-After, which an app's own 503 may carry).
_LIMIT_HEADERS = frozenset((b"x-ratelimit-limit", b"ratelimit-policy", b"ratelimit"))


async def answer(send: Send, verdict: Verdict) -> None:
    """Sends the JSON answer of a verdict that does not pass (429, 503)."""
    body = verdict.body
    await send(
        {
            "type": "http.response.start",
            "status": verdict.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *verdict.raw_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# What a CORS preflight reaches, found once per middleware: the router that
# will route it, or a CORSMiddleware that answers it.
_CORS = "cors"
_MAX_HOPS = 64


def _downstream(app: object) -> Router | str | None:
    """Follows ``app`` through middleware (each calling its ``.app``) to the
    router, or to a `CORSMiddleware` (which answers every preflight itself).
    None when the chain leads anywhere else: then nothing is proved."""
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
    # No route: a redirect or the router's 404, unless it has a default app.
    return bool(router.default != router.not_found)


class RateLimitMiddleware:
    """Pure ASGI rate-limiting middleware.

    Args:
        app: The ASGI app to protect.
        limit, window_seconds: The limit (or ``rate=``, or ``limiter=`` to
            share one).
        key_func: ``(request) -> str`` (or an awaitable of one), or ``"user"``
            for `user_key`; by default the client address, honouring the
            forwarding header only from ``trusted_proxies``.
        **options: The request policy's other options (`MiddlewareOptions`):
            ``exempt`` (paths or ``(request) -> bool``), ``exempt_options``
            (a CORS preflight answered without an endpoint, by a
            `CORSMiddleware` inside this one or by the router, is not
            counted), ``on_blocked`` (``(request, decision) -> Response``, or
            an awaitable, instead of the 429), ``headers``, ``cost``,
            ``detail``, the client address and limiter options, and the
            storage options (a storage failure with ``on_error="raise"``
            answers 503). See the README.

    Raises:
        TypeError, ValueError: A bad option, naming it.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int | None = None,
        window_seconds: int | None = None,
        key_func: KeyFunc | Literal["user"] | None = None,
        **options: Unpack[MiddlewareOptions],
    ) -> None:
        check_names(options, "RateLimitMiddleware", MiddlewareOptions)
        self.app = app
        self.policy = RequestPolicy(
            limit=limit,
            window_seconds=window_seconds,
            key_func=key_func,
            caller="RateLimitMiddleware",
            **options,
        )
        assert self.policy.rule is not None
        self.rule: Rule = self.policy.rule
        self.limiter: RateLimiter = self.rule.limiter
        self.cost = self.rule.cost
        exempts = (self.policy.exempt_paths, self.policy.exempt_predicate)
        self._exempt = self.policy.exempt if exempts != (None, None) else None
        self._preflight_target: Router | str | None = None
        self._preflight_target_found = False

    def _preflight_is_exempt(self, scope: Scope, view: ScopeView) -> bool:
        """Whether this CORS preflight is answered without an endpoint."""
        if not self._preflight_target_found:
            self._preflight_target = _downstream(self.app)
            self._preflight_target_found = True
        target = self._preflight_target
        if target == _CORS:
            # CORSMiddleware answers a preflight itself only when it carries
            # an Origin; without one it passes the request on to the app.
            return bool(view.header("origin"))
        if isinstance(target, Router):
            return not _endpoint_may_run(target, scope)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy
        view = ScopeView(scope, receive)
        if (self._exempt is not None and self._exempt(view)) or (
            scope["method"] == "OPTIONS"
            and policy.preflight(view)
            and self._preflight_is_exempt(scope, view)
        ):
            await self.app(scope, receive, send)
            return
        rule = self.rule
        verdict = rule.decide(view) if rule.synchronous else await rule.adecide(view)
        if verdict.passes:
            extra = verdict.raw_headers
            if not extra:
                await self.app(scope, receive, send)
                return

            # A plain function returning send's awaitable: no coroutine of
            # its own per message. A response that already describes a
            # limit (a route's own RateLimit, in any header mode or case)
            # keeps its headers alone.
            def send_with_headers(message: Message) -> Awaitable[None]:
                if message["type"] == "http.response.start":
                    headers = message.get("headers", ())
                    if type(headers) is not list:
                        headers = list(headers)  # any iterable: read it once
                    for name, _ in headers:
                        if name.lower() in _LIMIT_HEADERS:
                            message["headers"] = headers
                            break
                    else:
                        message["headers"] = [*headers, *extra]
                return send(message)

            await self.app(scope, receive, send_with_headers)
        elif verdict.limited and policy.on_blocked is not None:
            response: Any = policy.on_blocked(view.request, verdict.decision)
            if inspect.isawaitable(response):
                response = await response
            response.raw_headers.extend(verdict.raw_headers)
            await response(scope, receive, send)
        else:
            await answer(send, verdict)
