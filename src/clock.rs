//! Time sources. Only this file reads the system clock.
//!
//! Time is a [`Nanos`] count from an arbitrary, process-wide origin. Every
//! limiter works on differences, so the origin never matters; what matters is
//! that the clock never goes backwards and a wall-clock jump cannot open or
//! close a window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Integer nanoseconds since a clock's origin.
pub type Nanos = u64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The latest time any clock reports: 2^62 ns, about 146 years. Keeping
/// time this far below `u64::MAX` means `now + window` can never overflow.
pub const MAX_TIME: Nanos = 1 << 62;

/// A source of monotonic time.
pub trait Clock: Send + Sync {
    /// The current time. Never smaller than a value returned before.
    fn now(&self) -> Nanos;
}

/// The system's monotonic clock (`std::time::Instant`), measured from a
/// process-wide origin fixed on first use.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Nanos {
        // MAX_TIME is 146 years of process uptime.
        (origin().elapsed().as_nanos() as Nanos).min(MAX_TIME)
    }
}

/// A clock that moves only when told to: for tests, simulations and users'
/// own tests (freezegun cannot move a Rust clock). Starts at 0.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` nanoseconds, stopping at
    /// [`MAX_TIME`]. Returns the new reading.
    pub fn advance(&self, by: Nanos) -> Nanos {
        let step = |t: Nanos| t.saturating_add(by).min(MAX_TIME);
        // fetch_update never fails with a closure that always returns Some.
        let previous = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(step(t)))
            .unwrap_or_else(|t| t);
        step(previous)
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Nanos {
        self.now.load(Ordering::Acquire)
    }
}

/// The clock a limiter holds: the system clock, or a shared manual clock.
///
/// An enum rather than `Arc<dyn Clock>` so the hot path reads the monotonic
/// clock without an indirect call.
#[derive(Debug, Clone, Default)]
pub enum AnyClock {
    /// The system's monotonic clock.
    #[default]
    Monotonic,
    /// A manual clock, possibly shared by several limiters.
    Manual(Arc<ManualClock>),
}

impl Clock for AnyClock {
    #[inline]
    fn now(&self) -> Nanos {
        match self {
            AnyClock::Monotonic => MonotonicClock.now(),
            AnyClock::Manual(clock) => clock.now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_starts_at_zero_and_advances() {
        let clock = ManualClock::new();
        assert_eq!(clock.now(), 0);
        clock.advance(5);
        clock.advance(7);
        assert_eq!(clock.now(), 12);
        assert_eq!(clock.advance(u64::MAX), MAX_TIME);
        assert_eq!(clock.now(), MAX_TIME);
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let mut last = MonotonicClock.now();
        for _ in 0..1000 {
            let now = MonotonicClock.now();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn shared_manual_clock_is_seen_by_every_holder() {
        let manual = Arc::new(ManualClock::new());
        let a = AnyClock::Manual(manual.clone());
        let b = AnyClock::Manual(manual.clone());
        manual.advance(NANOS_PER_SEC);
        assert_eq!(a.now(), NANOS_PER_SEC);
        assert_eq!(b.now(), NANOS_PER_SEC);
    }
}
