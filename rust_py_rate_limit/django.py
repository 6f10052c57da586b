"""Django integration: a rate-limiting middleware and a view decorator.

Add the middleware and configure it with one setting::

    MIDDLEWARE = [
        # ...
        "rust_py_rate_limit.django.RateLimitMiddleware",
    ]

    RUST_PY_RATE_LIMIT = {
        "LIMIT": 100,
        "WINDOW_SECONDS": 60,
        "KEY": "ip",  # "ip" or "user"
    }

Keys of ``RUST_PY_RATE_LIMIT`` (an unknown key, a missing setting or a bad
value raises `django.core.exceptions.ImproperlyConfigured` naming the key):

- ``LIMIT`` and ``WINDOW_SECONDS``, or ``RATE`` (``"100/minute"``,
  ``"10/second;1000/hour"``); ``ALGORITHM`` (default ``"fixed"``) and
  ``BURST`` as for `RateLimiter`.
- ``LIMITER``: a ready `RateLimiter` instead of the four keys above (to share
  one limiter, or to give one a `ManualClock` in tests).
- ``KEY``: ``"ip"`` (default), ``"user"`` (the authenticated user's pk, the
  client address for anonymous requests; needs ``AuthenticationMiddleware``
  before this one), or a callable ``(request) -> str`` or a dotted path to
  one.
- ``EXEMPT``: a list of path prefixes, or a callable ``(request) -> bool`` or
  a dotted path to one; exempt requests are neither counted nor given headers.
- ``EXEMPT_OPTIONS`` (default True): a CORS preflight (``OPTIONS`` with
  ``Access-Control-Request-Method``) is not counted when Django answers it
  without running view code: the view is a class-based view (``as_view()``,
  not wrapped by a decorator) that keeps `View`'s own ``options()``,
  ``dispatch()``, ``setup()`` and ``__init__``, or no view is reached (no
  URL matched, or an earlier middleware answered). Any other preflight (to a
  function view, or a class that defines ``options()``) is counted like any
  request, so the exemption never runs a view body unlimited.
- ``HEADERS``: ``"legacy"`` (default), ``"ietf"``, ``"both"`` or None.
- ``TRUSTED_PROXIES``: proxies whose forwarding header is believed (default:
  none; the client is ``REMOTE_ADDR``).
- ``FORWARDED_HEADER``: the one header believed from a trusted proxy:
  ``"x-forwarded-for"`` (default), ``"forwarded"`` or ``"x-real-ip"`` (see
  `rust_py_rate_limit.keys`). The others are never read.

Every request is one unit, whatever its method (``HEAD`` included). A refused
request gets ``JsonResponse({"detail": "Too many requests"}, status=429)``
with the rate-limit headers and ``Retry-After``; an admitted one gets the
view's response with the rate-limit headers added.

Exempt prefixes are matched against ``request.path_info`` (the path below the
script prefix, percent-decoded once by the server, exactly what URL routing
sees), with repeated slashes collapsed; a prefix matches whole segments
(``"/health"`` matches ``/health``, ``/health/`` and ``/health/live``, not
``/healthz``). The path is not percent-decoded a second time (routing does
not do it either), and a path with a ``.`` or ``..`` segment is never exempt,
so ``/health/../api`` cannot borrow an exemption.

The middleware works in sync and async stacks; in an async stack it decides
with ``await limiter.adecide(...)``, which completes without a thread hop.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views import View

from rust_py_rate_limit._http import (
    BLOCKED_BODY,
    BLOCKED_STATUS,
    HeaderMode,
    check_header_mode,
    rate_limit_headers,
)
from rust_py_rate_limit._native import Decision
from rust_py_rate_limit.exceptions import StorageError
from rust_py_rate_limit.keys import (
    ClientAddressUnavailable,
    ForwardedHeader,
    TrustedProxies,
    check_forwarded_header,
    client_address_from_header,
)
from rust_py_rate_limit.limiter import RateLimiter
from rust_py_rate_limit.types import AlgorithmName

__all__ = ["SETTING", "RateLimitMiddleware", "client_ip", "ratelimit"]

V = TypeVar("V", bound=Callable[..., Any])
KeyFunc = Callable[[HttpRequest], str]
ExemptFunc = Callable[[HttpRequest], bool]

#: The name of the Django setting that configures the middleware.
SETTING = "RUST_PY_RATE_LIMIT"

_KNOWN = frozenset(
    {
        "LIMIT",
        "WINDOW_SECONDS",
        "RATE",
        "ALGORITHM",
        "BURST",
        "LIMITER",
        "KEY",
        "EXEMPT",
        "EXEMPT_OPTIONS",
        "HEADERS",
        "TRUSTED_PROXIES",
        "FORWARDED_HEADER",
        "STORAGE",
        "KEY_PREFIX",
        "TIMEOUT",
        "ON_ERROR",
    }
)
# The first word of a RateLimiter error names the argument at fault.
_ARGUMENT_KEYS = {
    "limit": "LIMIT",
    "window_seconds": "WINDOW_SECONDS",
    "rate": "RATE",
    "algorithm": "ALGORITHM",
    "burst": "BURST",
    "storage": "STORAGE",
    "key_prefix": "KEY_PREFIX",
    "timeout": "TIMEOUT",
    "on_error": "ON_ERROR",
}
_SLASHES = re.compile(r"/{2,}")
_MISSING = object()


def _setting(name: str) -> str:
    return f"{SETTING}[{name!r}]"


# -- the client and the key ---------------------------------------------------


def _trusted(proxies: object) -> TrustedProxies | None:
    if proxies is None:
        return None
    if isinstance(proxies, TrustedProxies):
        return proxies
    if not isinstance(proxies, str | Iterable):
        raise TypeError(
            "trusted proxies must be a list of addresses or networks, "
            f"not {type(proxies).__name__}"
        )
    return TrustedProxies(proxies)


def _meta_key(header: ForwardedHeader) -> str:
    """The ``request.META`` key of a header (``HTTP_X_FORWARDED_FOR``)."""
    return "HTTP_" + header.upper().replace("-", "_")


def client_ip(
    request: HttpRequest,
    trusted_proxies: TrustedProxies | Iterable[str] | None = None,
    forwarded_header: ForwardedHeader = "x-forwarded-for",
) -> str:
    """The client address of a Django request.

    ``REMOTE_ADDR`` is the peer; the one forwarding header named by
    ``forwarded_header`` is believed only when the peer is one of
    ``trusted_proxies`` (see `rust_py_rate_limit.keys`): with
    ``X-Forwarded-For`` or ``Forwarded`` the right-most address that is not
    a trusted proxy is the client; with ``X-Real-IP``, the last value. The
    other headers are never read.

    Args:
        request: The request.
        trusted_proxies: Proxies whose forwarding header counts.
        forwarded_header: ``"x-forwarded-for"`` (default), ``"forwarded"``
            or ``"x-real-ip"``.

    Returns:
        The address as text, e.g. ``"203.0.113.7"``.

    Raises:
        ClientAddressUnavailable: The request has no ``REMOTE_ADDR``.
        TypeError, ValueError: A bad ``forwarded_header``.
    """
    header = check_forwarded_header(forwarded_header)
    return _client_ip(request, _trusted(trusted_proxies), header)


def _client_ip(
    request: HttpRequest,
    proxies: TrustedProxies | None,
    header: ForwardedHeader,
) -> str:
    meta = request.META
    value = meta.get(_meta_key(header)) if proxies else None
    return client_address_from_header(
        meta.get("REMOTE_ADDR"),
        [value] if value else (),
        forwarded_header=header,
        trusted_proxies=proxies,
    )


class _Keyer:
    """Turns a request into its key: ``"ip"``, ``"user"`` or a callable."""

    __slots__ = ("_func", "_header", "_kind", "_label", "_proxies")

    def __init__(
        self,
        spec: object,
        proxies: TrustedProxies | None,
        label: str,
        header: ForwardedHeader = "x-forwarded-for",
    ) -> None:
        self._proxies = proxies
        self._header = header
        self._label = label
        self._func: KeyFunc | None = None
        if spec in ("ip", "user"):
            self._kind = spec
            return
        self._kind = "func"
        if isinstance(spec, str):
            if "." not in spec:
                raise ValueError(
                    f"{label} must be 'ip', 'user', a callable or a dotted path "
                    f"to one, got {spec!r}"
                )
            try:
                spec = import_string(spec)
            except ImportError as exc:
                raise ValueError(f"{label}: cannot import {spec!r}: {exc}") from exc
        if not callable(spec):
            raise TypeError(
                f"{label} must be 'ip', 'user', a callable or a dotted path to "
                f"one, not {type(spec).__name__}"
            )
        self._func = cast(KeyFunc, spec)

    def _ip(self, request: HttpRequest) -> str:
        try:
            return "ip:" + _client_ip(request, self._proxies, self._header)
        except ClientAddressUnavailable:
            raise ImproperlyConfigured(
                f"{self._label}: the request has no REMOTE_ADDR (a Unix socket?); "
                "key requests another way with a callable (request) -> str"
            ) from None

    def _of_user(self, request: HttpRequest, user: object) -> str:
        if user is _MISSING:
            raise ImproperlyConfigured(
                f"{self._label} is 'user' but the request has no user: add "
                "'django.contrib.auth.middleware.AuthenticationMiddleware' to "
                "MIDDLEWARE (before RateLimitMiddleware)"
            )
        if getattr(user, "is_authenticated", False):
            return f"user:{getattr(user, 'pk', None)}"
        return self._ip(request)

    def _call(self, request: HttpRequest) -> str:
        assert self._func is not None
        key = self._func(request)
        if not isinstance(key, str):
            raise TypeError(
                f"{self._label}: the key callable must return str, "
                f"not {type(key).__name__}"
            )
        return key

    def key(self, request: HttpRequest) -> str:
        """The key of ``request``, in a sync stack."""
        if self._kind == "ip":
            return self._ip(request)
        if self._kind == "user":
            return self._of_user(request, getattr(request, "user", _MISSING))
        return self._call(request)

    async def akey(self, request: HttpRequest) -> str:
        """The key of ``request``, in an async stack.

        The user is loaded with ``await request.auser()`` (Django 5.0+), never
        by touching the lazy ``request.user``, which may query the database.
        """
        if self._kind == "ip":
            return self._ip(request)
        if self._kind == "user":
            auser = getattr(request, "auser", None)
            if auser is None:
                # No auser() (Django < 5.0): read the lazy user in a thread.
                return await sync_to_async(self.key)(request)
            return self._of_user(request, await auser())
        return self._call(request)


# -- exemptions ----------------------------------------------------------------


def _normalize(path: str) -> str:
    """``path`` with repeated slashes collapsed and a leading slash."""
    path = _SLASHES.sub("/", path)
    return path if path.startswith("/") else "/" + path


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def _prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(
            f"{_setting('EXEMPT')}: a path prefix must be a str starting with "
            f"'/', got {prefix!r}"
        )
    if _has_dot_segment(prefix):
        raise ValueError(
            f"{_setting('EXEMPT')}: a path prefix may not have '.' or '..' "
            f"segments, got {prefix!r}"
        )
    normal = _normalize(prefix)
    return normal.rstrip("/") or "/"


def _path_is_under(path: str, prefixes: tuple[str, ...]) -> bool:
    path = _normalize(path)
    if _has_dot_segment(path):
        return False
    return any(
        prefix == "/" or path == prefix or path.startswith(prefix + "/")
        for prefix in prefixes
    )


def _is_preflight(request: HttpRequest) -> bool:
    return bool(
        request.method == "OPTIONS"
        and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META
    )


# The parts of a class-based view that run for an OPTIONS request.
_OPTIONS_PATH = ("__init__", "setup", "dispatch", "options")


def _answers_options_without_view_code(view_func: object) -> bool:
    """Whether Django answers an ``OPTIONS`` to ``view_func`` with no code
    of the application running: a class-based view straight from
    ``as_view()`` whose class keeps `View`'s own ``__init__``, ``setup()``,
    ``dispatch()`` and ``options()`` (which only lists the allowed methods).

    A function view runs its body for any method; a decorated view runs the
    decorator's wrapper first; a class with its own ``options()`` or
    ``dispatch()`` runs it: none of them is proved harmless.
    """
    view_class = getattr(view_func, "view_class", None)
    if not isinstance(view_class, type) or not issubclass(view_class, View):
        return False
    if getattr(view_func, "__wrapped__", None) is not None:
        return False
    if "options" not in getattr(view_class, "http_method_names", ()):
        return False
    return all(
        getattr(view_class, name, None) is getattr(View, name) for name in _OPTIONS_PATH
    )


# -- responses -----------------------------------------------------------------


_OWN_HEADERS = ("X-RateLimit-Limit", "RateLimit-Policy")
# Set on a response by `ratelimit`: the view's own limit decided it.
_MARK = "_rust_py_rate_limit_decided"


def _add_headers(
    response: HttpResponse,
    decision: Decision,
    limiter: RateLimiter,
    mode: HeaderMode,
) -> None:
    for name, value in rate_limit_headers(decision, limiter, mode):
        response[name] = value
    setattr(response, _MARK, True)


def _add_headers_if_none(
    response: HttpResponse,
    decision: Decision,
    limiter: RateLimiter,
    mode: HeaderMode,
) -> None:
    """Adds the headers unless a view's own limit (`ratelimit`) decided.

    The headers of one limiter are reported, not a mix of two: a view with
    its own limit reports that limit (or nothing, with ``headers=None``).
    """
    if getattr(response, _MARK, False) or any(
        name in response for name in _OWN_HEADERS
    ):
        return
    _add_headers(response, decision, limiter, mode)


def _blocked(decision: Decision, limiter: RateLimiter, mode: HeaderMode) -> Any:
    response = JsonResponse(dict(BLOCKED_BODY), status=BLOCKED_STATUS)
    _add_headers(response, decision, limiter, mode)
    return response


# -- the middleware ------------------------------------------------------------


def _unavailable() -> JsonResponse:
    """The answer when the storage fails and ``ON_ERROR`` is ``"raise"``: a
    storage error never escapes the middleware."""
    return JsonResponse({"detail": "Rate limiter unavailable"}, status=503)


def _build_limiter(config: Mapping[str, Any]) -> RateLimiter:
    own = (
        "LIMIT",
        "WINDOW_SECONDS",
        "RATE",
        "ALGORITHM",
        "BURST",
        "STORAGE",
        "KEY_PREFIX",
        "TIMEOUT",
        "ON_ERROR",
    )
    given = [k for k in own if k in config]
    if "LIMITER" in config:
        limiter = config["LIMITER"]
        if not isinstance(limiter, RateLimiter):
            raise ImproperlyConfigured(
                f"{_setting('LIMITER')} must be a RateLimiter, "
                f"not {type(limiter).__name__}"
            )
        if given:
            raise ImproperlyConfigured(
                f"{_setting('LIMITER')} replaces {', '.join(given)}: give one or "
                "the other"
            )
        return limiter
    if "RATE" in config:
        clash = [k for k in ("LIMIT", "WINDOW_SECONDS") if k in config]
        if clash:
            raise ImproperlyConfigured(
                f"{_setting('RATE')} replaces {' and '.join(clash)}: give one or "
                "the other"
            )
    elif "LIMIT" not in config:
        raise ImproperlyConfigured(
            f"{SETTING} needs 'LIMIT' and 'WINDOW_SECONDS', or 'RATE'"
        )
    elif "WINDOW_SECONDS" not in config:
        raise ImproperlyConfigured(
            f"{_setting('WINDOW_SECONDS')} is required with 'LIMIT'"
        )
    try:
        return RateLimiter(
            config.get("LIMIT"),
            config.get("WINDOW_SECONDS"),
            rate=config.get("RATE"),
            algorithm=config.get("ALGORITHM", "fixed"),
            burst=config.get("BURST"),
            **{
                name: config[key]
                for name, key in (
                    ("storage", "STORAGE"),
                    ("key_prefix", "KEY_PREFIX"),
                    ("timeout", "TIMEOUT"),
                    ("on_error", "ON_ERROR"),
                )
                if key in config
            },
        )
    except (TypeError, ValueError) as exc:
        first = str(exc).split(" ", 1)[0]
        culprit = _ARGUMENT_KEYS.get(first)
        where = _setting(culprit) if culprit else f"{SETTING} ({', '.join(given)})"
        raise ImproperlyConfigured(f"{where}: {exc}") from exc


def _build_exempt(spec: object) -> tuple[tuple[str, ...], ExemptFunc | None]:
    if spec is None:
        return (), None
    if isinstance(spec, str):
        if spec.startswith("/"):
            raise ImproperlyConfigured(
                f"{_setting('EXEMPT')} must be a list of path prefixes "
                f"(e.g. [{spec!r}]) or a dotted path to a predicate, got {spec!r}"
            )
        try:
            spec = import_string(spec)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{_setting('EXEMPT')}: cannot import {spec!r}: {exc}"
            ) from exc
    if callable(spec):
        return (), cast(ExemptFunc, spec)
    if not isinstance(spec, list | tuple | set | frozenset):
        raise ImproperlyConfigured(
            f"{_setting('EXEMPT')} must be a list of path prefixes or a "
            f"predicate, not {type(spec).__name__}"
        )
    try:
        return tuple(_prefix(prefix) for prefix in spec), None
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None


class RateLimitMiddleware:
    """Rate-limits every request, configured by ``settings.RUST_PY_RATE_LIMIT``.

    Each instance builds its own `RateLimiter` when Django builds the
    middleware chain (unless ``LIMITER`` supplies one). Works in sync and
    async stacks: with an async ``get_response`` the instance is itself a
    coroutine function and decides with ``await limiter.adecide(...)``.

    Args:
        get_response: The next handler in Django's middleware chain.

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
        if not isinstance(config, Mapping):
            raise ImproperlyConfigured(
                f"{SETTING} must be a dict, not {type(config).__name__}"
            )
        unknown = sorted(str(k) for k in config if k not in _KNOWN)
        if unknown:
            raise ImproperlyConfigured(
                f"{SETTING} has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(sorted(_KNOWN))}"
            )
        self.limiter = _build_limiter(config)
        try:
            self._mode = check_header_mode(config.get("HEADERS", "legacy"))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{_setting('HEADERS')}: {exc}") from None
        try:
            proxies = _trusted(config.get("TRUSTED_PROXIES"))
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{_setting('TRUSTED_PROXIES')}: {exc}"
            ) from None
        try:
            header = check_forwarded_header(
                config.get("FORWARDED_HEADER", "x-forwarded-for")
            )
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{_setting('FORWARDED_HEADER')}: {exc}"
            ) from None
        try:
            self._keyer = _Keyer(
                config.get("KEY", "ip"), proxies, _setting("KEY"), header
            )
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(str(exc)) from None
        self._prefixes, self._predicate = _build_exempt(config.get("EXEMPT"))
        exempt_options = config.get("EXEMPT_OPTIONS", True)
        if not isinstance(exempt_options, bool):
            raise ImproperlyConfigured(
                f"{_setting('EXEMPT_OPTIONS')} must be True or False, "
                f"not {exempt_options!r}"
            )
        self._exempt_options = exempt_options
        # Request attributes of this instance: a preflight whose decision
        # waits for its view, and the decision taken then.
        self._deferred = f"_rust_py_rate_limit_preflight_{id(self)}"
        self._decided = f"_rust_py_rate_limit_decision_{id(self)}"
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
            # Django calls an async process_view directly in an async stack
            # (a sync one would cost a thread hop on every request).
            self.process_view = self._aprocess_view  # type: ignore[method-assign]

    def is_exempt(self, request: HttpRequest) -> bool:
        """Whether ``request`` goes through without being counted, by
        ``EXEMPT``.

        A CORS preflight (unless ``EXEMPT_OPTIONS`` is False) is decided
        once Django has resolved its view (see `process_view`): it is
        exempt only if that view answers ``OPTIONS`` without running code of
        the application.

        Args:
            request: The request.

        Returns:
            True for a path under an ``EXEMPT`` prefix, or when the
            ``EXEMPT`` predicate says so.
        """
        if self._predicate is not None:
            return bool(self._predicate(request))
        return bool(self._prefixes) and _path_is_under(
            request.path_info, self._prefixes
        )

    def _defers(self, request: HttpRequest) -> bool:
        """Marks a CORS preflight to be decided when its view is known."""
        if self._exempt_options and _is_preflight(request):
            setattr(request, self._deferred, True)
            return True
        return False

    def _add_deferred_headers(self, request: HttpRequest, response: Any) -> None:
        decision = request.__dict__.pop(self._decided, None)
        if decision is not None:
            _add_headers_if_none(response, decision, self.limiter, self._mode)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> Any:
        """Decides a deferred CORS preflight, now that its view is known.

        Django calls this after URL resolution, just before the view. A
        preflight that the view answers without running application code
        stays uncounted; any other is counted (a refusal answers 429 and the
        view does not run).
        """
        if not request.__dict__.pop(self._deferred, False):
            return None
        if _answers_options_without_view_code(view_func):
            return None
        try:
            decision = self.limiter.decide(self._keyer.key(request))
        except StorageError:
            return _unavailable()
        if not decision.allowed:
            return _blocked(decision, self.limiter, self._mode)
        setattr(request, self._decided, decision)
        return None

    async def _aprocess_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> Any:
        if not request.__dict__.pop(self._deferred, False):
            return None
        if _answers_options_without_view_code(view_func):
            return None
        try:
            decision = await self.limiter.adecide(await self._keyer.akey(request))
        except StorageError:
            return _unavailable()
        if not decision.allowed:
            return _blocked(decision, self.limiter, self._mode)
        setattr(request, self._decided, decision)
        return None

    def __call__(self, request: HttpRequest) -> Any:
        """Handles ``request`` (returns a coroutine in an async stack)."""
        if self._async:
            return self._acall(request)
        if self.is_exempt(request):
            return self.get_response(request)
        if self._defers(request):
            response = self.get_response(request)
            self._add_deferred_headers(request, response)
            return response
        try:
            decision = self.limiter.decide(self._keyer.key(request))
        except StorageError:
            return _unavailable()
        if not decision.allowed:
            return _blocked(decision, self.limiter, self._mode)
        response = self.get_response(request)
        _add_headers_if_none(response, decision, self.limiter, self._mode)
        return response

    async def _acall(self, request: HttpRequest) -> Any:
        if self.is_exempt(request):
            return await self.get_response(request)
        if self._defers(request):
            response = await self.get_response(request)
            self._add_deferred_headers(request, response)
            return response
        try:
            decision = await self.limiter.adecide(await self._keyer.akey(request))
        except StorageError:
            return _unavailable()
        if not decision.allowed:
            return _blocked(decision, self.limiter, self._mode)
        response = await self.get_response(request)
        _add_headers_if_none(response, decision, self.limiter, self._mode)
        return response


# -- the view decorator --------------------------------------------------------


def _view_id(view: Callable[..., Any]) -> str:
    module = getattr(view, "__module__", None) or type(view).__module__
    name = getattr(view, "__qualname__", None) or type(view).__qualname__
    return f"{module}.{name}"


def _returns_awaitable(view: Callable[..., Any]) -> bool:
    """Whether a sync ``view`` belongs to an async class-based view.

    ``method_decorator(ratelimit(...), name="dispatch")`` on a view whose
    handlers are ``async def`` decorates a plain ``dispatch`` that returns a
    coroutine; a refusal must then be a coroutine too.
    """
    owner = getattr(getattr(view, "func", view), "__self__", None)
    return bool(getattr(owner, "view_is_async", False))


async def _later(response: Any) -> Any:
    return response


async def _with_headers(
    pending: Awaitable[Any],
    decision: Decision,
    limiter: RateLimiter,
    mode: HeaderMode,
) -> Any:
    response = await pending
    _add_headers(response, decision, limiter, mode)
    return response


def _request_of(args: tuple[Any, ...]) -> HttpRequest:
    if not args or not hasattr(args[0], "META"):
        raise TypeError(
            "@ratelimit: the view's first argument is not a request; on a "
            "class-based view use method_decorator(ratelimit(...), name=...)"
        )
    return args[0]


def ratelimit(
    rate: str | list[str] | None = None,
    *,
    limit: int | None = None,
    window_seconds: int | None = None,
    key: str | KeyFunc = "ip",
    algorithm: AlgorithmName = "fixed",
    headers: HeaderMode = "legacy",
    trusted_proxies: TrustedProxies | Iterable[str] | None = None,
    cost: int = 1,
    limiter: RateLimiter | None = None,
    forwarded_header: ForwardedHeader = "x-forwarded-for",
) -> Callable[[V], V]:
    """Rate-limits a Django view on its own, apart from the middleware.

    The limiter is built once, when ``ratelimit(...)`` is called, and the key
    is the view (its module and qualified name, so every URL routed to the
    view shares one allowance) plus the request's key. Works on ``def`` and
    ``async def`` views (the wrapper of an ``async def`` view is a coroutine
    function) and, through ``django.utils.decorators.method_decorator``, on
    class-based views.

    Args:
        rate: A rate string such as ``"5/minute"``; or give ``limit`` and
            ``window_seconds``.
        limit: Requests admitted per window.
        window_seconds: The window length in whole seconds.
        key: ``"ip"``, ``"user"``, or a callable ``(request) -> str`` or a
            dotted path to one (as the middleware's ``KEY``).
        algorithm: As for `RateLimiter`.
        headers: ``"legacy"``, ``"ietf"``, ``"both"`` or None.
        trusted_proxies: Proxies whose forwarding header is believed.
        cost: Units each request spends (at most the limiter's capacity).
        limiter: A ready `RateLimiter` instead of ``rate``/``limit``/
            ``window_seconds``/``algorithm`` (e.g. one with a `ManualClock`,
            or one shared by several views; each view keeps its own keys).
        forwarded_header: The one header believed from a trusted proxy:
            ``"x-forwarded-for"`` (default), ``"forwarded"`` or
            ``"x-real-ip"``.

    Returns:
        A view decorator. A refused request gets a 429
        ``{"detail": "Too many requests"}`` JSON response with the
        rate-limit headers and ``Retry-After``; the view does not run.

    Raises:
        TypeError: An argument has the wrong type, or ``ratelimit`` was used
            without being called.
        ValueError: An argument has a wrong value.
    """
    if callable(rate):
        raise TypeError("use @ratelimit(...) with arguments, not bare @ratelimit")
    if limiter is not None:
        if not isinstance(limiter, RateLimiter):
            raise TypeError(
                f"limiter must be a RateLimiter, not {type(limiter).__name__}"
            )
        if (rate, limit, window_seconds) != (None, None, None) or (
            algorithm != "fixed"
        ):
            raise TypeError(
                "give limiter= or rate/limit/window_seconds/algorithm, not both"
            )
        the_limiter = limiter
    else:
        if rate is None and limit is None:
            raise TypeError("ratelimit needs rate= or limit= and window_seconds=")
        the_limiter = RateLimiter(
            limit,
            window_seconds,
            rate=rate,
            algorithm=algorithm,
        )
    mode = check_header_mode(headers)
    keyer = _Keyer(
        key,
        _trusted(trusted_proxies),
        "ratelimit(key=...)",
        check_forwarded_header(forwarded_header),
    )
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, not {type(cost).__name__}")
    # The capacity (the burst of a bucket, the tightest rule of a compound
    # limit): a larger cost could never be admitted.
    capacity = the_limiter.capacity
    if not 1 <= cost <= capacity:
        raise ValueError(
            f"cost must be between 1 and the limit ({capacity}), got {cost}"
        )

    def decorator(view: V) -> V:
        prefix = _view_id(view) + "|"

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = _request_of(args)
                decision = await the_limiter.adecide(
                    prefix + await keyer.akey(request), cost
                )
                if not decision.allowed:
                    return _blocked(decision, the_limiter, mode)
                response = await view(*args, **kwargs)
                _add_headers(response, decision, the_limiter, mode)
                return response

            return cast(V, async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = _request_of(args)
            decision = the_limiter.decide(prefix + keyer.key(request), cost)
            if not decision.allowed:
                refusal = _blocked(decision, the_limiter, mode)
                return _later(refusal) if _returns_awaitable(view) else refusal
            response = view(*args, **kwargs)
            if isinstance(response, Awaitable):
                return _with_headers(response, decision, the_limiter, mode)
            _add_headers(response, decision, the_limiter, mode)
            return response

        return cast(V, wrapper)

    return decorator
