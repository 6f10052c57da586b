"""`RequestPolicy` and its `Rule` objects: from a request to a `Verdict`.

All options are checked when a policy is built; deciding a request reads
only what its options need and allocates little more than the key and the
verdict.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from rust_py_rate_limit._policy.options import (
    LIMITER_OPTIONS,
    Networks,
    OptionTypeError,
    OptionValueError,
    PolicyOptions,
    build_limiter,
    check_bool,
    check_callable,
    check_cost,
    check_detail,
    check_forwarded,
    check_limiter_template,
    check_names,
    check_networks,
    check_prefix,
    check_trusted_proxies,
)
from rust_py_rate_limit._policy.paths import check_exempt
from rust_py_rate_limit._policy.render import (
    BLOCKED_STATUS,
    DEFAULT_DETAIL,
    FORBIDDEN,
    PASS,
    UNAVAILABLE,
    Rendering,
    Verdict,
    check_header_mode,
)
from rust_py_rate_limit._policy.view import RequestView
from rust_py_rate_limit.exceptions import StorageError
from rust_py_rate_limit.keys import (
    ClientAddressUnavailable,
    TrustedProxies,
    _peer_key,
    client_address_from_header,
)
from rust_py_rate_limit.limiter import RateLimiter

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ClientAddresses", "RequestPolicy", "Rule"]

_PREFLIGHT_HEADER = "access-control-request-method"
_CACHED = 4096
# The options that give a policy its own (default) limiter.
_RATED = ("limiter", "limit", "window_seconds", "rate")
ClientKey = Callable[[RequestView], "str | Awaitable[str]"]


class ClientAddresses:
    """The client address of requests, by ``trusted_proxies``,
    ``forwarded_header`` and ``ipv6_prefix`` (see `rust_py_rate_limit.keys`).

    Raises:
        OptionTypeError, OptionValueError: A bad option.
    """

    __slots__ = (
        "_keys",
        "forwarded_header",
        "ipv6_prefix",
        "prefix",
        "trusted_proxies",
    )

    def __init__(
        self,
        trusted_proxies: object = None,
        forwarded_header: object = "x-forwarded-for",
        ipv6_prefix: object = None,
        prefix: str = "",
    ) -> None:
        self.trusted_proxies: TrustedProxies | None = (
            check_trusted_proxies(trusted_proxies) or None
        )
        self.forwarded_header = check_forwarded(forwarded_header)
        self.ipv6_prefix = check_prefix(ipv6_prefix)
        self.prefix = prefix
        # Peer -> key: parsing an address costs microseconds, and the same
        # clients come back. Emptied when it grows past _CACHED.
        self._keys: dict[str | None, str] = {}

    def of(self, view: RequestView) -> str:
        """The address key of the request: ``prefix`` and the address.

        Raises:
            ClientAddressUnavailable: The request has no peer address.
        """
        peer = view.peer
        if self.trusted_proxies is None:
            key = self._keys.get(peer)
            return key if key is not None else self._peer(peer)
        if not peer:
            raise ClientAddressUnavailable
        # Only the configured header is read: the client cannot pick.
        return self.prefix + client_address_from_header(
            peer,
            view.header(self.forwarded_header),
            forwarded_header=self.forwarded_header,
            trusted_proxies=self.trusted_proxies,
            ipv6_prefix=self.ipv6_prefix,
        )

    def address(self, view: RequestView) -> str:
        """The client's address itself (no prefix, no IPv6 grouping), for
        matching networks.

        Raises:
            ClientAddressUnavailable: The request has no peer address.
        """
        peer = view.peer
        if not peer:
            raise ClientAddressUnavailable
        if self.trusted_proxies is None:
            return _peer_key(peer, None)
        return client_address_from_header(
            peer,
            view.header(self.forwarded_header),
            forwarded_header=self.forwarded_header,
            trusted_proxies=self.trusted_proxies,
        )

    def _peer(self, peer: str | None) -> str:
        if not peer:
            raise ClientAddressUnavailable
        if len(self._keys) >= _CACHED:
            self._keys.clear()
        key = self._keys[peer] = self.prefix + _peer_key(peer, self.ipv6_prefix)
        return key


def listed(
    addresses: ClientAddresses,
    networks: tuple[Networks, Networks] | None,
    view: RequestView,
) -> Verdict | None:
    """The answer of an ``(allow, deny)`` pair of network lists for the
    client of ``view`` (its address after trusted-proxy resolution), if it is
    on one: `FORBIDDEN` (the deny list wins), or `PASS`."""
    if networks is None:
        return None
    address = addresses.address(view)
    if address in networks[1]:
        return FORBIDDEN
    if address in networks[0]:
        return PASS
    return None


def network_lists(allow: object, deny: object) -> tuple[Networks, Networks] | None:
    """Checks an ``allow_networks`` / ``deny_networks`` pair; None when both
    are empty (nothing to look up per request)."""
    pair = (
        check_networks("allow_networks", allow),
        check_networks("deny_networks", deny),
    )
    return pair if pair[0] or pair[1] else None


class RequestPolicy:
    """How an adapter limits requests: every option, checked once.

    Options (keyword, `PolicyOptions`; each adapter takes them by the same
    names):
        limiter: A `RateLimiter` to share, instead of the limiter options.
        limit, window_seconds, rate, algorithm, burst, max_keys,
            cleanup_interval, storage, key_prefix, timeout, on_error,
            local_cache_keys, pg_schema, pg_unlogged: The limiter to build,
            as for `RateLimiter` (None: its default).
        clock: A `ManualClock` for the limiters the policy builds.
        key_func: The client part of a key: ``(request) -> str`` (or an
            awaitable of one, for `adecide`) called with the framework's
            request, or ``"user"`` (the authenticated user, else the client
            address); None: the client address.
        exempt: Path prefixes (a str or a list) or a predicate
            ``(request) -> bool``: requests that are not limited at all.
        exempt_options: Whether `preflight` reports CORS preflights (the
            adapter lets through those answered without the app's code).
        headers: ``"legacy"``, ``"ietf"``, ``"both"`` or None.
        trusted_proxies: Proxies whose forwarding header is believed.
        forwarded_header: The one header believed from them.
        ipv6_prefix: Key IPv6 clients by this prefix length.
        cost: Units each request spends.
        on_blocked: A callback answering refused requests; the adapter
            calls it (its arguments are the framework's).
        detail: The ``detail`` of a 429's JSON body.

    Args (for the adapter):
        require_rate: Whether a rate (or ``limiter``) must be given; without
            one the policy has no default `rule` and each rule names its
            own rate.
        address_prefix: Put before client-address keys (``"ip:"``).
        route_separator: Key per route: ``route + route_separator +
            client``; None keys on the client alone.
        caller: The adapter's name, for an unknown option's TypeError.

    Raises:
        OptionTypeError, OptionValueError: naming the option at fault
            (subclasses of TypeError and ValueError).
    """

    def __init__(
        self,
        *,
        require_rate: bool = True,
        address_prefix: str = "",
        route_separator: str | None = None,
        caller: str = "RequestPolicy",
        **options: Unpack[PolicyOptions],
    ) -> None:
        check_names(options, caller)
        get = options.get
        limiter_options: dict[str, Any] = {name: get(name) for name in LIMITER_OPTIONS}
        clock: Any = get("clock")
        self.limiter: RateLimiter | None = None
        if require_rate or any(get(k) is not None for k in _RATED):
            self.limiter = build_limiter(get("limiter"), clock=clock, **limiter_options)
        else:  # no default rate: rules name their own
            check_limiter_template(clock, get("algorithm"))
        # What the limiters of other rules are built with.
        self._template: dict[str, Any] = {
            k: v
            for k, v in limiter_options.items()
            if k not in ("limit", "window_seconds", "rate")
        }
        self._template["clock"] = clock
        if self.limiter is not None and get("limiter") is not None:
            self._template["algorithm"] = self.limiter.algorithm
        self.headers = check_header_mode(get("headers", "legacy"))
        self.detail = check_detail(get("detail", DEFAULT_DETAIL))
        self.exempt_options = check_bool("exempt_options", get("exempt_options", True))
        on_blocked: Any = get("on_blocked")
        check_callable("on_blocked", on_blocked)
        self.on_blocked: Callable[..., Any] | None = on_blocked
        events: Any = get("events")
        check_callable("events", events)
        # Gets the decision events of every limiter the policy builds.
        self.events: Callable[[dict[str, Any]], object] | None = events
        if events is not None and self.limiter is not None:
            self.limiter.on_event(events)
        self.exempt_paths, self.exempt_predicate = check_exempt(get("exempt"))
        self.addresses = ClientAddresses(
            get("trusted_proxies"),
            get("forwarded_header", "x-forwarded-for"),
            get("ipv6_prefix"),
            address_prefix,
        )
        self.networks: tuple[Networks, Networks] | None = None
        self.set_networks(get("allow_networks"), get("deny_networks"))
        self.route_separator = route_separator
        key_func = get("key_func")
        self.keyed_by_user = key_func == "user"
        self._client = self._client_key(key_func)
        cost: Any = get("cost", 1)
        if isinstance(cost, bool) or not isinstance(cost, int):
            check_cost(cost, 1)  # raises the type error
        self.cost: int = cost
        self.rule: Rule | None = None
        if self.limiter is not None:
            self.rule = Rule(self, self.limiter, self._client, cost, route_separator)

    def _client_key(self, key_func: object) -> ClientKey:
        if key_func is None:
            return self.addresses.of
        if key_func == "user":
            return self._user_or_address
        if not callable(key_func):
            raise OptionTypeError(
                "key_func",
                f"key_func must be callable or 'user', not {type(key_func).__name__}",
            )
        func = key_func
        return lambda view: func(view.request)

    def set_networks(self, allow: object = None, deny: object = None) -> None:
        """Replaces the allow and deny lists of networks, both at once (a
        request sees the old pair or the new one, never a mix).

        Args:
            allow: Addresses or CIDR networks whose clients pass unlimited,
                without rate-limit headers.
            deny: Addresses or CIDR networks whose clients get a 403.
        """
        self.networks = network_lists(allow, deny)

    def listed(self, view: RequestView) -> Verdict | None:
        """The answer of the network lists for this request's client (after
        trusted-proxy resolution), if it is on one: the deny list wins."""
        return listed(self.addresses, self.networks, view)

    # -- per request ---------------------------------------------------------

    def exempt(self, view: RequestView) -> bool:
        """Whether the request is not limited at all (an ``exempt`` path or
        predicate): it is neither counted nor given headers."""
        if self.exempt_paths is not None:
            return self.exempt_paths(view.path)
        if self.exempt_predicate is not None:
            return bool(self.exempt_predicate(view.request))
        return False

    def preflight(self, view: RequestView) -> bool:
        """Whether the request is a CORS preflight (``OPTIONS`` with
        ``Access-Control-Request-Method``) and ``exempt_options`` is on.

        The adapter lets such a request through uncounted only when its
        framework answers it without the application's code.
        """
        return (
            self.exempt_options
            and view.method == "OPTIONS"
            and bool(view.header(_PREFLIGHT_HEADER))
        )

    def address(self, view: RequestView) -> str:
        """The client address key of the request (see `ClientAddresses`)."""
        return self.addresses.of(view)

    def _user_or_address(self, view: RequestView) -> str:
        user = view.user
        return "user:" + user if user is not None else self.addresses.of(view)

    # -- rules ---------------------------------------------------------------

    def make_rule(
        self,
        rate: str | Sequence[str] | None = None,
        *,
        key: str | Callable[[Any], str] | None = None,
        key_func: object = None,
        cost: int | None = None,
    ) -> Rule:
        """Another limit under this policy's options (a route's own limit).

        Args:
            rate: The rule's own rate, with a limiter of its own built like
                the policy's (algorithm, clock, storage...); None shares the
                policy's limiter.
            key: The whole key instead of route and client: a fixed str, or
                ``(request) -> str``.
            key_func: The client part of the key, instead of the policy's.
            cost: Units each request spends (default: the policy's).

        Raises:
            OptionTypeError, OptionValueError: A bad argument, or no rate and
                no limiter in the policy.
        """
        if rate is None:
            if self.limiter is None:
                raise OptionValueError(
                    "rate", "rate is required: there is no default rate"
                )
            limiter = self.limiter
        else:
            template = self._template
            if template.get("name") is not None:
                # Its own label: the policy's name and the route's rate.
                shown = rate if isinstance(rate, str) else ";".join(rate)
                template = {**template, "name": f"{template['name']} {shown}"}
            limiter = build_limiter(rate=rate, **template)
            if self.events is not None:
                limiter.on_event(self.events)
        client, separator = self._client, self.route_separator
        if key is not None and key_func is not None:
            raise OptionTypeError("key", "give key or key_func, not both")
        if isinstance(key, str):
            client, separator = (lambda view: key), None
        elif key is not None:
            if not callable(key):
                raise OptionTypeError(
                    "key",
                    f"key must be a str or a callable, not {type(key).__name__}",
                )
            client, separator = self._client_key(key), None
        elif key_func is not None:
            client = self._client_key(key_func)
        return Rule(
            self, limiter, client, self.cost if cost is None else cost, separator
        )


class Rule:
    """One limit: a limiter, what a request spends, and how it is keyed.

    Made by `RequestPolicy` (its `RequestPolicy.rule`, or `make_rule`).

    Attributes:
        policy: The policy it belongs to.
        limiter: Its limiter.
        cost: Units each request spends.
        rendering: How its decisions become headers and a body.
    """

    __slots__ = (
        "_client",
        "_peer_keys",
        "_separator",
        "cost",
        "limiter",
        "policy",
        "rendering",
        "synchronous",
    )

    def __init__(
        self,
        policy: RequestPolicy,
        limiter: RateLimiter,
        client: ClientKey,
        cost: int,
        separator: str | None,
    ) -> None:
        self.policy = policy
        self.limiter = limiter
        self.cost = check_cost(cost, limiter.capacity)
        self.rendering = Rendering(limiter, policy.headers, policy.detail)
        self._client = client
        self._separator = separator
        # Keyed by the peer's address (no proxies): the addresses' cache of
        # peer -> key answers the client part in one lookup.
        addresses = policy.addresses
        by_peer = client == addresses.of and addresses.trusted_proxies is None
        self._peer_keys = addresses._keys if by_peer else None
        # Nothing to wait for: an in-memory limiter (whose awaitable twins
        # are its sync methods) keyed by the built-in keys. An async adapter
        # may then call `decide`, sparing a coroutine per request.
        self.synchronous: bool = (
            limiter.storage == "memory"
            and type(limiter).adecide is RateLimiter.adecide
            and client in (policy.addresses.of, policy._user_or_address)
        )

    def _key(self, client: object, view: RequestView) -> str:
        if type(client) is not str:
            raise TypeError(f"key_func must return a str, not {type(client).__name__}")
        if self._separator is None:
            return client
        return f"{view.route}{self._separator}{client}"

    def key(self, view: RequestView) -> str:
        """The limiter key of the request."""
        return self._key(self._client(view), view)

    def _verdict(self, decision: Any) -> Verdict:
        return Verdict(
            None if decision.allowed else BLOCKED_STATUS, decision, self.rendering
        )

    def decide(self, view: RequestView) -> Verdict:
        """Counts the request and answers it.

        Returns:
            A `Verdict`: it passes (with headers to add) or answers a 429,
            or a 503 when the storage fails with ``on_error="raise"`` (a
            storage error never escapes).
        """
        if self.policy.networks is not None:
            listed = self.policy.listed(view)
            if listed is not None:
                return listed
        # The request path of every adapter: _key and _verdict inlined.
        peer_keys = self._peer_keys
        client: Any = None if peer_keys is None else peer_keys.get(view.peer)
        if client is None:
            client = self._client(view)
            if type(client) is not str:
                self._key(client, view)  # raises the type error
        separator = self._separator
        key = client if separator is None else f"{view.route}{separator}{client}"
        try:
            if self.cost == 1:
                decision = self.limiter.decide(key)
            else:
                decision = self.limiter.decide(key, self.cost)
        except StorageError:
            return UNAVAILABLE
        return Verdict(
            None if decision.allowed else BLOCKED_STATUS, decision, self.rendering
        )

    async def adecide(self, view: RequestView) -> Verdict:
        """Awaitable twin of `decide` (``key_func`` may return an awaitable)."""
        if self.policy.networks is not None:
            listed = self.policy.listed(view)
            if listed is not None:
                return listed
        client: Any = self._client(view)
        if type(client) is not str and inspect.isawaitable(client):
            client = await client
        key = self._key(client, view)
        try:
            if self.cost == 1:
                decision = await self.limiter.adecide(key)
            else:
                decision = await self.limiter.adecide(key, self.cost)
        except StorageError:
            return UNAVAILABLE
        return self._verdict(decision)

    def __repr__(self) -> str:
        return f"Rule({self.limiter!r}, cost={self.cost})"
