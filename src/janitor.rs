//! The background janitor: a Tokio task that sweeps a limiter's expired keys
//! every `interval`, in short chunks, never holding the GIL and never
//! running Python.
//!
//! It holds only a weak reference to the store, so a limiter that is
//! dropped ends its janitor at the next tick. Every live janitor is in a
//! registry so that a forked child can start its own copy (the parent's
//! task does not exist in the child).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::limiter::Limiter;
use crate::runtime;
use crate::store::postgres::PgStore;
use crate::store::{SweepCursor, SWEEP_CHUNK};

/// What a janitor sweeps.
#[derive(Clone)]
pub enum Target {
    /// A memory store, in short chunks under its shard locks.
    Memory(Weak<dyn Limiter>),
    /// A PostgreSQL store's expired rows, in small batches.
    Postgres(Weak<PgStore>),
}

/// The state a janitor's task and its owner share.
struct Shared {
    store: Target,
    interval: Duration,
    stopped: AtomicBool,
    /// The running task, with the generation of the runtime it runs on.
    task: Mutex<Option<(u64, AbortHandle)>>,
}

/// Live janitors. Only touched with the GIL held (start, stop, after fork),
/// so its lock is never held across a fork; entries are weak.
static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// A running janitor; stops it when dropped.
pub struct Janitor {
    shared: Arc<Shared>,
}

impl Janitor {
    /// Starts sweeping `store` every `interval` on the process's runtime.
    pub fn start(store: Target, interval: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            store,
            interval,
            stopped: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        spawn(&shared)?;
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry.retain(|w| w.strong_count() > 0);
        registry.push(Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    /// The sweep interval.
    pub fn interval(&self) -> Duration {
        self.shared.interval
    }

    /// Whether its task is running in this process.
    pub fn is_running(&self) -> bool {
        let task = self.shared.task.lock().unwrap_or_else(|e| e.into_inner());
        !self.shared.stopped.load(Ordering::Acquire)
            && task.as_ref().is_some_and(|(generation, handle)| {
                Some(*generation) == runtime::live_generation() && !handle.is_finished()
            })
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        let mut task = self.shared.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((generation, handle)) = task.take() {
            if Some(generation) == runtime::live_generation() {
                handle.abort();
            } else {
                // A task of a runtime inherited across fork: never touch it.
                std::mem::forget(handle);
            }
        }
    }
}

fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let (handle, generation) = runtime::handle()?;
    let task = handle.spawn(run(Arc::downgrade(shared), shared.interval));
    let mut slot = shared.task.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((old_generation, old)) = slot.replace((generation, task.abort_handle())) {
        if old_generation != generation {
            std::mem::forget(old);
        }
    }
    Ok(())
}

/// In a forked child: starts a fresh task for every janitor that was
/// running in the parent.
pub fn restart_after_fork() {
    let live: Vec<Arc<Shared>> = {
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry.retain(|w| w.strong_count() > 0);
        registry.iter().filter_map(Weak::upgrade).collect()
    };
    for shared in live {
        if !shared.stopped.load(Ordering::Acquire) {
            if let Err(err) = spawn(&shared) {
                tracing::warn!(%err, "could not restart a janitor after fork");
            }
        }
    }
}

async fn run(shared: Weak<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(target) = shared
            .upgrade()
            .filter(|s| !s.stopped.load(Ordering::Acquire))
            .map(|s| s.store.clone())
        else {
            return;
        };
        let store = match target {
            Target::Memory(store) => store.upgrade(),
            Target::Postgres(store) => {
                let Some(store) = store.upgrade() else {
                    return;
                };
                // Errors are the store's to count and log; the next tick
                // tries again.
                let _ = store.sweep_recorded().await;
                continue;
            }
        };
        let Some(store) = store else {
            return;
        };
        let mut cursor = SweepCursor::default();
        let mut removed = 0;
        loop {
            let step = store.sweep_chunk(&mut cursor, SWEEP_CHUNK);
            removed += step.removed;
            if step.done {
                break;
            }
            // Let other tasks run, and a thread waiting for the shard lock
            // take it, between chunks.
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
        store.record_sweep(removed);
        tracing::debug!(removed, "janitor sweep");
    }
}
