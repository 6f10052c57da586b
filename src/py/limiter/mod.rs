//! `RateLimiter`: the Python face of a limiter, the class and its methods.
//! The work behind them sits beside this file, one concern a file.

mod awaitable;
mod build;
mod cleanup;
mod decide;
mod events_py;
mod guard;
mod report;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet};

use std::sync::{Arc, Mutex};

use super::args::{key_bytes, seconds_to_nanos, Cost};
use super::bridge;
use super::decision::{check_dict, PyDecision};
use super::options::{block_on, clock_from, remote_from};
use crate::clock::{AnyClock, Clock, NANOS_PER_SEC};
use crate::events::Events;
use crate::janitor::Janitor;
use crate::limiter::{Limiter, Spec};
use crate::store::remote::RemoteStore;
use crate::store::Outcome;
use guard::Guard;

/// The native half of `rust_py_rate_limit.RateLimiter`: every decision and
/// all state. The Python subclass adds the awaitable twins, the decorator and
/// waiting, which are thin Python over these methods.
#[pyclass(
    frozen,
    subclass,
    weakref,
    module = "rust_py_rate_limit._native",
    name = "RateLimiterCore"
)]
pub struct PyRateLimiter {
    inner: Arc<dyn Limiter>,
    /// The label of its metrics and events.
    name: String,
    /// Whether `name` was given (else derived from the rules).
    named: bool,
    spec: Spec,
    janitor: Mutex<Option<Janitor>>,
    /// The Redis or PostgreSQL store, when `storage` names one; `inner` is
    /// then unused state of the same shape.
    remote: Option<RemoteStore>,
    clock: AnyClock,
    guard: Guard,
    /// Decision events, drained by `rust_py_rate_limit.events`.
    events: Arc<Events>,
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(signature = (
        limit = None,
        window_seconds = None,
        algorithm = None,
        max_keys = None,
        cleanup_interval = None,
        *,
        rate = None,
        burst = None,
        clock = None,
        on_full = None,
        storage = None,
        key_prefix = None,
        timeout = None,
        on_error = None,
        ban_after = None,
        ban_within = None,
        ban_seconds = None,
        allow_keys = None,
        deny_keys = None,
        shadow = None,
        local_cache_keys = None,
        name = None,
        pg_schema = None,
        pg_unlogged = None,
    ), text_signature = "(limit=None, window_seconds=None, algorithm='fixed', max_keys=None, cleanup_interval=None, *, rate=None, burst=None, clock=None, on_full='deny', storage='memory', key_prefix='rust_py_rate_limit', timeout=0.05, on_error='allow', ban_after=None, ban_within=None, ban_seconds=None, allow_keys=None, deny_keys=None, shadow=False, local_cache_keys=20000, name=None, pg_schema='rust_py_rate_limit', pg_unlogged=True)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        limit: Option<&Bound<'_, PyAny>>,
        window_seconds: Option<&Bound<'_, PyAny>>,
        algorithm: Option<&Bound<'_, PyAny>>,
        max_keys: Option<&Bound<'_, PyAny>>,
        cleanup_interval: Option<&Bound<'_, PyAny>>,
        rate: Option<&Bound<'_, PyAny>>,
        burst: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        on_full: Option<&Bound<'_, PyAny>>,
        storage: Option<&Bound<'_, PyAny>>,
        key_prefix: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        on_error: Option<&Bound<'_, PyAny>>,
        ban_after: Option<&Bound<'_, PyAny>>,
        ban_within: Option<&Bound<'_, PyAny>>,
        ban_seconds: Option<&Bound<'_, PyAny>>,
        allow_keys: Option<&Bound<'_, PyAny>>,
        deny_keys: Option<&Bound<'_, PyAny>>,
        shadow: Option<&Bound<'_, PyAny>>,
        local_cache_keys: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        pg_schema: Option<&Bound<'_, PyAny>>,
        pg_unlogged: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let quotas = build::quotas(limit, window_seconds, rate)?;
        let spec = build::spec(quotas, algorithm, burst, max_keys, on_full)?;
        let ban = build::bans(&spec, ban_after, ban_within, ban_seconds)?;
        let spec = spec.with_bans(ban);
        let guard = build::guard(allow_keys, deny_keys, shadow)?;
        let clock = clock_from(clock)?;
        let remote = remote_from(
            &spec,
            storage,
            key_prefix,
            timeout,
            on_error,
            local_cache_keys,
            (pg_schema, pg_unlogged),
        )?;
        Self::assemble(spec, clock, remote, cleanup_interval, guard, name)
    }

    /// Bans `key` for `seconds`, whatever its counts (replacing any ban).
    fn ban(&self, key: &Bound<'_, PyAny>, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        let duration = seconds_to_nanos(seconds, "seconds")?;
        let bytes = key_bytes(key)?;
        match &self.remote {
            Some(remote) => {
                crate::store::bans::check_ban_length(duration)?;
                block_on(key.py(), remote.ban(&bytes, duration, self.remote_now()))
            }
            None => {
                self.inner.ban(&bytes, duration)?;
                self.events
                    .ban_changed(&bytes, self.clock.now(), Some(duration));
                Ok(())
            }
        }
    }

    /// Lifts `key`'s ban; returns whether it was banned.
    fn unban(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let bytes = key_bytes(key)?;
        match &self.remote {
            Some(remote) => block_on(key.py(), remote.unban(&bytes, self.remote_now())),
            None => {
                let lifted = self.inner.unban(&bytes);
                if lifted {
                    self.events.ban_changed(&bytes, self.clock.now(), None);
                }
                Ok(lifted)
            }
        }
    }

    /// Seconds `key` stays banned, or None when it is not banned.
    fn banned_for(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let bytes = key_bytes(key)?;
        let left = match &self.remote {
            Some(remote) => block_on(key.py(), remote.banned_for(&bytes, self.remote_now()))?,
            None => self.inner.banned_for(&bytes),
        };
        Ok(left.map(|n| n as f64 / NANOS_PER_SEC as f64))
    }

    /// Awaitable ban on the Redis store.
    fn _aban<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        seconds: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let duration = seconds_to_nanos(seconds, "seconds")?;
        crate::store::bans::check_ban_length(duration)?;
        self.aban_future(key, duration)
    }

    /// Awaitable unban on the Redis store.
    fn _aunban<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.aunban_future(key)
    }

    /// Awaitable banned_for on the Redis store.
    fn _abanned_for<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.abanned_for_future(key)
    }

    /// Keys always admitted, never counted or stored.
    #[getter]
    fn allow_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        build::key_set(py, self.guard.lists.allow())
    }

    #[setter]
    fn set_allow_keys(&self, keys: &Bound<'_, PyAny>) -> PyResult<()> {
        self.guard
            .lists
            .set_allow(build::key_list(Some(keys), "allow_keys")?);
        Ok(())
    }

    /// Keys always refused, with no state kept.
    #[getter]
    fn deny_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        build::key_set(py, self.guard.lists.deny())
    }

    #[setter]
    fn set_deny_keys(&self, keys: &Bound<'_, PyAny>) -> PyResult<()> {
        self.guard
            .lists
            .set_deny(build::key_list(Some(keys), "deny_keys")?);
        Ok(())
    }

    /// Whether refusals are admitted and counted instead (shadow mode).
    #[getter]
    fn shadow(&self) -> bool {
        self.guard.shadow
    }

    /// Spends `cost` on `key` if the limit allows it; returns whether it did.
    #[pyo3(signature = (key, cost = Cost::Omitted), text_signature = "(self, key, cost=1)")]
    fn allow(&self, key: &Bound<'_, PyAny>, cost: Cost<'_, '_>) -> PyResult<bool> {
        if self.remote.is_some() {
            return Ok(self.hit(key, cost)?.decision.allowed);
        }
        // On the memory store only whether the hit was admitted matters:
        // no flags, unless shadow mode waves a refusal through.
        let cost = self.cost(cost)?;
        let bytes = key_bytes(key)?;
        if !self.guard.active() {
            let decision = self.inner.hit(&bytes, cost)?;
            if !decision.allowed && self.events.enabled() {
                self.report_refusal(&bytes, &decision);
            }
            return Ok(decision.allowed);
        }
        if let Some(listed) = self.listed(&bytes, cost)? {
            return Ok(listed.decision.allowed);
        }
        let decision = self.inner.hit(&bytes, cost)?;
        if !decision.allowed && self.events.enabled() {
            self.report_refusal(&bytes, &decision);
        }
        if decision.allowed || !self.guard.shadow {
            return Ok(decision.allowed);
        }
        let outcome = Outcome {
            banned: self.inner.banned_for(&bytes).is_some(),
            ..Outcome::from(decision)
        };
        Ok(self.shadowed(outcome, &bytes).decision.allowed)
    }

    /// Like `allow`, returning the whole decision as a dict.
    #[pyo3(signature = (key, cost = Cost::Omitted), text_signature = "(self, key, cost=1)")]
    fn check<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        cost: Cost<'_, 'py>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let outcome = self.hit(key, cost)?;
        check_dict(key.py(), &outcome.decision)
    }

    /// Like `check`, returning a `Decision` with exact times.
    #[pyo3(signature = (key, cost = Cost::Omitted), text_signature = "(self, key, cost=1)")]
    fn decide(&self, key: &Bound<'_, PyAny>, cost: Cost<'_, '_>) -> PyResult<PyDecision> {
        Ok(PyDecision::from_outcome(self.hit(key, cost)?))
    }

    /// Units `key` can still spend now; spends nothing.
    fn remaining(&self, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self.peek_outcome(key)?.decision.remaining)
    }

    /// What a hit of cost 1 on `key` would get now; spends nothing.
    fn peek(&self, key: &Bound<'_, PyAny>) -> PyResult<PyDecision> {
        Ok(PyDecision::from_outcome(self.peek_outcome(key)?))
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
    fn cleanup_expired(&self, py: Python<'_>) -> PyResult<usize> {
        match &self.remote {
            Some(RemoteStore::Postgres(pg)) => {
                let pg = Arc::clone(pg);
                block_on(py, async move { pg.sweep_recorded().await }).map(|n| n as usize)
            }
            _ => Ok(py.detach(|| self.inner.cleanup_expired())),
        }
    }

    /// Keys the local over-limit cache holds (0 without Redis): for tests.
    fn _local_cache_len(&self) -> usize {
        self.remote.as_ref().map_or(0, |r| r.local_cache().1)
    }

    /// Starts or stops collecting decision events (see
    /// `rust_py_rate_limit.events`).
    fn _set_events(&self, on: bool) {
        self.events.set_enabled(on);
    }

    /// Takes the queued events: `(event_type, key, at_us, retry_after,
    /// refusals_before, detail)` each (`key` None for storage events,
    /// `retry_after` in seconds).
    fn _drain_events(&self, py: Python<'_>) -> Vec<events_py::EventTuple> {
        events_py::drain(py, &self.events)
    }

    /// Activity counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.stats_dict(py)
    }

    /// The counters metrics export: decisions by result, near-limit
    /// admissions, the store's health and, for Redis, round-trip latency.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.metrics_dict(py)
    }

    /// The label of this limiter's metrics and events (default: its
    /// algorithm and rules, such as `"fixed:100/60s"`).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Sweeps expired keys as `cleanup_expired` does, timing how long each
    /// chunk holds its shard lock: for benchmarks.
    fn _profile_sweep<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.profile_sweep(py)
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
        self.adecide_future(key, cost)
    }

    /// A refused decision as shadow mode admits it (the awaited Redis path
    /// applies shadow mode after the store answered).
    fn _shadowed(
        &self,
        key: &Bound<'_, PyAny>,
        decision: &Bound<'_, PyDecision>,
    ) -> PyResult<PyDecision> {
        let bytes = key_bytes(key)?;
        Ok(PyDecision::from_outcome(
            self.shadowed(decision.get().outcome(), &bytes),
        ))
    }

    /// The state of the running event loop's own connection to the Redis
    /// store (see `store::redis::link`), for tests: `"none"`, `"opening"`,
    /// `"opened"`, `"live"`, `"retry"` or `"closed"`.
    fn _link_status(&self, py: Python<'_>) -> PyResult<&'static str> {
        bridge::link_status(py, self.redis()?)
    }

    /// Awaitable peek on the Redis store.
    fn _apeek<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.apeek_future(key)
    }

    /// Awaitable reset on the Redis store.
    fn _areset<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.areset_future(key)
    }

    /// Awaitable clear on the Redis store.
    fn _aclear<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.aclear_future(py)
    }

    /// `"memory"`, `"redis"` or `"postgresql"`.
    #[getter]
    fn storage(&self) -> &'static str {
        self.remote.as_ref().map_or("memory", RemoteStore::kind)
    }

    /// The Redis keys of `key` (Redis store only): one per rule, two for a
    /// sliding log (the log, then its sum), then its ban and its refusals.
    fn _redis_keys(&self, key: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        Ok(self.redis()?.keys(&key_bytes(key)?))
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
        self.repr_text()
    }
}
