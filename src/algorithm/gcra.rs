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
//!
//! Times reported (`reset_after`, `retry_after`) are at most the time a
//! full bucket takes to refill, `burst * window / limit`. Construction
//! refuses a burst for which that exceeds [`Gcra::MAX_REFILL`] (the longest
//! window), so every reported time is exact in `u64` nanoseconds (and in
//! microseconds below 2^53).

use super::{Algorithm, Decision};
use crate::clock::{Nanos, NANOS_PER_SEC};
use crate::error::{Error, Result};
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
    /// The longest time a full bucket may take to refill, in nanoseconds:
    /// the longest window a quota accepts.
    pub const MAX_REFILL: Nanos = Quota::MAX_WINDOW_SECONDS * NANOS_PER_SEC;

    /// The largest burst accepted with `quota`: at most
    /// [`Quota::MAX_LIMIT`], and refilled within [`Gcra::MAX_REFILL`].
    pub fn max_burst(quota: &Quota) -> u64 {
        let refillable =
            u128::from(quota.limit()) * u128::from(Self::MAX_REFILL) / u128::from(quota.window());
        refillable.min(u128::from(Quota::MAX_LIMIT)) as u64
    }

    /// Checks that `burst` is one the arithmetic holds exactly with
    /// `quota`; the error names `burst` and quotes the bound.
    pub fn check_burst(quota: &Quota, burst: u64) -> Result<()> {
        let max = Self::max_burst(quota);
        if burst == 0 || burst > max {
            let why = if max < Quota::MAX_LIMIT {
                format!(
                    " with {} per {}s (a full bucket must refill within {} seconds)",
                    quota.limit(),
                    quota.window().div_ceil(NANOS_PER_SEC),
                    Quota::MAX_WINDOW_SECONDS
                )
            } else {
                String::new()
            };
            return Err(Error::invalid(
                "burst",
                format!("must be between 1 and {max}{why}, got {burst}"),
            ));
        }
        Ok(())
    }

    /// GCRA over `quota`, admitting bursts of up to `burst` units.
    pub fn new(quota: Quota, burst: u64) -> Result<Self> {
        Self::check_burst(&quota, burst)?;
        Ok(Self {
            quota,
            burst,
            name: "gcra",
        })
    }

    /// A token bucket of capacity `burst`, refilled at `quota`'s rate.
    pub fn token_bucket(quota: Quota, burst: u64) -> Result<Self> {
        Ok(Self {
            name: "token_bucket",
            ..Self::new(quota, burst)?
        })
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
        Gcra::new(Quota::per_seconds(limit, window_secs).unwrap(), burst).unwrap()
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
        let alg = Gcra::new(q, Quota::MAX_LIMIT).unwrap();
        let mut s = alg.fresh(MAX_TIME);
        assert!(alg.acquire(&mut s, MAX_TIME, Quota::MAX_LIMIT).allowed);
        let d = alg.acquire(&mut s, MAX_TIME, 1);
        assert!(!d.allowed);
        assert!(d.retry_after > 0);
    }

    /// The reports: a burst whose refill time exceeds 2^64 ns reported its
    /// times modulo 2^64 (a refusal could say retry_after=0). Such a burst
    /// is now refused at construction, naming `burst`.
    #[test]
    fn a_burst_whose_times_do_not_fit_is_refused() {
        for (limit, window, burst) in [(10, 1, 1_000_000_000_000), (1, 1, 4_394_217_352_542_426)] {
            let q = Quota::per_seconds(limit, window).unwrap();
            match Gcra::new(q, burst) {
                Err(Error::InvalidArgument { name, reason }) => {
                    assert_eq!(name, "burst");
                    assert!(
                        reason.contains(&Gcra::max_burst(&q).to_string()),
                        "{reason}"
                    );
                }
                other => panic!("expected an error naming burst, got {other:?}"),
            }
            assert!(Gcra::token_bucket(q, burst).is_err());
        }
        // 10/s: a full bucket of 10^10 refills in 10^9 s, the longest window.
        let q = Quota::per_seconds(10, 1).unwrap();
        assert_eq!(Gcra::max_burst(&q), 10_000_000_000);
        assert!(Gcra::new(q, 0).is_err());
    }

    /// At the largest accepted burst, a refused hit reports its true,
    /// positive wait, and is admitted exactly then.
    #[test]
    fn the_largest_burst_reports_true_times() {
        for (limit, window) in [(10, 1), (1, 1), (3, 7), (Quota::MAX_LIMIT, 1)] {
            let q = Quota::per_seconds(limit, window).unwrap();
            let burst = Gcra::max_burst(&q);
            let alg = Gcra::new(q, burst).unwrap();
            let mut s = alg.fresh(0);
            assert!(alg.acquire(&mut s, 0, burst).allowed);
            let d = alg.acquire(&mut s, 0, burst);
            assert!(!d.allowed);
            // Spent burst units refill in burst * window / limit.
            let refill = (u128::from(burst) * u128::from(q.window())).div_ceil(u128::from(limit));
            assert_eq!(u128::from(d.reset_after), refill);
            assert_eq!(d.retry_after, d.reset_after);
            assert!(d.retry_after > 0 && d.retry_after <= Gcra::MAX_REFILL);
            assert!(!alg.decide(&s, d.retry_after - 1, burst).allowed);
            assert!(alg.decide(&s, d.retry_after, burst).allowed);
        }
    }
}
