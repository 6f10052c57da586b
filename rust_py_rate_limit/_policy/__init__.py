"""The request policy: what every web adapter does, written once.

An adapter (FastAPI/Starlette, Django, Flask, a DRF throttle) only translates:
it builds a `RequestPolicy` from its options (checked once, with the same
names and messages everywhere), turns each request into a `RequestView`, asks
the policy, and turns the `Verdict` into its framework's response::

    policy = RequestPolicy(rate="100/minute", trusted_proxies=["10.0.0.0/8"])
    rule = policy.rule                       # the limit of the given rate

    view = View("GET", "/api/users", peer="10.0.0.1",
                headers={"x-forwarded-for": ["203.0.113.7"]})
    if policy.exempt(view):                  # exempt path or predicate
        ...                                  # pass through: no count, no headers
    elif policy.preflight(view) and answered_without_app_code:
        ...                                  # a CORS preflight: the same
    else:
        verdict = rule.decide(view)          # or: await rule.adecide(view)
        if verdict.passes:
            ...                              # call the app, add verdict.headers
        else:
            ...                              # answer verdict.status (429, 503)
                                             # with verdict.body and .headers,
                                             # or policy.on_blocked on a 429

Later features go in here, once, for every adapter: a request that is let
through uncounted (an allow-list of networks) in `RequestPolicy.exempt`; a
refusal of another kind (a deny-list answering 403, a ban) as a `Verdict`
with its own status from `Rule.decide`; shadow mode as a verdict that passes
while its headers tell what would have happened; counters in `Rule.decide`.
Adapters already render any verdict's status, body and headers.

Modules: `options` (checks and the limiter), `paths` (exempt prefixes),
`view` (the request view), `render` (verdicts, headers, bodies), `policy`
(`RequestPolicy` and `Rule`), `settings` (options from a settings mapping,
as Django's). Client addresses come from
`rust_py_rate_limit.keys`.
"""

from rust_py_rate_limit._policy.options import (
    HeaderMode,
    LimitOptions,
    OptionTypeError,
    OptionValueError,
    PolicyOptions,
    build_limiter,
    check_names,
)
from rust_py_rate_limit._policy.paths import ExemptPaths, exempt_paths, normalize_path
from rust_py_rate_limit._policy.policy import ClientAddresses, RequestPolicy, Rule
from rust_py_rate_limit._policy.render import (
    BLOCKED_STATUS,
    DEFAULT_DETAIL,
    FORBIDDEN,
    PASS,
    UNAVAILABLE,
    Rendering,
    Verdict,
    reported,
)
from rust_py_rate_limit._policy.settings import (
    SettingsError,
    key_option,
    option_of_setting,
    policy_from_settings,
    setting_of_option,
)
from rust_py_rate_limit._policy.view import RequestView, View

__all__ = [
    "BLOCKED_STATUS",
    "DEFAULT_DETAIL",
    "FORBIDDEN",
    "PASS",
    "UNAVAILABLE",
    "ClientAddresses",
    "ExemptPaths",
    "HeaderMode",
    "LimitOptions",
    "OptionTypeError",
    "OptionValueError",
    "PolicyOptions",
    "Rendering",
    "RequestPolicy",
    "RequestView",
    "Rule",
    "SettingsError",
    "Verdict",
    "View",
    "build_limiter",
    "check_names",
    "exempt_paths",
    "key_option",
    "normalize_path",
    "option_of_setting",
    "policy_from_settings",
    "reported",
    "setting_of_option",
]
