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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rust_py_rate_limit._asgi import (
    CORS,
    LIMIT_HEADERS,
    ScopeView,
    answer,
    downstream,
    endpoint_may_run,
    identity,
)
from rust_py_rate_limit._native import Decision
from rust_py_rate_limit._policy import (
    LimitOptions,
    RequestPolicy,
    Rule,
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


def user_key(request: Request) -> str:
    """Key on the authenticated user, else on the client address.

    Reads ``request.user`` as set by Starlette's ``AuthenticationMiddleware``
    (``user:<identity>`` when authenticated); anonymous requests are keyed on
    the client address as the default key is.
    """
    user = identity(request.scope.get("user"))
    if user is not None:
        return f"user:{user}"
    client = request.client
    return client_address(client.host if client else None)


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
            self._preflight_target = downstream(self.app)
            self._preflight_target_found = True
        target = self._preflight_target
        if target == CORS:
            # CORSMiddleware answers a preflight itself only when it carries
            # an Origin; without one it passes the request on to the app.
            return bool(view.header("origin"))
        if isinstance(target, Router):
            return not endpoint_may_run(target, scope)
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
                        if name.lower() in LIMIT_HEADERS:
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
