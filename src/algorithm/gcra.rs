//! GCRA (generic cell rate algorithm), which is also the exact token bucket.
//!
//! A key's whole state is one number, its theoretical arrival time (TAT):
//! the instant at which its bucket would be full again. Each unit pushes the
//! TAT forward by the emission interval `T = window / limit`; a hit is
//! admitted if, after it, the TAT is at most `burst * T` ahead of now.
//!
//! Seen as a token bucket: capacity `burst`, refilled continuously at
//! `limit / window` tokens per unit of time, with `tokens = burst -
//! (TAT - now) / T`. The two names decide identically; they are offered
//! under both because users look for both.
//!
//! `T` is rarely a whole number of nanoseconds, so all arithmetic is on time
//! scaled by `limit`: with `now_l = now * limit`, one unit costs exactly
//! `window` and the tolerance is exactly `burst * window`. Everything fits
//! in `u128` (`2^62 * 2^53` plus `2^53 * 2^60`).

use super::{Algorithm, Decision};
use crate::clock::Nanos;
use crate::rate::Quota;

/// GCRA / token bucket over a quota and a burst.
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    quota: Quota,
    burst: u64,
    name: &'static str,
}

/// A key's theoretical arrival time, scaled by the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraState {
    tat: u128,
}

impl Gcra {
    /// GCRA over `quota`, admitting bursts of up to `burst` units.
    pub fn new(quota: Quota, burst: u64) -> Self {
        Self {
            quota,
            burst,
            name: "gcra",
        }
    }

    /// A token bucket of capacity `burst`, refilled at `quota`'s rate.
    pub fn token_bucket(quota: Quota, burst: u64) -> Self {
        Self {
            quota,
            burst,
            name: "token_bucket",
        }
    }

    #[inline]
    fn scaled(&self, now: Nanos) -> u128 {
        u128::from(now) * u128::from(self.quota.limit())
    }

    #[inline]
    fn unit(&self) -> u128 {
        u128::from(self.quota.window())
    }

    /// Scaled time to nanoseconds, rounded up.
    #[inline]
    fn nanos_from_scaled(&self, scaled: u128) -> Nanos {
        scaled.div_ceil(u128::from(self.quota.limit())) as Nanos
    }

    /// Whole units spendable now, given the TAT (at least `now_l`).
    #[inline]
    fn tokens(&self, tat: u128, now_l: u128) -> u64 {
        let tolerance = u128::from(self.burst) * self.unit();
        (tolerance.saturating_sub(tat - now_l) / self.unit()) as u64
    }
}

impl Algorithm for Gcra {
    type State = GcraState;

    fn name(&self) -> &'static str {
        self.name
    }

    fn limit(&self) -> u64 {
        self.quota.limit()
    }

    fn window(&self) -> Nanos {
        self.quota.window()
    }

    fn capacity(&self) -> u64 {
        self.burst
    }

    fn fresh(&self, now: Nanos) -> GcraState {
        GcraState {
            tat: self.scaled(now),
        }
    }

    #[inline]
    fn decide(&self, s: &GcraState, now: Nanos, cost: u64) -> Decision {
        let now_l = self.scaled(now);
        let tat = s.tat.max(now_l);
        let new_tat = tat + u128::from(cost) * self.unit();
        let tolerance = u128::from(self.burst) * self.unit();
        let limit = self.quota.limit();
        if new_tat - now_l <= tolerance {
            return Decision {
                allowed: true,
                limit,
                remaining: self.tokens(new_tat, now_l),
                reset_after: self.nanos_from_scaled(new_tat - now_l),
                retry_after: 0,
            };
        }
        // Admitted once now_l >= tat + cost*T - burst*T; that is positive
        // here, and the first whole nanosecond at or after it is exact.
        let admit_l = new_tat - tolerance;
        Decision {
            allowed: false,
            limit,
            remaining: self.tokens(tat, now_l),
            reset_after: self.nanos_from_scaled(tat - now_l),
            retry_after: self.nanos_from_scaled(admit_l) - now,
        }
    }

    #[inline]
    fn apply(&self, s: &mut GcraState, now: Nanos, cost: u64) {
        s.tat = s.tat.max(self.scaled(now)) + u128::from(cost) * self.unit();
    }

    fn peek(&self, s: &GcraState, now: Nanos) -> Decision {
        let now_l = self.scaled(now);
        let tat = s.tat.max(now_l);
        let one = self.decide(s, now, 1);
        Decision {
            remaining: self.tokens(tat, now_l),
            reset_after: self.nanos_from_scaled(tat - now_l),
            ..one
        }
    }

    fn is_expired(&self, s: &GcraState, now: Nanos) -> bool {
        s.tat <= self.scaled(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{MAX_TIME, NANOS_PER_SEC as S};

    fn gcra(limit: u64, window_secs: u64, burst: u64) -> Gcra {
        Gcra::new(Quota::per_seconds(limit, window_secs).unwrap(), burst)
    }

    #[test]
    fn burst_then_steady_rate() {
        // 3 per 3s (one every second), burst 3.
        let alg = gcra(3, 3, 3);
        let mut s = alg.fresh(0);
        let got: Vec<u64> = (0..3)
            .map(|_| alg.acquire(&mut s, 0, 1).remaining)
            .collect();
        assert_eq!(got, [2, 1, 0]);
        let d = alg.acquire(&mut s, 0, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, S);
        assert_eq!(d.reset_after, 3 * S);
        assert!(!alg.decide(&s, S - 1, 1).allowed);
        assert!(alg.acquire(&mut s, S, 1).allowed);
    }

    #[test]
    fn fractional_emission_interval_is_exact() {
        // 3 per 1s: T = 333,333,333.33 ns.
        let alg = gcra(3, 1, 1);
        let mut s = alg.fresh(0);
        assert!(alg.acquire(&mut s, 0, 1).allowed);
        let d = alg.decide(&s, 0, 1);
        assert_eq!(d.retry_after, 333_333_334);
        assert!(!alg.decide(&s, 333_333_333, 1).allowed);
        assert!(alg.decide(&s, 333_333_334, 1).allowed);
    }

    #[test]
    fn cost_needs_that_many_tokens() {
        let alg = gcra(10, 10, 5);
        let mut s = alg.fresh(0);
        alg.acquire(&mut s, 0, 4);
        let d = alg.decide(&s, 0, 3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.retry_after, 2 * S);
        assert!(alg.decide(&s, 2 * S, 3).allowed);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let q = Quota::per_seconds(Quota::MAX_LIMIT, Quota::MAX_WINDOW_SECONDS).unwrap();
        let alg = Gcra::new(q, Quota::MAX_LIMIT);
        let mut s = alg.fresh(MAX_TIME);
        assert!(alg.acquire(&mut s, MAX_TIME, Quota::MAX_LIMIT).allowed);
        let d = alg.acquire(&mut s, MAX_TIME, 1);
        assert!(!d.allowed);
        assert!(d.retry_after > 0);
    }
}
