//! `ManualClock`: time that moves only when the test says so.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::args::seconds_to_nanos;
use crate::clock::{Clock, ManualClock, MAX_TIME, NANOS_PER_SEC};

/// A clock for tests: starts at 0 and moves only by `advance(seconds)`.
#[pyclass(frozen, module = "rust_py_rate_limit._native", name = "ManualClock")]
pub struct PyManualClock {
    pub(crate) inner: Arc<ManualClock>,
}

#[pymethods]
impl PyManualClock {
    #[new]
    fn new() -> Self {
        Self {
            inner: Arc::new(ManualClock::new()),
        }
    }

    /// Moves the clock forward by `seconds` (int or float, >= 0).
    fn advance(&self, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        let by = seconds_to_nanos(seconds, "seconds")?;
        if by > MAX_TIME - self.inner.now() {
            return Err(PyValueError::new_err(format!(
                "seconds would move the clock past its end ({} seconds)",
                MAX_TIME / NANOS_PER_SEC
            )));
        }
        self.inner.advance(by);
        Ok(())
    }

    /// Seconds since the clock was created.
    #[getter]
    fn now(&self) -> f64 {
        self.inner.now() as f64 / NANOS_PER_SEC as f64
    }

    fn __repr__(&self) -> String {
        format!("ManualClock(now={:?})", self.now())
    }
}
