//! Building a `RateLimiter` from the constructor's arguments, each checked
//! and named in the error if refused.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use std::sync::{Arc, Mutex};

use super::PyRateLimiter;
use crate::clock::AnyClock;
use crate::limiter::{memory_limiter, AlgorithmKind, Spec};
use crate::py::args::positive_int;
use crate::py::options::{none_if_absent, quotas_from_rate, rename};
use crate::rate::Quota;
use crate::store::redis::RedisStore;
use crate::store::OnFull;

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

impl PyRateLimiter {
    /// The limiter of `spec` on `clock` (and `remote`, for a Redis store),
    /// its janitor started if `cleanup_interval` is given.
    pub(super) fn assemble(
        spec: Spec,
        clock: AnyClock,
        remote: Option<Arc<RedisStore>>,
        cleanup_interval: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let inner = memory_limiter(&spec, clock.clone())?;
        let limiter = Self {
            inner,
            spec,
            janitor: Mutex::new(None),
            remote,
            clock,
        };
        if let Some(interval) = none_if_absent(cleanup_interval) {
            limiter
                .start_janitor(interval)
                .map_err(|e| rename(e, "interval", "cleanup_interval"))?;
        }
        Ok(limiter)
    }
}
