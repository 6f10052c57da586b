//! Compound limits, e.g. "10/second;1000/hour": a hit is admitted only if
//! every part admits it, and only then is it spent in all of them. A hit
//! refused by one part spends nothing anywhere.

use super::{Algorithm, Decision};
use crate::clock::Nanos;

/// Several limits of one algorithm, all of which must admit a hit.
#[derive(Debug, Clone)]
pub struct Compound<A> {
    parts: Box<[A]>,
}

impl<A: Algorithm> Compound<A> {
    /// All of `parts` (at least one).
    pub fn new(parts: Vec<A>) -> Self {
        assert!(
            !parts.is_empty(),
            "a compound limit needs at least one part"
        );
        Self {
            parts: parts.into_boxed_slice(),
        }
    }

    /// The parts, in the order given.
    pub fn parts(&self) -> &[A] {
        &self.parts
    }

    /// The most restrictive of the parts' decisions: when admitted, the one
    /// with the least remaining (then the longest reset); when refused, the
    /// refusing one that asks for the longest wait.
    fn most_restrictive(decisions: impl Iterator<Item = Decision>) -> Decision {
        let mut worst: Option<Decision> = None;
        for d in decisions {
            worst = Some(match worst {
                None => d,
                Some(w) => {
                    let key = |x: &Decision| {
                        (
                            !x.allowed,
                            x.retry_after,
                            std::cmp::Reverse(x.remaining),
                            x.reset_after,
                        )
                    };
                    if key(&d) > key(&w) {
                        d
                    } else {
                        w
                    }
                }
            });
        }
        // `new` guarantees at least one part.
        worst.unwrap_or(Decision {
            allowed: false,
            limit: 0,
            remaining: 0,
            reset_after: 0,
            retry_after: 0,
        })
    }
}

impl<A: Algorithm> Algorithm for Compound<A> {
    type State = Box<[A::State]>;

    fn name(&self) -> &'static str {
        self.parts[0].name()
    }

    fn limit(&self) -> u64 {
        self.parts[0].limit()
    }

    fn window(&self) -> Nanos {
        self.parts[0].window()
    }

    fn capacity(&self) -> u64 {
        self.parts.iter().map(A::capacity).min().unwrap_or(0)
    }

    fn fresh(&self, now: Nanos) -> Self::State {
        self.parts.iter().map(|p| p.fresh(now)).collect()
    }

    fn decide(&self, state: &Self::State, now: Nanos, cost: u64) -> Decision {
        Self::most_restrictive(
            self.parts
                .iter()
                .zip(state.iter())
                .map(|(p, s)| p.decide(s, now, cost)),
        )
    }

    fn prune(&self, state: &mut Self::State, now: Nanos) {
        for (p, s) in self.parts.iter().zip(state.iter_mut()) {
            p.prune(s, now);
        }
    }

    fn apply(&self, state: &mut Self::State, now: Nanos, cost: u64) {
        for (p, s) in self.parts.iter().zip(state.iter_mut()) {
            p.apply(s, now, cost);
        }
    }

    fn peek(&self, state: &Self::State, now: Nanos) -> Decision {
        Self::most_restrictive(
            self.parts
                .iter()
                .zip(state.iter())
                .map(|(p, s)| p.peek(s, now)),
        )
    }

    fn is_expired(&self, state: &Self::State, now: Nanos) -> bool {
        self.parts
            .iter()
            .zip(state.iter())
            .all(|(p, s)| p.is_expired(s, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::FixedWindow;
    use crate::clock::NANOS_PER_SEC as S;
    use crate::rate::Quota;

    fn two() -> Compound<FixedWindow> {
        Compound::new(vec![
            FixedWindow::new(Quota::per_seconds(2, 1).unwrap()),
            FixedWindow::new(Quota::per_seconds(3, 60).unwrap()),
        ])
    }

    #[test]
    fn all_or_nothing() {
        let alg = two();
        let mut s = alg.fresh(0);
        assert!(alg.acquire(&mut s, 0, 1).allowed);
        assert!(alg.acquire(&mut s, 0, 1).allowed);
        let d = alg.acquire(&mut s, 0, 1);
        assert!(!d.allowed);
        assert_eq!((d.limit, d.retry_after), (2, S));
        assert!(alg.acquire(&mut s, S, 1).allowed);
        // The hourly part is now full: a refusal there spends nothing in
        // the per-second part.
        let before = s.clone();
        let d = alg.acquire(&mut s, S, 1);
        assert!(!d.allowed);
        assert_eq!((d.limit, d.retry_after), (3, 59 * S));
        assert_eq!(s, before);
    }

    #[test]
    fn reports_the_least_remaining_when_admitted() {
        let alg = two();
        let mut s = alg.fresh(0);
        let d = alg.acquire(&mut s, 0, 1);
        assert_eq!((d.limit, d.remaining), (2, 1));
        assert_eq!(alg.capacity(), 2);
    }
}
