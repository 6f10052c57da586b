"""Client-address keys: trusted proxies, IPv6 handling, missing addresses."""

from __future__ import annotations

import pytest

from rust_py_rate_limit.keys import (
    ClientAddressUnavailable,
    TrustedProxies,
    check_forwarded_header,
    check_ipv6_prefix,
    client_address,
    client_address_from_header,
    parse_forwarded,
)

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8:ffff::/48"])


def test_peer_without_trusted_proxies_ignores_forwarding_headers() -> None:
    assert client_address("203.0.113.5", ["1.2.3.4"], ["for=5.6.7.8"]) == "203.0.113.5"


def test_untrusted_peer_cannot_forward() -> None:
    got = client_address("198.51.100.1", ["1.2.3.4"], trusted_proxies=PROXIES)
    assert got == "198.51.100.1"


def test_right_most_untrusted_entry_is_the_client() -> None:
    chain = ["6.6.6.6, 203.0.113.9", "10.0.0.7"]
    assert client_address("10.0.0.1", chain, trusted_proxies=PROXIES) == "203.0.113.9"


def test_all_trusted_chain_uses_the_left_most() -> None:
    got = client_address("10.0.0.1", ["10.0.0.3, 10.0.0.2"], trusted_proxies=PROXIES)
    assert got == "10.0.0.3"


def test_only_the_configured_header_is_read() -> None:
    # The default believes X-Forwarded-For; a client's own Forwarded is ignored.
    forwarded = ['for=1.1.1.1, for="[2001:db8::7]:4711";proto=https']
    got = client_address("10.0.0.1", ["9.9.9.9"], forwarded, trusted_proxies=PROXIES)
    assert got == "9.9.9.9"
    got = client_address(
        "10.0.0.1",
        ["9.9.9.9"],
        forwarded,
        trusted_proxies=PROXIES,
        forwarded_header="forwarded",
    )
    assert got == "2001:db8::7"
    # A Forwarded alone is not read unless chosen: the proxy is the key.
    assert client_address("10.0.0.1", (), forwarded, trusted_proxies=PROXIES) == (
        "10.0.0.1"
    )
    got = client_address(
        "10.0.0.1",
        ["9.9.9.9"],
        forwarded,
        trusted_proxies=PROXIES,
        forwarded_header="X-Real-IP",  # type: ignore[arg-type]
        real_ip=["203.0.113.4"],
    )
    assert got == "203.0.113.4"


def test_x_real_ip_takes_the_last_value() -> None:
    def real_ip(*values: str) -> str:
        return client_address_from_header(
            "10.0.0.1",
            values,
            forwarded_header="x-real-ip",
            trusted_proxies=PROXIES,
        )

    assert real_ip("203.0.113.4") == "203.0.113.4"
    # The client's own X-Real-IP comes before the proxy's: only the last counts,
    # whether the values arrive as several headers or joined by commas.
    assert real_ip("6.6.6.6", "203.0.113.4") == "203.0.113.4"
    assert real_ip("6.6.6.6, 203.0.113.4") == "203.0.113.4"
    # Even a proxy address: X-Real-IP is one hop, not a chain to walk.
    assert real_ip("6.6.6.6", "10.0.0.9") == "10.0.0.9"
    assert real_ip() == "10.0.0.1"
    assert real_ip("garbage") == "unknown:garbage"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x-forwarded-for", "x-forwarded-for"),
        ("X-Forwarded-For", "x-forwarded-for"),
        ("Forwarded", "forwarded"),
        (" x-real-ip ", "x-real-ip"),
    ],
)
def test_check_forwarded_header(value: str, expected: str) -> None:
    assert check_forwarded_header(value) == expected


def test_bad_forwarded_header() -> None:
    accepted = "'x-forwarded-for', 'forwarded', 'x-real-ip'"
    with pytest.raises(ValueError, match=f"forwarded_header must be one of {accepted}"):
        check_forwarded_header("x-client-ip")
    with pytest.raises(TypeError, match="forwarded_header must be a str"):
        check_forwarded_header(b"forwarded")
    with pytest.raises(ValueError, match="forwarded_header"):
        client_address("10.0.0.1", trusted_proxies=PROXIES, forwarded_header="via")  # type: ignore[arg-type]


def test_bad_ipv6_prefix() -> None:
    with pytest.raises(TypeError, match="ipv6_prefix must be an int"):
        check_ipv6_prefix(True)
    with pytest.raises(TypeError, match="ipv6_prefix must be an int"):
        client_address("::1", ipv6_prefix="64")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ipv6_prefix must be between 0 and 128"):
        check_ipv6_prefix(-1)
    assert check_ipv6_prefix(None) is None
    assert check_ipv6_prefix(0) == 0


def test_parse_forwarded() -> None:
    assert parse_forwarded('for=192.0.2.60;proto=http;by=203.0.113.43, For="_x"') == [
        "192.0.2.60",
        "_x",
    ]


def test_ipv4_mapped_ipv6_is_keyed_as_ipv4() -> None:
    assert client_address("::ffff:203.0.113.5") == "203.0.113.5"
    proxies = TrustedProxies(["10.0.0.1"])
    got = client_address("::ffff:10.0.0.1", ["192.0.2.1"], trusted_proxies=proxies)
    assert got == "192.0.2.1"


def test_ipv6_prefix_grouping() -> None:
    a = client_address("2001:db8:1:2:aaaa::1", ipv6_prefix=64)
    b = client_address("2001:db8:1:2:bbbb::9", ipv6_prefix=64)
    c = client_address("2001:db8:1:3::1", ipv6_prefix=64)
    assert a == b == "2001:db8:1:2::/64"
    assert c != a
    assert client_address("192.0.2.1", ipv6_prefix=64) == "192.0.2.1"
    with pytest.raises(ValueError, match="ipv6_prefix"):
        client_address("::1", ipv6_prefix=129)


def test_ports_and_zones_are_dropped() -> None:
    chain = ["[2001:db8::1]:8080", "192.0.2.4:9000"]
    assert client_address("10.0.0.1", chain[1:], trusted_proxies=PROXIES) == "192.0.2.4"
    got = client_address("10.0.0.1", chain[:1], trusted_proxies=PROXIES)
    assert got == "2001:db8::1"
    assert client_address("fe80::1%eth0") == "fe80::1"


def test_garbage_from_a_trusted_proxy_is_keyed_apart() -> None:
    got = client_address("10.0.0.1", ["not-an-ip"], trusted_proxies=PROXIES)
    assert got == "unknown:not-an-ip"


@pytest.mark.parametrize("peer", [None, ""])
def test_missing_address_is_an_error_not_a_shared_key(peer: str | None) -> None:
    with pytest.raises(ClientAddressUnavailable, match="key_func"):
        client_address(peer)


def test_bad_trusted_proxies() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        TrustedProxies(["10.0.0.0/33"])
    with pytest.raises(TypeError, match="trusted_proxies"):
        TrustedProxies([10])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="trusted_proxies must be a list"):
        TrustedProxies(10)  # type: ignore[arg-type]
    copy = TrustedProxies(PROXIES)
    assert repr(copy) == repr(PROXIES)
    assert "10.0.0.1" not in PROXIES, "text is not an address"
    assert bool(TrustedProxies()) is False
    assert repr(TrustedProxies("::1")) == "TrustedProxies(['::1/128'])"
