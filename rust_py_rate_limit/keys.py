"""Keys for HTTP requests: the client address, safely.

Forwarding headers are client-controlled: anyone can send them. They are read
only when the direct peer is a proxy you listed in ``trusted_proxies``, and
then only ONE of them is believed, the one your proxy sets, chosen by
configuration (``forwarded_header``), never by the request:

- ``"x-forwarded-for"`` (default): the right-most entry that is not itself a
  trusted proxy is the client (everything left of it could have been written
  by the client);
- ``"forwarded"`` (RFC 7239): the same rule over its ``for=`` entries;
- ``"x-real-ip"``: one address, set by the proxy. If the request carries
  several (a proxy that appends instead of replacing, after the client's
  own), the last one is taken: only it can be the proxy's.

A header that is not chosen is never read, so a client cannot pick its key by
sending the other one. IPv4-mapped IPv6 addresses are keyed as IPv4, and IPv6
clients can be grouped by prefix (one /64 is usually one subscriber).

A request with no client address (a Unix socket, some test clients) raises
`ClientAddressUnavailable` rather than sharing one key among all such
requests.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

__all__ = [
    "FORWARDED_HEADERS",
    "ClientAddressUnavailable",
    "ForwardedHeader",
    "KeyFunc",
    "TrustedProxies",
    "check_forwarded_header",
    "check_ipv6_prefix",
    "client_address",
    "client_address_from_header",
    "parse_forwarded",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
KeyFunc = Callable[..., str]
ForwardedHeader = Literal["x-forwarded-for", "forwarded", "x-real-ip"]

#: The forwarding headers one can choose to believe (``forwarded_header=``).
FORWARDED_HEADERS: tuple[ForwardedHeader, ...] = (
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
)


def check_forwarded_header(
    value: object, name: str = "forwarded_header"
) -> ForwardedHeader:
    """Validates a ``forwarded_header=`` option (case-insensitive).

    Args:
        value: ``"x-forwarded-for"``, ``"forwarded"`` or ``"x-real-ip"``.
        name: The option's name, for the error message.

    Returns:
        The header name in lower case.

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: ``value`` is not one of the accepted headers.
    """
    accepted = ", ".join(repr(h) for h in FORWARDED_HEADERS)
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a str, one of {accepted}, not {type(value).__name__}"
        )
    lowered = value.strip().lower()
    for header in FORWARDED_HEADERS:
        if lowered == header:
            return header
    raise ValueError(f"{name} must be one of {accepted}, got {value!r}")


def check_ipv6_prefix(prefix: object, name: str = "ipv6_prefix") -> int | None:
    """Validates an ``ipv6_prefix=`` option: None or an int from 0 to 128.

    Raises:
        TypeError: Not an int (a bool is not one either).
        ValueError: Out of range.
    """
    if prefix is None:
        return None
    if isinstance(prefix, bool) or not isinstance(prefix, int):
        raise TypeError(f"{name} must be an int or None, not {type(prefix).__name__}")
    if not 0 <= prefix <= 128:
        raise ValueError(f"{name} must be between 0 and 128, got {prefix}")
    return prefix


class ClientAddressUnavailable(LookupError):
    """The request carries no client address to key on."""

    def __init__(self) -> None:
        super().__init__(
            "the request has no client address (Unix socket or a test client "
            "without one); pass key_func= to key requests another way"
        )


class TrustedProxies:
    """A set of proxy addresses and networks whose forwarding headers count.

    Args:
        proxies: Addresses or networks, e.g. ``["10.0.0.0/8", "::1"]``.
    """

    __slots__ = ("_networks",)
    _networks: tuple[IPNetwork, ...]

    def __init__(self, proxies: Iterable[str] | TrustedProxies | None = None) -> None:
        if isinstance(proxies, TrustedProxies):
            self._networks = proxies._networks
            return
        if isinstance(proxies, str):
            proxies = [proxies]
        if proxies is not None and not isinstance(proxies, Iterable):
            raise TypeError(
                "trusted_proxies must be a list of addresses or networks as str, "
                f"not {type(proxies).__name__}"
            )
        networks: list[IPNetwork] = []
        for proxy in proxies or ():
            if not isinstance(proxy, str):
                raise TypeError(
                    "trusted_proxies must be addresses or networks as str, "
                    f"not {type(proxy).__name__}"
                )
            try:
                networks.append(ipaddress.ip_network(proxy.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {proxy!r} is not an IP address or network"
                ) from None
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        address = _unmap(address)
        return any(address in network for network in self._networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self._networks]!r})"


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _parse(text: str) -> IPAddress | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # "[2001:db8::1]:4711"
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # "192.0.2.1:4711"
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # zone index
    try:
        return _unmap(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_forwarded(value: str) -> list[str]:
    """The ``for=`` addresses of a ``Forwarded`` header, in order."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, token = pair.strip().partition("=")
            if name.strip().lower() == "for":
                found.append(token.strip().strip('"'))
    return found


def _format(address: IPAddress, ipv6_prefix: int | None) -> str:
    if ipv6_prefix is not None and isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.ip_network(f"{address}/{ipv6_prefix}", strict=False)
        return str(network)
    return str(address)


@functools.lru_cache(maxsize=65_536)
def _peer_key(peer: str, ipv6_prefix: int | None) -> str:
    """The key of a direct peer: parsing an address costs microseconds, and
    the same clients come back, so the answer is cached."""
    address = _parse(peer)
    if address is None:
        # Not an IP (e.g. "testclient"): key on the text as it is.
        return peer
    return _format(address, ipv6_prefix)


def client_address(
    peer: str | None,
    forwarded_for: Sequence[str] = (),
    forwarded: Sequence[str] = (),
    *,
    trusted_proxies: TrustedProxies | None = None,
    ipv6_prefix: int | None = None,
    forwarded_header: ForwardedHeader = "x-forwarded-for",
    real_ip: Sequence[str] = (),
) -> str:
    """The client address to key a request on.

    Only the header named by ``forwarded_header`` is read (and only when
    ``peer`` is one of ``trusted_proxies``); the values given for the others
    are ignored. Up to 0.3.1 a non-empty ``forwarded`` won over
    ``forwarded_for``, which let a client pick its own key.

    Args:
        peer: The address of the direct peer (the TCP connection).
        forwarded_for: Values of ``X-Forwarded-For`` headers, in order.
        forwarded: Values of ``Forwarded`` headers, in order.
        trusted_proxies: Proxies whose forwarding header is believed.
        ipv6_prefix: Group IPv6 clients by this prefix length (e.g. 64).
        forwarded_header: The one header believed: ``"x-forwarded-for"``
            (default), ``"forwarded"`` or ``"x-real-ip"``.
        real_ip: Values of ``X-Real-IP`` headers, in order.

    Returns:
        The address as text (``"203.0.113.7"``, ``"2001:db8::/64"``).

    Raises:
        ClientAddressUnavailable: There is no peer address.
    """
    header = (
        forwarded_header
        if forwarded_header in FORWARDED_HEADERS
        else check_forwarded_header(forwarded_header)
    )
    values = {"x-forwarded-for": forwarded_for, "forwarded": forwarded}.get(
        header, real_ip
    )
    return client_address_from_header(
        peer,
        values,
        forwarded_header=header,
        trusted_proxies=trusted_proxies,
        ipv6_prefix=ipv6_prefix,
    )


def _chain(values: Sequence[str], header: ForwardedHeader) -> list[str]:
    """The hops named by the values of ``header``, left to right."""
    chain: list[str] = []
    if header == "forwarded":
        for value in values:
            chain += parse_forwarded(value)
        return chain
    for value in values:
        chain += [entry for entry in value.split(",") if entry.strip()]
    if header == "x-real-ip":
        # One address, set by the proxy; a client's own X-Real-IP can only
        # come before the proxy's, so the last one is the proxy's.
        return chain[-1:]
    return chain


def client_address_from_header(
    peer: str | None,
    values: Sequence[str] = (),
    *,
    forwarded_header: ForwardedHeader = "x-forwarded-for",
    trusted_proxies: TrustedProxies | None = None,
    ipv6_prefix: int | None = None,
) -> str:
    """The client address to key a request on, from one forwarding header.

    The adapters read only the header named by ``forwarded_header`` and hand
    its values here.

    Args:
        peer: The address of the direct peer (the TCP connection).
        values: The values of the ``forwarded_header`` header, in order
            (several headers of that name, or one comma-joined value).
        forwarded_header: ``"x-forwarded-for"`` (default), ``"forwarded"``
            or ``"x-real-ip"``; see the module documentation.
        trusted_proxies: Proxies whose forwarding header is believed.
        ipv6_prefix: Group IPv6 clients by this prefix length (e.g. 64).

    Returns:
        The address as text (``"203.0.113.7"``, ``"2001:db8::/64"``).

    Raises:
        ClientAddressUnavailable: There is no peer address.
    """
    if peer is None or peer == "":
        raise ClientAddressUnavailable
    if ipv6_prefix is not None:
        check_ipv6_prefix(ipv6_prefix)
    if not trusted_proxies:
        return _peer_key(peer, ipv6_prefix)
    address = _parse(peer)
    if address is None:
        # Not an IP (e.g. "testclient"): key on the text as it is.
        return peer
    if address not in trusted_proxies:
        return _format(address, ipv6_prefix)
    if forwarded_header not in FORWARDED_HEADERS:
        forwarded_header = check_forwarded_header(forwarded_header)
    # Right to left: skip our own proxies; the first other hop is the client.
    for entry in reversed(_chain(values, forwarded_header)):
        hop = _parse(entry)
        if hop is None:
            # Our proxy wrote something that is not an address: key on it
            # rather than on the proxy, which would lump every client together.
            return "unknown:" + entry.strip()[:64]
        if hop not in trusted_proxies:
            return _format(hop, ipv6_prefix)
        address = hop
    # Every hop is a trusted proxy: the left-most one is the client.
    return _format(address, ipv6_prefix)
