"""Django requests and responses, translated onto the request policy.

Shared by the middleware and the view decorator of `rust_py_rate_limit.django`
(and by anything else built on Django requests, such as a REST framework
throttle): the request view, the user, the answers, and whether a view
answers ``OPTIONS`` without application code.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views import View

from rust_py_rate_limit._policy import RequestPolicy, Rule, Verdict
from rust_py_rate_limit.keys import ClientAddressUnavailable

__all__ = ["MARK", "DjangoLimit", "DjangoView", "answers_options_without_view_code"]

V = TypeVar("V", bound=Callable[..., Any])
_MISSING = object()
#: Set on a response whose rate-limit headers a `DjangoLimit` added.
MARK = "_rust_py_rate_limit_decided"


class DjangoView:
    """The policy's view of a Django request."""

    __slots__ = ("request", "route", "user")

    def __init__(self, request: HttpRequest, route: str = "", user: Any = None):
        self.request = request
        self.route = route
        self.user = user

    @property
    def method(self) -> str:
        return self.request.method or ""

    @property
    def path(self) -> str:
        path: str = self.request.path_info
        return path

    @property
    def peer(self) -> str | None:
        peer: str | None = self.request.META.get("REMOTE_ADDR")
        return peer

    def header(self, name: str) -> list[str]:
        value = self.request.META.get("HTTP_" + name.upper().replace("-", "_"))
        return [value] if value else []


class DjangoLimit:
    """A policy's rule applied to Django requests, sync or async.

    Args:
        policy: The policy (with a rule).
        label: Names the key option in errors (``RUST_PY_RATE_LIMIT['KEY']``).
        route: The route part of keys (a view's name), if any.
    """

    __slots__ = ("label", "policy", "route", "rule")

    def __init__(self, policy: RequestPolicy, label: str, route: str = "") -> None:
        assert policy.rule is not None
        self.policy = policy
        self.rule: Rule = policy.rule
        self.label = label
        self.route = route

    def _user(self, request: HttpRequest, user: object = _MISSING) -> str | None:
        if user is _MISSING:
            user = getattr(request, "user", _MISSING)
        if user is _MISSING:
            raise ImproperlyConfigured(
                f"{self.label} is 'user' but the request has no user: add "
                "'django.contrib.auth.middleware.AuthenticationMiddleware' to "
                "MIDDLEWARE (before RateLimitMiddleware)"
            )
        if getattr(user, "is_authenticated", False):
            return f"{getattr(user, 'pk', None)}"
        return None

    def _no_address(self) -> ImproperlyConfigured:
        return ImproperlyConfigured(
            f"{self.label}: the request has no client address (no REMOTE_ADDR: "
            "a Unix socket?); key requests another way with a callable "
            "(request) -> str"
        )

    def decide(self, request: HttpRequest) -> Verdict:
        """The verdict for ``request`` (sync)."""
        user = self._user(request) if self.policy.keyed_by_user else None
        try:
            return self.rule.decide(DjangoView(request, self.route, user))
        except ClientAddressUnavailable:
            raise self._no_address() from None

    async def adecide(self, request: HttpRequest) -> Verdict:
        """The verdict for ``request`` (async; the user is loaded with
        ``await request.auser()``, never by the lazy ``request.user``)."""
        user = None
        if self.policy.keyed_by_user:
            auser = getattr(request, "auser", None)
            if auser is None:  # Django < 5.0
                user = await sync_to_async(self._user)(request)
            else:
                user = self._user(request, await auser())
        try:
            return await self.rule.adecide(DjangoView(request, self.route, user))
        except ClientAddressUnavailable:
            raise self._no_address() from None

    def add_headers(self, response: Any, verdict: Verdict) -> Any:
        """Adds the verdict's headers to ``response`` (and marks it)."""
        for name, value in verdict.headers:
            response[name] = value
        setattr(response, MARK, True)
        return response

    def wrap(self, view: V) -> V:
        """``view`` (sync or async, a function or a class-based view's
        handler) deciding by this limit before it runs."""
        limit = self
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = _request_of(args)
                verdict = await limit.adecide(request)
                if not verdict.passes:
                    return limit.answer(request, verdict)
                return limit.add_headers(await view(*args, **kwargs), verdict)

            return cast(V, async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = _request_of(args)
            verdict = limit.decide(request)
            if not verdict.passes:
                refusal = limit.answer(request, verdict)
                return _later(refusal) if _returns_awaitable(view) else refusal
            response = view(*args, **kwargs)
            if isinstance(response, Awaitable):
                return _with_headers(response, limit, verdict)
            return limit.add_headers(response, verdict)

        return cast(V, wrapper)

    def answer(self, request: HttpRequest, verdict: Verdict) -> Any:
        """The response to a verdict that does not pass (429, 503)."""
        if verdict.limited and self.policy.on_blocked is not None:
            response = self.policy.on_blocked(request, verdict.decision)
        else:
            response = HttpResponse(
                verdict.body, status=verdict.status, content_type="application/json"
            )
        return self.add_headers(response, verdict)


def _returns_awaitable(view: Callable[..., Any]) -> bool:
    """Whether a sync ``view`` belongs to an async class-based view
    (``method_decorator(..., name="dispatch")`` on ``async def`` handlers):
    a refusal must then be a coroutine too."""
    owner = getattr(getattr(view, "func", view), "__self__", None)
    return bool(getattr(owner, "view_is_async", False))


async def _later(response: Any) -> Any:
    return response


async def _with_headers(
    pending: Awaitable[Any], limit: DjangoLimit, verdict: Verdict
) -> Any:
    return limit.add_headers(await pending, verdict)


def _request_of(args: tuple[Any, ...]) -> HttpRequest:
    if not args or not hasattr(args[0], "META"):
        raise TypeError(
            "@ratelimit: the view's first argument is not a request; on a "
            "class-based view use method_decorator(ratelimit(...), name=...)"
        )
    return args[0]


def answers_options_without_view_code(view_func: object) -> bool:
    """Whether Django answers an ``OPTIONS`` to ``view_func`` with no code of
    the application: a class-based view straight from ``as_view()`` keeping
    `View`'s own ``__init__``, ``setup()``, ``dispatch()`` and ``options()``
    (which only lists the allowed methods). A function view, a decorated
    view, or a class with its own ``options()`` or ``dispatch()`` runs code."""
    view_class = getattr(view_func, "view_class", None)
    if not isinstance(view_class, type) or not issubclass(view_class, View):
        return False
    if getattr(view_func, "__wrapped__", None) is not None:
        return False
    if "options" not in getattr(view_class, "http_method_names", ()):
        return False
    return all(
        getattr(view_class, name, None) is getattr(View, name)
        for name in ("__init__", "setup", "dispatch", "options")
    )
