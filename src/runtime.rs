//! The one Tokio runtime of the process: small (one worker thread), created
//! on first need and never at import, and tagged with the fork generation
//! (`crate::fork::generation`, bumped in every forked child).
//!
//! After `fork()` the child inherits the parent's runtime without its
//! threads. Dropping it would wait for threads that do not exist, so it is
//! leaked, and a fresh one is built on first use in the child. Everything
//! spawned records the runtime's generation, so the child never touches an
//! object of the stale runtime.

use std::sync::Mutex;

use tokio::runtime::{Builder, Handle, Runtime};

struct Current {
    forks: u64,
    generation: u64,
    runtime: &'static Runtime,
}

static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

/// A handle to this process's runtime and its generation (which changes
/// whenever a runtime is built, e.g. in a forked child).
pub fn handle() -> std::io::Result<(Handle, u64)> {
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    let forks = crate::fork::generation();
    if let Some(c) = current.as_ref().filter(|c| c.forks == forks) {
        return Ok((c.runtime.handle().clone(), c.generation));
    }
    // Before anything is built: a fork from now on bumps the generation.
    crate::fork::install();
    let forks = crate::fork::generation();
    let generation = current.as_ref().map_or(1, |c| c.generation + 1);
    let runtime = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .thread_name("rust-py-rate-limit")
        .enable_all()
        .build()?;
    // Leaked on purpose: the runtime lives as long as the process, and a
    // stale one (inherited across fork) must never be dropped.
    let runtime: &'static Runtime = Box::leak(Box::new(runtime));
    tracing::debug!(generation, "started the Tokio runtime");
    *current = Some(Current {
        forks,
        generation,
        runtime,
    });
    Ok((runtime.handle().clone(), generation))
}

/// The generation of this process's live runtime, if one has been built
/// in this process.
pub fn live_generation() -> Option<u64> {
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    current
        .as_ref()
        .filter(|c| c.forks == crate::fork::generation())
        .map(|c| c.generation)
}

/// Tasks alive on this process's runtime (0 if none was built here).
pub fn alive_tasks() -> usize {
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    current
        .as_ref()
        .filter(|c| c.forks == crate::fork::generation())
        .map_or(0, |c| c.runtime.metrics().num_alive_tasks())
}
