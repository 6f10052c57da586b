//! What a store counts about its decisions, and how long its round trips
//! take: relaxed atomics only, so a decision pays an add and no lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::algorithm::Decision;

/// The decisions a store took, each counted once by its result. Every
/// counter only grows, so any sum of them read at any time does too.
#[derive(Debug, Default)]
pub struct Tally {
    /// Shadow mode: a refusal is admitted instead, and counted as such.
    shadow: AtomicBool,
    allowed: AtomicU64,
    /// Refused by the limit.
    limit_refused: AtomicU64,
    /// Refused because the key is banned (or this refusal began a ban).
    ban_refused: AtomicU64,
    /// Refusals shadow mode admitted.
    shadowed: AtomicU64,
    /// Admissions with at least 80% of the limit spent (within `allowed`):
    /// Envoy's `NEAR_LIMIT_RATIO`.
    near_limit: AtomicU64,
}

/// A copy of a [`Tally`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TallySnapshot {
    pub allowed: u64,
    /// Every refusal the store made: `limit_refused + ban_refused + shadowed`.
    pub blocked: u64,
    pub limit_refused: u64,
    pub ban_refused: u64,
    pub shadowed: u64,
    pub near_limit: u64,
}

impl Tally {
    /// Counts refusals as shadow mode's from now on (set once, when the
    /// limiter is built).
    pub fn set_shadow(&self, on: bool) {
        self.shadow.store(on, Relaxed);
    }

    /// Counts one decision; `banned` says whether a ban refused it.
    #[inline]
    pub fn count(&self, decision: &Decision, banned: bool) {
        if decision.allowed {
            self.admitted(decision);
        } else {
            self.refused(banned);
        }
    }

    /// Counts an admission, near the limit when at most a fifth is left.
    #[inline]
    pub fn admitted(&self, decision: &Decision) {
        self.allowed.fetch_add(1, Relaxed);
        if decision.remaining.saturating_mul(5) <= decision.limit {
            self.near_limit.fetch_add(1, Relaxed);
        }
    }

    /// Counts a refusal (by a ban, when `banned`).
    #[inline]
    pub fn refused(&self, banned: bool) {
        let counter = if self.shadow.load(Relaxed) {
            &self.shadowed
        } else if banned {
            &self.ban_refused
        } else {
            &self.limit_refused
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> TallySnapshot {
        let (limit_refused, ban_refused, shadowed) = (
            self.limit_refused.load(Relaxed),
            self.ban_refused.load(Relaxed),
            self.shadowed.load(Relaxed),
        );
        TallySnapshot {
            allowed: self.allowed.load(Relaxed),
            blocked: limit_refused + ban_refused + shadowed,
            limit_refused,
            ban_refused,
            shadowed,
            near_limit: self.near_limit.load(Relaxed),
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds (a last bucket,
/// unbounded, follows): from 100 µs, a loopback round trip, to 1 s.
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A histogram of durations with the fixed buckets of
/// [`LATENCY_BOUNDS_US`], recorded without a lock.
#[derive(Debug, Default)]
pub struct Latency {
    counts: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
}

/// A copy of a [`Latency`]: per-bucket counts (not cumulative, the last one
/// for durations above every bound) and the sum.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    pub counts: Vec<u64>,
    pub sum_ns: u64,
}

impl LatencySnapshot {
    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Latency {
    pub fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros();
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| u128::from(bound) < us);
        self.counts[bucket].fetch_add(1, Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum_ns: self.sum_ns.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(allowed: bool, limit: u64, remaining: u64) -> Decision {
        Decision {
            allowed,
            limit,
            remaining,
            reset_after: 0,
            retry_after: 0,
        }
    }

    #[test]
    fn near_limit_counts_admissions_with_a_fifth_or_less_left() {
        let tally = Tally::default();
        for remaining in (0..10).rev() {
            tally.count(&decision(true, 10, remaining), false);
        }
        tally.count(&decision(false, 10, 0), false);
        tally.count(&decision(false, 10, 0), true);
        let s = tally.snapshot();
        assert_eq!((s.allowed, s.blocked, s.ban_refused), (10, 2, 1));
        // 80% spent: remaining 2, 1 and 0 of 10.
        assert_eq!(s.near_limit, 3);
    }

    #[test]
    fn latency_buckets_by_upper_bound() {
        let latency = Latency::default();
        for us in [50, 100, 101, 999, 1_000, 2_000_000] {
            latency.record(Duration::from_micros(us));
        }
        let s = latency.snapshot();
        assert_eq!(&s.counts[..4], &[2, 1, 0, 2]);
        assert_eq!(s.counts[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(s.count(), 6);
        assert_eq!(s.sum_ns, (50 + 100 + 101 + 999 + 1_000 + 2_000_000) * 1_000);
    }
}
