//! `RateLimiter`: the Python face of a memory store.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::args::{key_bytes, positive_int};
use super::clock::PyManualClock;
use crate::algorithm::{Algorithm, Decision, FixedWindow};
use crate::clock::{AnyClock, NANOS_PER_SEC};
use crate::rate::Quota;
use crate::store::MemoryStore;

/// A thread-safe rate limiter; see the package documentation.
#[pyclass(
    frozen,
    subclass,
    module = "rust_py_rate_limit._native",
    name = "RateLimiter"
)]
pub struct PyRateLimiter {
    store: MemoryStore<FixedWindow>,
}

impl PyRateLimiter {
    /// The cost argument: omitted means 1, the common and fastest case.
    #[inline]
    fn cost(cost: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
        match cost {
            None => Ok(1),
            Some(obj) => positive_int(obj, "cost"),
        }
    }

    #[inline]
    fn hit(&self, key: &Bound<'_, PyAny>, cost: Option<&Bound<'_, PyAny>>) -> PyResult<Decision> {
        let cost = Self::cost(cost)?;
        Ok(self.store.hit(&key_bytes(key)?, cost)?)
    }
}

/// The seed's `check()` payload, built in this one place.
fn decision_dict<'py>(py: Python<'py>, d: &Decision) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "allowed"), d.allowed)?;
    dict.set_item(intern!(py, "limit"), d.limit)?;
    dict.set_item(intern!(py, "remaining"), d.remaining)?;
    dict.set_item(intern!(py, "reset_after_seconds"), d.reset_after_secs())?;
    dict.set_item(intern!(py, "retry_after_seconds"), d.retry_after_secs())?;
    Ok(dict)
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(signature = (limit, window_seconds, *, clock = None))]
    fn new(
        limit: &Bound<'_, PyAny>,
        window_seconds: &Bound<'_, PyAny>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let limit = positive_int(limit, "limit")?;
        let window_seconds = positive_int(window_seconds, "window_seconds")?;
        let quota = Quota::per_seconds(limit, window_seconds)?;
        let clock = match clock {
            None => AnyClock::Monotonic,
            Some(obj) if obj.is_none() => AnyClock::Monotonic,
            Some(obj) => match obj.cast::<PyManualClock>() {
                Ok(manual) => AnyClock::Manual(manual.get().inner.clone()),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "clock must be a ManualClock or None, not {}",
                        obj.get_type().name()?
                    )))
                }
            },
        };
        Ok(Self {
            store: MemoryStore::new(FixedWindow::new(quota), clock),
        })
    }

    /// Spends `cost` on `key` if the limit allows it; returns whether it did.
    #[pyo3(signature = (key, cost = None), text_signature = "(self, key, cost=1)")]
    fn allow(&self, key: &Bound<'_, PyAny>, cost: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        Ok(self.hit(key, cost)?.allowed)
    }

    /// Like `allow`, returning the whole decision as a dict.
    #[pyo3(signature = (key, cost = None), text_signature = "(self, key, cost=1)")]
    fn check<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        cost: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let decision = self.hit(key, cost)?;
        decision_dict(key.py(), &decision)
    }

    /// Units `key` can still spend now; spends nothing.
    fn remaining(&self, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self.store.peek(&key_bytes(key)?).remaining)
    }

    /// Drops `key`'s state; returns whether it had any.
    fn reset(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.store.reset(&key_bytes(key)?))
    }

    /// Drops every key's state (the counters of `stats()` are kept).
    fn clear(&self, py: Python<'_>) {
        py.detach(|| self.store.clear());
    }

    /// Removes keys whose window has ended; returns how many.
    fn cleanup_expired(&self, py: Python<'_>) -> usize {
        py.detach(|| self.store.cleanup_expired())
    }

    /// Activity counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.store.stats();
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "allowed"), s.allowed)?;
        dict.set_item(intern!(py, "blocked"), s.blocked)?;
        dict.set_item(intern!(py, "total_checks"), s.total_checks())?;
        dict.set_item(intern!(py, "active_keys"), s.active_keys)?;
        Ok(dict)
    }

    /// A decorator that rate-limits a function under `key`.
    #[pyo3(signature = (key, *, cost = None), text_signature = "(self, key, *, cost=1)")]
    fn limit<'py>(
        slf: &Bound<'py, Self>,
        key: &Bound<'py, PyAny>,
        cost: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let options = PyDict::new(py);
        if let Some(cost) = cost {
            options.set_item(intern!(py, "cost"), cost)?;
        }
        py.import(intern!(py, "rust_py_rate_limit.decorators"))?
            .getattr(intern!(py, "rate_limit"))?
            .call((slf, key), Some(&options))
    }

    /// The limit per window.
    #[getter]
    fn max_requests(&self) -> u64 {
        self.store.algorithm().limit()
    }

    /// The window length in seconds.
    #[getter]
    fn window_seconds(&self) -> u64 {
        self.store.algorithm().window() / NANOS_PER_SEC
    }

    /// The algorithm's name.
    #[getter]
    fn algorithm(&self) -> &'static str {
        FixedWindow::NAME
    }

    fn __repr__(&self) -> String {
        format!(
            "RateLimiter(limit={}, window_seconds={}, algorithm='{}')",
            self.max_requests(),
            self.window_seconds(),
            self.algorithm()
        )
    }
}
