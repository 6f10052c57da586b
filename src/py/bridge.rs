//! Awaitables backed by Tokio futures, on the process's one runtime.
//!
//! pyo3-async-runtimes drives a Rust future on a runtime and resolves a
//! Python future on the caller's event loop. Its own Tokio integration keeps
//! a runtime that can be set only once per process, which a forked child
//! cannot replace; this runtime adapter spawns on `crate::runtime` instead,
//! which is rebuilt in a forked child. The Redis store's awaitables go
//! through here; the memory store never does (its awaitables are complete
//! when awaited).

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{self, ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// pyo3-async-runtimes' view of `crate::runtime`.
pub struct ForkAwareRuntime;

impl Runtime for ForkAwareRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (handle, _) = crate::runtime::handle().expect("the Tokio runtime could not start");
        handle.spawn(fut)
    }

    /// pyo3-async-runtimes hands each result to the event loop from a
    /// blocking thread that attaches to the interpreter. If the interpreter
    /// finalizes meanwhile, that thread would be ended with `pthread_exit`,
    /// which cannot unwind through Rust frames and aborts the process. So
    /// these hand-offs are counted, `quiesce` (run by `atexit`) waits for
    /// the ones under way, and none starts after it.
    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let (handle, _) = crate::runtime::handle().expect("the Tokio runtime could not start");
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        handle.spawn_blocking(move || {
            if !CLOSING.load(Ordering::SeqCst) {
                f();
            }
            // Otherwise `f` is dropped unrun: its Python references are
            // released later by PyO3's pool, without attaching.
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        })
    }
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static CLOSING: AtomicBool = AtomicBool::new(false);

/// In a forked child: hand-offs counted in the parent have no thread here.
pub fn after_fork_in_child() {
    IN_FLIGHT.store(0, Ordering::SeqCst);
    CLOSING.store(false, Ordering::SeqCst);
}

/// Called at interpreter exit (`atexit`): stops handing results to Python
/// and waits, without the GIL, up to `timeout_seconds` for hand-offs under
/// way. Returns whether none is left.
#[pyfunction]
#[pyo3(signature = (timeout_seconds = 1.0))]
pub fn _quiesce(py: Python<'_>, timeout_seconds: f64) -> bool {
    CLOSING.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs_f64(timeout_seconds.clamp(0.0, 60.0));
    py.detach(|| {
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        true
    })
}

impl ContextExt for ForkAwareRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// A Python awaitable resolved by `fut` running on the runtime.
pub fn future_into_py<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    // Fail with a Python error, not a panic, if no runtime can be built.
    crate::runtime::handle()
        .map_err(|e| PyRuntimeError::new_err(format!("could not start the Tokio runtime: {e}")))?;
    generic::future_into_py::<ForkAwareRuntime, F, T>(py, fut)
}

/// An awaitable that yields `value` after a round trip through the runtime
/// (after `delay_seconds`, if given): a probe of the bridge for tests and
/// benchmarks.
#[pyfunction]
#[pyo3(signature = (value, delay_seconds = 0.0))]
pub fn _roundtrip<'py>(
    py: Python<'py>,
    value: Py<PyAny>,
    delay_seconds: f64,
) -> PyResult<Bound<'py, PyAny>> {
    if !(delay_seconds.is_finite() && delay_seconds >= 0.0) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "delay_seconds must be a finite number >= 0",
        ));
    }
    future_into_py(py, async move {
        if delay_seconds > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(delay_seconds)).await;
        }
        Ok(value)
    })
}
