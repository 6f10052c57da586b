//! Rate-limit algorithms as pure arithmetic.
//!
//! An algorithm never touches a map, a lock, a clock or the network: it is
//! given a key's state and the current time and decides one hit. Stores (the
//! in-memory map, later Redis) own the state and the clock and call in here,
//! so every store makes exactly the same decisions.

mod compound;
mod fixed_window;
mod gcra;
mod sliding_log;
mod sliding_window;

pub use compound::Compound;
pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::{Gcra, GcraState};
pub use sliding_log::{SlidingLog, SlidingLogState};
pub use sliding_window::{SlidingWindow, SlidingWindowState};

use crate::clock::{Nanos, NANOS_PER_SEC};

/// The outcome of one hit (or of a read that spends nothing).
///
/// Times are exact integer nanoseconds from the moment of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the hit was admitted (and counted).
    pub allowed: bool,
    /// The configured limit.
    pub limit: u64,
    /// Units that can still be spent now, after this hit.
    pub remaining: u64,
    /// Time until the key's state returns to its full allowance.
    pub reset_after: Nanos,
    /// Time until a hit of the same cost can be admitted; 0 when allowed.
    pub retry_after: Nanos,
}

impl Decision {
    /// `reset_after` in whole seconds, rounded up.
    #[inline]
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }

    /// `retry_after` in whole seconds, rounded up: never 0 while blocked.
    #[inline]
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after)
    }
}

/// Nanoseconds to whole seconds, rounded up.
#[inline]
pub fn ceil_secs(nanos: Nanos) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}

/// One rate-limit algorithm over one quota.
///
/// A hit is decided in two steps: [`decide`](Algorithm::decide) reads the
/// state and says what the hit gets; [`apply`](Algorithm::apply) spends it,
/// and is only called after an admitting decision. So a refused hit cannot
/// change state, and a compound limit can ask every part before spending in
/// any.
///
/// Contract, checked by the tests of every implementation:
/// - on a state returned by `fresh(now)`, a hit with `cost <= capacity()` is
///   admitted;
/// - `is_expired(state, now)` is true only when the state decides every
///   later hit exactly as `fresh` would, so a store may drop it.
pub trait Algorithm: Send + Sync + 'static {
    /// Per-key state.
    type State: Send + Sync;

    /// The canonical name users select the algorithm by.
    fn name(&self) -> &'static str;

    /// The limit reported in every [`Decision`].
    fn limit(&self) -> u64;

    /// The length of the window, in nanoseconds.
    fn window(&self) -> Nanos;

    /// The largest cost a single hit can ever be admitted with.
    fn capacity(&self) -> u64;

    /// The state of a key that has spent nothing, as of `now`.
    fn fresh(&self, now: Nanos) -> Self::State;

    /// What a hit of `cost` (1..=capacity) at `now` gets, without spending.
    fn decide(&self, state: &Self::State, now: Nanos, cost: u64) -> Decision;

    /// Spends `cost` at `now`. Only called when `decide` admitted the hit.
    fn apply(&self, state: &mut Self::State, now: Nanos, cost: u64);

    /// Drops whatever in `state` no longer affects any decision from `now`
    /// on (the sliding log's expired entries), so that reading it stays
    /// cheap even for a key that is refused for a long time. Changes no
    /// decision.
    #[inline]
    fn prune(&self, _state: &mut Self::State, _now: Nanos) {}

    /// Decides a hit and spends it if admitted.
    #[inline]
    fn acquire(&self, state: &mut Self::State, now: Nanos, cost: u64) -> Decision {
        self.prune(state, now);
        let decision = self.decide(state, now, cost);
        if decision.allowed {
            self.apply(state, now, cost);
        }
        decision
    }

    /// What the key looks like at `now` without spending: `remaining` is the
    /// allowance left, `allowed` and `retry_after` are those of a hit of cost 1.
    fn peek(&self, state: &Self::State, now: Nanos) -> Decision;

    /// Whether the state holds nothing that a fresh one would not.
    fn is_expired(&self, state: &Self::State, now: Nanos) -> bool;
}
