"""Django integration: a rate-limiting middleware and a view decorator.

Add ``"rust_py_rate_limit.django.RateLimitMiddleware"`` to ``MIDDLEWARE`` and
configure it with one setting, ``RUST_PY_RATE_LIMIT = {"LIMIT": 100,
"WINDOW_SECONDS": 60, "KEY": "ip"}``: its keys are the request policy's
options in upper case (`rust_py_rate_limit._policy.settings`; the README
lists them), ``KEY`` being ``"ip"``, ``"user"``, or a callable
``(request) -> str`` or a dotted path to one. A bad setting raises
``ImproperlyConfigured`` naming the key. A CORS preflight is decided once
Django has resolved its view: it is not counted when that view answers
``OPTIONS`` without code of the application. Sync and async stacks both work.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from rust_py_rate_limit._django import (
    MARK,
    DjangoLimit,
    DjangoView,
    answers_options_without_view_code,
)
from rust_py_rate_limit._native import Decision
from rust_py_rate_limit._policy import (
    ClientAddresses,
    LimitOptions,
    RequestPolicy,
    SettingsError,
    Verdict,
    check_names,
    key_option,
    policy_from_settings,
)
from rust_py_rate_limit._policy.options import check_networks
from rust_py_rate_limit.keys import ForwardedHeader, TrustedProxies

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SETTING", "RateLimitMiddleware", "client_ip", "ratelimit", "set_networks"]

V = TypeVar("V", bound=Callable[..., Any])
KeyFunc = Callable[[HttpRequest], str]

#: The name of the Django setting that configures the middleware.
SETTING = "RUST_PY_RATE_LIMIT"


class DecoratorOptions(LimitOptions, total=False):
    """The keyword options of `ratelimit` passed on to the policy."""

    limit: int | None
    window_seconds: int | None


def client_ip(
    request: HttpRequest,
    trusted_proxies: TrustedProxies | Iterable[str] | None = None,
    forwarded_header: ForwardedHeader = "x-forwarded-for",
) -> str:
    """The client address of a Django request: ``REMOTE_ADDR``, or from the
    one forwarding header named by ``forwarded_header`` when ``REMOTE_ADDR``
    is one of ``trusted_proxies`` (see `rust_py_rate_limit.keys`).

    Raises:
        ClientAddressUnavailable: The request has no ``REMOTE_ADDR``.
        TypeError, ValueError: A bad ``trusted_proxies`` or ``forwarded_header``.
    """
    addresses = ClientAddresses(trusted_proxies, forwarded_header)
    return addresses.of(DjangoView(request))


class RateLimitMiddleware:
    """Rate-limits every request, configured by ``settings.RUST_PY_RATE_LIMIT``.

    Each instance builds its own `RateLimiter` when Django builds the
    middleware chain (unless ``LIMITER`` supplies one). With an async
    ``get_response`` the instance is a coroutine function.

    Raises:
        ImproperlyConfigured: The setting is missing or wrong; the message
            names the key at fault.

    Attributes:
        limiter: The limiter that decides.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        config = getattr(settings, SETTING, None)
        if config is None:
            raise ImproperlyConfigured(
                f"RateLimitMiddleware needs the {SETTING} setting, e.g. "
                f'{SETTING} = {{"LIMIT": 100, "WINDOW_SECONDS": 60, "KEY": "ip"}}'
            )
        try:
            policy = policy_from_settings(
                config, SETTING, import_string, address_prefix="ip:"
            )
        except SettingsError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        self.policy = policy
        _LIVE.add(self)
        self._limit = DjangoLimit(policy, f"{SETTING}['KEY']")
        self.limiter = self._limit.rule.limiter
        # Request attributes of this instance: a preflight whose decision
        # waits for its view, and the verdict given then.
        self._deferred = f"_rust_py_rate_limit_preflight_{id(self)}"
        self._decided = f"_rust_py_rate_limit_decision_{id(self)}"
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
            # Django calls an async process_view directly in an async stack.
            self.process_view = self._aprocess_view  # type: ignore[method-assign]

    def is_exempt(self, request: HttpRequest) -> bool:
        """Whether ``request`` is not counted, by ``EXEMPT`` (a CORS
        preflight is decided in `process_view`, once its view is known)."""
        return self.policy.exempt(DjangoView(request))

    def _defers(self, request: HttpRequest) -> bool:
        """Marks a CORS preflight to be decided when its view is known."""
        if self.policy.preflight(DjangoView(request)):
            setattr(request, self._deferred, True)
            return True
        return False

    def _finish(self, request: HttpRequest, response: Any, verdict: Any) -> Any:
        """Adds the headers unless a view's own limit (`ratelimit`) decided:
        a response reports one limiter, not a mix of two."""
        verdict = verdict or request.__dict__.pop(self._decided, None)
        if verdict is not None and not (
            getattr(response, MARK, False)
            or "X-RateLimit-Limit" in response
            or "RateLimit-Policy" in response
        ):
            self._limit.add_headers(response, verdict)
        return response

    def _counts_preflight(self, request: HttpRequest, view_func: Any) -> bool:
        """Whether a deferred preflight is counted now that its view is known
        (not if the view runs no application code)."""
        deferred = request.__dict__.pop(self._deferred, False)
        return bool(deferred) and not answers_options_without_view_code(view_func)

    def _preflight(self, request: HttpRequest, verdict: Verdict) -> Any:
        if not verdict.passes:
            return self._limit.answer(request, verdict)
        setattr(request, self._decided, verdict)
        return None

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> Any:
        """Decides a deferred CORS preflight, now that its view is known."""
        if not self._counts_preflight(request, view_func):
            return None
        return self._preflight(request, self._limit.decide(request))

    async def _aprocess_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> Any:
        if not self._counts_preflight(request, view_func):
            return None
        return self._preflight(request, await self._limit.adecide(request))

    def __call__(self, request: HttpRequest) -> Any:
        """Handles ``request`` (returns a coroutine in an async stack)."""
        if self._async:
            return self._acall(request)
        if self.is_exempt(request):
            return self.get_response(request)
        if self._defers(request):
            return self._finish(request, self.get_response(request), None)
        verdict = self._limit.decide(request)
        if not verdict.passes:
            return self._limit.answer(request, verdict)
        return self._finish(request, self.get_response(request), verdict)

    async def _acall(self, request: HttpRequest) -> Any:
        if self.is_exempt(request):
            return await self.get_response(request)
        if self._defers(request):
            return self._finish(request, await self.get_response(request), None)
        verdict = await self._limit.adecide(request)
        if not verdict.passes:
            return self._limit.answer(request, verdict)
        return self._finish(request, await self.get_response(request), verdict)


# -- the view decorator ----------------------------------------------------------


def ratelimit(
    rate: str | list[str] | None = None,
    *,
    key: str | KeyFunc = "ip",
    on_blocked: Callable[[HttpRequest, Decision], HttpResponse] | None = None,
    **options: Unpack[DecoratorOptions],
) -> Callable[[V], V]:
    """Rate-limits a Django view on its own, apart from the middleware.

    The limiter is built once, when ``ratelimit(...)`` is called; the key is
    the view (its module and qualified name: every URL routed to the view
    shares one allowance) plus the request's key (``key`` as the
    middleware's ``KEY``). Works on ``def`` and ``async def`` views and,
    through ``method_decorator``, on class-based views. The other options
    are the middleware's, in lower case (``limit``, ``window_seconds``,
    ``algorithm``, ``headers``, ``cost``, ``limiter``, ...).

    Returns:
        A view decorator. A refused request gets a 429 JSON response with
        the rate-limit headers and ``Retry-After``; the view does not run.

    Raises:
        TypeError: A bad argument type, or ``ratelimit`` used uncalled.
        ValueError: A bad argument value.
    """
    if callable(rate):
        raise TypeError("use @ratelimit(...) with arguments, not bare @ratelimit")
    check_names(options, "ratelimit", DecoratorOptions)
    label = "ratelimit(key=...)"
    policy = RequestPolicy(
        rate=rate,
        key_func=key_option(key, label, import_string),
        on_blocked=on_blocked,
        address_prefix="ip:",
        route_separator="|",
        caller="ratelimit",
        **options,
    )

    def decorator(view: V) -> V:
        module = getattr(view, "__module__", None) or type(view).__module__
        name = getattr(view, "__qualname__", None) or type(view).__qualname__
        return DjangoLimit(policy, label, f"{module}.{name}").wrap(view)

    return decorator


# Every RateLimitMiddleware of this process (Django builds them; users hold
# no reference), for set_networks.
_LIVE: weakref.WeakSet[RateLimitMiddleware] = weakref.WeakSet()


def set_networks(
    allow: Iterable[str] | None = None, deny: Iterable[str] | None = None
) -> int:
    """Replaces ``ALLOW_NETWORKS`` and ``DENY_NETWORKS`` of every
    `RateLimitMiddleware` of this process, both at once, while requests run
    (each request sees the old pair or the new one). Settings are not
    changed: a middleware Django builds later reads them again.

    Returns:
        How many middleware instances took the new lists.

    Raises:
        TypeError, ValueError: A bad address or network, naming the list;
            nothing is replaced then.
    """
    allow_list = None if allow is None else list(allow)
    deny_list = None if deny is None else list(deny)
    check_networks("allow_networks", allow_list)  # raise before any change
    check_networks("deny_networks", deny_list)
    live = list(_LIVE)
    for middleware in live:
        middleware.policy.set_networks(allow_list, deny_list)
    return len(live)
