"""The Django REST framework throttles: real API views and viewsets under
Django's test client, DRF's own 429 with ``Retry-After``.

Settings come from ``django_settings`` (shared by the Django tests);
everything a test needs is set with ``override_settings``. No
``django.contrib.auth``: a tiny authentication class makes a user from an
``Authorization: User <pk>`` header.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import django
import django_settings  # noqa: F401  (configures Django's settings)
import pytest
from django.apps import apps

if not apps.ready:
    django.setup()

from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.urls import include, path
from rest_framework import routers, viewsets
from rest_framework.authentication import BaseAuthentication
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from rust_py_rate_limit import ManualClock
from rust_py_rate_limit import drf as rl_drf
from rust_py_rate_limit.drf import (
    AnonRateThrottle,
    RateLimitThrottle,
    ScopedRateThrottle,
    UserRateThrottle,
    reset_throttles,
)

ROOT = Path(__file__).resolve().parents[2]


class HeaderUser(BaseAuthentication):  # type: ignore[misc]
    """``Authorization: User 7`` is user 7; no header, anonymous."""

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        value = request.headers.get("Authorization", "")
        if not value.startswith("User "):
            return None
        return SimpleNamespace(pk=int(value[5:]), is_authenticated=True), None


class Hello(APIView):  # type: ignore[misc]
    # DRF reads its DEFAULT_* classes once, when rest_framework.views is
    # imported: name them on the class.
    authentication_classes = (HeaderUser,)
    permission_classes = ()

    def get(self, request: Any) -> Response:
        return Response({"ok": True})


class AnonView(Hello):
    throttle_classes = (AnonRateThrottle,)


class UserView(Hello):
    throttle_classes = (UserRateThrottle,)


class UploadView(Hello):
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "uploads"


class ContactView(Hello):
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "contacts"


class UnscopedView(Hello):
    throttle_classes = (ScopedRateThrottle,)


class ItemViewSet(viewsets.ViewSet):  # type: ignore[misc]
    authentication_classes = (HeaderUser,)
    throttle_classes = (AnonRateThrottle, UserRateThrottle)

    def list(self, request: Any) -> Response:
        return Response([1, 2])

    def retrieve(self, request: Any, pk: str) -> Response:
        return Response({"pk": pk})


router = routers.SimpleRouter()
router.register("items", ItemViewSet, basename="item")

urlpatterns = [
    path("anon", AnonView.as_view()),
    path("user", UserView.as_view()),
    path("upload", UploadView.as_view()),
    path("contact", ContactView.as_view()),
    path("unscoped", UnscopedView.as_view()),
    path("", include(router.urls)),
]


def drf_settings(**extra: Any) -> dict[str, Any]:
    rates = {"anon": "3/min", "user": "5/min", "uploads": "2/min", "contacts": "3/min"}
    rates.update(extra.pop("rates", {}))
    return {
        "UNAUTHENTICATED_USER": None,
        "DEFAULT_AUTHENTICATION_CLASSES": [f"{__name__}.HeaderUser"],
        "DEFAULT_PERMISSION_CLASSES": [],
        "DEFAULT_THROTTLE_RATES": rates,
        **extra,
    }


@pytest.fixture(autouse=True)
def drf_app() -> Iterator[None]:
    reset_throttles()
    with override_settings(ROOT_URLCONF=__name__, REST_FRAMEWORK=drf_settings()):
        yield
    reset_throttles()


def statuses(client: Client, url: str, n: int, **headers: str) -> list[int]:
    return [client.get(url, headers=headers).status_code for _ in range(n)]


# -- the three throttles -------------------------------------------------------


def test_anon_throttle_limits_anonymous_requests_by_address() -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert statuses(client, "/anon", 4) == [200, 200, 200, 429]
    refused = client.get("/anon")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"]
    # Another address has its own allowance; a signed-in user is not limited.
    assert statuses(Client(REMOTE_ADDR="203.0.113.8"), "/anon", 1) == [200]
    assert statuses(client, "/anon", 5, Authorization="User 1") == [200] * 5


def test_user_throttle_keys_users_by_pk_and_anonymous_by_address() -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert statuses(client, "/user", 6, Authorization="User 1") == [200] * 5 + [429]
    # User 2 from the same address is another key; so is the address alone.
    assert statuses(client, "/user", 5, Authorization="User 2") == [200] * 5
    assert statuses(client, "/user", 6) == [200] * 5 + [429]
    # User 1 from elsewhere is still user 1.
    other = Client(REMOTE_ADDR="198.51.100.1")
    assert statuses(other, "/user", 1, Authorization="User 1") == [429]


def test_scoped_throttle_gives_each_scope_its_rate() -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert statuses(client, "/upload", 3) == [200, 200, 429]
    assert statuses(client, "/contact", 4) == [200, 200, 200, 429]
    assert statuses(client, "/unscoped", 10) == [200] * 10


def test_default_throttle_classes_and_a_viewset() -> None:
    with override_settings(
        REST_FRAMEWORK=drf_settings(
            DEFAULT_THROTTLE_CLASSES=["rust_py_rate_limit.drf.AnonRateThrottle"]
        )
    ):
        # What APIView does with the setting when DRF is first imported.
        defaults = api_settings.DEFAULT_THROTTLE_CLASSES
        assert defaults == [AnonRateThrottle]
        view: Any = type("DefaultView", (Hello,), {"throttle_classes": defaults})
        request = APIRequestFactory().get("/default", REMOTE_ADDR="203.0.113.9")
        got = [view.as_view()(request).status_code for _ in range(4)]
        assert got == [200, 200, 200, 429]
    client = Client(REMOTE_ADDR="203.0.113.10")
    # list and retrieve share the anon allowance of the address.
    got = [client.get(url).status_code for url in ("/items/", "/items/1/", "/items/")]
    assert got == [200, 200, 200]
    assert client.get("/items/2/").status_code == 429
    assert statuses(client, "/items/", 5, Authorization="User 4") == [200] * 5
    assert client.get("/items/", headers={"Authorization": "User 4"}).status_code == 429


# -- rates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "admitted"),
    [
        ("2/day", 2),  # DRF's words
        ("2/d", 2),
        ("2/minute", 2),
        ("2/s", 2),
        ("2/second;3/hour", 2),  # ours: compound
        ("2/5m", 2),  # ours: a multiple of a unit
        ("2/dayz", 2),  # DRF reads the period's first letter only
    ],
)
def test_rates_in_drf_and_our_notation(rate: str, admitted: int) -> None:
    with override_settings(REST_FRAMEWORK=drf_settings(rates={"anon": rate})):
        got = statuses(Client(REMOTE_ADDR="203.0.113.7"), "/anon", admitted + 1)
    assert got == [200] * admitted + [429]


def test_rates_are_read_when_settings_change() -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    with override_settings(REST_FRAMEWORK=drf_settings(rates={"anon": "1/min"})):
        assert statuses(client, "/anon", 2) == [200, 429]
    with override_settings(REST_FRAMEWORK=drf_settings(rates={"anon": None})):
        assert statuses(client, "/anon", 10) == [200] * 10  # None: off


def test_missing_or_bad_rates_name_the_throttle_and_scope() -> None:
    with (
        override_settings(
            REST_FRAMEWORK={**drf_settings(), "DEFAULT_THROTTLE_RATES": {}}
        ),
        pytest.raises(ImproperlyConfigured, match="'anon' scope"),
    ):
        Client(REMOTE_ADDR="203.0.113.7").get("/anon")
    lots = drf_settings(rates={"anon": "lots"})
    bad_rate = r"AnonRateThrottle \(scope 'anon'"
    with (
        override_settings(REST_FRAMEWORK=lots),
        pytest.raises(ImproperlyConfigured, match=bad_rate),
    ):
        Client(REMOTE_ADDR="203.0.113.7").get("/anon")

    class Nameless(RateLimitThrottle):
        pass

    with pytest.raises(ImproperlyConfigured, match=r"`.scope` or `.rate`.*'Nameless'"):
        Nameless().allow_request(SimpleNamespace(), None)


# -- the decision ------------------------------------------------------------------


clock = ManualClock()


class ClockedAnon(AnonRateThrottle):
    clock = clock


class ClockedView(Hello):
    throttle_classes = (ClockedAnon,)


class CostlyAnon(AnonRateThrottle):
    cost = 2


class CostlyView(Hello):
    throttle_classes = (CostlyAnon,)


urlpatterns += [
    path("clocked", ClockedView.as_view()),
    path("costly", CostlyView.as_view()),
]


def test_retry_after_and_wait_follow_the_limiter() -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert statuses(client, "/clocked", 3) == [200] * 3
    clock.advance(20)
    refused = client.get("/clocked")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "40"  # the moving window: 60 s after the first
    clock.advance(40)
    assert statuses(client, "/clocked", 1) == [200]

    throttle = ClockedAnon()
    assert throttle.wait() is None  # nothing decided yet
    request = SimpleNamespace(user=None, META={"REMOTE_ADDR": "192.0.2.1"})
    assert throttle.allow_request(request, None) is True
    assert throttle.wait() is None  # admitted


def test_cost_spends_more_than_one_unit() -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert statuses(client, "/costly", 2) == [200, 429]  # 2 + 2 > 3


@pytest.mark.parametrize(
    "algorithm", ["fixed", "sliding", "sliding_log", "token_bucket", "gcra"]
)
def test_every_algorithm(algorithm: str) -> None:
    throttle_cls = type("Algo", (AnonRateThrottle,), {"algorithm": algorithm})
    view = type("AlgoView", (Hello,), {"throttle_classes": [throttle_cls]})
    request = SimpleNamespace(user=None, META={"REMOTE_ADDR": "192.0.2.1"})
    got = [throttle_cls().allow_request(request, view) for _ in range(5)]
    assert got == [True, True, True, False, False]
    limiter = throttle_cls().get_limiter("3/min")
    assert limiter.algorithm == algorithm


# -- client addresses ----------------------------------------------------------------


def test_forwarding_headers_are_believed_only_from_trusted_proxies() -> None:
    forged = {"X-Forwarded-For": "198.51.100.99"}
    # No TRUSTED_PROXIES: the peer is the client, whatever it sends (DRF's own
    # throttle would key each forged value apart).
    client = Client(REMOTE_ADDR="203.0.113.7")
    got = [
        client.get("/anon", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(4)
    ]
    assert got == [200, 200, 200, 429]
    with override_settings(RUST_PY_RATE_LIMIT={"TRUSTED_PROXIES": ["10.0.0.1"]}):
        proxy = Client(REMOTE_ADDR="10.0.0.1")
        # The right-most untrusted entry is the client; what it wrote before
        # the proxy's entry does not change its key.
        got = [
            proxy.get(
                "/anon", headers={"X-Forwarded-For": f"1.1.1.{i}, 198.51.100.99"}
            ).status_code
            for i in range(4)
        ]
        assert got == [200, 200, 200, 429]
        assert proxy.get("/anon", headers=forged).status_code == 429
        other = {"X-Forwarded-For": "198.51.100.100"}
        assert proxy.get("/anon", headers=other).status_code == 200


def test_network_lists_allow_unthrottled_and_deny_with_403() -> None:
    config = {
        "TRUSTED_PROXIES": ["10.0.0.1"],
        "ALLOW_NETWORKS": ["198.51.100.0/24"],
        "DENY_NETWORKS": ["203.0.113.66", "2001:db8::/32"],
    }
    with override_settings(RUST_PY_RATE_LIMIT=config):
        allowed = Client(REMOTE_ADDR="198.51.100.7")
        assert statuses(allowed, "/anon", 6) == [200] * 6
        denied = Client(REMOTE_ADDR="203.0.113.66").get("/anon")
        assert (denied.status_code, denied.json()) == (403, {"detail": "Forbidden"})
        assert Client(REMOTE_ADDR="2001:db8::1").get("/anon").status_code == 403
        # A forged header from an untrusted peer reaches no allow-listed
        # network; through the trusted proxy the resolved client does.
        forged = {"X-Forwarded-For": "198.51.100.7"}
        other = Client(REMOTE_ADDR="192.0.2.1")
        assert statuses(other, "/anon", 4, **forged) == [200, 200, 200, 429]
        proxy = Client(REMOTE_ADDR="10.0.0.1")
        assert statuses(proxy, "/anon", 5, **forged) == [200] * 5
        # Replaced at run time, both at once.
        rl_drf.set_networks(deny=["192.0.2.0/24"])
        assert other.get("/anon").status_code == 403
        assert statuses(allowed, "/anon", 4) == [200, 200, 200, 429]
        with pytest.raises(ValueError, match="allow_networks"):
            rl_drf.set_networks(allow=["not-an-address"])
        assert other.get("/anon").status_code == 403  # unchanged
    with (
        override_settings(RUST_PY_RATE_LIMIT={"DENY_NETWORKS": ["x"]}),
        pytest.raises(ImproperlyConfigured, match="DENY_NETWORKS"),
    ):
        Client(REMOTE_ADDR="203.0.113.7").get("/anon")


def test_shadow_and_bans_reach_the_throttles() -> None:
    with override_settings(RUST_PY_RATE_LIMIT={"SHADOW": True}):
        assert statuses(Client(REMOTE_ADDR="203.0.113.7"), "/anon", 6) == [200] * 6
        throttle = rl_drf.AnonRateThrottle()
        limiter = throttle.get_limiter("3/min")
        assert limiter.stats()["shadow_refused"] == 3
    config = {"BAN_AFTER": 2, "BAN_SECONDS": 600}
    with override_settings(RUST_PY_RATE_LIMIT=config):
        client = Client(REMOTE_ADDR="203.0.113.7")
        assert statuses(client, "/anon", 5) == [200, 200, 200, 429, 429]
        banned = client.get("/anon")
        assert banned.status_code == 429
        assert 590 < int(banned["Retry-After"]) <= 600


def test_num_proxies_is_drfs_guess_when_no_trusted_proxies() -> None:
    with override_settings(REST_FRAMEWORK=drf_settings(NUM_PROXIES=1)):
        client = Client(REMOTE_ADDR="10.0.0.1")
        got = [
            client.get(
                "/anon", headers={"X-Forwarded-For": f"198.51.100.{i}"}
            ).status_code
            for i in range(4)
        ]
    assert got == [200] * 4  # DRF's rule: each forwarded address its own key


def test_ipv4_mapped_ipv6_peer_is_the_ipv4_client() -> None:
    assert statuses(Client(REMOTE_ADDR="::ffff:203.0.113.7"), "/anon", 3) == [200] * 3
    assert statuses(Client(REMOTE_ADDR="203.0.113.7"), "/anon", 1) == [429]


def test_a_request_without_an_address_is_a_configuration_error() -> None:
    request = SimpleNamespace(user=None, META={}, headers={})
    with pytest.raises(ImproperlyConfigured, match=r"no client address.*get_ident"):
        AnonRateThrottle().allow_request(request, None)


# -- storage ---------------------------------------------------------------


def test_a_storage_failure_with_on_error_raise_answers_503() -> None:
    config = {"STORAGE": "redis://127.0.0.1:1/0", "TIMEOUT": 0.2, "ON_ERROR": "raise"}
    with override_settings(RUST_PY_RATE_LIMIT=config):
        response = Client(REMOTE_ADDR="203.0.113.7").get("/anon")
    assert response.status_code == 503
    assert response.json() == {"detail": "Rate limiter unavailable"}


def test_a_bad_deployment_setting_names_it() -> None:
    for config, named in (
        ({"FORWARDED_HEADER": "via"}, "FORWARDED_HEADER"),
        ({"STORAGE": "memcached://x"}, "storage"),
    ):
        with (
            override_settings(RUST_PY_RATE_LIMIT=config),
            pytest.raises(ImproperlyConfigured, match=named),
        ):
            Client(REMOTE_ADDR="203.0.113.7").get("/anon")


WORKER = textwrap.dedent(
    """
    import json, sys
    from django.conf import settings
    settings.configure(
        SECRET_KEY="x", ALLOWED_HOSTS=["*"], INSTALLED_APPS=[], DATABASES={},
        ROOT_URLCONF="__main__", USE_TZ=True,
        RUST_PY_RATE_LIMIT={"STORAGE": sys.argv[1], "KEY_PREFIX": sys.argv[2],
                            "ON_ERROR": "raise", "TIMEOUT": 5},
        REST_FRAMEWORK={"UNAUTHENTICATED_USER": None,
                        "DEFAULT_AUTHENTICATION_CLASSES": [],
                        "DEFAULT_PERMISSION_CLASSES": [],
                        "DEFAULT_THROTTLE_RATES": {"anon": "25/hour"}},
    )
    import django; django.setup()
    from django.test import Client
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView
    from rust_py_rate_limit.drf import AnonRateThrottle

    class V(APIView):
        throttle_classes = (AnonRateThrottle,)
        def get(self, request):
            return Response({"ok": True})

    urlpatterns = [path("v", V.as_view())]
    client = Client(REMOTE_ADDR="203.0.113.7")
    sys.stdin.readline()  # start together
    print(json.dumps([client.get("/v").status_code for _ in range(40)]))
    """
)


def test_two_processes_share_one_redis_limit_exactly(redis_url: str) -> None:
    prefix = f"drf-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [w.communicate("go\n", timeout=60)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    codes = [code for out in outs for code in json.loads(out)]
    assert codes.count(200) == 25
    assert codes.count(429) == 55


def test_module_imports_no_framework_at_package_import() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, rust_py_rate_limit; print('rest_framework' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "False"
    assert rl_drf.__all__


def test_the_documented_settings_load_our_throttles() -> None:
    from test_docs import defining

    snippet = defining("frameworks/drf.md", "REST_FRAMEWORK")["REST_FRAMEWORK"]
    with override_settings(REST_FRAMEWORK=snippet):
        assert [
            AnonRateThrottle,
            UserRateThrottle,
        ] == api_settings.DEFAULT_THROTTLE_CLASSES
        assert AnonRateThrottle().get_rate() == "100/day"
        assert UserRateThrottle().get_rate() == "1000/day"
