//! The decisions behind the sync methods: the cost argument, a hit and a
//! peek on the memory store or (blocking, without the GIL) on Redis.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use std::sync::Arc;

use super::PyRateLimiter;
use crate::algorithm::Decision;
use crate::clock::{AnyClock, Clock};
use crate::py::args::{int_value, key_bytes, Cost};
use crate::py::options::blocking;
use crate::rate::Quota;
use crate::store::redis::RedisStore;

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

    #[inline]
    pub(super) fn hit(&self, key: &Bound<'_, PyAny>, cost: Cost<'_, '_>) -> PyResult<Decision> {
        let cost = self.cost(cost)?;
        if let Some(remote) = &self.remote {
            return self.remote_hit(key.py(), remote, key_bytes(key)?.into_owned(), cost);
        }
        Ok(self.inner.hit(&key_bytes(key)?, cost)?)
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
        remote: &Arc<RedisStore>,
        key: Vec<u8>,
        cost: u64,
    ) -> PyResult<Decision> {
        self.inner.validate_cost(cost)?;
        let now = self.remote_now();
        blocking(py, || remote.hit_blocking(&key, cost, now))
    }

    pub(super) fn peek_decision(&self, key: &Bound<'_, PyAny>) -> PyResult<Decision> {
        match &self.remote {
            Some(remote) => {
                let bytes = key_bytes(key)?.into_owned();
                let now = self.remote_now();
                blocking(key.py(), || remote.peek_blocking(&bytes, now))
            }
            None => Ok(self.inner.peek(&key_bytes(key)?)),
        }
    }

    pub(super) fn remote(&self) -> PyResult<&Arc<RedisStore>> {
        self.remote
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("this limiter has no Redis store"))
    }

    pub(super) fn first(&self) -> &Quota {
        &self.spec.quotas[0]
    }
}
