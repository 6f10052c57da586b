//! Forwarding of the Rust side's log events to Python.
//!
//! Two routes, one rule: events are formatted into a small bounded queue by
//! whatever thread emits them (a janitor or a Tokio thread, which never hold
//! the GIL), and a Python thread later hands them to `logging`. So Python is
//! only ever called from a Python thread that holds no Rust lock, and a
//! queue's lock is only taken inside the fork gate, never across a fork.
//!
//! - `tracing` events (janitor sweeps and the like) are opt-in: `install`
//!   starts collecting them and a pump thread drains them.
//! - Notices (a storage outage and its end) are always collected, with no
//!   subscriber and no thread: whichever Python thread next returns from a
//!   storage call delivers them (`take_notices`), so nobody misses an outage
//!   for want of `enable_logging()`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::fork;

/// Records kept at most; older ones are dropped (and counted) when full.
const CAPACITY: usize = 1024;

/// One formatted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `tracing` level as a Python `logging` level number.
    pub level: u8,
    /// The module that emitted it, e.g. `rust_py_rate_limit::janitor`.
    pub target: String,
    /// The message followed by its fields, `key=value`.
    pub message: String,
}

struct Queue {
    records: Mutex<VecDeque<Record>>,
    max_level: Level,
    dropped: AtomicU64,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

/// Starts collecting events at `max_level` and above. The first call
/// installs the process-wide subscriber; later calls change nothing and
/// return false.
pub fn install(max_level: Level) -> bool {
    let mut installed = false;
    QUEUE.get_or_init(|| {
        installed = true;
        Queue {
            records: Mutex::new(VecDeque::new()),
            max_level,
            dropped: AtomicU64::new(0),
        }
    });
    if installed && tracing::subscriber::set_global_default(Forward).is_err() {
        return false;
    }
    installed
}

/// Takes every queued record, and how many were dropped since the last call.
pub fn drain() -> (Vec<Record>, u64) {
    let Some(queue) = QUEUE.get() else {
        return (Vec::new(), 0);
    };
    let _pass = fork::enter();
    let records = {
        let mut q = queue.records.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    };
    (records, queue.dropped.swap(0, Ordering::Relaxed))
}

/// Notices kept at most; more are dropped (and counted) until delivered.
const NOTICE_CAPACITY: usize = 64;

/// The `tracing` target notices are also emitted under (for Rust
/// subscribers); the Python forwarder skips it, as notices reach Python on
/// their own route.
pub const NOTICE_TARGET: &str = "rust_py_rate_limit::notice";

static NOTICES: Mutex<VecDeque<Record>> = Mutex::new(VecDeque::new());
static NOTICES_PENDING: AtomicBool = AtomicBool::new(false);
static NOTICES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Queues a WARNING for Python's `logging` (logger `rust_py_rate_limit`,
/// with `rust_target` set to `target`), delivered whether or not logging
/// was enabled. For events an operator must never miss.
pub fn warn_notice(target: &'static str, message: String) {
    tracing::warn!(target: NOTICE_TARGET, origin = target, "{message}");
    let record = Record {
        level: python_level(&Level::WARN),
        target: target.to_owned(),
        message,
    };
    {
        let _pass = fork::enter();
        let mut q = NOTICES.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() < NOTICE_CAPACITY {
            q.push_back(record);
        } else {
            NOTICES_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    NOTICES_PENDING.store(true, Ordering::Release);
}

/// Whether notices wait for delivery: one atomic load, for hot paths.
#[inline]
pub fn notices_pending() -> bool {
    NOTICES_PENDING.load(Ordering::Acquire)
}

/// Takes every queued notice, and how many were dropped since the last call.
pub fn take_notices() -> (Vec<Record>, u64) {
    if !NOTICES_PENDING.swap(false, Ordering::AcqRel) {
        return (Vec::new(), 0);
    }
    let _pass = fork::enter();
    let records = {
        let mut q = NOTICES.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    };
    (records, NOTICES_DROPPED.swap(0, Ordering::Relaxed))
}

fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

struct Forward;

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Notices reach Python on their own route (`take_notices`).
        metadata.target() != NOTICE_TARGET
            && QUEUE
                .get()
                .is_some_and(|q| *metadata.level() <= q.max_level)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(queue) = QUEUE.get() else {
            return;
        };
        let mut message = Message::default();
        event.record(&mut message);
        let record = Record {
            level: python_level(event.metadata().level()),
            target: event.metadata().target().to_owned(),
            message: message.0.trim_start().to_owned(),
        };
        let _pass = fork::enter();
        let mut q = queue.records.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= CAPACITY {
            q.pop_front();
            queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(record);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_queue_without_a_subscriber_and_are_taken_once() {
        // No `install`: notices are collected anyway.
        let _ = take_notices();
        assert!(!notices_pending());
        warn_notice("rust_py_rate_limit::store::redis", "outage".to_owned());
        assert!(notices_pending());
        let (records, dropped) = take_notices();
        assert_eq!(dropped, 0);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].level, 30);
        assert_eq!(records[0].target, "rust_py_rate_limit::store::redis");
        assert_eq!(records[0].message, "outage");
        assert!(!notices_pending());
        assert_eq!(take_notices().0.len(), 0);
        for i in 0..NOTICE_CAPACITY + 5 {
            warn_notice("t", format!("n{i}"));
        }
        let (records, dropped) = take_notices();
        assert_eq!((records.len(), dropped), (NOTICE_CAPACITY, 5));
    }
}
