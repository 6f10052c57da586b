//! Sliding window counter: the previous window's count, weighted by how much
//! of it still overlaps the trailing window, plus the current window's count.
//!
//! Windows are anchored at a key's first hit, like the fixed window. With
//! `e` the time elapsed in the current window and `W` its length, a hit of
//! `cost` is admitted when
//!
//! ```text
//! prev * (W - e) / W + curr + cost <= limit
//! ```
//!
//! evaluated exactly in 128-bit integers (both sides times `W`).

use super::{Algorithm, Decision};
use crate::clock::Nanos;
use crate::rate::Quota;

/// The sliding window counter algorithm.
#[derive(Debug, Clone, Copy)]
pub struct SlidingWindow {
    quota: Quota,
}

/// A key's current window: its start, and the counts of it and the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindowState {
    start: Nanos,
    prev: u64,
    curr: u64,
}

impl SlidingWindow {
    /// A sliding window counter over `quota`.
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }

    /// The state as of `now`: moved forward one window, or, once two have
    /// passed and both counts are empty, re-anchored at `now` exactly as a
    /// fresh state would be (so dropping an expired key changes nothing).
    #[inline]
    fn current(&self, s: &SlidingWindowState, now: Nanos) -> SlidingWindowState {
        let w = self.quota.window();
        let elapsed = now.saturating_sub(s.start);
        match elapsed / w {
            0 => *s,
            1 => SlidingWindowState {
                start: s.start + w,
                prev: s.curr,
                curr: 0,
            },
            _ => self.fresh(now),
        }
    }

    /// Units a hit may spend now: `floor((limit*W - prev*(W-e)) / W) - curr`.
    #[inline]
    fn available(&self, s: &SlidingWindowState, e: Nanos) -> u64 {
        let w = u128::from(self.quota.window());
        let budget = u128::from(self.quota.limit()) * w;
        let weighted = u128::from(s.prev) * (w - u128::from(e));
        // weighted <= limit * W because prev <= limit.
        let free = ((budget - weighted) / w) as u64;
        free.saturating_sub(s.curr)
    }

    /// Time after which `prev`'s weight lets `need` more units in, given
    /// `prev * (W - e') <= need_room * W` must hold: `W - floor(room*W/prev)`.
    #[inline]
    fn admit_at(&self, prev: u64, room: u64) -> Nanos {
        let w = self.quota.window();
        if prev == 0 {
            return 0;
        }
        let fits = (u128::from(room) * u128::from(w) / u128::from(prev)) as u64;
        w.saturating_sub(fits)
    }

    #[inline]
    fn reset_after(&self, s: &SlidingWindowState, e: Nanos) -> Nanos {
        let w = self.quota.window();
        if s.curr > 0 {
            2 * w - e
        } else if s.prev > 0 {
            w - e
        } else {
            0
        }
    }
}

impl Algorithm for SlidingWindow {
    type State = SlidingWindowState;

    fn name(&self) -> &'static str {
        "sliding"
    }

    fn limit(&self) -> u64 {
        self.quota.limit()
    }

    fn window(&self) -> Nanos {
        self.quota.window()
    }

    fn capacity(&self) -> u64 {
        self.quota.limit()
    }

    fn fresh(&self, now: Nanos) -> SlidingWindowState {
        SlidingWindowState {
            start: now,
            prev: 0,
            curr: 0,
        }
    }

    #[inline]
    fn decide(&self, state: &SlidingWindowState, now: Nanos, cost: u64) -> Decision {
        let s = self.current(state, now);
        let e = now.saturating_sub(s.start);
        let limit = self.quota.limit();
        let available = self.available(&s, e);
        if cost <= available {
            let after = SlidingWindowState {
                curr: s.curr + cost,
                ..s
            };
            return Decision {
                allowed: true,
                limit,
                remaining: available - cost,
                reset_after: self.reset_after(&after, e),
                retry_after: 0,
            };
        }
        let w = self.quota.window();
        let retry_after = if s.curr + cost <= limit {
            // Still fits in this window once enough of `prev` has slid out.
            self.admit_at(s.prev, limit - s.curr - cost) - e
        } else {
            // Next window: today's count becomes `prev` there.
            (w - e) + self.admit_at(s.curr, limit - cost)
        };
        Decision {
            allowed: false,
            limit,
            remaining: available,
            reset_after: self.reset_after(&s, e),
            retry_after,
        }
    }

    #[inline]
    fn apply(&self, state: &mut SlidingWindowState, now: Nanos, cost: u64) {
        let s = self.current(state, now);
        *state = SlidingWindowState {
            curr: s.curr + cost,
            ..s
        };
    }

    fn peek(&self, state: &SlidingWindowState, now: Nanos) -> Decision {
        let s = self.current(state, now);
        let e = now.saturating_sub(s.start);
        let one = self.decide(&s, now, 1);
        Decision {
            remaining: self.available(&s, e),
            reset_after: self.reset_after(&s, e),
            ..one
        }
    }

    fn is_expired(&self, state: &SlidingWindowState, now: Nanos) -> bool {
        let s = self.current(state, now);
        s.prev == 0 && s.curr == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NANOS_PER_SEC as S;

    fn sw(limit: u64, window_secs: u64) -> SlidingWindow {
        SlidingWindow::new(Quota::per_seconds(limit, window_secs).unwrap())
    }

    #[test]
    fn previous_window_weighs_by_its_overlap() {
        let alg = sw(10, 60);
        let mut s = alg.fresh(0);
        assert!(alg.acquire(&mut s, 0, 10).allowed);
        // 15s into the next window, 3/4 of the previous 10 still count: 7.5.
        let d = alg.decide(&s, 75 * S, 3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 2);
        let d = alg.acquire(&mut s, 75 * S, 2);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn retry_after_is_exact_within_the_window() {
        let alg = sw(10, 60);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, 0, 10);
        let at = 75 * S;
        alg.acquire(&mut s, at, 2);
        let d = alg.decide(&s, at, 1);
        assert!(!d.allowed);
        let ok = at + d.retry_after;
        assert!(alg.decide(&s, ok, 1).allowed);
        assert!(!alg.decide(&s, ok - 1, 1).allowed);
    }

    #[test]
    fn retry_after_is_exact_across_windows() {
        let alg = sw(4, 10);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, S, 4);
        let d = alg.decide(&s, 2 * S, 4);
        assert!(!d.allowed);
        // curr=4 becomes prev in [10s, 20s): needs its weight to reach 0.
        assert_eq!(d.retry_after, 18 * S);
        assert!(alg.decide(&s, 20 * S, 4).allowed);
        assert!(!alg.decide(&s, 20 * S - 1, 4).allowed);
    }

    #[test]
    fn expires_after_two_windows() {
        let alg = sw(4, 10);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, 0, 1);
        assert!(!alg.is_expired(&s, 20 * S - 1));
        assert!(alg.is_expired(&s, 20 * S));
    }
}
