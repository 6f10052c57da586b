"""Options of the request policy: one check per option, one message each.

Every adapter takes the same option names (``limit``, ``rate``, ``cost``,
``trusted_proxies``, ...) and hands them here. A bad value raises an
`OptionTypeError` or `OptionValueError` (subclasses of `TypeError` and
`ValueError`) whose ``option`` names the option, so an adapter configured
another way (Django's ``RUST_PY_RATE_LIMIT`` setting) can name its own key.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NoReturn, TypedDict

from rust_py_rate_limit._native import ManualClock
from rust_py_rate_limit.keys import (
    ForwardedHeader,
    TrustedProxies,
    check_forwarded_header,
    check_ipv6_prefix,
)
from rust_py_rate_limit.limiter import RateLimiter
from rust_py_rate_limit.types import AlgorithmName

__all__ = [
    "LIMITER_OPTIONS",
    "OPTIONS",
    "HeaderMode",
    "LimitOptions",
    "OptionTypeError",
    "OptionValueError",
    "PolicyOptions",
    "build_limiter",
    "check_bool",
    "check_callable",
    "check_cost",
    "check_detail",
    "check_limiter_template",
    "check_names",
    "checked",
]

HeaderMode = Literal["legacy", "ietf", "both"] | None


class LimitOptions(TypedDict, total=False):
    """The options every adapter takes by the same names and types (each
    adapter adds the rate, key and callback options in its own types)."""

    limiter: RateLimiter | None
    algorithm: AlgorithmName
    burst: int | None
    clock: ManualClock | None
    max_keys: int | None
    cleanup_interval: float | None
    storage: str | None
    key_prefix: str | None
    timeout: float | None
    on_error: Literal["allow", "deny", "raise"] | None
    headers: HeaderMode
    trusted_proxies: Iterable[str] | TrustedProxies | None
    forwarded_header: ForwardedHeader
    ipv6_prefix: int | None
    cost: int
    detail: str
    ban_after: int | None
    ban_within: float | None
    ban_seconds: float | None
    shadow: bool
    local_cache_keys: int | None
    pg_schema: str | None
    pg_unlogged: bool | None
    allow_networks: Iterable[str] | None
    deny_networks: Iterable[str] | None
    name: str | None
    events: Callable[[dict[str, Any]], object] | None


class PolicyOptions(LimitOptions, total=False):
    """Every option of `RequestPolicy`."""

    limit: int | None
    window_seconds: int | None
    rate: str | Sequence[str] | None
    key_func: Any
    exempt: Any
    exempt_options: bool
    on_blocked: Any


#: Every option name.
OPTIONS: frozenset[str] = PolicyOptions.__optional_keys__

#: The options that build a `RateLimiter` (all but ``limiter`` itself).
LIMITER_OPTIONS = (
    "limit",
    "window_seconds",
    "rate",
    "algorithm",
    "burst",
    "max_keys",
    "cleanup_interval",
    "storage",
    "key_prefix",
    "timeout",
    "on_error",
    "ban_after",
    "ban_within",
    "ban_seconds",
    "shadow",
    "local_cache_keys",
    "pg_schema",
    "pg_unlogged",
    "name",
)


class OptionTypeError(TypeError):
    """An option of the wrong type.

    Attributes:
        option: The option's name (``"cost"``), or None when no single
            option is at fault.
    """

    def __init__(self, option: str | None, message: str) -> None:
        super().__init__(message)
        self.option = option


class OptionValueError(ValueError):
    """An option with a wrong value.

    Attributes:
        option: The option's name, or None when no single option is at fault.
    """

    def __init__(self, option: str | None, message: str) -> None:
        super().__init__(message)
        self.option = option


def _blame(option: str | None, exc: Exception) -> NoReturn:
    """Re-raises a TypeError/ValueError as the Option twin naming ``option``."""
    kind = OptionTypeError if isinstance(exc, TypeError) else OptionValueError
    raise kind(option, str(exc)) from exc


def checked(option: str, check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)``, its TypeError or ValueError blamed on ``option``."""
    try:
        return check(*args)
    except (OptionTypeError, OptionValueError):
        raise
    except (TypeError, ValueError) as exc:
        _blame(option, exc)


def check_bool(name: str, value: object) -> bool:
    """A True/False option."""
    if not isinstance(value, bool):
        raise OptionTypeError(
            name, f"{name} must be a bool, not {type(value).__name__}"
        )
    return value


def check_callable(name: str, value: object) -> None:
    """An optional callback: a callable or None."""
    if value is not None and not callable(value):
        raise OptionTypeError(
            name, f"{name} must be a callable or None, not {type(value).__name__}"
        )


def check_detail(detail: object) -> str:
    """The ``detail`` of a 429's JSON body: a non-empty str."""
    if not isinstance(detail, str):
        raise OptionTypeError(
            "detail", f"detail must be a str, not {type(detail).__name__}"
        )
    if not detail:
        raise OptionValueError("detail", "detail must not be empty")
    return detail


def check_cost(cost: object, capacity: int) -> int:
    """Units a request spends: an int from 1 to the limiter's capacity (the
    burst of a bucket, the tightest rule of a compound limit); a larger cost
    could never be admitted."""
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise OptionTypeError("cost", f"cost must be an int, not {type(cost).__name__}")
    if not 1 <= cost <= capacity:
        raise OptionValueError(
            "cost",
            f"cost must be between 1 and {capacity}, got {cost}: cost must be "
            f"between 1 and the limit ({capacity}), the most one decision admits",
        )
    return cost


def check_trusted_proxies(proxies: object) -> TrustedProxies:
    """Proxy addresses or networks: a `TrustedProxies`, a str, a list of
    str, or None (no proxy is trusted)."""
    trusted: TrustedProxies = checked("trusted_proxies", TrustedProxies, proxies)
    return trusted


class Networks:
    """Addresses and networks (IPv4 and IPv6) a client address is matched
    against; an IPv4-mapped IPv6 address matches as its IPv4 address."""

    __slots__ = ("_networks",)

    def __init__(
        self, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    ):
        self._networks = networks

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
            parsed = parsed.ipv4_mapped
        return any(parsed in network for network in self._networks)

    def __repr__(self) -> str:
        return f"Networks({[str(n) for n in self._networks]!r})"


def check_networks(name: str, value: object) -> Networks:
    """``allow_networks`` / ``deny_networks``: None, or addresses and CIDR
    networks as str (one str is one network)."""
    if value is None:
        return Networks(())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise OptionTypeError(
            name,
            f"{name} must be a list of addresses or networks as str, "
            f"not {type(value).__name__}",
        )
    networks = []
    for item in value:
        if not isinstance(item, str):
            raise OptionTypeError(
                name,
                f"{name} must hold addresses or networks as str, "
                f"not {type(item).__name__}",
            )
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise OptionValueError(
                name, f"{name}: {item!r} is not an IP address or network"
            ) from None
    return Networks(tuple(networks))


def check_forwarded(header: object) -> ForwardedHeader:
    """The one forwarding header believed from a trusted proxy."""
    value: ForwardedHeader = checked("forwarded_header", check_forwarded_header, header)
    return value


def check_prefix(prefix: object) -> int | None:
    """``ipv6_prefix``: None or an int from 0 to 128."""
    value: int | None = checked("ipv6_prefix", check_ipv6_prefix, prefix)
    return value


def build_limiter(
    limiter: object = None,
    limit: int | None = None,
    window_seconds: int | None = None,
    rate: str | Sequence[str] | None = None,
    algorithm: str | None = None,
    *,
    clock: object = None,
    **options: Any,
) -> RateLimiter:
    """The limiter an adapter uses: ``limiter`` as given, or one built from
    `LIMITER_OPTIONS` (None left out, ``algorithm="fixed"`` as the default),
    ``storage=`` and its options included, so several workers can share one
    Redis-backed limit.

    Args:
        limiter: A `RateLimiter` to share; then no option of
            `LIMITER_OPTIONS` may be given (the limiter has its own).
        limit, window_seconds, rate, algorithm, **options: Values of
            `LIMITER_OPTIONS`.
        clock: A `ManualClock` for the limiters built here (allowed with
            ``limiter``, for those an adapter builds later).

    Raises:
        OptionTypeError, OptionValueError: naming the option at fault.
    """
    options.update(
        limit=limit, window_seconds=window_seconds, rate=rate, algorithm=algorithm
    )
    _check_clock(clock)
    given = {
        name: value
        for name, value in options.items()
        if value is not None
        and not (name == "algorithm" and value == "fixed")
        and not (name == "shadow" and value is False)
    }
    if limiter is not None:
        if not isinstance(limiter, RateLimiter):
            raise OptionTypeError(
                "limiter",
                f"limiter must be a RateLimiter or None, not {type(limiter).__name__}",
            )
        if list(given) == ["algorithm"]:
            raise OptionTypeError(
                "limiter",
                "algorithm cannot be given with limiter: the limiter's "
                f"algorithm ({limiter.algorithm!r}) is used",
            )
        if given:
            raise OptionTypeError(
                "limiter", f"give either limiter or {', '.join(given)}, not both"
            )
        return limiter
    rate, limit, window = (options.get(k) for k in ("rate", "limit", "window_seconds"))
    if rate is not None and (limit is not None or window is not None):
        raise OptionTypeError(
            "rate", "give either rate or limit and window_seconds, not both"
        )
    if rate is None and limit is None and window is None:
        raise OptionTypeError(
            "limit",
            "a rate is required: give rate= or limit= and window_seconds=, or limiter=",
        )
    return _construct(clock, given)


def check_limiter_template(clock: object, algorithm: object) -> None:
    """Checks, without a rate, what limiters will later be built with."""
    _check_clock(clock)
    probe = {} if algorithm is None else {"algorithm": algorithm}
    _construct(clock, {"limit": 1, "window_seconds": 1, **probe})


def _check_clock(clock: object) -> None:
    if clock is not None and not isinstance(clock, ManualClock):
        raise OptionTypeError(
            "clock", f"clock must be a ManualClock or None, not {type(clock).__name__}"
        )


def _construct(clock: object, options: dict[str, Any]) -> RateLimiter:
    try:
        return RateLimiter(clock=clock, **options)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        # The core's messages start with the argument at fault.
        first = str(exc).split(" ", 1)[0]
        _blame(first if first in LIMITER_OPTIONS else None, exc)


def check_names(
    options: Mapping[str, object], caller: str, accepted: Any = None
) -> None:
    """Refuses an option name that ``accepted`` (a TypedDict of options; by
    default `PolicyOptions`) does not have, as Python would for an explicit
    signature: naming ``caller`` and the nearest valid name."""
    names: frozenset[str] = (accepted or PolicyOptions).__optional_keys__
    for name in options:
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"{caller}() got an unexpected keyword argument {name!r}{hint}"
            )
