//! Argument parsing for `RateLimiterCore(...)`, and running Redis
//! operations from Python.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};

use super::args::seconds_to_nanos;
use super::clock::PyManualClock;
use crate::clock::AnyClock;
use crate::limiter::Spec;
use crate::rate::{parse_rates, Quota};
use crate::runtime;
use crate::store::postgres::{PgConfig, PgStore, Prepare, SCHEMES as PG_SCHEMES};
use crate::store::redis::{redact, OnError, RedisConfig, RedisStore, StoreError};
use crate::store::remote::RemoteStore;

/// Runs a remote store's operation to completion without the GIL.
pub(super) fn block_on<T: Send>(
    py: Python<'_>,
    fut: impl std::future::Future<Output = Result<T, StoreError>> + Send,
) -> PyResult<T> {
    let (handle, _) = runtime::handle()
        .map_err(|e| PyRuntimeError::new_err(format!("could not start the Tokio runtime: {e}")))?;
    blocking(py, || handle.block_on(fut))
}

/// Runs `op`, which blocks on a remote store, without the GIL.
pub(super) fn blocking<T: Send>(
    py: Python<'_>,
    op: impl FnOnce() -> Result<T, StoreError> + Send,
) -> PyResult<T> {
    // A panic inside a storage client must reach Python as a storage error,
    // never as a PanicException.
    let result = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(op)));
    deliver_notices(py);
    match result {
        Ok(result) => result.map_err(storage_error),
        Err(_) => Err(super::errors::StorageError::new_err(
            "the storage client failed unexpectedly",
        )),
    }
}

/// Hands queued notices (a storage outage, its end) to the
/// `rust_py_rate_limit` logger, on this Python thread, which holds no Rust
/// lock. Called after every storage call and by the event-loop drain; costs
/// one atomic load when there is nothing to deliver.
#[inline]
pub(super) fn deliver_notices(py: Python<'_>) {
    if crate::logs::notices_pending() {
        deliver_notices_now(py);
    }
}

#[cold]
fn deliver_notices_now(py: Python<'_>) {
    let (records, dropped) = crate::logs::take_notices();
    let log = || -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("rust_py_rate_limit",))?;
        for record in records {
            let extra = PyDict::new(py);
            extra.set_item("rust_target", record.target)?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("extra", extra)?;
            logger.call_method("log", (record.level, "%s", record.message), Some(&kwargs))?;
        }
        if dropped > 0 {
            logger.call_method1(
                "warning",
                ("%d storage notices were dropped (queue full)", dropped),
            )?;
        }
        Ok(())
    };
    if let Err(err) = log() {
        err.write_unraisable(py, None);
    }
}

pub(super) fn storage_error(err: StoreError) -> PyErr {
    super::errors::StorageError::new_err(err.to_string())
}

pub(super) fn on_error_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<OnError> {
    let Some(obj) = none_if_absent(obj) else {
        return Ok(OnError::Allow);
    };
    match obj
        .cast::<PyString>()
        .ok()
        .map(|s| s.to_cow())
        .transpose()?
        .as_deref()
    {
        Some("allow") => Ok(OnError::Allow),
        Some("deny") => Ok(OnError::Deny),
        Some("raise") => Ok(OnError::Raise),
        _ => Err(PyValueError::new_err(format!(
            "on_error must be 'allow', 'deny' or 'raise', got {}",
            obj.repr()?
        ))),
    }
}

/// `rate=`: one string (`;` joins a compound limit) or a list of strings.
pub(super) fn quotas_from_rate(rate: &Bound<'_, PyAny>) -> PyResult<Vec<Quota>> {
    if let Ok(text) = rate.cast::<PyString>() {
        return Ok(parse_rates(text.to_str()?)?);
    }
    if rate.is_instance_of::<PyList>() || rate.is_instance_of::<PyTuple>() {
        let mut quotas = Vec::new();
        for item in rate.try_iter()? {
            let item = item?;
            let Ok(text) = item.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "rate must be a str or a list of str, found {} in the list",
                    item.get_type().name()?
                )));
            };
            quotas.extend(parse_rates(text.to_str()?)?);
        }
        if quotas.is_empty() {
            return Err(PyValueError::new_err("rate is an empty list"));
        }
        return Ok(quotas);
    }
    Err(PyTypeError::new_err(format!(
        "rate must be a str or a list of str, not {}",
        rate.get_type().name()?
    )))
}

pub(super) fn clock_from(clock: Option<&Bound<'_, PyAny>>) -> PyResult<AnyClock> {
    match clock {
        None => Ok(AnyClock::Monotonic),
        Some(obj) if obj.is_none() => Ok(AnyClock::Monotonic),
        Some(obj) => match obj.cast::<PyManualClock>() {
            Ok(manual) => Ok(AnyClock::Manual(manual.get().inner.clone())),
            Err(_) => Err(PyTypeError::new_err(format!(
                "clock must be a ManualClock or None, not {}",
                obj.get_type().name()?
            ))),
        },
    }
}

/// The same error with the argument named as the caller spelled it.
pub(super) fn rename(err: PyErr, from: &str, to: &str) -> PyErr {
    Python::attach(|py| {
        let message = err.value(py).to_string().replacen(from, to, 1);
        if err.is_instance_of::<PyTypeError>(py) {
            PyTypeError::new_err(message)
        } else {
            PyValueError::new_err(message)
        }
    })
}

pub(super) fn none_if_absent<'a, 'py>(
    obj: Option<&'a Bound<'py, PyAny>>,
) -> Option<&'a Bound<'py, PyAny>> {
    obj.filter(|o| !o.is_none())
}

/// Keys the local over-limit cache holds by default.
const LOCAL_CACHE_KEYS: usize = 20_000;

/// `local_cache_keys=`: an int >= 0 (0 turns the cache off).
fn local_cache_keys_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    let Some(obj) = none_if_absent(obj) else {
        return Ok(LOCAL_CACHE_KEYS);
    };
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "local_cache_keys must be an int, not {}",
            obj.get_type().name()?
        )));
    }
    match obj.extract::<usize>() {
        Ok(n) if n <= 1 << 32 => Ok(n),
        _ if obj.lt(0)? => Err(PyValueError::new_err(format!(
            "local_cache_keys must be 0 or more, got {}",
            obj.repr()?
        ))),
        _ => Err(PyValueError::new_err(
            "local_cache_keys must be at most 2**32",
        )),
    }
}

/// The URL schemes `storage=` accepts besides `"memory"`.
const REMOTE_SCHEMES: [&str; 6] = [
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "postgresql://",
    "postgres://",
];

/// The remote store named by `storage=` (None for the memory store), with
/// its options; the options are refused without a storage they apply to.
pub(super) fn remote_from(
    spec: &Spec,
    storage: Option<&Bound<'_, PyAny>>,
    key_prefix: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
    on_error: Option<&Bound<'_, PyAny>>,
    local_cache_keys: Option<&Bound<'_, PyAny>>,
    (pg_schema, pg_unlogged): (Option<&Bound<'_, PyAny>>, Option<&Bound<'_, PyAny>>),
) -> PyResult<Option<RemoteStore>> {
    let url = match none_if_absent(storage) {
        None => None,
        Some(obj) => {
            let Ok(url) = obj.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "storage must be 'memory' or a redis:// or postgresql:// URL, not {}",
                    obj.get_type().name()?
                )));
            };
            let url = url.to_str()?;
            if url != "memory" && !REMOTE_SCHEMES.iter().any(|s| url.starts_with(s)) {
                return Err(PyValueError::new_err(format!(
                    "storage must be 'memory' or a URL starting with {}, got {}",
                    REMOTE_SCHEMES.join(", "),
                    PyString::new(obj.py(), &redact(url)).repr()?
                )));
            }
            (url != "memory").then(|| (url.to_owned(), obj.py()))
        }
    };
    let postgres = url
        .as_ref()
        .is_some_and(|(u, _)| PG_SCHEMES.iter().any(|s| u.starts_with(s)));
    let mut refused: Vec<(&str, Option<&Bound<'_, PyAny>>, &str)> = Vec::new();
    if url.is_none() {
        refused.extend([
            ("key_prefix", key_prefix, "a Redis or PostgreSQL storage"),
            ("timeout", timeout, "a Redis or PostgreSQL storage"),
            ("on_error", on_error, "a Redis or PostgreSQL storage"),
        ]);
    }
    if url.is_none() || postgres {
        refused.push(("local_cache_keys", local_cache_keys, "a Redis storage"));
    }
    if !postgres {
        refused.extend([
            ("pg_schema", pg_schema, "a PostgreSQL storage"),
            ("pg_unlogged", pg_unlogged, "a PostgreSQL storage"),
        ]);
    }
    for (name, obj, what) in refused {
        if none_if_absent(obj).is_some() {
            return Err(PyValueError::new_err(format!(
                "{name} only applies to {what}"
            )));
        }
    }
    let Some((url, py)) = url else {
        return Ok(None);
    };
    let key_prefix = match none_if_absent(key_prefix) {
        None => "rust_py_rate_limit".to_owned(),
        Some(p) => p
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("key_prefix must be a str"))?
            .to_str()?
            .to_owned(),
    };
    let timeout = match none_if_absent(timeout) {
        None => Duration::from_millis(50),
        Some(t) => match seconds_to_nanos(t, "timeout")? {
            0 => return Err(PyValueError::new_err("timeout must be positive")),
            n => Duration::from_nanos(n),
        },
    };
    let on_error = on_error_from(on_error)?;
    if spec.max_keys.is_some() {
        return Err(PyValueError::new_err(
            "max_keys applies to the memory store (remote stores expire keys themselves)",
        ));
    }
    if postgres {
        let schema = match none_if_absent(pg_schema) {
            None => "rust_py_rate_limit".to_owned(),
            Some(p) => p
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("pg_schema must be a str"))?
                .to_str()?
                .to_owned(),
        };
        let unlogged = match none_if_absent(pg_unlogged) {
            None => true,
            Some(b) => b
                .cast::<PyBool>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "pg_unlogged must be a bool, not {}",
                        b.get_type()
                            .name()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ))
                })?
                .is_true(),
        };
        let config = PgConfig {
            url,
            schema,
            unlogged,
            key_prefix,
            timeout,
            on_error,
        };
        let store = Arc::new(PgStore::new(spec, config)?);
        prepare(py, &store)?;
        return Ok(Some(RemoteStore::Postgres(store)));
    }
    let config = RedisConfig {
        url,
        key_prefix,
        timeout,
        on_error,
        local_cache_keys: local_cache_keys_from(local_cache_keys)?,
    };
    Ok(Some(RemoteStore::Redis(Arc::new(RedisStore::new(
        spec, config,
    )?))))
}

/// How long building a PostgreSQL limiter waits to check (or install) its
/// schema before leaving it to the first call.
const PREPARE_DEADLINE: Duration = Duration::from_secs(5);

/// Connects a new PostgreSQL store and checks (or installs) its schema,
/// without the GIL: a role that may not install it is an error now. A
/// server that cannot be reached is not (it may come up later): it is
/// logged, and the first call that reaches it installs the schema.
fn prepare(py: Python<'_>, store: &PgStore) -> PyResult<()> {
    let result = py.detach(|| store.prepare_blocking(PREPARE_DEADLINE));
    match result {
        Ok(()) => Ok(()),
        Err(Prepare::Schema(err)) => Err(storage_error(err)),
        Err(Prepare::Unreachable(err)) => {
            crate::logs::warn_notice(
                "rust_py_rate_limit::store::postgres",
                format!(
                    "PostgreSQL at {} could not be reached to check the schema; the first \
                     call that reaches it will: {err}",
                    store.url_shown()
                ),
            );
            deliver_notices(py);
            Ok(())
        }
    }
}
