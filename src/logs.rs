//! Opt-in forwarding of the Rust side's `tracing` events to Python.
//!
//! Events are formatted into a small bounded queue by whatever thread emits
//! them (usually the janitor, which never holds the GIL). A Python thread
//! drains the queue and hands the records to `logging`. So Python is only
//! ever called from a Python thread that holds no Rust lock, and the queue's
//! lock is only taken inside the fork gate, never across a fork.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
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
        QUEUE
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
