//! Where per-key state lives. Each store pairs an [`Algorithm`] with a place
//! to keep its state and a clock; the algorithm makes every decision.
//!
//! [`Algorithm`]: crate::algorithm::Algorithm

pub mod bans;
mod key;
mod memory;
pub mod postgres;
pub mod redis;
pub mod remote;

pub use bans::BanPolicy;
pub use memory::{MemoryStore, SweepStep, SWEEP_CHUNK};

use crate::algorithm::Decision;

/// Activity counters of one limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Hits admitted.
    pub allowed: u64,
    /// Hits refused.
    pub blocked: u64,
    /// Keys currently holding state.
    pub active_keys: u64,
    /// New keys turned away (or admitted untracked) because the store was
    /// full.
    pub rejected_full: u64,
    /// Expired keys removed by sweeps (the janitor, `cleanup_expired`, or
    /// making room under `max_keys`).
    pub expired_removed: u64,
    /// Sweeps completed (janitor runs and `cleanup_expired` calls).
    pub cleanup_runs: u64,
    /// Bans begun (automatic and manual).
    pub bans: u64,
    /// Keys banned now.
    pub banned_keys: u64,
}

/// A decision and what, beyond the algorithm's arithmetic, made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The decision as the caller sees it.
    pub decision: Decision,
    /// Refused because the key is banned (or this refusal began a ban).
    pub banned: bool,
    /// Refused because the key is on the deny list.
    pub denied: bool,
    /// Would have been refused, admitted by shadow mode instead.
    pub shadow_refused: bool,
}

/// An outcome reads as its decision (`outcome.allowed`, `.retry_after`...).
impl std::ops::Deref for Outcome {
    type Target = Decision;

    #[inline]
    fn deref(&self) -> &Decision {
        &self.decision
    }
}

impl From<Decision> for Outcome {
    #[inline]
    fn from(decision: Decision) -> Self {
        Self {
            decision,
            banned: false,
            denied: false,
            shadow_refused: false,
        }
    }
}

impl Stats {
    /// Every hit decided: `allowed + blocked`.
    pub fn total_checks(&self) -> u64 {
        self.allowed + self.blocked
    }
}

/// What a store that is full (`max_keys`) does with a hit on a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Refuse it (counted as blocked).
    #[default]
    Deny,
    /// Admit it as a new key would be, without tracking it.
    Allow,
}

/// Where a sweep stopped: a shard and a bucket within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepCursor {
    pub(crate) shard: usize,
    pub(crate) bucket: usize,
    /// The shard's bucket count when the cursor last looked at it.
    pub(crate) buckets: usize,
}

impl Default for SweepCursor {
    fn default() -> Self {
        Self {
            shard: 0,
            bucket: 0,
            buckets: usize::MAX,
        }
    }
}
