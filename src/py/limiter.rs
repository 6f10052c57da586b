//! `RateLimiter`: the Python face of a limiter.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::args::{int_value, key_bytes, positive_int, seconds_to_nanos, Cost};
use super::bridge::OnCancel;
use super::decision::{check_dict, PyDecision};
use crate::algorithm::Decision;
use crate::clock::{AnyClock, Clock, NANOS_PER_SEC};
use crate::janitor::Janitor;
use crate::limiter::{memory_limiter, AlgorithmKind, Limiter, Spec};
use crate::rate::Quota;
use crate::store::redis::RedisStore;
use crate::store::{OnFull, SweepCursor, SWEEP_CHUNK};

use super::bridge;
use super::options::{
    block_on, blocking, clock_from, none_if_absent, quotas_from_rate, remote_from, rename,
    storage_error,
};

/// The native half of `rust_py_rate_limit.RateLimiter`: every decision and
/// all state. The Python subclass adds the awaitable twins, the decorator and
/// waiting, which are thin Python over these methods.
#[pyclass(
    frozen,
    subclass,
    module = "rust_py_rate_limit._native",
    name = "RateLimiterCore"
)]
pub struct PyRateLimiter {
    inner: Arc<dyn Limiter>,
    spec: Spec,
    janitor: Mutex<Option<Janitor>>,
    /// The Redis store, when `storage` names one; `inner` is then unused
    /// state of the same shape.
    remote: Option<Arc<RedisStore>>,
    clock: AnyClock,
}

impl PyRateLimiter {
    /// The cost argument: omitted means 1, the common and fastest case. A
    /// cost given as `None` is a `TypeError`, like any other non-int.
    #[inline]
    fn cost(&self, cost: Cost<'_, '_>) -> PyResult<u64> {
        match cost {
            Cost::Omitted => Ok(1),
            Cost::Given(obj) => match int_value(&obj, "cost")? {
                Some(cost) => Ok(cost),
                None => Err(PyValueError::new_err(format!(
                    "cost must be at most the capacity ({}), got a larger number",
                    self.inner.capacity()
                ))),
            },
        }
    }

    #[inline]
    fn hit(&self, key: &Bound<'_, PyAny>, cost: Cost<'_, '_>) -> PyResult<Decision> {
        let cost = self.cost(cost)?;
        if let Some(remote) = &self.remote {
            return self.remote_hit(key.py(), remote, key_bytes(key)?.into_owned(), cost);
        }
        Ok(self.inner.hit(&key_bytes(key)?, cost)?)
    }

    /// The clock of a ManualClock limiter, in microseconds, for the Redis
    /// scripts; None means the Redis server's clock.
    fn remote_now(&self) -> Option<u64> {
        match &self.clock {
            AnyClock::Manual(clock) => Some(clock.now() / 1000),
            AnyClock::Monotonic => None,
        }
    }

    #[cold]
    fn remote_hit(
        &self,
        py: Python<'_>,
        remote: &Arc<RedisStore>,
        key: Vec<u8>,
        cost: u64,
    ) -> PyResult<Decision> {
        self.inner.validate_cost(cost)?;
        let now = self.remote_now();
        blocking(py, || remote.hit_blocking(&key, cost, now))
    }

    fn peek_decision(&self, key: &Bound<'_, PyAny>) -> PyResult<Decision> {
        match &self.remote {
            Some(remote) => {
                let bytes = key_bytes(key)?.into_owned();
                let now = self.remote_now();
                blocking(key.py(), || remote.peek_blocking(&bytes, now))
            }
            None => Ok(self.inner.peek(&key_bytes(key)?)),
        }
    }

    fn remote(&self) -> PyResult<&Arc<RedisStore>> {
        self.remote
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("this limiter has no Redis store"))
    }

    fn first(&self) -> &Quota {
        &self.spec.quotas[0]
    }

    fn janitor(&self) -> std::sync::MutexGuard<'_, Option<Janitor>> {
        self.janitor.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_janitor(&self, interval: &Bound<'_, PyAny>) -> PyResult<()> {
        let nanos = seconds_to_nanos(interval, "interval")?;
        if nanos == 0 {
            return Err(PyValueError::new_err(
                "interval must be a positive number of seconds",
            ));
        }
        let store: Weak<dyn Limiter> = Arc::downgrade(&self.inner);
        let janitor = Janitor::start(store, Duration::from_nanos(nanos))
            .map_err(|e| PyRuntimeError::new_err(format!("could not start the janitor: {e}")))?;
        // Replacing a running janitor stops it.
        *self.janitor() = Some(janitor);
        Ok(())
    }
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(signature = (
        limit = None,
        window_seconds = None,
        *,
        rate = None,
        algorithm = None,
        burst = None,
        clock = None,
        max_keys = None,
        on_full = None,
        cleanup_interval = None,
        storage = None,
        key_prefix = None,
        timeout = None,
        on_error = None,
    ), text_signature = "(limit=None, window_seconds=None, *, rate=None, algorithm='fixed', burst=None, clock=None, max_keys=None, on_full='deny', cleanup_interval=None, storage='memory', key_prefix='rust_py_rate_limit', timeout=0.05, on_error='allow')")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        limit: Option<&Bound<'_, PyAny>>,
        window_seconds: Option<&Bound<'_, PyAny>>,
        rate: Option<&Bound<'_, PyAny>>,
        algorithm: Option<&Bound<'_, PyAny>>,
        burst: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        max_keys: Option<&Bound<'_, PyAny>>,
        on_full: Option<&Bound<'_, PyAny>>,
        cleanup_interval: Option<&Bound<'_, PyAny>>,
        storage: Option<&Bound<'_, PyAny>>,
        key_prefix: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        on_error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (limit, window_seconds, rate) = (
            none_if_absent(limit),
            none_if_absent(window_seconds),
            none_if_absent(rate),
        );
        let quotas = match (limit, window_seconds, rate) {
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
        };
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
        let spec = Spec::new(kind, quotas, burst)?.with_max_keys(max_keys, on_full)?;
        let clock = clock_from(clock)?;
        let remote = remote_from(&spec, storage, key_prefix, timeout, on_error)?;
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

    /// Spends `cost` on `key` if the limit allows it; returns whether it did.
    #[pyo3(signature = (key, cost = Cost::Omitted), text_signature = "(self, key, cost=1)")]
    fn allow(&self, key: &Bound<'_, PyAny>, cost: Cost<'_, '_>) -> PyResult<bool> {
        Ok(self.hit(key, cost)?.allowed)
    }

    /// Like `allow`, returning the whole decision as a dict.
    #[pyo3(signature = (key, cost = Cost::Omitted), text_signature = "(self, key, cost=1)")]
    fn check<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        cost: Cost<'_, 'py>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let decision = self.hit(key, cost)?;
        check_dict(key.py(), &decision)
    }

    /// Like `check`, returning a `Decision` with exact times.
    #[pyo3(signature = (key, cost = Cost::Omitted), text_signature = "(self, key, cost=1)")]
    fn decide(&self, key: &Bound<'_, PyAny>, cost: Cost<'_, '_>) -> PyResult<PyDecision> {
        Ok(PyDecision::new(self.hit(key, cost)?))
    }

    /// Units `key` can still spend now; spends nothing.
    fn remaining(&self, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self.peek_decision(key)?.remaining)
    }

    /// What a hit of cost 1 on `key` would get now; spends nothing.
    fn peek(&self, key: &Bound<'_, PyAny>) -> PyResult<PyDecision> {
        Ok(PyDecision::new(self.peek_decision(key)?))
    }

    /// Drops `key`'s state; returns whether it had any.
    fn reset(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let bytes = key_bytes(key)?;
        match &self.remote {
            Some(remote) => block_on(key.py(), remote.reset(&bytes)),
            None => Ok(self.inner.reset(&bytes)),
        }
    }

    /// Drops every key's state (the counters of `stats()` are kept).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        match &self.remote {
            Some(remote) => block_on(py, remote.clear()).map(|_| ()),
            None => {
                py.detach(|| self.inner.clear());
                Ok(())
            }
        }
    }

    /// Removes keys whose state has expired; returns how many.
    fn cleanup_expired(&self, py: Python<'_>) -> usize {
        py.detach(|| self.inner.cleanup_expired())
    }

    /// Activity counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut s = self.inner.stats();
        let (mut errors, mut breaker) = (0, "closed");
        if let Some(remote) = &self.remote {
            (s.allowed, s.blocked, errors) = remote.counters();
            breaker = remote.breaker_state().name();
        }
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "allowed"), s.allowed)?;
        dict.set_item(intern!(py, "blocked"), s.blocked)?;
        dict.set_item(intern!(py, "total_checks"), s.total_checks())?;
        dict.set_item(intern!(py, "active_keys"), s.active_keys)?;
        dict.set_item(intern!(py, "rejected_full"), s.rejected_full)?;
        dict.set_item(intern!(py, "expired_removed"), s.expired_removed)?;
        dict.set_item(intern!(py, "cleanup_runs"), s.cleanup_runs)?;
        dict.set_item(intern!(py, "storage_errors"), errors)?;
        dict.set_item(intern!(py, "breaker"), breaker)?;
        Ok(dict)
    }

    /// Sweeps expired keys as `cleanup_expired` does, timing how long each
    /// chunk holds its shard lock: for benchmarks.
    fn _profile_sweep<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (removed, chunks, total, longest) = py.detach(|| {
            let mut cursor = SweepCursor::default();
            let (mut removed, mut chunks, mut longest) = (0usize, 0usize, Duration::ZERO);
            let start = Instant::now();
            loop {
                let step = self.inner.sweep_chunk(&mut cursor, SWEEP_CHUNK);
                longest = longest.max(step.lock_held);
                chunks += 1;
                removed += step.removed;
                if step.done {
                    break;
                }
            }
            self.inner.record_sweep(removed);
            (removed, chunks, start.elapsed(), longest)
        });
        let dict = PyDict::new(py);
        dict.set_item("removed", removed)?;
        dict.set_item("chunks", chunks)?;
        dict.set_item("total_seconds", total.as_secs_f64())?;
        dict.set_item("longest_chunk_seconds", longest.as_secs_f64())?;
        Ok(dict)
    }

    /// Starts (or restarts) the background janitor: every `interval`
    /// seconds it removes expired keys, without the GIL.
    fn start_cleanup(&self, interval: &Bound<'_, PyAny>) -> PyResult<()> {
        self.start_janitor(interval)
    }

    /// Stops the background janitor, if one runs.
    fn stop_cleanup(&self) {
        let janitor = self.janitor().take();
        drop(janitor);
    }

    /// Whether the background janitor is running.
    #[getter]
    fn cleanup_running(&self) -> bool {
        self.janitor().as_ref().is_some_and(Janitor::is_running)
    }

    /// The janitor's interval in seconds, or None.
    #[getter]
    fn cleanup_interval(&self) -> Option<f64> {
        self.janitor().as_ref().map(|j| j.interval().as_secs_f64())
    }

    /// Awaitable decision on the Redis store (a Tokio future).
    #[pyo3(signature = (key, cost = Cost::Omitted), text_signature = "(self, key, cost=1)")]
    fn _adecide<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        cost: Cost<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cost = self.cost(cost)?;
        self.inner.validate_cost(cost)?;
        let remote = self.remote()?.clone();
        let bytes = key_bytes(key)?.into_owned();
        let now = self.remote_now();
        // On a single server, over the running loop's own connection: no
        // thread hop either way (see store::redis::link).
        if remote.can_link() {
            if let Some(future) = bridge::link_decide(key.py(), &remote, &bytes, cost, now)? {
                return Ok(future);
            }
        }
        // Otherwise (a cluster, TLS, the loop's link still opening, the
        // breaker open) no task per await: the decision joins the store's
        // batch queue and its batch resolves the future.
        let (future, complete) = bridge::completion::<PyDecision>(key.py())?;
        remote.hit_then(&bytes, cost, now, move |result| {
            complete(result.map(PyDecision::new).map_err(storage_error));
        });
        Ok(future)
    }

    /// The state of the running event loop's own connection to the Redis
    /// store (see `store::redis::link`), for tests: `"none"`, `"opening"`,
    /// `"opened"`, `"live"`, `"retry"` or `"closed"`.
    fn _link_status(&self, py: Python<'_>) -> PyResult<&'static str> {
        bridge::link_status(py, self.remote()?)
    }

    /// Awaitable peek on the Redis store.
    fn _apeek<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let remote = self.remote()?.clone();
        let bytes = key_bytes(key)?.into_owned();
        let now = self.remote_now();
        bridge::future_into_py(key.py(), OnCancel::Finish, async move {
            remote
                .peek(&bytes, now)
                .await
                .map(PyDecision::new)
                .map_err(storage_error)
        })
    }

    /// Awaitable reset on the Redis store.
    fn _areset<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let remote = self.remote()?.clone();
        let bytes = key_bytes(key)?.into_owned();
        bridge::future_into_py(key.py(), OnCancel::Finish, async move {
            remote.reset(&bytes).await.map_err(storage_error)
        })
    }

    /// Awaitable clear on the Redis store.
    fn _aclear<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let remote = self.remote()?.clone();
        bridge::future_into_py(py, OnCancel::Finish, async move {
            remote.clear().await.map(|_| ()).map_err(storage_error)
        })
    }

    /// `"memory"`, or `"redis"` for a Redis store.
    #[getter]
    fn storage(&self) -> &'static str {
        if self.remote.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// The Redis keys of `key`, rule by rule (Redis store only): one per
    /// rule, two for a sliding log (the log, then its sum).
    fn _redis_keys(&self, key: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        Ok(self.remote()?.keys(&key_bytes(key)?))
    }

    /// The key bound, or None when unbounded.
    #[getter]
    fn max_keys(&self) -> Option<usize> {
        self.spec.max_keys
    }

    /// The limit per window (of the first limit, for a compound rate).
    #[getter]
    fn max_requests(&self) -> u64 {
        self.first().limit()
    }

    /// The window length in seconds (of the first limit, for a compound rate).
    #[getter]
    fn window_seconds(&self) -> u64 {
        self.first().window() / NANOS_PER_SEC
    }

    /// Every limit as `(limit, window_seconds)`, in the order given.
    #[getter]
    fn limits(&self) -> Vec<(u64, u64)> {
        self.spec
            .quotas
            .iter()
            .map(|q| (q.limit(), q.window() / NANOS_PER_SEC))
            .collect()
    }

    /// The largest cost one hit can be admitted with: the smallest limit, or
    /// the burst of token_bucket and gcra.
    #[getter]
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    /// The bucket capacity for token_bucket and gcra; None for the others.
    #[getter]
    fn burst(&self) -> Option<u64> {
        self.spec
            .kind
            .has_burst()
            .then(|| self.spec.burst.unwrap_or(self.first().limit()))
    }

    /// The algorithm's canonical name.
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm()
    }

    fn __repr__(&self) -> String {
        let limits = if self.spec.quotas.len() == 1 {
            format!(
                "limit={}, window_seconds={}",
                self.max_requests(),
                self.window_seconds()
            )
        } else {
            let parts: Vec<String> = self
                .limits()
                .iter()
                .map(|(l, w)| format!("{l}/{w}s"))
                .collect();
            format!("rate='{}'", parts.join(";"))
        };
        let burst = match (self.spec.burst, self.spec.kind.has_burst()) {
            (Some(b), true) => format!(", burst={b}"),
            _ => String::new(),
        };
        let storage = match &self.remote {
            Some(remote) => format!(", storage='{}'", remote.url_shown()),
            None => String::new(),
        };
        format!(
            "RateLimiter({limits}, algorithm='{}'{burst}{storage})",
            self.algorithm()
        )
    }
}
