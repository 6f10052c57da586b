//! Building a `RateLimiter` from the constructor's arguments, each checked
//! and named in the error if refused.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFrozenSet, PyString};

use std::sync::{Arc, Mutex};

use super::guard::Guard;
use super::PyRateLimiter;
use crate::clock::{AnyClock, NANOS_PER_SEC};
use crate::events::Events;
use crate::limiter::{memory_limiter, AlgorithmKind, Spec};
use crate::py::args::{key_bytes, positive_int, seconds_to_nanos};
use crate::py::options::{none_if_absent, quotas_from_rate, rename};
use crate::rate::Quota;
use crate::store::bans::MAX_BAN_AFTER;
use crate::store::remote::RemoteStore;
use crate::store::{BanPolicy, OnFull};

/// The limits of `limit` and `window_seconds`, or of `rate`.
pub(super) fn quotas(
    limit: Option<&Bound<'_, PyAny>>,
    window_seconds: Option<&Bound<'_, PyAny>>,
    rate: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<Quota>> {
    let (limit, window_seconds, rate) = (
        none_if_absent(limit),
        none_if_absent(window_seconds),
        none_if_absent(rate),
    );
    Ok(match (limit, window_seconds, rate) {
        (Some(limit), Some(window), None) => vec![Quota::per_seconds(
            positive_int(limit, "limit", Quota::MAX_LIMIT)?,
            positive_int(window, "window_seconds", Quota::MAX_WINDOW_SECONDS)?,
        )?],
        (None, None, Some(rate)) => quotas_from_rate(rate)?,
        (_, _, Some(_)) => {
            return Err(PyTypeError::new_err(
                "give either rate or limit and window_seconds, not both",
            ))
        }
        (Some(_), None, None) => {
            return Err(PyTypeError::new_err(
                "window_seconds is required with limit (or give rate instead)",
            ))
        }
        (None, Some(_), None) => {
            return Err(PyTypeError::new_err(
                "limit is required with window_seconds (or give rate instead)",
            ))
        }
        (None, None, None) => {
            return Err(PyTypeError::new_err(
                "RateLimiter needs limit and window_seconds, or rate",
            ))
        }
    })
}

/// The limiter's `Spec`: the algorithm, its burst and the key bound.
pub(super) fn spec(
    quotas: Vec<Quota>,
    algorithm: Option<&Bound<'_, PyAny>>,
    burst: Option<&Bound<'_, PyAny>>,
    max_keys: Option<&Bound<'_, PyAny>>,
    on_full: Option<&Bound<'_, PyAny>>,
) -> PyResult<Spec> {
    let kind = match none_if_absent(algorithm) {
        None => AlgorithmKind::Fixed,
        Some(name) => match name.cast::<PyString>() {
            Ok(name) => AlgorithmKind::parse(name.to_str()?)?,
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "algorithm must be a str, not {}",
                    name.get_type().name()?
                )))
            }
        },
    };
    let burst = none_if_absent(burst)
        .map(|b| positive_int(b, "burst", Quota::MAX_LIMIT))
        .transpose()?;
    let max_keys = none_if_absent(max_keys)
        .map(|m| positive_int(m, "max_keys", usize::MAX as u64))
        .transpose()?
        .map(|m| m as usize);
    let on_full = match none_if_absent(on_full) {
        None => OnFull::Deny,
        Some(obj) => match obj
            .cast::<PyString>()
            .ok()
            .map(|s| s.to_cow())
            .transpose()?
            .as_deref()
        {
            Some("deny") => OnFull::Deny,
            Some("allow") => OnFull::Allow,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "on_full must be 'deny' or 'allow', got {}",
                    obj.repr()?
                )))
            }
        },
    };
    Ok(Spec::new(kind, quotas, burst)?.with_max_keys(max_keys, on_full)?)
}

/// The ban policy of `ban_after`, `ban_within` (default: the first
/// limit's window) and `ban_seconds`; None without `ban_after`.
pub(super) fn bans(
    spec: &Spec,
    ban_after: Option<&Bound<'_, PyAny>>,
    ban_within: Option<&Bound<'_, PyAny>>,
    ban_seconds: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<BanPolicy>> {
    let (after, within, seconds) = (
        none_if_absent(ban_after),
        none_if_absent(ban_within),
        none_if_absent(ban_seconds),
    );
    let Some(after) = after else {
        if within.is_some() || seconds.is_some() {
            return Err(PyTypeError::new_err(
                "ban_within and ban_seconds need ban_after (the refusals that begin a ban)",
            ));
        }
        return Ok(None);
    };
    let after = positive_int(after, "ban_after", MAX_BAN_AFTER)?;
    let Some(seconds) = seconds else {
        return Err(PyTypeError::new_err(
            "ban_after needs ban_seconds (how long a ban lasts)",
        ));
    };
    let duration = seconds_to_nanos(seconds, "ban_seconds")?;
    let within = match within {
        Some(within) => seconds_to_nanos(within, "ban_within")?,
        None => spec.quotas[0].window(),
    };
    Ok(Some(BanPolicy::new(after, within, duration)?))
}

/// The lists and shadow mode.
pub(super) fn guard(
    allow_keys: Option<&Bound<'_, PyAny>>,
    deny_keys: Option<&Bound<'_, PyAny>>,
    shadow: Option<&Bound<'_, PyAny>>,
) -> PyResult<Guard> {
    let guard = Guard {
        shadow: match none_if_absent(shadow) {
            None => false,
            Some(flag) => flag.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
                PyTypeError::new_err(format!(
                    "shadow must be a bool, not {}",
                    flag.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?,
        },
        ..Guard::default()
    };
    if let Some(keys) = none_if_absent(allow_keys) {
        guard.lists.set_allow(key_list(Some(keys), "allow_keys")?);
    }
    if let Some(keys) = none_if_absent(deny_keys) {
        guard.lists.set_deny(key_list(Some(keys), "deny_keys")?);
    }
    Ok(guard)
}

/// The keys of an iterable of `str` (a lone `str` is refused: it would be
/// read as its characters).
pub(super) fn key_list(keys: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Vec<Box<[u8]>>> {
    let Some(keys) = keys.filter(|k| !k.is_none()) else {
        return Ok(Vec::new());
    };
    if keys.is_instance_of::<PyString>() || keys.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an iterable of str keys, not a single {}",
            keys.get_type().name()?
        )));
    }
    let iter = keys.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be an iterable of str keys, not {}",
            keys.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let mut out = Vec::new();
    for key in iter {
        let key = key?;
        if !key.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(format!(
                "{name} must hold str keys, found {}",
                key.get_type().name()?
            )));
        }
        out.push(key_bytes(&key)?.into_owned().into_boxed_slice());
    }
    Ok(out)
}

/// A frozenset of the keys of a list, as `str`.
pub(super) fn key_set<'py>(
    py: Python<'py>,
    keys: Vec<Box<[u8]>>,
) -> PyResult<Bound<'py, PyFrozenSet>> {
    let strs = keys
        .iter()
        .map(|k| PyBytes::new(py, k).call_method1("decode", ("utf-8", "surrogatepass")))
        .collect::<PyResult<Vec<_>>>()?;
    PyFrozenSet::new(py, strs)
}

impl PyRateLimiter {
    /// The limiter of `spec` on `clock` (and `remote`, for a Redis store),
    /// its janitor started if `cleanup_interval` is given.
    pub(super) fn assemble(
        spec: Spec,
        clock: AnyClock,
        remote: Option<RemoteStore>,
        cleanup_interval: Option<&Bound<'_, PyAny>>,
        guard: Guard,
        name: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let inner = memory_limiter(&spec, clock.clone())?;
        let (name, named) = match none_if_absent(name) {
            Some(name) => (check_name(name)?, true),
            None => (default_name(&spec, inner.algorithm()), false),
        };
        let events = Arc::new(Events::default());
        inner.set_shadow(guard.shadow);
        if let Some(remote) = &remote {
            remote.health().set_events(Arc::clone(&events));
            remote.health().set_shadow(guard.shadow);
        }
        let limiter = Self {
            events,
            inner,
            name,
            named,
            spec,
            janitor: Mutex::new(None),
            remote,
            clock,
            guard,
        };
        if let Some(interval) = none_if_absent(cleanup_interval) {
            limiter
                .start_janitor(interval)
                .map_err(|e| rename(e, "interval", "cleanup_interval"))?;
        } else if matches!(limiter.remote, Some(RemoteStore::Postgres(_))) {
            // Expired rows stay in the tables until a sweep deletes them.
            limiter.start_janitor_every(crate::store::postgres::SWEEP_INTERVAL)?;
        }
        Ok(limiter)
    }
}

/// The longest `name`, in characters.
const MAX_NAME: usize = 200;

/// A limiter's `name`: a non-empty str of printable characters.
fn check_name(name: &Bound<'_, PyAny>) -> PyResult<String> {
    let Ok(text) = name.extract::<String>() else {
        return Err(PyTypeError::new_err(format!(
            "name must be a str, not {}",
            name.get_type().name()?
        )));
    };
    let count = text.chars().count();
    if count == 0 || count > MAX_NAME || text.chars().any(char::is_control) {
        return Err(PyValueError::new_err(format!(
            "name must be 1 to {MAX_NAME} printable characters, got {text:?}"
        )));
    }
    Ok(text)
}

/// The name of a limiter not given one: its algorithm and rules, such as
/// `"fixed:100/60s"` or `"sliding:10/1s;1000/3600s"`.
pub(super) fn default_name(spec: &Spec, algorithm: &str) -> String {
    let rules: Vec<String> = spec
        .quotas
        .iter()
        .map(|q| {
            let window = q.window();
            if window % NANOS_PER_SEC == 0 {
                format!("{}/{}s", q.limit(), window / NANOS_PER_SEC)
            } else {
                format!("{}/{}s", q.limit(), window as f64 / NANOS_PER_SEC as f64)
            }
        })
        .collect();
    format!("{algorithm}:{}", rules.join(";"))
}
