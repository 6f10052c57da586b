//! The Python binding: the only module that uses PyO3.
//!
//! Native methods take keys and integers, store no Python objects, and keep
//! the GIL for single-key work: releasing it costs more than the decision.

mod args;
mod clock;
mod decision;
mod errors;
mod limiter;

use pyo3::prelude::*;

/// The compiled module, `rust_py_rate_limit._native`.
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<limiter::PyRateLimiter>()?;
    m.add_class::<clock::PyManualClock>()?;
    m.add_class::<decision::PyDecision>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
