//! Where per-key state lives. Each store pairs an [`Algorithm`] with a place
//! to keep its state and a clock; the algorithm makes every decision.
//!
//! [`Algorithm`]: crate::algorithm::Algorithm

mod memory;

pub use memory::MemoryStore;

/// Activity counters of one limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Hits admitted.
    pub allowed: u64,
    /// Hits refused.
    pub blocked: u64,
    /// Keys currently holding state.
    pub active_keys: u64,
}

impl Stats {
    /// Every hit decided: `allowed + blocked`.
    pub fn total_checks(&self) -> u64 {
        self.allowed + self.blocked
    }
}
