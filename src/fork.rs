//! Fork safety for work that runs without the GIL.
//!
//! A forked child gets a copy of every lock in the state it was in, but only
//! the thread that called `fork()`. A lock held by any other thread at that
//! moment stays locked forever in the child. The janitor and GIL-free sweeps
//! therefore hold this gate while they touch a map, and a `pthread_atfork`
//! prepare handler closes the gate and waits for them to leave before the
//! fork proceeds (at most one sweep chunk, well under a millisecond).
//!
//! The gate is plain atomics: no thread is ever parked on it, so it carries
//! no hidden lock of its own into the child.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const FORKING: usize = 1 << (usize::BITS - 1);

static GATE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Passes this thread holds: a thread already inside never waits (a
    /// waiting fork would otherwise wait for it, and it for the fork).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Proof of being inside the gate; leaving it reopens the way to fork.
pub struct Pass(());

impl Drop for Pass {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
        GATE.fetch_sub(1, Ordering::Release);
    }
}

/// Enters the gate, waiting while a fork is in progress (unless this thread
/// is already inside).
pub fn enter() -> Pass {
    install();
    DEPTH.with(|d| d.set(d.get() + 1));
    if DEPTH.with(Cell::get) > 1 {
        GATE.fetch_add(1, Ordering::AcqRel);
        return Pass(());
    }
    loop {
        let state = GATE.load(Ordering::Acquire);
        if state & FORKING == 0
            && GATE
                .compare_exchange_weak(state, state + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Pass(());
        }
        std::thread::yield_now();
    }
}

/// Forks this process is a child of (bumped in each child): tells state
/// inherited across fork from this process's own without asking the kernel
/// for the process id on every call.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// The fork generation of this process (see `FORKS`). Exact once `install`
/// has run, which `crate::runtime` does before it builds anything.
pub fn generation() -> u64 {
    FORKS.load(Ordering::Acquire)
}

/// Installs the `pthread_atfork` handlers (once). Windows has no fork: a
/// child process starts afresh there, so there is nothing to install.
#[cfg(not(unix))]
pub fn install() {}

/// Installs the `pthread_atfork` handlers (once).
#[cfg(unix)]
pub fn install() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handlers are plain `extern "C"` functions that only
        // touch an atomic.
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(reopen), Some(in_child));
        }
    });
}

#[cfg(unix)]
extern "C" fn prepare() {
    GATE.fetch_or(FORKING, Ordering::AcqRel);
    while GATE.load(Ordering::Acquire) & !FORKING != 0 {
        std::thread::yield_now();
    }
}

#[cfg(unix)]
extern "C" fn reopen() {
    GATE.fetch_and(!FORKING, Ordering::AcqRel);
}

#[cfg(unix)]
extern "C" fn in_child() {
    FORKS.fetch_add(1, Ordering::AcqRel);
    reopen();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_nest_and_release() {
        // Other tests' threads may hold passes meanwhile: count this
        // thread's own, and check the gate holds at least those.
        let a = enter();
        let b = enter();
        assert_eq!(DEPTH.with(Cell::get), 2);
        assert!(GATE.load(Ordering::Acquire) & !FORKING >= 2);
        drop(a);
        drop(b);
        assert_eq!(DEPTH.with(Cell::get), 0);
    }
}
