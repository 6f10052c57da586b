"""Options from a settings mapping, such as Django's ``RUST_PY_RATE_LIMIT``.

Its keys are the policy's option names in upper case (``KEY`` for
``key_func``); callables may be given as dotted paths. Every error is a
`SettingsError` whose message names the key at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rust_py_rate_limit._policy.options import (
    OPTIONS,
    Networks,
    OptionTypeError,
    OptionValueError,
)
from rust_py_rate_limit._policy.policy import (
    ClientAddresses,
    RequestPolicy,
    network_lists,
)

__all__ = [
    "DEPLOYMENT_SETTINGS",
    "Deployment",
    "SettingsError",
    "key_option",
    "option_of_setting",
    "policy_from_settings",
    "setting_of_option",
]

Importer = Callable[[str], object]


class SettingsError(ValueError):
    """A settings mapping is wrong; the message names the key at fault."""


def setting_of_option(option: str) -> str:
    """The settings key of an option: ``"KEY"`` for ``key_func``, else the
    name in upper case."""
    return "KEY" if option == "key_func" else option.upper()


def option_of_setting(key: str) -> str | None:
    """The option a settings key names (None for an unknown key)."""
    if key == "KEY":
        return "key_func"
    option = key.lower()
    ok = option in OPTIONS and option != "key_func" and key == option.upper()
    return option if ok else None


def _imported(spec: object, label: str, importer: Importer) -> object:
    """A dotted path imported; anything else as it is."""
    if isinstance(spec, str) and "." in spec and not spec.startswith("/"):
        try:
            return importer(spec)
        except ImportError as exc:
            raise SettingsError(f"{label}: cannot import {spec!r}: {exc}") from exc
    return spec


def key_option(spec: object, label: str, importer: Importer) -> object:
    """A ``KEY`` as the ``key_func`` option: ``"ip"`` (None: the client
    address), ``"user"``, or a callable ``(request) -> str`` or a dotted
    path to one, whose result is checked to be a str."""
    if spec == "ip" or spec == "user":
        return None if spec == "ip" else spec
    func = _imported(spec, label, importer)
    if isinstance(func, str):
        raise SettingsError(
            f"{label} must be 'ip', 'user', a callable or a dotted path to one, "
            f"got {spec!r}"
        )
    if not callable(func):
        return func  # the policy names the type

    def key(request: Any) -> str:
        value = func(request)
        if not isinstance(value, str):
            raise TypeError(
                f"{label}: the key callable must return str, not {type(value).__name__}"
            )
        return value

    return key


def policy_from_settings(
    config: object, setting: str, importer: Importer, **adapter: Any
) -> RequestPolicy:
    """The policy a settings mapping describes.

    Args:
        config: The mapping (``{"LIMIT": 100, "WINDOW_SECONDS": 60}``).
        setting: Its name, for messages (``"RUST_PY_RATE_LIMIT"``).
        importer: Imports a dotted path (``KEY``, ``EXEMPT``, ``ON_BLOCKED``,
            ``EVENTS``).
        **adapter: The adapter's own `RequestPolicy` arguments.

    Raises:
        SettingsError: naming the key at fault.
    """
    if not isinstance(config, Mapping):
        raise SettingsError(f"{setting} must be a dict, not {type(config).__name__}")
    unknown = sorted(str(k) for k in config if option_of_setting(str(k)) is None)
    if unknown:
        raise SettingsError(
            f"{setting} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(map(setting_of_option, OPTIONS)))}"
        )
    options: dict[str, Any] = {}
    for key, value in config.items():
        label = f"{setting}[{key!r}]"
        if key == "KEY":
            value = key_option(value, label, importer)
        elif key == "EXEMPT" and isinstance(value, str) and value[:1] == "/":
            raise SettingsError(
                f"{label} must be a list of path prefixes (e.g. [{value!r}]) or "
                f"a dotted path to a predicate, got {value!r}"
            )
        elif key in ("EXEMPT", "ON_BLOCKED", "EVENTS"):
            value = _imported(value, label, importer)
        options[str(option_of_setting(key))] = value
    try:
        return RequestPolicy(**options, caller=setting, **adapter)
    except (OptionTypeError, OptionValueError) as exc:
        where = (
            f"{setting}[{setting_of_option(exc.option)!r}]" if exc.option else setting
        )
        raise SettingsError(f"{where}: {exc}") from exc


#: The settings keys that say where and how limiters keep their state,
#: rather than what they limit: those a throttle with rates of its own (DRF's)
#: takes from the setting.
DEPLOYMENT_SETTINGS = (
    "STORAGE",
    "KEY_PREFIX",
    "TIMEOUT",
    "ON_ERROR",
    "LOCAL_CACHE_KEYS",
    "PG_SCHEMA",
    "PG_UNLOGGED",
    "MAX_KEYS",
    "CLEANUP_INTERVAL",
    "BAN_AFTER",
    "BAN_WITHIN",
    "BAN_SECONDS",
    "SHADOW",
)


class Deployment:
    """The deployment a settings mapping describes: the limiter options of
    `DEPLOYMENT_SETTINGS`, the client addresses (``TRUSTED_PROXIES``,
    ``FORWARDED_HEADER``, ``IPV6_PREFIX``) and the network lists
    (``ALLOW_NETWORKS``, ``DENY_NETWORKS``). Its other keys are ignored.

    Raises:
        SettingsError: naming the key at fault.
    """

    __slots__ = ("addresses", "limiter_options", "networks")

    def __init__(self, config: object, setting: str) -> None:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise SettingsError(
                f"{setting} must be a dict, not {type(config).__name__}"
            )
        self.limiter_options = {
            key.lower(): config[key] for key in DEPLOYMENT_SETTINGS if key in config
        }
        try:
            self.addresses = ClientAddresses(
                config.get("TRUSTED_PROXIES"),
                config.get("FORWARDED_HEADER", "x-forwarded-for"),
                config.get("IPV6_PREFIX"),
            )
            self.networks: tuple[Networks, Networks] | None = network_lists(
                config.get("ALLOW_NETWORKS"), config.get("DENY_NETWORKS")
            )
        except (TypeError, ValueError) as exc:
            option = getattr(exc, "option", None) or "trusted_proxies"
            where = setting_of_option(option)
            raise SettingsError(f"{setting}[{where!r}]: {exc}") from exc
