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
//! sequential rate). Loops without `add_reader` (none on POSIX), and every
//! loop on Windows (where a pipe cannot be watched), fall back to
//! pyo3-async-runtimes on the same runtime.
//!
//! `future_into_py` runs a Rust future as a task; `completion` gives a
//! future and the function that resolves it, for results produced by work
//! already under way (the Redis store's batched calls), with no task each.

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyWeakrefReference;
use pyo3::{intern, IntoPyObjectExt};
use pyo3_async_runtimes::generic::{self, ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;

use super::decision::PyDecision;
use super::options::storage_error;
use crate::store::redis::{Link, RedisStore, Step};

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
        (*at == epoch && alive.is(event_loop))
            .then(|| waker.upgrade())
            .flatten()
    });
    if let Some(waker) = cached {
        return Ok(Some(waker));
    }
    let waker = registered_waker(event_loop)?;
    if let Some(waker) = &waker {
        let weak = PyWeakrefReference::new(event_loop)?.into_any().unbind();
        LAST_LOOP.with(|last| *last.borrow_mut() = Some((weak, Arc::downgrade(waker), epoch)));
    }
    Ok(waker)
}

/// A thread's last event loop and its waker (both weak: the registry owns
/// the waker, so its pipe and links go with its loop), and the
/// `FORK_EPOCH` it was made in.
type LastLoop = Option<(Py<PyAny>, Weak<LoopWaker>, u64)>;

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
    let waker = match LoopWaker::new() {
        Ok(waker) => Arc::new(waker),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            registry.set_item(event_loop, false)?;
            return Ok(None);
        }
        Err(e) => {
            return Err(PyRuntimeError::new_err(format!(
                "could not create the event loop's wake-up pipe: {e}"
            )))
        }
    };
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
            let (done, unanswered) = drain.get().waker.close();
            drop((done, unanswered)); // released here, with the GIL held
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

/// One event loop's queue of finished results and its wake-up pipe, and
/// its links to Redis stores.
struct LoopWaker {
    /// The read end's number, as registered with `add_reader`.
    read_fd: i32,
    state: parking_lot::Mutex<WakerState>,
    /// One slot per Redis store this loop awaited on (see `link_decide`).
    links: parking_lot::Mutex<Vec<LinkEntry>>,
}

struct WakerState {
    pending: Vec<Done>,
    /// The pipe; None once the loop closed: the descriptors are closed
    /// under this lock, so no push can write to a number the process has
    /// since reused.
    pipe: Option<WakePipe>,
}

impl LoopWaker {
    fn new() -> std::io::Result<Self> {
        let pipe = WakePipe::open()?;
        Ok(Self {
            read_fd: pipe.read_fd(),
            state: parking_lot::Mutex::new(WakerState {
                pending: Vec::new(),
                pipe: Some(pipe),
            }),
            links: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// Queues a result; wakes the loop if it was the first one queued. A
    /// result for a closed loop is dropped (its future can never run).
    fn push(&self, done: Done) {
        let mut state = self.state.lock();
        if state.pipe.is_none() {
            drop(state);
            drop(done); // its references are released when the GIL is next held
            return;
        }
        state.pending.push(done);
        if state.pending.len() == 1 {
            if let Some(pipe) = &state.pipe {
                pipe.wake();
            }
        }
    }

    /// Everything queued. The pipe is emptied first: a result pushed after
    /// that either is taken now or writes a fresh wake-up.
    fn take(&self) -> Vec<Done> {
        let mut state = self.state.lock();
        if let Some(pipe) = &state.pipe {
            pipe.drain();
        }
        std::mem::take(&mut state.pending)
    }

    /// For a loop that closed: closes the pipe and hands back the results
    /// nobody will collect (to be dropped with the GIL held). Later pushes
    /// are dropped.
    fn close(&self) -> (Vec<Done>, Vec<Py<PyAny>>) {
        let mut unanswered = Vec::new();
        let entries = std::mem::take(&mut *self.links.lock());
        for entry in entries {
            let slot = std::mem::replace(&mut *entry.slot.lock(), Slot::Closed);
            if let Slot::Live(ctx) = slot {
                unanswered.extend(ctx.link.close());
            }
        }
        let mut state = self.state.lock();
        state.pipe = None;
        (std::mem::take(&mut state.pending), unanswered)
    }
}

/// A loop's wake-up pipe: non-blocking, close-on-exec, its read end
/// watched by `add_reader`.
#[cfg(unix)]
struct WakePipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

#[cfg(unix)]
impl WakePipe {
    fn open() -> std::io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
        Ok(Self { read, write })
    }

    fn read_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.read.as_raw_fd()
    }

    /// Writes one byte (the caller holds the waker's lock, so the pipe is
    /// open).
    fn wake(&self) {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: writes one byte from a live buffer to our own pipe.
            let n = unsafe { libc::write(self.write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
            // EAGAIN: the pipe is full of wake-ups already, as good as one.
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    }

    /// Reads every wake-up written so far.
    fn drain(&self) {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live buffer of its length from our pipe.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    }
}

/// No wake-up pipe where a pipe cannot be watched by an event loop
/// (Windows): `open` says so, and every loop takes the fallback path.
#[cfg(not(unix))]
enum WakePipe {}

#[cfg(not(unix))]
impl WakePipe {
    fn open() -> std::io::Result<Self> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    fn read_fd(&self) -> i32 {
        match *self {}
    }

    fn wake(&self) {
        match *self {}
    }

    fn drain(&self) {
        match *self {}
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

// -- Redis links: awaited decisions on the loop's own connection ------------

type PyLink = Link<Py<PyAny>>;

/// A loop's link to one store, as it comes to be.
enum Slot {
    /// Being opened on a runtime thread (this loop's awaits take the
    /// runtime path meanwhile).
    Connecting,
    /// Opened, not yet watched by the loop.
    Opened(PyLink),
    /// Watched by the loop and in use.
    Live(Arc<LinkCtx>),
    /// Opening failed or the link closed: try again from then on.
    RetryAt(Instant),
    /// The loop closed.
    Closed,
}

struct LinkEntry {
    store: Weak<RedisStore>,
    slot: Arc<parking_lot::Mutex<Slot>>,
}

/// What the loop's callbacks for one link need.
struct LinkCtx {
    store: Weak<RedisStore>,
    link: PyLink,
    /// Weak: the slot owns the context (a strong one would be a cycle that
    /// outlives the loop, socket and all).
    slot: Weak<parking_lot::Mutex<Slot>>,
    /// A weak reference to the loop.
    event_loop: Py<PyAny>,
    /// Whether the loop watches the socket for reading (cleared once, when
    /// it stops: a stale callback must never unwatch a descriptor number
    /// that another owner has since been given).
    watched: AtomicBool,
    writer: AtomicBool,
}

/// How long a failed link waits before it is tried again.
const LINK_RETRY: Duration = Duration::from_millis(500);

/// Decides a hit on `store` over the running loop's own link to it: the
/// future it resolves, or None when there is no link yet (one is then
/// opened off the loop for the next awaits) and the caller takes the
/// runtime path.
pub fn link_decide<'py>(
    py: Python<'py>,
    store: &Arc<RedisStore>,
    key: &[u8],
    cost: u64,
    now_us: Option<u64>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let Some(waker) = waker_for(&event_loop)? else {
        return Ok(None);
    };
    let Some(ctx) = live_link(&waker, &event_loop, store)? else {
        return Ok(None);
    };
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let pending = store.link_pending(key, cost, now_us, future.clone().unbind());
    let step = store.link_submit(&ctx.link, pending);
    apply(py, &ctx, store, step);
    Ok(Some(future))
}

/// The loop's live link to `store`, watching it first if it was just
/// opened; None if there is none yet (and then one is being opened).
fn live_link(
    waker: &LoopWaker,
    event_loop: &Bound<'_, PyAny>,
    store: &Arc<RedisStore>,
) -> PyResult<Option<Arc<LinkCtx>>> {
    let py = event_loop.py();
    let mut gone = Vec::new();
    let slot = {
        let mut links = waker.links.lock();
        // Links of stores dropped since: close them (below, unlocked).
        links.retain(|entry| {
            let alive = entry.store.strong_count() > 0;
            if !alive {
                gone.push(entry.slot.clone());
            }
            alive
        });
        match links
            .iter()
            .find(|e| std::ptr::eq(e.store.as_ptr(), Arc::as_ptr(store)))
        {
            Some(entry) => entry.slot.clone(),
            None => {
                let slot = Arc::new(parking_lot::Mutex::new(Slot::RetryAt(Instant::now())));
                links.push(LinkEntry {
                    store: Arc::downgrade(store),
                    slot: slot.clone(),
                });
                slot
            }
        }
    };
    for slot in gone {
        let old = std::mem::replace(&mut *slot.lock(), Slot::Closed);
        if let Slot::Live(ctx) = old {
            unwatch(event_loop, &ctx);
            drop(ctx.link.close());
        }
    }
    let opened = {
        let mut guard = slot.lock();
        match &*guard {
            Slot::Live(ctx) => return Ok(Some(ctx.clone())),
            Slot::Connecting | Slot::Closed => return Ok(None),
            Slot::RetryAt(at) if Instant::now() < *at => return Ok(None),
            Slot::RetryAt(_) => {
                *guard = Slot::Connecting;
                None
            }
            Slot::Opened(_) => match std::mem::replace(&mut *guard, Slot::Connecting) {
                Slot::Opened(link) => Some(link),
                _ => unreachable!(),
            },
        }
    };
    let Some(link) = opened else {
        open_link(store, slot);
        return Ok(None);
    };
    // From here any failure leaves the slot to retry and the await to the
    // runtime path: a slot never stays `Connecting` with nobody opening it.
    let watch = || -> PyResult<Arc<LinkCtx>> {
        let ctx = Arc::new(LinkCtx {
            store: Arc::downgrade(store),
            link,
            slot: Arc::downgrade(&slot),
            event_loop: PyWeakrefReference::new(event_loop)?.into_any().unbind(),
            watched: AtomicBool::new(false),
            writer: AtomicBool::new(false),
        });
        let reader = Bound::new(
            py,
            LinkCallback {
                ctx: ctx.clone(),
                kind: Watch::Read,
            },
        )?;
        event_loop.call_method1(intern!(py, "add_reader"), (ctx.link.fd(), reader))?;
        ctx.watched.store(true, Ordering::Relaxed);
        Ok(ctx)
    };
    match watch() {
        Ok(ctx) => {
            *slot.lock() = Slot::Live(ctx.clone());
            Ok(Some(ctx))
        }
        Err(err) => {
            err.write_unraisable(py, None);
            *slot.lock() = Slot::RetryAt(Instant::now() + LINK_RETRY);
            Ok(None)
        }
    }
}

/// Opens a link to `store` on a runtime thread (it blocks, up to the
/// store's deadline) and leaves it in `slot` for the loop to watch.
fn open_link(store: &Arc<RedisStore>, slot: Arc<parking_lot::Mutex<Slot>>) {
    let Ok((handle, _)) = crate::runtime::handle() else {
        *slot.lock() = Slot::RetryAt(Instant::now() + LINK_RETRY);
        return;
    };
    let store = Arc::clone(store);
    handle.spawn_blocking(move || {
        let opened = store.open_link::<Py<PyAny>>();
        let mut slot = slot.lock();
        if matches!(*slot, Slot::Connecting) {
            *slot = match opened {
                Ok(link) => Slot::Opened(link),
                Err(_) => Slot::RetryAt(Instant::now() + LINK_RETRY),
            };
        }
    });
}

/// Stops the loop watching a link's socket (once; later calls do nothing).
fn unwatch(event_loop: &Bound<'_, PyAny>, ctx: &LinkCtx) {
    if !ctx.watched.swap(false, Ordering::Relaxed) {
        return;
    }
    let py = event_loop.py();
    let fd = ctx.link.fd();
    let _ = event_loop.call_method1(intern!(py, "remove_reader"), (fd,));
    if ctx.writer.swap(false, Ordering::Relaxed) {
        let _ = event_loop.call_method1(intern!(py, "remove_writer"), (fd,));
    }
}

/// Carries out what a link step asks of the loop, and resolves the futures
/// it answered.
fn apply(py: Python<'_>, ctx: &Arc<LinkCtx>, store: &RedisStore, step: Step<Py<PyAny>>) {
    let event_loop = ctx
        .event_loop
        .bind(py)
        .cast::<PyWeakrefReference>()
        .ok()
        .and_then(|weak| weak.upgrade());
    if let Some(event_loop) = &event_loop {
        let fd = ctx.link.fd();
        let watched = if step.closed {
            unwatch(event_loop, ctx);
            if let Some(slot) = ctx.slot.upgrade() {
                let mut slot = slot.lock();
                if matches!(&*slot, Slot::Live(live) if Arc::ptr_eq(live, ctx)) {
                    *slot = Slot::RetryAt(Instant::now());
                }
            }
            Ok(())
        } else if step.want_write
            && ctx.watched.load(Ordering::Relaxed)
            && !ctx.writer.swap(true, Ordering::Relaxed)
        {
            let writer = LinkCallback {
                ctx: ctx.clone(),
                kind: Watch::Write,
            };
            event_loop
                .call_method1(intern!(py, "add_writer"), (fd, writer))
                .map(drop)
        } else if !step.want_write && ctx.writer.swap(false, Ordering::Relaxed) {
            event_loop
                .call_method1(intern!(py, "remove_writer"), (fd,))
                .map(drop)
        } else {
            Ok(())
        };
        let timer = match step.arm_timer {
            Some(delay) if !step.closed => {
                let timer = LinkCallback {
                    ctx: ctx.clone(),
                    kind: Watch::Timer,
                };
                event_loop
                    .call_method1(intern!(py, "call_later"), (delay.as_secs_f64(), timer))
                    .map(drop)
            }
            _ => Ok(()),
        };
        if timer.is_err() {
            store.link_timer_failed(&ctx.link);
        }
        for err in [watched, timer].into_iter().filter_map(Result::err) {
            err.write_unraisable(py, None);
        }
    }
    // Only now, unwatched, may a closed link's socket be closed.
    drop(step.retired);
    for (future, result) in step.answered {
        let future = future.bind(py);
        let set = match result {
            Ok(decision) => Bound::new(py, PyDecision::from_outcome(decision))
                .and_then(|d| future.call_method1(intern!(py, "set_result"), (d,))),
            Err(err) => future.call_method1(
                intern!(py, "set_exception"),
                (storage_error(err).into_value(py),),
            ),
        };
        if let Err(err) = set {
            let cancelled = future
                .call_method0(intern!(py, "cancelled"))
                .and_then(|c| c.is_truthy())
                .unwrap_or(false);
            if !cancelled {
                err.write_unraisable(py, Some(future));
            }
        }
    }
    super::options::deliver_notices(py);
}

#[derive(Clone, Copy)]
enum Watch {
    Read,
    Write,
    Timer,
}

/// The loop's callback for a link: its socket is readable or writable, or
/// a deadline may have passed.
#[pyclass(frozen)]
struct LinkCallback {
    ctx: Arc<LinkCtx>,
    kind: Watch,
}

#[pymethods]
impl LinkCallback {
    fn __call__(&self, py: Python<'_>) {
        let ctx = &self.ctx;
        let Some(store) = ctx.store.upgrade() else {
            // The limiter is gone: stop watching, close the link, and free
            // its slot (so no later sweep unwatches it again).
            if let Some(slot) = ctx.slot.upgrade() {
                let mut slot = slot.lock();
                if matches!(&*slot, Slot::Live(live) if Arc::ptr_eq(live, ctx)) {
                    *slot = Slot::Closed;
                }
            }
            if let Some(event_loop) = ctx
                .event_loop
                .bind(py)
                .cast::<PyWeakrefReference>()
                .ok()
                .and_then(|w| w.upgrade())
            {
                unwatch(&event_loop, ctx);
            }
            drop(ctx.link.close());
            return;
        };
        let step = match self.kind {
            Watch::Read => store.link_readable(&ctx.link),
            Watch::Write => store.link_writable(&ctx.link),
            Watch::Timer => store.link_expire(&ctx.link),
        };
        apply(py, ctx, &store, step);
    }
}

/// The running loop's link to `store`, by state name: `"none"`,
/// `"opening"`, `"opened"`, `"live"`, `"retry"` or `"closed"`. For tests.
pub fn link_status(py: Python<'_>, store: &Arc<RedisStore>) -> PyResult<&'static str> {
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let Some(waker) = waker_for(&event_loop)? else {
        return Ok("none");
    };
    let links = waker.links.lock();
    let Some(entry) = links
        .iter()
        .find(|e| std::ptr::eq(e.store.as_ptr(), Arc::as_ptr(store)))
    else {
        return Ok("none");
    };
    let status = match &*entry.slot.lock() {
        Slot::Connecting => "opening",
        Slot::Opened(_) => "opened",
        Slot::Live(_) => "live",
        Slot::RetryAt(_) => "retry",
        Slot::Closed => "closed",
    };
    Ok(status)
}
