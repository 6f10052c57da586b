"""Keys for HTTP requests: the client address, safely.

``X-Forwarded-For`` and ``Forwarded`` are client-controlled: anyone can send
them. They are read only when the direct peer is a proxy you listed in
``trusted_proxies``, and then the right-most entry that is not itself a
trusted proxy is the client (everything left of it could have been written by
the client). IPv4-mapped IPv6 addresses are keyed as IPv4, and IPv6 clients
can be grouped by prefix (one /64 is usually one subscriber).

A request with no client address (a Unix socket, some test clients) raises
`ClientAddressUnavailable` rather than sharing one key among all such
requests.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "ClientAddressUnavailable",
    "KeyFunc",
    "TrustedProxies",
    "client_address",
    "parse_forwarded",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
KeyFunc = Callable[..., str]


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

    def __init__(self, proxies: Iterable[str] | None = None) -> None:
        if isinstance(proxies, str):
            proxies = [proxies]
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
) -> str:
    """The client address to key a request on.

    Args:
        peer: The address of the direct peer (the TCP connection).
        forwarded_for: Values of ``X-Forwarded-For`` headers, in order.
        forwarded: Values of ``Forwarded`` headers, in order.
        trusted_proxies: Proxies whose forwarding headers are believed.
        ipv6_prefix: Group IPv6 clients by this prefix length (e.g. 64).

    Returns:
        The address as text (``"203.0.113.7"``, ``"2001:db8::/64"``).

    Raises:
        ClientAddressUnavailable: There is no peer address.
    """
    if peer is None or peer == "":
        raise ClientAddressUnavailable
    if ipv6_prefix is not None and not 0 <= ipv6_prefix <= 128:
        raise ValueError(f"ipv6_prefix must be between 0 and 128, got {ipv6_prefix}")
    if not trusted_proxies:
        return _peer_key(peer, ipv6_prefix)
    address = _parse(peer)
    if address is None:
        # Not an IP (e.g. "testclient"): key on the text as it is.
        return peer
    if address not in trusted_proxies:
        return _format(address, ipv6_prefix)
    chain: list[str] = []
    for value in forwarded:
        chain += parse_forwarded(value)
    if not chain:
        for value in forwarded_for:
            chain += [entry for entry in value.split(",") if entry.strip()]
    # Right to left: skip our own proxies; the first other hop is the client.
    for entry in reversed(chain):
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
