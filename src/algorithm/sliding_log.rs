//! Sliding log: an exact moving window. Every admitted hit is logged with its
//! time and cost, and a hit is admitted only if the hits logged in the last
//! `window` (those less than `window` old) plus it fit in the limit. So no
//! interval of length `window` ever holds more than `limit` units.
//!
//! Memory per key is bounded by the limit: each entry holds at least one
//! unit, and hits at the same instant share an entry.

use std::collections::VecDeque;

use super::{Algorithm, Decision};
use crate::clock::Nanos;
use crate::rate::Quota;

/// The sliding log algorithm.
#[derive(Debug, Clone, Copy)]
pub struct SlidingLog {
    quota: Quota,
}

/// A key's log: admitted hits, oldest first, and the sum of their costs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlidingLogState {
    entries: VecDeque<(Nanos, u64)>,
    total: u64,
}

impl SlidingLogState {
    /// Entries held (hits at distinct times, expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl SlidingLog {
    /// A sliding log over `quota`.
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }

    #[inline]
    fn is_live(&self, at: Nanos, now: Nanos) -> bool {
        now.saturating_sub(at) < self.quota.window()
    }

    /// Units still inside the window at `now`, and the index of the oldest
    /// live entry.
    #[inline]
    fn live(&self, s: &SlidingLogState, now: Nanos) -> (u64, usize) {
        let mut total = s.total;
        let mut first = 0;
        for &(at, cost) in &s.entries {
            if self.is_live(at, now) {
                break;
            }
            total -= cost;
            first += 1;
        }
        (total, first)
    }

    /// When the newest live entry leaves the window (all spent units return).
    fn reset_after(&self, s: &SlidingLogState, first: usize, now: Nanos) -> Nanos {
        match s.entries.back() {
            Some(&(at, _)) if s.entries.len() > first => {
                (at + self.quota.window()).saturating_sub(now)
            }
            _ => 0,
        }
    }
}

impl Algorithm for SlidingLog {
    type State = SlidingLogState;

    fn name(&self) -> &'static str {
        "sliding_log"
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

    fn fresh(&self, _now: Nanos) -> SlidingLogState {
        SlidingLogState::default()
    }

    fn decide(&self, s: &SlidingLogState, now: Nanos, cost: u64) -> Decision {
        let limit = self.quota.limit();
        let (live, first) = self.live(s, now);
        let remaining = limit - live;
        if cost <= remaining {
            return Decision {
                allowed: true,
                limit,
                remaining: remaining - cost,
                reset_after: self.quota.window(),
                retry_after: 0,
            };
        }
        // Wait for the oldest live entries to leave until `cost` fits.
        let mut need = cost - remaining;
        let mut retry_after = 0;
        for &(at, spent) in s.entries.iter().skip(first) {
            retry_after = (at + self.quota.window()).saturating_sub(now);
            if spent >= need {
                break;
            }
            need -= spent;
        }
        Decision {
            allowed: false,
            limit,
            remaining,
            reset_after: self.reset_after(s, first, now),
            retry_after,
        }
    }

    fn prune(&self, s: &mut SlidingLogState, now: Nanos) {
        while let Some(&(at, spent)) = s.entries.front() {
            if self.is_live(at, now) {
                break;
            }
            s.entries.pop_front();
            s.total -= spent;
        }
    }

    fn apply(&self, s: &mut SlidingLogState, now: Nanos, cost: u64) {
        self.prune(s, now);
        match s.entries.back_mut() {
            // The clock may be read a hair earlier by a racing thread; keep
            // the log ordered by folding such a hit into the newest entry.
            Some((at, spent)) if *at >= now => *spent += cost,
            _ => s.entries.push_back((now, cost)),
        }
        s.total += cost;
        // Keep memory proportional to what the log holds after bursts.
        if s.entries.capacity() > 64 && s.entries.len() < s.entries.capacity() / 4 {
            s.entries.shrink_to(s.entries.len() * 2);
        }
    }

    fn peek(&self, s: &SlidingLogState, now: Nanos) -> Decision {
        let (live, first) = self.live(s, now);
        let one = self.decide(s, now, 1);
        Decision {
            remaining: self.quota.limit() - live,
            reset_after: self.reset_after(s, first, now),
            ..one
        }
    }

    fn is_expired(&self, s: &SlidingLogState, now: Nanos) -> bool {
        s.entries
            .back()
            .is_none_or(|&(at, _)| !self.is_live(at, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NANOS_PER_SEC as S;

    fn log(limit: u64, window_secs: u64) -> SlidingLog {
        SlidingLog::new(Quota::per_seconds(limit, window_secs).unwrap())
    }

    #[test]
    fn never_more_than_limit_in_any_window() {
        let alg = log(3, 10);
        let mut s = alg.fresh(0);
        for t in [0, 4, 8] {
            assert!(alg.acquire(&mut s, t * S, 1).allowed);
        }
        let d = alg.acquire(&mut s, 9 * S, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, S, "the hit at 0 leaves at 10s");
        assert!(!alg.decide(&s, 10 * S - 1, 1).allowed);
        assert!(alg.acquire(&mut s, 10 * S, 1).allowed);
        assert!(!alg.acquire(&mut s, 13 * S, 1).allowed);
        assert!(alg.acquire(&mut s, 14 * S, 1).allowed);
    }

    #[test]
    fn retry_waits_for_enough_units_to_leave() {
        let alg = log(10, 10);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, 0, 3);
        alg.acquire(&mut s, 2 * S, 3);
        alg.acquire(&mut s, 5 * S, 4);
        let d = alg.decide(&s, 6 * S, 5);
        assert!(!d.allowed);
        // 3 leave at 10s, 3 more at 12s: 6 >= 5.
        assert_eq!(d.retry_after, 6 * S);
        assert_eq!(d.reset_after, 9 * S);
        assert!(alg.decide(&s, 12 * S, 5).allowed);
        assert!(!alg.decide(&s, 12 * S - 1, 5).allowed);
    }

    #[test]
    fn same_instant_hits_share_an_entry() {
        let alg = log(1000, 10);
        let mut s = alg.fresh(0);
        for _ in 0..1000 {
            alg.acquire(&mut s, 5, 1);
        }
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.total, 1000);
    }
}
