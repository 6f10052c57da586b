"""Django REST framework throttles decided by rust-py-rate-limit.

The same classes as DRF's own, under the same names, so switching is an
import path::

    REST_FRAMEWORK = {
        "DEFAULT_THROTTLE_CLASSES": [
            "rust_py_rate_limit.drf.AnonRateThrottle",
            "rust_py_rate_limit.drf.UserRateThrottle",
        ],
        "DEFAULT_THROTTLE_RATES": {"anon": "100/day", "user": "1000/day"},
    }

- `AnonRateThrottle` (scope ``"anon"``): anonymous requests, keyed by the
  client address; authenticated ones pass.
- `UserRateThrottle` (scope ``"user"``): the user's pk, or the client address
  for anonymous requests.
- `ScopedRateThrottle`: views with a ``throttle_scope`` attribute, each scope
  its own rate, keyed by user (or address).
- `RateLimitThrottle`: the base; set ``scope`` or ``rate`` and override
  ``get_cache_key(request, view)`` (None: not throttled).

Rates are DRF's strings (``"100/day"``) or ours (``"10/second;1000/hour"``),
read from ``DEFAULT_THROTTLE_RATES`` per request, so ``override_settings``
works; None turns a scope off. Class attributes choose ``algorithm`` (default
``"sliding_log"``, DRF's own exact moving window), ``burst``, ``cost`` and
``clock``. The deployment (``STORAGE`` and its options, the client address
options, bans, shadow mode, network lists) comes from the Django middleware's
``RUST_PY_RATE_LIMIT`` setting (`rust_py_rate_limit._policy.settings.Deployment`);
DRF's ``NUM_PROXIES`` is used only when set and ``TRUSTED_PROXIES`` is not.
A refusal makes DRF answer 429 with ``Retry-After`` (from `wait()`); a
deny-listed client gets 403; with ``ON_ERROR: "raise"`` a storage failure
answers 503. See the README's section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from rust_py_rate_limit._django import DjangoView
from rust_py_rate_limit._drf import (
    current_deployment,
    forget_deployment,
    limiter_for,
    user_of,
)
from rust_py_rate_limit._policy import FORBIDDEN
from rust_py_rate_limit._policy.policy import listed, network_lists
from rust_py_rate_limit.exceptions import StorageError
from rust_py_rate_limit.keys import ClientAddressUnavailable
from rust_py_rate_limit.limiter import RateLimiter

__all__ = [
    "AnonRateThrottle",
    "RateLimitThrottle",
    "RateLimiterUnavailable",
    "ScopedRateThrottle",
    "UserRateThrottle",
    "reset_throttles",
    "set_networks",
]


class RateLimiterUnavailable(APIException):  # type: ignore[misc]
    """The storage failed and ``ON_ERROR`` is ``"raise"``: 503."""

    status_code = 503
    default_detail = "Rate limiter unavailable"
    default_code = "rate_limiter_unavailable"


def reset_throttles() -> None:
    """Forgets every throttle's limiter, and so its counts (in this process;
    a shared store keeps its own): for tests, as DRF's ``cache.clear()``."""
    forget_deployment()


def set_networks(
    allow: Iterable[str] | None = None, deny: Iterable[str] | None = None
) -> None:
    """Replaces ``ALLOW_NETWORKS`` and ``DENY_NETWORKS`` of every throttle in
    this process, both at once, while requests run (each request sees the
    old pair or the new one), until the setting changes.

    Raises:
        TypeError, ValueError: A bad address or network, naming the list;
            nothing is replaced then.
    """
    current_deployment().networks = network_lists(
        None if allow is None else list(allow), None if deny is None else list(deny)
    )


class RateLimitThrottle(BaseThrottle):  # type: ignore[misc]
    """A DRF throttle whose decisions are made by a `RateLimiter`.

    Attributes:
        scope: The key of ``DEFAULT_THROTTLE_RATES`` that holds the rate.
        rate: A rate that overrides the scope's.
        algorithm: The limiter's algorithm (default ``"sliding_log"``).
        burst: ``burst`` for ``token_bucket`` / ``gcra``.
        cost: Units each throttled request spends.
        clock: A clock for the limiter (a `ManualClock` in tests).
        THROTTLE_RATES: Rates by scope; None (default) reads DRF's
            ``DEFAULT_THROTTLE_RATES`` at each request.
        cache_format: The key: ``"throttle_%(scope)s_%(ident)s"``, as DRF.
    """

    scope: ClassVar[str | None] = None
    rate: ClassVar[str | None] = None
    algorithm: ClassVar[str] = "sliding_log"
    burst: ClassVar[int | None] = None
    cost: ClassVar[int] = 1
    clock: ClassVar[Any] = None
    THROTTLE_RATES: ClassVar[Mapping[str, str | None] | None] = None
    cache_format: ClassVar[str] = "throttle_%(scope)s_%(ident)s"

    def __init__(self) -> None:
        self.decision: Any = None

    # -- what DRF's SimpleRateThrottle offers ---------------------------------

    def get_rate(self) -> str | None:
        """The rate string: ``rate``, or ``DEFAULT_THROTTLE_RATES[scope]``."""
        if self.rate:
            return self.rate
        scope = self.scope
        if not scope:
            raise ImproperlyConfigured(
                "You must set either `.scope` or `.rate` for "
                f"'{type(self).__name__}' throttle"
            )
        rates = self.THROTTLE_RATES
        if rates is None:
            rates = api_settings.DEFAULT_THROTTLE_RATES
        try:
            return rates[scope]
        except KeyError:
            raise ImproperlyConfigured(
                f"No default throttle rate set for '{scope}' scope"
            ) from None

    def parse_rate(self, rate: str | None) -> tuple[int | None, int | None]:
        """``(requests, seconds)`` of the rate's first limit, as DRF's."""
        if rate is None:
            return None, None
        limiter = self.get_limiter(rate)
        return limiter.limits[0]

    def get_ident(self, request: Any) -> str:
        """The client address (see the module's notes on proxies)."""
        addresses = current_deployment().addresses
        if addresses.trusted_proxies is None and api_settings.NUM_PROXIES is not None:
            return str(super().get_ident(request))
        # DRF's Request hands META over from Django's through __getattr__,
        # which costs an AttributeError: read Django's request directly.
        django_request = getattr(request, "_request", request)
        try:
            return addresses.of(DjangoView(django_request))
        except ClientAddressUnavailable:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: the request has no client address (no "
                "REMOTE_ADDR: a Unix socket?); override get_ident() or "
                "get_cache_key() to key it"
            ) from None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        """The key of this request, or None to let it pass unthrottled."""
        raise NotImplementedError(".get_cache_key() must be overridden")

    # -- the decision ---------------------------------------------------------

    def get_limiter(self, rate: str) -> RateLimiter:
        """The limiter of this throttle's scope and rate, shared by every
        request (and, with ``STORAGE``, every worker)."""
        cls = type(self)
        return limiter_for(
            current_deployment(),
            cls.__name__,
            self.scope,
            rate,
            algorithm=cls.algorithm,
            burst=cls.burst,
            clock=cls.clock,
        )

    def allow_request(self, request: Any, view: Any) -> bool:
        """Spends ``cost`` of the request's key; False when refused."""
        rate = self.get_rate()
        if rate is None:
            return True
        deployment = current_deployment()
        if deployment.networks is not None:
            # Allow-listed clients pass unlimited; deny-listed ones get 403.
            verdict = listed(
                deployment.addresses,
                deployment.networks,
                DjangoView(getattr(request, "_request", request)),
            )
            if verdict is FORBIDDEN:
                raise PermissionDenied(verdict.detail)
            if verdict is not None:
                return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        limiter = self.get_limiter(rate)
        try:
            self.decision = limiter.decide(key, type(self).cost)
        except StorageError as exc:
            raise RateLimiterUnavailable() from exc
        return bool(self.decision.allowed)

    def wait(self) -> float | None:
        """Seconds until a refused request's key is admitted again."""
        decision = self.decision
        if decision is None or decision.allowed:
            return None
        return float(decision.retry_after)

    def _user_or_ident(self, request: Any) -> object:
        """The authenticated user's pk, else the client address."""
        user = user_of(request)
        return user.pk if user is not None else self.get_ident(request)

    def _key(self, ident: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonRateThrottle(RateLimitThrottle):
    """Anonymous requests by client address; authenticated ones pass."""

    scope = "anon"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if user_of(request) is not None:
            return None
        return self._key(self.get_ident(request))


class UserRateThrottle(RateLimitThrottle):
    """By user pk; anonymous requests by client address."""

    scope = "user"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self._key(self._user_or_ident(request))


class ScopedRateThrottle(RateLimitThrottle):
    """Views with a ``throttle_scope``, each scope at its own rate."""

    scope_attr: ClassVar[str] = "throttle_scope"

    def __init__(self) -> None:
        super().__init__()
        self.scope: str | None = None  # type: ignore[misc]

    def allow_request(self, request: Any, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None)  # type: ignore[misc]
        if not self.scope:
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self._key(self._user_or_ident(request))
