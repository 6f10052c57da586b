"""Django REST framework requests, translated onto the request policy.

What the throttles of `rust_py_rate_limit.drf` share: the deployment read
from the ``RUST_PY_RATE_LIMIT`` setting (once per settings object, dropped
when the setting changes) with the limiters built by it, DRF's own reading
of a rate, and the request's user.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from rust_py_rate_limit._policy.settings import Deployment, SettingsError
from rust_py_rate_limit.django import SETTING
from rust_py_rate_limit.limiter import RateLimiter

__all__ = [
    "DrfDeployment",
    "current_deployment",
    "forget_deployment",
    "limiter_for",
    "lock",
    "parse_drf_rate",
    "user_of",
]

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class DrfDeployment(Deployment):
    """What ``RUST_PY_RATE_LIMIT`` says, read once per settings object, and
    the limiters built by it."""

    __slots__ = ("limiters",)

    def __init__(self, source: object) -> None:
        try:
            super().__init__(source, SETTING)
        except SettingsError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        self.limiters: dict[tuple[object, ...], RateLimiter] = {}


lock = threading.Lock()
_current: DrfDeployment | None = None


def current_deployment() -> DrfDeployment:
    """The deployment of the current settings, read once: a change of the
    setting (``override_settings``) drops it, through Django's
    ``setting_changed`` signal, as DRF's own ``api_settings`` is reloaded."""
    global _current
    current = _current
    if current is None:
        with lock:
            current = _current
            if current is None:
                current = _current = DrfDeployment(getattr(settings, SETTING, None))
    return current


def forget_deployment() -> None:
    """Drops the deployment, so the next request reads the setting again
    (and builds new limiters)."""
    global _current
    with lock:
        _current = None


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        forget_deployment()


setting_changed.connect(_setting_changed)


def limiter_for(
    deployment: DrfDeployment,
    owner: str,
    scope: str | None,
    rate: str,
    **options: Any,
) -> RateLimiter:
    """The limiter of a scope, a rate and the throttle's ``options``
    (``algorithm``, ``burst``, ``clock``), built on first use with the
    deployment's limiter options and shared from then on.

    Raises:
        ImproperlyConfigured: A bad rate or option, naming ``owner`` (the
            throttle class), the scope and the rate.
    """
    spec = (scope, rate, *options.values())
    limiter = deployment.limiters.get(spec)
    if limiter is None:
        with lock:
            limiter = deployment.limiters.get(spec)
            if limiter is None:
                where = f"{owner} (scope {scope!r}, rate {rate!r})"
                limiter = _build(deployment, where, scope, rate, options)
                deployment.limiters[spec] = limiter
    return limiter


def _build(
    deployment: DrfDeployment,
    where: str,
    scope: str | None,
    rate: str,
    options: dict[str, Any],
) -> RateLimiter:
    if not isinstance(rate, str):
        raise ImproperlyConfigured(
            f"{where}: a rate must be a str such as '100/day', "
            f"not {type(rate).__name__}"
        )
    # The metrics' `limiter` label: the scope, as DRF names its rates.
    options = {"name": f"drf:{scope}", **options, **deployment.limiter_options}
    try:
        try:
            return RateLimiter(rate=rate, **options)
        except ValueError:
            parsed = parse_drf_rate(rate)
            if parsed is None:
                raise
            return RateLimiter(parsed[0], parsed[1], **options)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from exc


def parse_drf_rate(rate: str) -> tuple[int, int] | None:
    """DRF's own reading of a rate (``"100/day"``: the period's first
    letter), for strings ours refuses."""
    num, _, period = rate.partition("/")
    try:
        return int(num), _PERIODS[period.strip()[:1]]
    except (ValueError, KeyError):
        return None


def user_of(request: Any) -> Any:
    """The authenticated user of a DRF request, else None."""
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None
