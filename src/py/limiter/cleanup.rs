//! Sweeping expired keys: the background janitor, and a timed sweep for
//! benchmarks.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::PyRateLimiter;
use crate::janitor::{Janitor, Target};
use crate::limiter::Limiter;
use crate::py::args::seconds_to_nanos;
use crate::store::remote::RemoteStore;
use crate::store::{SweepCursor, SWEEP_CHUNK};

impl PyRateLimiter {
    pub(super) fn janitor(&self) -> std::sync::MutexGuard<'_, Option<Janitor>> {
        self.janitor.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn start_janitor(&self, interval: &Bound<'_, PyAny>) -> PyResult<()> {
        let nanos = seconds_to_nanos(interval, "interval")?;
        if nanos == 0 {
            return Err(PyValueError::new_err(
                "interval must be a positive number of seconds",
            ));
        }
        self.start_janitor_every(Duration::from_nanos(nanos))
    }

    /// Starts (or restarts) the janitor with `interval`.
    pub(super) fn start_janitor_every(&self, interval: Duration) -> PyResult<()> {
        let target = match &self.remote {
            Some(RemoteStore::Postgres(pg)) => Target::Postgres(Arc::downgrade(pg)),
            _ => {
                let store: Weak<dyn Limiter> = Arc::downgrade(&self.inner);
                Target::Memory(store)
            }
        };
        let janitor = Janitor::start(target, interval)
            .map_err(|e| PyRuntimeError::new_err(format!("could not start the janitor: {e}")))?;
        // Replacing a running janitor stops it.
        *self.janitor() = Some(janitor);
        Ok(())
    }

    /// Sweeps expired keys as `cleanup_expired` does, timing how long each
    /// chunk holds its shard lock: for benchmarks.
    pub(super) fn profile_sweep<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
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
}
