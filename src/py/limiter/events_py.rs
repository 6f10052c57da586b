//! The events of a limiter as Python values, for the delivery thread of
//! `rust_py_rate_limit.events`.

use pyo3::prelude::*;

use crate::clock::NANOS_PER_SEC;
use crate::events::Events;

/// `(event_type, key, at_us, retry_after, refusals_before, detail)`.
pub(super) type EventTuple = (&'static str, Option<String>, u64, f64, u64, Option<String>);

/// Takes the queued events (the queue's lock is held without the GIL).
pub(super) fn drain(py: Python<'_>, events: &Events) -> Vec<EventTuple> {
    let drained = py.detach(|| events.drain());
    drained
        .into_iter()
        .map(|e| {
            (
                e.kind.name(),
                e.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                e.at_us,
                e.retry_after as f64 / NANOS_PER_SEC as f64,
                e.refusals_before,
                e.detail,
            )
        })
        .collect()
}
