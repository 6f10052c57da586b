//! A circuit breaker: after a few consecutive failures it opens, and while
//! open every operation is answered from the failure policy at once, without
//! touching the network. A background probe closes it when Redis answers.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;

/// How often an open breaker's probe tries the server.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Operations go to Redis.
    Closed,
    /// Operations are answered by the policy; a probe is running.
    Open,
}

impl BreakerState {
    /// The state's name, as `stats()` reports it.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;

/// Shared breaker state (cheap to clone into the probe task).
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    inner: Arc<(AtomicU32, AtomicU8)>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an operation may go to the server.
    pub fn permits(&self) -> bool {
        self.inner.1.load(Ordering::Acquire) == CLOSED
    }

    /// Records a success.
    pub fn success(&self) {
        self.inner.0.store(0, Ordering::Release);
    }

    /// Records a failure; returns true when this one opened the breaker.
    pub fn failure(&self) -> bool {
        let failures = self.inner.0.fetch_add(1, Ordering::AcqRel) + 1;
        failures >= FAILURES_TO_OPEN
            && self
                .inner
                .1
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Closes the breaker (the probe saw the server answer).
    pub fn close(&self) {
        self.inner.0.store(0, Ordering::Release);
        self.inner.1.store(CLOSED, Ordering::Release);
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        if self.permits() {
            BreakerState::Closed
        } else {
            BreakerState::Open
        }
    }
}
