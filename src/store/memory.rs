//! The in-process store: a sharded concurrent map from key to state.
//!
//! The hot path (a hit on a key that exists) looks the key up by borrowed
//! bytes, so it allocates nothing; it takes one shard lock, reads the clock
//! under it (so time never runs backwards for one key), does the algorithm's
//! integer arithmetic and bumps one relaxed atomic counter.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::Stats;
use crate::algorithm::{Algorithm, Decision};
use crate::clock::{AnyClock, Clock};
use crate::error::{Error, Result};

/// Keys are bytes: any Python `str` (lone surrogates included) maps to
/// distinct bytes, and lookups borrow the caller's buffer.
type Map<S> = DashMap<Box<[u8]>, S, ahash::RandomState>;

/// An [`Algorithm`] over an in-memory map of keys.
pub struct MemoryStore<A: Algorithm> {
    algorithm: A,
    clock: AnyClock,
    map: Map<A::State>,
    allowed: AtomicU64,
    blocked: AtomicU64,
}

impl<A: Algorithm> MemoryStore<A> {
    /// An empty store deciding with `algorithm` on `clock`'s time.
    pub fn new(algorithm: A, clock: AnyClock) -> Self {
        Self {
            algorithm,
            clock,
            map: DashMap::with_hasher(ahash::RandomState::new()),
            allowed: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
        }
    }

    /// The algorithm deciding hits.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    /// The clock the store reads.
    pub fn clock(&self) -> &AnyClock {
        &self.clock
    }

    /// Checks that `cost` is one a hit could ever be admitted with.
    pub fn validate_cost(&self, cost: u64) -> Result<()> {
        if cost == 0 {
            return Err(Error::invalid("cost", "must be a positive integer, got 0"));
        }
        let capacity = self.algorithm.capacity();
        if cost > capacity {
            return Err(Error::CostExceedsCapacity { cost, capacity });
        }
        Ok(())
    }

    /// Decides one hit of `cost` on `key`, spending it if admitted.
    #[inline]
    pub fn hit(&self, key: &[u8], cost: u64) -> Result<Decision> {
        self.validate_cost(cost)?;
        let decision = match self.map.get_mut(key) {
            Some(mut state) => self.algorithm.acquire(&mut state, self.clock.now(), cost),
            None => self.hit_new(key, cost),
        };
        let counter = if decision.allowed {
            &self.allowed
        } else {
            &self.blocked
        };
        counter.fetch_add(1, Relaxed);
        Ok(decision)
    }

    /// The miss path: the only place a key is copied. Another thread may have
    /// inserted the key since the lookup, so go through the entry.
    #[cold]
    #[inline(never)]
    fn hit_new(&self, key: &[u8], cost: u64) -> Decision {
        match self.map.entry(key.into()) {
            Entry::Occupied(mut entry) => {
                self.algorithm
                    .acquire(entry.get_mut(), self.clock.now(), cost)
            }
            Entry::Vacant(entry) => {
                let now = self.clock.now();
                let mut state = self.algorithm.fresh(now);
                let decision = self.algorithm.acquire(&mut state, now, cost);
                // A fresh state admits any valid cost; store only what spent.
                if decision.allowed {
                    entry.insert(state);
                }
                decision
            }
        }
    }

    /// What a hit of cost 1 on `key` would see now, spending nothing.
    pub fn peek(&self, key: &[u8]) -> Decision {
        match self.map.get(key) {
            Some(state) => self.algorithm.peek(&state, self.clock.now()),
            None => {
                let now = self.clock.now();
                self.algorithm.peek(&self.algorithm.fresh(now), now)
            }
        }
    }

    /// Drops `key`'s state. Returns whether it had any.
    pub fn reset(&self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }

    /// Drops every key's state. Counters are kept.
    pub fn clear(&self) {
        self.map.clear();
    }

    /// Removes every key whose state has expired. Returns how many went.
    pub fn cleanup_expired(&self) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        self.map.retain(|_, state| {
            let expired = self.algorithm.is_expired(state, now);
            removed += usize::from(expired);
            !expired
        });
        removed
    }

    /// Number of keys holding state.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key holds state.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        Stats {
            allowed: self.allowed.load(Relaxed),
            blocked: self.blocked.load(Relaxed),
            active_keys: self.map.len() as u64,
        }
    }
}
