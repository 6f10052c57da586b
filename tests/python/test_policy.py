"""The framework-free request policy (rust_py_rate_limit._policy), on its own."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from rust_py_rate_limit import ManualClock, RateLimiter
from rust_py_rate_limit import keys as keys_module
from rust_py_rate_limit._policy import (
    PASS,
    UNAVAILABLE,
    ExemptPaths,
    OptionTypeError,
    OptionValueError,
    Rendering,
    RequestPolicy,
    SettingsError,
    View,
    build_limiter,
    normalize_path,
    policy_from_settings,
    reported,
)
from rust_py_rate_limit.keys import ClientAddressUnavailable

CLIENT = "203.0.113.9"


def policy(**options: Any) -> RequestPolicy:
    """A policy with a limit of 2 per minute on a ManualClock by default."""
    options.setdefault("limit", 2)
    options.setdefault("window_seconds", 60)
    options.setdefault("clock", ManualClock())
    return RequestPolicy(**options)


def get(path: str = "/", peer: str | None = CLIENT, **kw: Any) -> View:
    return View(kw.pop("method", "GET"), path, peer, **kw)


# -- options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "option", "message"),
    [
        ({"cost": 3}, OptionValueError, "cost", "cost must be between 1 and 2"),
        ({"cost": "1"}, OptionTypeError, "cost", "cost must be an int"),
        ({"headers": "x"}, OptionValueError, "headers", "headers must be"),
        ({"detail": ""}, OptionValueError, "detail", "detail must not be empty"),
        ({"detail": 429}, OptionTypeError, "detail", "detail must be a str"),
        ({"exempt_options": 1}, OptionTypeError, "exempt_options", "must be a bool"),
        ({"on_blocked": 1}, OptionTypeError, "on_blocked", "on_blocked must be"),
        ({"key_func": "ip"}, OptionTypeError, "key_func", "key_func must be"),
        ({"exempt": 5}, OptionTypeError, "exempt", "exempt must be a list"),
        ({"exempt": ["health"]}, OptionValueError, "exempt", "starting with '/'"),
        ({"exempt": ["/a/../b"]}, OptionValueError, "exempt", "'.' or '..'"),
        ({"trusted_proxies": 10}, OptionTypeError, "trusted_proxies", "must be"),
        ({"trusted_proxies": ["x"]}, OptionValueError, "trusted_proxies", "not an IP"),
        ({"forwarded_header": "via"}, OptionValueError, "forwarded_header", "one of"),
        ({"ipv6_prefix": 129}, OptionValueError, "ipv6_prefix", "between 0 and 128"),
        ({"limit": 0}, OptionValueError, "limit", "limit"),
        ({"window_seconds": 1.5}, OptionTypeError, "window_seconds", "window_seconds"),
        ({"algorithm": "magic"}, OptionValueError, "algorithm", "algorithm"),
        ({"max_keys": 0}, OptionValueError, "max_keys", "max_keys"),
        ({"cleanup_interval": -1}, OptionValueError, "cleanup_interval", "negative"),
        ({"clock": "now"}, OptionTypeError, "clock", "clock must be a ManualClock"),
        ({"rate": "1/minute"}, OptionTypeError, "rate", "give either rate or limit"),
        ({"storage": "ftp://x"}, OptionValueError, "storage", "storage must be"),
        ({"allow_networks": 5}, OptionTypeError, "allow_networks", "must be a list"),
        ({"deny_networks": ["x"]}, OptionValueError, "deny_networks", "not an IP"),
        ({"deny_networks": [5]}, OptionTypeError, "deny_networks", "must hold"),
        (
            {"ban_after": 0, "ban_seconds": 1},
            OptionValueError,
            "ban_after",
            "ban_after",
        ),
        ({"shadow": 1}, OptionTypeError, "shadow", "shadow must be a bool"),
    ],
)
def test_each_option_is_checked_once_and_named(
    options: dict[str, Any], error: type[Exception], option: str, message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        policy(**options)
    assert info.value.option == option  # type: ignore[attr-defined]
    assert isinstance(info.value, TypeError | ValueError)


def test_an_unknown_option_is_named_with_the_nearest() -> None:
    with pytest.raises(
        TypeError, match=r"Thing\(\) got .* 'limt'; did you mean 'limit'"
    ):
        RequestPolicy(caller="Thing", limt=5)  # type: ignore[call-arg]


def test_limiter_excludes_the_options_that_build_one() -> None:
    shared = RateLimiter(5, 60)
    assert RequestPolicy(limiter=shared).limiter is shared
    conflicts: list[tuple[str, Any]] = [
        ("limit", 5),
        ("rate", "1/s"),
        ("max_keys", 10),
        ("cleanup_interval", 1.0),
        ("storage", "redis://x"),
    ]
    for name, value in conflicts:
        with pytest.raises(OptionTypeError, match=f"give either limiter or {name}"):
            RequestPolicy(limiter=shared, **{name: value})
    with pytest.raises(OptionTypeError, match="algorithm cannot be given with limiter"):
        RequestPolicy(limiter=shared, algorithm="gcra")
    # A clock is for the limiters built later (a rule's own rate).
    assert RequestPolicy(limiter=shared, clock=ManualClock()).limiter is shared


def test_max_keys_and_cleanup_interval_reach_the_limiter() -> None:
    p = policy(max_keys=100, cleanup_interval=30)
    assert p.limiter is not None
    assert (p.limiter.max_keys, p.limiter.cleanup_interval) == (100, 30)
    p.limiter.stop_cleanup()


def test_without_a_rate_a_policy_has_no_default_rule() -> None:
    with pytest.raises(OptionTypeError, match="rate= or limit="):
        RequestPolicy()
    p = RequestPolicy(require_rate=False, algorithm="sliding")
    assert (p.limiter, p.rule) == (None, None)
    with pytest.raises(OptionValueError, match="rate is required"):
        p.make_rule()
    assert p.make_rule("3/minute").limiter.algorithm == "sliding"
    with pytest.raises(OptionValueError, match="algorithm"):
        RequestPolicy(require_rate=False, algorithm="magic")  # type: ignore[arg-type]


def test_build_limiter_positional_form() -> None:
    built = build_limiter(None, 5, 60, None, "fixed")
    assert built.limits == [(5, 60)]


# -- paths ----------------------------------------------------------------------------


def test_normalize_path() -> None:
    assert normalize_path("//a///b/") == "/a/b"
    assert normalize_path("/") == "/"
    assert normalize_path("") == "/"


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/health", True),
        ("/health/", True),
        ("//health", True),
        ("/health/live", True),
        ("health", True),
        ("/health/.well-known", True),
        ("/healthz", False),
        ("/api/health", False),
        ("/health/../api", False),
        ("/./health", False),
        ("/health/.", False),
        ("/HEALTH", False),
    ],
)
def test_exempt_prefixes_match_whole_segments(path: str, exempt: bool) -> None:
    assert ExemptPaths(["/health/"])(path) is exempt


def test_the_root_prefix_exempts_everything_but_dot_segments() -> None:
    matcher = ExemptPaths(["/"])
    assert matcher("/anything/at/all")
    assert not matcher("/a/../b")


# -- rendering ------------------------------------------------------------------------


def decision_of(limiter: RateLimiter, times: int) -> Any:
    for _ in range(times - 1):
        limiter.decide("k")
    return limiter.decide("k")


@pytest.mark.parametrize("mode", ["legacy", "ietf", "both", None])
def test_raw_headers_are_the_text_headers_as_asgi_bytes(mode: Any) -> None:
    limiter = RateLimiter(rate="2/second;5/minute", clock=ManualClock())
    rendering = Rendering(limiter, mode)
    for times in (1, 3):
        decision = decision_of(limiter, times)
        text = rendering.headers(decision)
        raw = rendering.raw_headers(decision)
        assert raw == [(k.lower().encode(), v.encode()) for k, v in text]
        names = [k for k, _ in text]
        assert ("Retry-After" in names) is (not decision.allowed)
        limiter.clear()


def test_ietf_fields_name_the_deciding_rule() -> None:
    limiter = RateLimiter(rate="2/second;100/hour", clock=ManualClock())
    headers = dict(Rendering(limiter, "ietf").headers(limiter.decide("k")))
    assert headers == {
        "RateLimit-Policy": '"p0";q=2;w=1, "p1";q=100;w=3600',
        "RateLimit": '"p0";r=1;t=1',
    }


def test_verdicts() -> None:
    p = policy(detail="Slow down")
    assert p.rule is not None
    first, second, third = (p.rule.decide(get()) for _ in range(3))
    assert [first.passes, second.passes, third.passes] == [True, True, False]
    assert third.status == 429
    assert third.body == b'{"detail": "Slow down"}'
    assert third.detail == "Slow down"
    assert reported([first, third, second]) is third
    assert reported([first, second]) is second  # the least remaining
    assert (PASS.passes, PASS.headers, PASS.raw_headers) == (True, [], [])
    assert (UNAVAILABLE.status, UNAVAILABLE.headers) == (503, [])
    assert UNAVAILABLE.body == b'{"detail": "Rate limiter unavailable"}'


# -- requests --------------------------------------------------------------------------


def test_exempt_and_preflight() -> None:
    p = policy(exempt=["/health"])
    assert p.exempt(get("/health/live"))
    assert not p.exempt(get("/api"))
    preflight = get(
        "/x", method="OPTIONS", headers={"access-control-request-method": ["GET"]}
    )
    assert p.preflight(preflight)
    assert not p.preflight(get("/x", method="OPTIONS"))
    assert not policy(exempt_options=False).preflight(preflight)
    predicate = policy(exempt=lambda request: request == "internal")
    assert predicate.exempt(get(request="internal"))
    assert not predicate.exempt(get(request="other"))


def test_client_address_keys() -> None:
    p = policy(trusted_proxies=["10.0.0.0/8"], ipv6_prefix=64)
    assert p.address(get(peer="::ffff:192.0.2.1")) == "192.0.2.1"
    assert p.address(get(peer="2001:db8::1")) == "2001:db8::/64"
    forged = {"x-forwarded-for": [f"6.6.6.6, {CLIENT}"], "forwarded": ["for=1.1.1.1"]}
    assert p.address(get(peer="10.0.0.1", headers=forged)) == CLIENT
    assert p.address(get(peer="192.0.2.7", headers=forged)) == "192.0.2.7"
    with pytest.raises(ClientAddressUnavailable):
        p.address(get(peer=None))
    with pytest.raises(ClientAddressUnavailable):
        p.address(get(peer=""))
    prefixed = policy(address_prefix="ip:")
    assert prefixed.address(get()) == "ip:" + CLIENT


def test_keys_of_rules() -> None:
    p = policy(route_separator=":")
    assert p.rule is not None
    assert p.rule.key(get(route="items")) == f"items:{CLIENT}"
    assert p.make_rule(key="login").key(get(route="items")) == "login"
    assert p.make_rule(key=lambda r: f"k{r}").key(get(request=1)) == "k1"
    by_header = p.make_rule(key_func=lambda r: r)
    assert by_header.key(get(route="a", request="x")) == "a:x"
    with pytest.raises(OptionTypeError, match="key or key_func"):
        p.make_rule(key="a", key_func=lambda r: r)
    users = policy(key_func="user")
    assert users.keyed_by_user
    assert users.rule is not None
    assert users.rule.key(get(user="ana")) == "user:ana"
    assert users.rule.key(get(user=None)) == CLIENT
    bad = policy(key_func=lambda r: 42)
    assert bad.rule is not None
    with pytest.raises(TypeError, match="key_func must return a str, not int"):
        bad.rule.decide(get())


def test_a_rule_cost_is_checked_against_its_own_limiter() -> None:
    p = policy(limit=10)
    assert p.make_rule(cost=10).cost == 10
    with pytest.raises(OptionValueError, match="between 1 and 2"):
        p.make_rule("2/minute", cost=3)


def test_adecide_awaits_an_async_key_func() -> None:
    async def key(request: Any) -> str:
        return "async-key"

    p = policy(key_func=key)
    assert p.rule is not None
    verdict = asyncio.run(p.rule.adecide(get()))
    assert verdict.passes
    assert p.rule.limiter.remaining("async-key") == 1


def test_a_storage_failure_is_a_503_verdict_not_an_exception() -> None:
    p = RequestPolicy(
        limit=5,
        window_seconds=60,
        storage="redis://127.0.0.1:1/0",
        on_error="raise",
        timeout=0.05,
    )
    assert p.rule is not None
    assert p.rule.decide(get()) is UNAVAILABLE
    assert asyncio.run(p.rule.adecide(get())) is UNAVAILABLE


def test_no_option_is_checked_again_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = policy(trusted_proxies=["10.0.0.1"], forwarded_header="x-real-ip")
    assert p.rule is not None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an option was checked on the request path")

    monkeypatch.setattr(keys_module, "check_forwarded_header", refuse)
    monkeypatch.setattr(keys_module, "check_ipv6_prefix", refuse)
    view = get(peer="10.0.0.1", headers={"x-real-ip": [CLIENT]})
    assert p.rule.decide(view).passes
    assert p.rule.limiter.remaining(CLIENT) == 1


# -- settings ---------------------------------------------------------------------


def test_policy_from_settings_maps_keys_and_names_them_in_errors() -> None:
    def importer(path: str) -> object:
        if path == "mod.key":
            return lambda request: "k"
        raise ImportError(path)

    p = policy_from_settings(
        {"LIMIT": 2, "WINDOW_SECONDS": 60, "KEY": "mod.key", "DETAIL": "Slow"},
        "CONF",
        importer,
    )
    assert p.rule is not None
    assert p.detail == "Slow"
    assert p.rule.key(get()) == "k"
    for config, named in [
        ({"LIMIT": 2}, "CONF['WINDOW_SECONDS']"),
        ({"RATE": "1/s", "COST": 2}, "CONF['COST']"),
        ({"RATE": "1/s", "KEY": "client"}, "CONF['KEY']"),
        ({"RATE": "1/s", "KEY": "mod.nothing"}, "cannot import"),
        ({"RATE": "1/s", "KEY_FUNC": "ip"}, "unknown key(s) 'KEY_FUNC'"),
        ({"RATE": "1/s", "EXEMPT": "/health"}, "CONF['EXEMPT'] must be a list"),
        ([1], "CONF must be a dict"),
    ]:
        with pytest.raises(SettingsError, match=re.escape(named)):
            policy_from_settings(config, "CONF", importer)


# -- abuse controls -------------------------------------------------------------------


def test_network_lists_are_replaced_whole_at_run_time() -> None:
    import threading

    p = policy(limit=10**9)
    rule = p.rule
    assert rule is not None
    stop = threading.Event()
    seen: list[int | None] = []

    def hit() -> None:
        while not stop.is_set():
            seen.append(rule.decide(get()).status)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(300):
        p.set_networks(deny=[CLIENT] if i % 2 else None)
    p.set_networks(allow=["203.0.113.0/24"])
    stop.set()
    for t in threads:
        t.join()
    assert set(seen) <= {None, 403}
    assert rule.decide(get()) is PASS
    assert rule.decide(get(peer="198.51.100.1")).status is None
    assert rule.decide(get(peer="198.51.100.1")).decision is not None
    p.set_networks()
    assert p.networks is None
    assert rule.decide(get()) is not PASS


def test_shadow_and_bans_reach_the_policy_limiter() -> None:
    p = policy(limit=1, shadow=True, ban_after=1, ban_seconds=60)
    assert p.limiter is not None
    assert p.limiter.shadow
    rule = p.rule
    assert rule is not None
    assert [rule.decide(get()).passes for _ in range(3)] == [True] * 3
    assert p.limiter.stats()["bans"] == 1
