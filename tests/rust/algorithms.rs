//! Every algorithm against a deliberately simple reference model, over
//! random sequences of (time step, cost) on a manual clock.

use std::fmt::Debug;

use proptest::prelude::*;
use rust_py_rate_limit::clock::NANOS_PER_SEC as S;
use rust_py_rate_limit::{
    Algorithm, AlgorithmKind, Compound, FixedWindow, Gcra, Quota, SlidingLog, SlidingWindow, Spec,
};

/// A reference model: decides from the full history of admitted hits.
trait Model {
    fn admits(&self, history: &[(u64, u64)], now: u64, cost: u64) -> bool;
}

/// Fixed window: windows open at the first hit after the previous ended.
struct FixedModel {
    limit: u64,
    window: u64,
}

impl Model for FixedModel {
    fn admits(&self, history: &[(u64, u64)], now: u64, cost: u64) -> bool {
        let mut start = None;
        let mut spent = 0;
        for &(t, c) in history {
            if start.is_none_or(|s| t - s >= self.window) {
                start = Some(t);
                spent = 0;
            }
            spent += c;
        }
        match start {
            Some(s) if now - s < self.window => spent + cost <= self.limit,
            _ => cost <= self.limit,
        }
    }
}

/// Sliding log: the hits less than a window old, plus this one.
struct LogModel {
    limit: u64,
    window: u64,
}

impl Model for LogModel {
    fn admits(&self, history: &[(u64, u64)], now: u64, cost: u64) -> bool {
        let live: u64 = history
            .iter()
            .filter(|(t, _)| now - t < self.window)
            .map(|(_, c)| c)
            .sum();
        live + cost <= self.limit
    }
}

/// Sliding counter: windows of fixed length from the first hit; when two
/// whole windows pass, the next hit starts over as a first hit.
struct SlidingModel {
    limit: u64,
    window: u64,
}

impl Model for SlidingModel {
    fn admits(&self, history: &[(u64, u64)], now: u64, cost: u64) -> bool {
        // (start of the current window, count of it, count of the one before)
        let mut state: Option<(u64, u64, u64)> = None;
        let roll = |state: Option<(u64, u64, u64)>, t: u64| match state {
            Some((start, curr, prev)) => match (t - start) / self.window {
                0 => (start, curr, prev),
                1 => (start + self.window, 0, curr),
                _ => (t, 0, 0),
            },
            None => (t, 0, 0),
        };
        for &(t, c) in history {
            let (start, curr, prev) = roll(state, t);
            state = Some((start, curr + c, prev));
        }
        let (start, curr, prev) = roll(state, now);
        let w = u128::from(self.window);
        let e = u128::from(now - start);
        u128::from(prev) * (w - e) + u128::from(curr + cost) * w <= u128::from(self.limit) * w
    }
}

/// Token bucket with tokens as exact rationals (scaled by `window`).
struct BucketModel {
    limit: u64,
    window: u64,
    burst: u64,
}

impl Model for BucketModel {
    fn admits(&self, history: &[(u64, u64)], now: u64, cost: u64) -> bool {
        let cap = u128::from(self.burst) * u128::from(self.window);
        let mut tokens = cap;
        let mut at = history.first().map_or(now, |h| h.0);
        let refill = |tokens: u128, from: u64, to: u64| {
            (tokens + u128::from(to - from) * u128::from(self.limit)).min(cap)
        };
        for &(t, c) in history {
            tokens = refill(tokens, at, t) - u128::from(c) * u128::from(self.window);
            at = t;
        }
        refill(tokens, at, now) >= u128::from(cost) * u128::from(self.window)
    }
}

/// Several models, all of which must admit.
struct AllModel(Vec<Box<dyn Model>>);

impl Model for AllModel {
    fn admits(&self, history: &[(u64, u64)], now: u64, cost: u64) -> bool {
        self.0.iter().all(|m| m.admits(history, now, cost))
    }
}

/// Drives `alg` and `model` through `steps`, checking on every hit that
/// they agree, that a refusal changes nothing, and that `retry_after` is
/// exact.
fn check_against_model<A>(
    alg: &A,
    model: &dyn Model,
    steps: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>, TestCaseError>
where
    A: Algorithm,
    A::State: Clone + PartialEq + Debug,
{
    let mut now = 0;
    // As in a store: a key's state is made fresh at its first hit.
    let mut state = alg.fresh(steps[0].0);
    let mut history = Vec::new();
    for &(dt, cost) in steps {
        now += dt;
        let cost = cost.clamp(1, alg.capacity());
        // A store may sweep an expired key at any time; doing so must not
        // change any decision. Sweep on every other instant.
        if now % 2 == 0 && alg.is_expired(&state, now) {
            state = alg.fresh(now);
        }
        // Pruning changes no decision; do it first so that "a refusal
        // changes nothing" can be checked as plain equality.
        alg.prune(&mut state, now);
        let before = state.clone();
        let d = alg.acquire(&mut state, now, cost);
        prop_assert_eq!(
            d.allowed,
            model.admits(&history, now, cost),
            "at {} cost {}",
            now,
            cost
        );
        if d.allowed {
            history.push((now, cost));
            prop_assert_eq!(d.retry_after, 0);
        } else {
            prop_assert_eq!(&state, &before, "a refused hit changed state");
            prop_assert!(d.retry_after > 0);
            prop_assert!(alg.decide(&state, now + d.retry_after, cost).allowed);
            prop_assert!(!alg.decide(&state, now + d.retry_after - 1, cost).allowed);
            prop_assert!(model.admits(&history, now + d.retry_after, cost));
        }
        prop_assert!(d.remaining <= alg.capacity());
    }
    Ok(history)
}

fn steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 0..S / 2, 0..4 * S, Just(1)],
            1u64..6,
        ),
        1..120,
    )
}

fn quota(limit: u64, window: u64) -> Quota {
    Quota::new(limit, window).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fixed_window_matches_model(limit in 1u64..12, window in 1u64..5 * S, steps in steps()) {
        let alg = FixedWindow::new(quota(limit, window));
        let history = check_against_model(&alg, &FixedModel { limit, window }, &steps)?;
        // Promise: no window (opened at a hit) holds more than `limit`.
        let mut start = None;
        let mut spent = 0;
        for (t, c) in history {
            if start.is_none_or(|s| t - s >= window) {
                start = Some(t);
                spent = 0;
            }
            spent += c;
            prop_assert!(spent <= limit);
        }
    }

    #[test]
    fn sliding_log_matches_model(limit in 1u64..12, window in 1u64..5 * S, steps in steps()) {
        let alg = SlidingLog::new(quota(limit, window));
        let history = check_against_model(&alg, &LogModel { limit, window }, &steps)?;
        // Promise: ANY interval shorter than the window holds at most `limit`.
        for (i, &(t, _)) in history.iter().enumerate() {
            let within: u64 = history[i..].iter().take_while(|(u, _)| u - t < window).map(|(_, c)| c).sum();
            prop_assert!(within <= limit);
        }
    }

    #[test]
    fn sliding_window_matches_model(limit in 1u64..12, window in 1u64..5 * S, steps in steps()) {
        let alg = SlidingWindow::new(quota(limit, window));
        check_against_model(&alg, &SlidingModel { limit, window }, &steps)?;
    }

    #[test]
    fn token_bucket_and_gcra_match_model(
        limit in 1u64..12,
        window in 1u64..5 * S,
        burst in 1u64..12,
        steps in steps(),
    ) {
        let model = BucketModel { limit, window, burst };
        for alg in [Gcra::token_bucket(quota(limit, window), burst).unwrap(), Gcra::new(quota(limit, window), burst).unwrap()] {
            let history = check_against_model(&alg, &model, &steps)?;
            // Promise: over any span, at most burst + rate * span.
            for (i, &(t0, _)) in history.iter().enumerate() {
                let mut spent = 0u128;
                for &(t1, c) in &history[i..] {
                    spent += u128::from(c);
                    let allowed = u128::from(burst) * u128::from(window) + u128::from(t1 - t0) * u128::from(limit);
                    prop_assert!(spent * u128::from(window) <= allowed);
                }
            }
        }
    }

    #[test]
    fn compound_is_all_or_nothing(
        l1 in 1u64..6, w1 in 1u64..2 * S,
        l2 in 1u64..12, w2 in 2 * S..8 * S,
        steps in steps(),
    ) {
        let alg = Compound::new(vec![FixedWindow::new(quota(l1, w1)), FixedWindow::new(quota(l2, w2))]);
        let model = AllModel(vec![
            Box::new(FixedModel { limit: l1, window: w1 }),
            Box::new(FixedModel { limit: l2, window: w2 }),
        ]);
        check_against_model(&alg, &model, &steps)?;
        let alg = Compound::new(vec![SlidingLog::new(quota(l1, w1)), SlidingLog::new(quota(l2, w2))]);
        let model = AllModel(vec![
            Box::new(LogModel { limit: l1, window: w1 }),
            Box::new(LogModel { limit: l2, window: w2 }),
        ]);
        check_against_model(&alg, &model, &steps)?;
    }

    #[test]
    fn extreme_values_never_panic(
        limit in prop_oneof![Just(1u64), Just(Quota::MAX_LIMIT), 1..Quota::MAX_LIMIT],
        window_secs in prop_oneof![Just(1u64), Just(Quota::MAX_WINDOW_SECONDS), 1..Quota::MAX_WINDOW_SECONDS],
        steps in prop::collection::vec((prop_oneof![Just(0u64), Just(u64::MAX / 8), 0..u64::MAX / 64], any::<u64>()), 1..20),
    ) {
        let q = Quota::per_seconds(limit, window_secs).unwrap();
        let now_of = |i: usize| -> u64 { steps[..=i].iter().fold(0u64, |a, s| a.saturating_add(s.0)).min(rust_py_rate_limit::clock::MAX_TIME) };
        macro_rules! drive {
            ($alg:expr) => {{
                let alg = $alg;
                let mut s = alg.fresh(0);
                for (i, &(_, cost)) in steps.iter().enumerate() {
                    let cost = cost % alg.capacity() + 1;
                    let d = alg.acquire(&mut s, now_of(i), cost);
                    let _ = alg.peek(&s, now_of(i));
                    let _ = alg.is_expired(&s, now_of(i));
                    prop_assert!(d.allowed || d.retry_after > 0);
                }
            }};
        }
        drive!(FixedWindow::new(q));
        drive!(SlidingWindow::new(q));
        drive!(SlidingLog::new(q));
        drive!(Gcra::new(q, limit).unwrap());
        drive!(Gcra::token_bucket(q, 1).unwrap());
        drive!(Gcra::new(q, Gcra::max_burst(&q)).unwrap());
    }

    /// For any in-range spec, at any scale: a refused hit reports a wait
    /// that is positive, at most its reset, and true (admitted exactly
    /// then, not a nanosecond earlier, for the bucket algorithms); a burst
    /// past the bound is refused at construction, naming `burst`.
    #[test]
    fn reported_times_are_true_at_any_scale(
        limit in prop_oneof![Just(1u64), Just(Quota::MAX_LIMIT), 1..1_000u64, 1..Quota::MAX_LIMIT],
        window_secs in prop_oneof![Just(1u64), Just(Quota::MAX_WINDOW_SECONDS), 1..3_600u64, 1..Quota::MAX_WINDOW_SECONDS],
        burst_frac in prop_oneof![Just(1.0f64), 0.0f64..1.0],
        steps in prop::collection::vec((prop_oneof![Just(0u64), 0..u64::MAX / 64], any::<u64>()), 1..20),
    ) {
        let q = Quota::per_seconds(limit, window_secs).unwrap();
        let max_burst = Gcra::max_burst(&q);
        let burst = ((max_burst as f64 * burst_frac) as u64).clamp(1, max_burst);
        let over = max_burst + 1;
        match Gcra::new(q, over) {
            Err(rust_py_rate_limit::Error::InvalidArgument { name, .. }) => prop_assert_eq!(name, "burst"),
            other => prop_assert!(false, "burst {} accepted: {:?}", over, other),
        }
        prop_assert!(Spec::new(AlgorithmKind::TokenBucket, vec![q], Some(over)).is_err());
        prop_assert!(Spec::new(AlgorithmKind::Gcra, vec![q], Some(burst)).is_ok());
        let now_of = |i: usize| -> u64 { steps[..=i].iter().fold(0u64, |a, s| a.saturating_add(s.0)).min(rust_py_rate_limit::clock::MAX_TIME) };
        macro_rules! drive {
            ($alg:expr, $exact:expr) => {{
                let alg = $alg;
                let mut s = alg.fresh(0);
                for (i, &(_, cost)) in steps.iter().enumerate() {
                    let now = now_of(i);
                    // Half the hits spend the whole capacity, to be refused.
                    let cost = if cost % 2 == 0 { alg.capacity() } else { cost % alg.capacity() + 1 };
                    let d = alg.acquire(&mut s, now, cost);
                    if !d.allowed {
                        prop_assert!(d.retry_after > 0, "refused with retry_after 0: {:?}", d);
                        prop_assert!(d.reset_after >= d.retry_after, "{:?}", d);
                        prop_assert!(d.reset_after <= 2 * Gcra::MAX_REFILL, "{:?}", d);
                        if $exact {
                            prop_assert!(alg.decide(&s, now + d.retry_after, cost).allowed);
                            prop_assert!(!alg.decide(&s, now + d.retry_after - 1, cost).allowed);
                        }
                    }
                }
            }};
        }
        drive!(FixedWindow::new(q), true);
        drive!(SlidingWindow::new(q), true);
        drive!(SlidingLog::new(q), true);
        drive!(Gcra::new(q, burst).unwrap(), true);
        drive!(Gcra::token_bucket(q, burst).unwrap(), true);
        drive!(Compound::new(vec![FixedWindow::new(q), FixedWindow::new(quota(1, S))]), false);
    }
}
