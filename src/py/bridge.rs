//! Awaitables backed by Tokio futures, on the process's one runtime.
//!
//! The Redis store's awaitables go through here; the memory store never does
//! (its awaitables are complete when awaited).
//!
//! **Result hand-off.** Each event loop that awaits gets a `LoopWaker`: a
//! queue of finished results and a non-blocking pipe registered with
//! `loop.add_reader`. A Tokio task that finishes pushes its result and, only
//! when the queue was empty, writes one byte. The loop wakes, and one
//! callback on the loop's own thread resolves every queued future. So Tokio
//! threads never run Python code or wait for the GIL, and a hundred awaits
//! that finish together cost one wake-up, not a hundred GIL hand-offs (which
//! is what pyo3-async-runtimes' per-result `call_soon_threadsafe` from a
//! blocking thread costs; it capped 100 concurrent awaits at ~3x the
//! sequential rate). Loops without `add_reader` (none on POSIX) fall back to
//! pyo3-async-runtimes on the same runtime.
//!
//! `future_into_py` runs a Rust future as a task; `completion` gives a
//! future and the function that resolves it, for results produced by work
//! already under way (the Redis store's batched calls), with no task each.

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyWeakrefReference;
use pyo3::{intern, IntoPyObjectExt};
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

/// In a forked child: hand-offs counted in the parent have no thread here,
/// and the loop wakers' pipes are shared with the parent, whose loops still
/// watch them. The child forgets the wakers and makes its own on
/// first use. (It must not `remove_reader` them: an epoll instance is shared
/// across fork, so that would unregister them in the parent too.)
pub fn after_fork_in_child(py: Python<'_>) {
    IN_FLIGHT.store(0, Ordering::SeqCst);
    CLOSING.store(false, Ordering::SeqCst);
    FORK_EPOCH.fetch_add(1, Ordering::SeqCst);
    if let Some(registry) = REGISTRY.get(py) {
        let _ = registry.bind(py).call_method0(intern!(py, "clear"));
    }
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

/// What cancelling the Python awaitable does to its Tokio task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnCancel {
    /// The task runs to its end and its result is dropped: for operations
    /// bounded by a short deadline (a Redis call already sent cannot be
    /// taken back anyway). Spares a done-callback per await.
    Finish,
    /// The task is aborted: for work that may run long.
    Abort,
}

/// A Python awaitable resolved by `fut` running on the runtime. Must be
/// called from a coroutine (it needs the running event loop).
pub fn future_into_py<'py, F, T>(
    py: Python<'py>,
    on_cancel: OnCancel,
    fut: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    // Fail with a Python error, not a panic, if no runtime can be built.
    let (handle, _) = crate::runtime::handle()
        .map_err(|e| PyRuntimeError::new_err(format!("could not start the Tokio runtime: {e}")))?;
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let Some(waker) = waker_for(&event_loop)? else {
        return generic::future_into_py::<ForkAwareRuntime, F, T>(py, fut);
    };
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let target = future.clone().unbind();
    let task = handle.spawn(async move {
        let result = CatchUnwind(Box::pin(fut)).await;
        waker.push(Done {
            future: target,
            result: Box::new(move |py| match result {
                Ok(value) => value.and_then(|v| v.into_py_any(py)),
                Err(panic) => Err(PyRuntimeError::new_err(format!(
                    "the Rust future panicked: {}",
                    panic_message(panic.as_ref())
                ))),
            }),
        });
    });
    if on_cancel == OnCancel::Abort {
        future.call_method1(
            intern!(py, "add_done_callback"),
            (AbortOnCancel(task.abort_handle()),),
        )?;
    }
    Ok(future)
}

/// What resolves a `completion`'s future, from any thread.
pub type Complete<T> = Box<dyn FnOnce(PyResult<T>) + Send>;

/// A future of the running event loop and the function that resolves it,
/// from any thread, through the loop's waker (as `future_into_py` does),
/// for results that come from work already under way rather than from a
/// task of their own.
pub fn completion<'py, T>(py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Complete<T>)>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let Some(waker) = waker_for(&event_loop)? else {
        // No waker on this loop: a task that waits for the result.
        let (tx, rx) = tokio::sync::oneshot::channel::<PyResult<T>>();
        let future = future_into_py(py, OnCancel::Finish, async move {
            rx.await
                .unwrap_or_else(|_| Err(PyRuntimeError::new_err("the result was dropped")))
        })?;
        let complete: Complete<T> = Box::new(move |result| {
            let _ = tx.send(result);
        });
        return Ok((future, complete));
    };
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let target = future.clone().unbind();
    let complete: Complete<T> = Box::new(move |result: PyResult<T>| {
        waker.push(Done {
            future: target,
            result: Box::new(move |py| result.and_then(|v| v.into_py_any(py))),
        });
    });
    Ok((future, complete))
}

/// Ends the Tokio task of an awaitable that its awaiter cancelled.
#[pyclass(frozen)]
struct AbortOnCancel(tokio::task::AbortHandle);

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) {
        let cancelled = future
            .call_method0(intern!(future.py(), "cancelled"))
            .and_then(|c| c.is_truthy())
            .unwrap_or(false);
        if cancelled {
            self.0.abort();
        }
    }
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Event loop -> its `LoopDrain` (or `False` for a loop without
/// `add_reader`): a `weakref.WeakKeyDictionary`, so an entry (and its pipe)
/// goes with its loop.
static REGISTRY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The waker of `event_loop`, registered on first use; `None` if the loop
/// cannot watch a file descriptor.
fn waker_for(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<LoopWaker>>> {
    // A thread runs one loop at a time: remember the last one's waker (by a
    // weak reference, so a new loop at a freed loop's address never matches).
    let py = event_loop.py();
    let epoch = FORK_EPOCH.load(Ordering::Relaxed);
    let cached = LAST_LOOP.with(|last| {
        let last = last.borrow();
        let (weak, waker, at) = last.as_ref()?;
        let alive = weak.bind(py).cast::<PyWeakrefReference>().ok()?.upgrade()?;
        (*at == epoch && alive.is(event_loop)).then(|| waker.clone())
    });
    if let Some(waker) = cached {
        return Ok(Some(waker));
    }
    let waker = registered_waker(event_loop)?;
    if let Some(waker) = &waker {
        let weak = PyWeakrefReference::new(event_loop)?.into_any().unbind();
        LAST_LOOP.with(|last| *last.borrow_mut() = Some((weak, waker.clone(), epoch)));
    }
    Ok(waker)
}

/// A thread's last event loop (a weak reference), its waker, and the
/// `FORK_EPOCH` it was made in.
type LastLoop = Option<(Py<PyAny>, Arc<LoopWaker>, u64)>;

thread_local! {
    static LAST_LOOP: RefCell<LastLoop> = const { RefCell::new(None) };
}

/// Bumped in a forked child: wakers remembered before the fork are stale.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);

/// `event_loop`'s waker from the registry, registering one on first use.
fn registered_waker(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<LoopWaker>>> {
    let py = event_loop.py();
    let registry = REGISTRY
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py
                .import("weakref")?
                .getattr("WeakKeyDictionary")?
                .call0()?
                .unbind())
        })?
        .bind(py);
    let found = registry.call_method1(intern!(py, "get"), (event_loop,))?;
    if let Ok(drain) = found.cast::<LoopDrain>() {
        return Ok(Some(drain.get().waker.clone()));
    }
    if !found.is_none() {
        return Ok(None);
    }
    let waker = Arc::new(LoopWaker::new().map_err(|e| {
        PyRuntimeError::new_err(format!(
            "could not create the event loop's wake-up pipe: {e}"
        ))
    })?);
    let drain = Bound::new(
        py,
        LoopDrain {
            waker: waker.clone(),
        },
    )?;
    close_wakers_of_closed_loops(registry)?;
    match event_loop.call_method1(intern!(py, "add_reader"), (waker.read_fd, drain.clone())) {
        Ok(_) => {
            registry.set_item(event_loop, drain)?;
            Ok(Some(waker))
        }
        Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => {
            registry.set_item(event_loop, false)?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Closes the wake-up pipes of loops that were closed, and drops the
/// results queued for them. A result that arrives after its loop closed
/// (an `asyncio.run()` that abandoned an awaitable) would otherwise keep
/// the future, hence the loop, hence its registry entry and pipe, alive
/// forever. Run whenever a loop registers, so they never pile up.
fn close_wakers_of_closed_loops(registry: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = registry.py();
    let entries = registry.call_method0(intern!(py, "items"))?;
    let entries = py.import("builtins")?.getattr("list")?.call1((entries,))?;
    for entry in entries.try_iter()? {
        let (event_loop, drain): (Bound<'_, PyAny>, Bound<'_, PyAny>) = entry?.extract()?;
        let Ok(drain) = drain.cast::<LoopDrain>() else {
            continue;
        };
        if event_loop
            .call_method0(intern!(py, "is_closed"))?
            .is_truthy()?
        {
            drop(drain.get().waker.close());
            registry.del_item(&event_loop)?;
        }
    }
    Ok(())
}

/// A finished future's result, made into a Python object on the loop.
type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

struct Done {
    future: Py<PyAny>,
    result: Outcome,
}

/// One event loop's queue of finished results and its wake-up pipe.
struct LoopWaker {
    /// The read end's number, as registered with `add_reader`.
    read_fd: i32,
    state: parking_lot::Mutex<WakerState>,
}

struct WakerState {
    pending: Vec<Done>,
    /// The pipe (read end, write end); None once the loop closed: the
    /// descriptors are closed under this lock, so no push can write to a
    /// number the process has since reused.
    pipe: Option<(OwnedFd, OwnedFd)>,
}

impl LoopWaker {
    fn new() -> std::io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe() succeeded, so both are open descriptors we own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [read.as_raw_fd(), write.as_raw_fd()] {
            // SAFETY: fcntl on a descriptor we own.
            let ok = unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                flags >= 0
                    && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
                    && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Self {
            read_fd: read.as_raw_fd(),
            state: parking_lot::Mutex::new(WakerState {
                pending: Vec::new(),
                pipe: Some((read, write)),
            }),
        })
    }

    /// Queues a result; wakes the loop if it was the first one queued. A
    /// result for a closed loop is dropped (its future can never run).
    fn push(&self, done: Done) {
        let mut state = self.state.lock();
        let Some((_, write)) = &state.pipe else {
            drop(state);
            drop(done); // its references are released when the GIL is next held
            return;
        };
        let fd = write.as_raw_fd();
        state.pending.push(done);
        if state.pending.len() == 1 {
            loop {
                // SAFETY: writes one byte from a live buffer to our own pipe,
                // open while the lock is held.
                let n = unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
                // EAGAIN: the pipe is full of wake-ups already, as good as one.
                if n >= 0
                    || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    break;
                }
            }
        }
    }

    /// Everything queued. The pipe is emptied first: a result pushed after
    /// that either is taken now or writes a fresh wake-up.
    fn take(&self) -> Vec<Done> {
        let mut state = self.state.lock();
        if let Some((read, _)) = &state.pipe {
            let mut buf = [0u8; 64];
            loop {
                // SAFETY: reads into a live buffer of the given length from
                // our own pipe, open while the lock is held.
                let n = unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    break;
                }
            }
        }
        std::mem::take(&mut state.pending)
    }

    /// For a loop that closed: closes the pipe and hands back the results
    /// nobody will collect (to be dropped with the GIL held). Later pushes
    /// are dropped.
    fn close(&self) -> Vec<Done> {
        let mut state = self.state.lock();
        state.pipe = None;
        std::mem::take(&mut state.pending)
    }
}

/// The `add_reader` callback: resolves every queued future, on the loop.
#[pyclass(frozen)]
struct LoopDrain {
    waker: Arc<LoopWaker>,
}

#[pymethods]
impl LoopDrain {
    fn __call__(&self, py: Python<'_>) {
        super::options::deliver_notices(py);
        for done in self.waker.take() {
            let future = done.future.bind(py);
            let set = match (done.result)(py) {
                Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
                Err(err) => {
                    future.call_method1(intern!(py, "set_exception"), (err.into_value(py),))
                }
            };
            if let Err(err) = set {
                // A future cancelled by its awaiter takes no result (asyncio
                // raises InvalidStateError); anything else is a real error.
                let cancelled = future
                    .call_method0(intern!(py, "cancelled"))
                    .and_then(|c| c.is_truthy())
                    .unwrap_or(false);
                if !cancelled {
                    err.write_unraisable(py, Some(future));
                }
            }
        }
    }
}

/// Polls a future, turning a panic into an `Err` instead of ending the task
/// (which would leave its Python awaitable pending forever).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
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
    future_into_py(py, OnCancel::Abort, async move {
        if delay_seconds > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(delay_seconds)).await;
        }
        Ok(value)
    })
}
