//! The Python binding: the only module that uses PyO3.
//!
//! Native methods take keys and integers, store no Python objects, and keep
//! the GIL for single-key work: releasing it costs more than the decision.

mod args;
mod bridge;
mod clock;
mod decision;
mod errors;
mod limiter;
mod options;

use pyo3::prelude::*;

/// The compiled module, `rust_py_rate_limit._native`.
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<limiter::PyRateLimiter>()?;
    m.add_class::<clock::PyManualClock>()?;
    m.add_class::<decision::PyDecision>()?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(_runtime_info, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::_roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::_quiesce, m)?)?;
    m.add_function(wrap_pyfunction!(_install_logging, m)?)?;
    m.add_function(wrap_pyfunction!(_drain_logs, m)?)?;
    m.add_function(wrap_pyfunction!(postgres_schema_sql, m)?)?;
    m.add("StorageError", m.py().get_type::<errors::StorageError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let bounds: Vec<f64> = crate::metrics::LATENCY_BOUNDS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .collect();
    m.add("LATENCY_BOUNDS", bounds)?;
    Ok(())
}

/// Called by `os.register_at_fork(after_in_child=...)`: starts this
/// process's own janitors (the parent's tasks do not exist here).
#[pyfunction]
fn _after_fork_in_child(py: Python<'_>) {
    bridge::after_fork_in_child(py);
    crate::janitor::restart_after_fork();
}

/// Facts about the background runtime, for tests and diagnostics.
#[pyfunction]
fn _runtime_info(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let info = pyo3::types::PyDict::new(py);
    info.set_item("alive_tasks", crate::runtime::alive_tasks())?;
    info.set_item("generation", crate::runtime::live_generation())?;
    Ok(info)
}

/// The SQL that installs the PostgreSQL store's schema (tables, functions,
/// version) in `schema`, `UNLOGGED` unless `unlogged` is false, and with
/// `role` the grants that let that role use it: for a privileged role to
/// run once when the application's role may not create schemas.
#[pyfunction]
#[pyo3(signature = (schema = "rust_py_rate_limit", unlogged = true, role = None))]
fn postgres_schema_sql(schema: &str, unlogged: bool, role: Option<&str>) -> PyResult<String> {
    for (name, value) in [("schema", Some(schema)), ("role", role)] {
        if let Some(value) = value {
            if value.is_empty() || value.len() > 63 || value.contains('\0') {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "{name} must be 1 to 63 bytes with no NUL, got {value:?}"
                )));
            }
        }
    }
    let mut sql = crate::store::postgres::schema_sql(schema, unlogged);
    if let Some(role) = role {
        sql.push_str(&crate::store::postgres::grant_sql(schema, role));
    }
    Ok(sql)
}

/// Starts collecting the core's log events (DEBUG and above) for
/// `_drain_logs`. Returns False if they were already being collected.
#[pyfunction]
fn _install_logging() -> bool {
    crate::logs::install(tracing::Level::DEBUG)
}

/// The queued log records as `(level, target, message)`, and how many were
/// dropped because the queue was full.
///
/// Keeps the GIL: it is quick, and the pump is a daemon thread that must not
/// be detached when the interpreter finalizes (re-attaching then would end
/// the thread with `pthread_exit` inside Rust frames).
#[pyfunction]
fn _drain_logs() -> (Vec<(u8, String, String)>, u64) {
    let (mut records, mut dropped) = crate::logs::drain();
    // Storage notices too, for a process that makes no storage call for a
    // while (they are usually delivered by the call that follows them).
    let (notices, lost) = crate::logs::take_notices();
    records.extend(notices);
    dropped += lost;
    (
        records
            .into_iter()
            .map(|r| (r.level, r.target, r.message))
            .collect(),
        dropped,
    )
}
