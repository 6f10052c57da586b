//! Fixed window: up to `limit` units per window; a key's window opens at its
//! first hit and the count starts over once `window` has elapsed.

use super::{Algorithm, Decision};
use crate::clock::Nanos;
use crate::rate::Quota;

/// The fixed window algorithm.
#[derive(Debug, Clone, Copy)]
pub struct FixedWindow {
    quota: Quota,
}

/// A key's open window: when it started and how much it has spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindowState {
    start: Nanos,
    count: u64,
}

impl FixedWindow {
    /// A fixed window over `quota`.
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }

    /// The window in force at `now`: the stored one, or a new empty one
    /// opening at `now` if the stored one has elapsed.
    #[inline]
    fn current(&self, state: &FixedWindowState, now: Nanos) -> FixedWindowState {
        if now.saturating_sub(state.start) >= self.quota.window() {
            FixedWindowState {
                start: now,
                count: 0,
            }
        } else {
            *state
        }
    }

    #[inline]
    fn reset_after(&self, window: &FixedWindowState, now: Nanos) -> Nanos {
        // The stored start may be a hair after `now` when another thread read
        // the clock later but took the lock first; never report more than
        // one window.
        (window.start.saturating_add(self.quota.window()))
            .saturating_sub(now)
            .min(self.quota.window())
    }
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;

    fn name(&self) -> &'static str {
        "fixed"
    }

    #[inline]
    fn limit(&self) -> u64 {
        self.quota.limit()
    }

    #[inline]
    fn window(&self) -> Nanos {
        self.quota.window()
    }

    #[inline]
    fn capacity(&self) -> u64 {
        self.quota.limit()
    }

    #[inline]
    fn fresh(&self, now: Nanos) -> FixedWindowState {
        FixedWindowState {
            start: now,
            count: 0,
        }
    }

    #[inline]
    fn decide(&self, state: &FixedWindowState, now: Nanos, cost: u64) -> Decision {
        let window = self.current(state, now);
        let limit = self.quota.limit();
        let reset_after = self.reset_after(&window, now);
        // count <= limit and cost <= limit, both below 2^53: no overflow.
        if window.count + cost <= limit {
            Decision {
                allowed: true,
                limit,
                remaining: limit - window.count - cost,
                reset_after,
                retry_after: 0,
            }
        } else {
            // A fresh window admits any cost up to the capacity, so the
            // first admission is when this one ends.
            Decision {
                allowed: false,
                limit,
                remaining: limit - window.count,
                reset_after,
                retry_after: reset_after,
            }
        }
    }

    #[inline]
    fn apply(&self, state: &mut FixedWindowState, now: Nanos, cost: u64) {
        let window = self.current(state, now);
        *state = FixedWindowState {
            start: window.start,
            count: window.count + cost,
        };
    }

    #[inline]
    fn peek(&self, state: &FixedWindowState, now: Nanos) -> Decision {
        let window = self.current(state, now);
        let limit = self.quota.limit();
        let remaining = limit - window.count;
        let reset_after = self.reset_after(&window, now);
        Decision {
            allowed: remaining > 0,
            limit,
            remaining,
            reset_after,
            retry_after: if remaining > 0 { 0 } else { reset_after },
        }
    }

    #[inline]
    fn is_expired(&self, state: &FixedWindowState, now: Nanos) -> bool {
        now.saturating_sub(state.start) >= self.quota.window()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{MAX_TIME, NANOS_PER_SEC as S};

    fn fw(limit: u64, window_secs: u64) -> FixedWindow {
        FixedWindow::new(Quota::per_seconds(limit, window_secs).unwrap())
    }

    #[test]
    fn admits_up_to_the_limit_then_blocks_until_the_window_ends() {
        let alg = fw(3, 60);
        let mut s = alg.fresh(0);
        for expected_remaining in [2, 1, 0] {
            let d = alg.acquire(&mut s, 10 * S, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            assert_eq!(d.reset_after, 50 * S);
            assert_eq!(d.retry_after, 0);
        }
        let d = alg.acquire(&mut s, 18 * S, 1);
        assert!(!d.allowed);
        assert_eq!(
            (d.remaining, d.reset_after, d.retry_after),
            (0, 42 * S, 42 * S)
        );
    }

    #[test]
    fn rolls_over_exactly_at_the_window_length() {
        let alg = fw(1, 60);
        let mut s = alg.fresh(0);
        assert!(alg.acquire(&mut s, 0, 1).allowed);
        assert!(!alg.acquire(&mut s, 60 * S - 1, 1).allowed);
        let d = alg.acquire(&mut s, 60 * S, 1);
        assert!(d.allowed);
        assert_eq!(d.reset_after, 60 * S);
    }

    #[test]
    fn retry_after_is_exact() {
        let alg = fw(2, 10);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, 3, 2);
        let blocked = alg.acquire(&mut s, 5 * S, 1);
        assert!(!blocked.allowed);
        let at = 5 * S + blocked.retry_after;
        let mut early = s;
        assert!(!alg.acquire(&mut early, at - 1, 1).allowed);
        assert!(alg.acquire(&mut s, at, 1).allowed);
    }

    #[test]
    fn a_rejected_hit_changes_nothing() {
        let alg = fw(5, 60);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, S, 4);
        let before = s;
        let d = alg.acquire(&mut s, 2 * S, 2);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(s, before);
    }

    #[test]
    fn cost_spends_that_many_units() {
        let alg = fw(10, 60);
        let mut s = alg.fresh(0);
        assert_eq!(alg.acquire(&mut s, 0, 7).remaining, 3);
        assert_eq!(alg.acquire(&mut s, 0, 3).remaining, 0);
        assert!(!alg.acquire(&mut s, 0, 1).allowed);
    }

    #[test]
    fn peek_spends_nothing() {
        let alg = fw(2, 60);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, 0, 1);
        let before = s;
        let p = alg.peek(&s, 30 * S);
        assert_eq!((p.allowed, p.remaining, p.reset_after), (true, 1, 30 * S));
        assert_eq!(s, before);
        alg.acquire(&mut s, 30 * S, 1);
        let p = alg.peek(&s, 40 * S);
        assert_eq!((p.allowed, p.remaining, p.retry_after), (false, 0, 20 * S));
        let p = alg.peek(&s, 60 * S);
        assert_eq!((p.allowed, p.remaining, p.reset_after), (true, 2, 60 * S));
    }

    #[test]
    fn expiry_matches_rollover() {
        let alg = fw(1, 60);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, 0, 1);
        assert!(!alg.is_expired(&s, 60 * S - 1));
        assert!(alg.is_expired(&s, 60 * S));
    }

    #[test]
    fn extreme_quota_does_not_overflow() {
        let alg = fw(Quota::MAX_LIMIT, Quota::MAX_WINDOW_SECONDS);
        let mut s = alg.fresh(MAX_TIME - 1);
        let d = alg.acquire(&mut s, MAX_TIME - 1, Quota::MAX_LIMIT);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let d = alg.acquire(&mut s, MAX_TIME, Quota::MAX_LIMIT);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, alg.window() - 1);
    }
}
