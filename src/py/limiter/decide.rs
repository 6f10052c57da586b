//! The decisions behind the sync methods: the cost argument, a hit and a
//! peek on the memory store or (blocking, without the GIL) on Redis.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use std::sync::Arc;

use super::PyRateLimiter;
use crate::clock::{AnyClock, Clock};
use crate::py::args::{int_value, key_bytes, Cost};
use crate::py::options::blocking;
use crate::rate::Quota;
use crate::store::redis::RedisStore;
use crate::store::remote::RemoteStore;
use crate::store::Outcome;

impl PyRateLimiter {
    /// cost given as `None` is a `TypeError`, like any other non-int.
    #[inline]
    pub(super) fn cost(&self, cost: Cost<'_, '_>) -> PyResult<u64> {
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

    /// One hit: the lists first, then the store, then shadow mode.
    #[inline]
    pub(super) fn hit(&self, key: &Bound<'_, PyAny>, cost: Cost<'_, '_>) -> PyResult<Outcome> {
        let cost = self.cost(cost)?;
        let bytes = key_bytes(key)?;
        if let Some(listed) = self.listed(&bytes, cost)? {
            return Ok(listed);
        }
        let outcome = match &self.remote {
            // The store reports its refusals to the events itself.
            Some(remote) => self.remote_hit(key.py(), remote, bytes.to_vec(), cost)?,
            None => {
                let outcome = self.inner.hit_outcome(&bytes, cost)?;
                if !outcome.decision.allowed && self.events.enabled() {
                    self.report_refusal(&bytes, &outcome.decision);
                }
                outcome
            }
        };
        Ok(self.shadowed(outcome, &bytes))
    }

    /// A memory store's refusal of `key`, for the events: blocked, and
    /// banned if the key is banned now (this refusal may have begun it).
    #[cold]
    #[inline(never)]
    pub(super) fn report_refusal(&self, key: &[u8], decision: &crate::algorithm::Decision) {
        let window = self.first().window();
        let ban_left = self.inner.banned_for(key);
        self.events.refused(
            key,
            self.clock.now(),
            window,
            decision.retry_after,
            ban_left,
        );
    }

    /// Shadow mode on an outcome for `key`.
    #[inline]
    pub(super) fn shadowed(&self, outcome: Outcome, key: &[u8]) -> Outcome {
        let window = self.first().window();
        self.guard.shadow(outcome, key, || self.clock.now(), window)
    }

    /// The answer of the allow or deny list for a hit of `cost` on `key`,
    /// if it is on one: counted, once the cost is known to be valid.
    #[inline]
    pub(super) fn listed(&self, key: &[u8], cost: u64) -> PyResult<Option<Outcome>> {
        if self.guard.lists.get(key).is_none() {
            return Ok(None);
        }
        self.inner.validate_cost(cost)?;
        Ok(self.listed_as(key, true))
    }

    #[inline]
    fn listed_as(&self, key: &[u8], counted: bool) -> Option<Outcome> {
        let listed = self.guard.lists.get(key)?;
        let first = self.first();
        Some(
            self.guard
                .answer(listed, first.limit(), first.window(), counted),
        )
    }

    /// The clock of a ManualClock limiter, in microseconds, for the Redis
    /// scripts; None means the Redis server's clock.
    pub(super) fn remote_now(&self) -> Option<u64> {
        match &self.clock {
            AnyClock::Manual(clock) => Some(clock.now() / 1000),
            AnyClock::Monotonic => None,
        }
    }

    #[cold]
    fn remote_hit(
        &self,
        py: Python<'_>,
        remote: &RemoteStore,
        key: Vec<u8>,
        cost: u64,
    ) -> PyResult<Outcome> {
        self.inner.validate_cost(cost)?;
        let now = self.remote_now();
        blocking(py, || remote.hit_blocking(&key, cost, now))
    }

    /// What `key` would see now, spending nothing (lists and bans count;
    /// shadow mode does not: a peek reports the truth).
    pub(super) fn peek_outcome(&self, key: &Bound<'_, PyAny>) -> PyResult<Outcome> {
        let bytes = key_bytes(key)?;
        if let Some(listed) = self.listed_as(&bytes, false) {
            return Ok(listed);
        }
        match &self.remote {
            Some(remote) => {
                let bytes = bytes.into_owned();
                let now = self.remote_now();
                blocking(key.py(), || remote.peek_blocking(&bytes, now))
            }
            None => Ok(self.inner.peek_outcome(&bytes)),
        }
    }

    pub(super) fn remote(&self) -> PyResult<&RemoteStore> {
        self.remote
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("this limiter has no remote store"))
    }

    pub(super) fn redis(&self) -> PyResult<&Arc<RedisStore>> {
        match &self.remote {
            Some(RemoteStore::Redis(redis)) => Ok(redis),
            _ => Err(PyRuntimeError::new_err("this limiter has no Redis store")),
        }
    }

    pub(super) fn first(&self) -> &Quota {
        &self.spec.quotas[0]
    }
}
