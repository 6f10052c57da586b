//! Rate-limit algorithms as pure arithmetic.
//!
//! An algorithm never touches a map, a lock, a clock or the network: it is
//! given a key's state and the current time and decides one hit. Stores (the
//! in-memory map, later Redis) own the state and the clock and call in here,
//! so every store makes exactly the same decisions.

mod fixed_window;

pub use fixed_window::{FixedWindow, FixedWindowState};

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
/// Contract, checked by the tests of every implementation:
/// - `acquire` with `cost <= capacity()` on a state returned by `fresh(now)`
///   is always admitted;
/// - a hit that is not admitted leaves the state exactly as it was;
/// - `is_expired(state, now)` is true only when the state is equivalent to
///   `fresh(now)`, so a store may drop it without changing any decision.
pub trait Algorithm: Send + Sync + 'static {
    /// Per-key state.
    type State: Send + Sync;

    /// The canonical name users select the algorithm by.
    const NAME: &'static str;

    /// The limit reported in every [`Decision`].
    fn limit(&self) -> u64;

    /// The length of the window, in nanoseconds.
    fn window(&self) -> Nanos;

    /// The largest cost a single hit can ever be admitted with.
    fn capacity(&self) -> u64;

    /// The state of a key that has spent nothing, as of `now`.
    fn fresh(&self, now: Nanos) -> Self::State;

    /// Decides a hit of `cost` (1..=capacity) at `now`, updating `state`
    /// only if it is admitted.
    fn acquire(&self, state: &mut Self::State, now: Nanos, cost: u64) -> Decision;

    /// What a hit of cost 1 would see at `now`, without spending anything.
    fn peek(&self, state: &Self::State, now: Nanos) -> Decision;

    /// Whether the state holds nothing that a fresh one would not.
    fn is_expired(&self, state: &Self::State, now: Nanos) -> bool;
}
