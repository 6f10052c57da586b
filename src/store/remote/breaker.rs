//! A circuit breaker: after a few consecutive failures it opens, and while
//! open every operation is answered from the failure policy at once, without
//! touching the network. A background probe closes it when the server
//! answers.
//!
//! The breaker also tracks the outage it belongs to, so that an outage is
//! logged once: a server that answers the probe's PING but still fails every
//! operation (a read-only replica, a full server) closes and reopens the
//! breaker every probe interval, and that is still one outage, over when an
//! operation succeeds again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;

/// How often an open breaker's probe tries the server.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Operations go to the server.
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

#[derive(Debug, Default)]
struct Inner {
    /// Consecutive failures.
    failures: AtomicU32,
    /// `CLOSED` or `OPEN`.
    state: AtomicU8,
    /// Whether an outage began (the breaker opened) and no operation has
    /// succeeded since.
    outage: AtomicBool,
}

/// Shared breaker state (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    inner: Arc<Inner>,
}

/// A breaker that does not keep its store alive (for the probe task, which
/// ends when the store is gone).
#[derive(Debug, Clone)]
pub struct WeakBreaker(Weak<Inner>);

impl WeakBreaker {
    /// The breaker, unless every `Breaker` of it was dropped.
    pub fn upgrade(&self) -> Option<Breaker> {
        self.0.upgrade().map(|inner| Breaker { inner })
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle that does not keep the breaker alive.
    pub fn downgrade(&self) -> WeakBreaker {
        WeakBreaker(Arc::downgrade(&self.inner))
    }

    /// Whether an operation may go to the server.
    pub fn permits(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == CLOSED
    }

    /// Records a success; returns true when it ends an outage (the first
    /// success since the breaker opened).
    pub fn success(&self) -> bool {
        // Loads first: the common case writes nothing shared.
        if self.inner.failures.load(Ordering::Relaxed) != 0 {
            self.inner.failures.store(0, Ordering::Release);
        }
        self.inner.outage.load(Ordering::Relaxed) && self.inner.outage.swap(false, Ordering::AcqRel)
    }

    /// Records a failure; returns `(opened, new_outage)`: whether this one
    /// opened the breaker, and whether that began an outage (rather than
    /// reopening it during one).
    pub fn failure(&self) -> (bool, bool) {
        let failures = self.inner.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let opened = failures >= FAILURES_TO_OPEN
            && self
                .inner
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        let new_outage = opened && !self.inner.outage.swap(true, Ordering::AcqRel);
        (opened, new_outage)
    }

    /// Closes the breaker (the probe saw the server answer). The outage is
    /// over only when an operation succeeds.
    pub fn close(&self) {
        self.inner.failures.store(0, Ordering::Release);
        self.inner.state.store(CLOSED, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_begins_once_and_ends_on_a_success() {
        let breaker = Breaker::new();
        assert!(!breaker.success(), "no outage yet");
        assert_eq!(breaker.failure(), (false, false));
        assert_eq!(breaker.failure(), (false, false));
        assert_eq!(breaker.failure(), (true, true));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.failure(), (false, false), "already open");
        // The probe closes it, operations fail again: the same outage.
        breaker.close();
        assert_eq!(breaker.state(), BreakerState::Closed);
        for _ in 1..FAILURES_TO_OPEN {
            assert_eq!(breaker.failure(), (false, false));
        }
        assert_eq!(breaker.failure(), (true, false));
        breaker.close();
        assert!(breaker.success(), "the first success ends the outage");
        assert!(!breaker.success());
        for _ in 1..FAILURES_TO_OPEN {
            breaker.failure();
        }
        assert_eq!(breaker.failure(), (true, true), "a new outage");
    }

    #[test]
    fn the_weak_handle_ends_with_the_breaker() {
        let breaker = Breaker::new();
        let weak = breaker.downgrade();
        assert!(weak.upgrade().is_some());
        drop(breaker);
        assert!(weak.upgrade().is_none());
    }
}
