//! The local over-limit cache: refusals Redis returned, remembered per key
//! until their retry time, so a flood from a refused client is answered
//! from memory without a round trip.
//!
//! Safe because Redis's state of a key only gets stricter between resets:
//! other hits (of this process or any other) only spend, so a hit of cost
//! `c` refused until `t` stays refused until `t`, and so does any costlier
//! hit. The exception is a `reset`/`clear` by another process, which this
//! one sees once the cached time has passed; its own drop entries at once.
//!
//! Times are the store's: the limiter's manual clock when the scripts get
//! one (`now_us`), else monotonic nanoseconds taken before the call went
//! out (so the cached time never outlasts the server's answer). An entry
//! answers only hits of at least the refused cost; an admission of the key
//! drops it (its retry time no longer says what Redis would). Bounded:
//! when full, expired entries of the shard go, then an arbitrary one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

use parking_lot::Mutex;

use crate::algorithm::Decision;
use crate::store::Outcome;

/// The most shards (each its own lock).
const SHARDS: usize = 16;

type Map = std::collections::HashMap<Box<[u8]>, Entry, ahash::RandomState>;

/// One remembered refusal.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The refused cost: only hits of at least this are answered.
    cost: u64,
    limit: u64,
    /// Refused until then (store time, ns).
    until: u64,
    /// The key's state is whole again then (store time, ns).
    reset_at: u64,
    /// A ban refused it: every hit is refused until then, whatever its cost.
    banned: bool,
}

/// A bounded, sharded map of refusals.
pub(super) struct LocalCache {
    bound: usize,
    len: AtomicUsize,
    hasher: ahash::RandomState,
    shards: Box<[Mutex<Map>]>,
    pub(super) hits: AtomicU64,
}

/// The store's time in nanoseconds: the manual clock if the scripts get
/// one, else monotonic time since the first call.
pub(super) fn now_ns(now_us: Option<u64>) -> u64 {
    match now_us {
        Some(us) => us.saturating_mul(1000),
        None => {
            static EPOCH: OnceLock<Instant> = OnceLock::new();
            // Starts at 1 s, so 0 never means "now".
            EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1_000_000_000
        }
    }
}

impl LocalCache {
    /// A cache of at most `bound` keys (0: off).
    pub(super) fn new(bound: usize) -> Self {
        // At least ~1024 keys a shard: a full cache then has something to
        // evict in the shard of any new key.
        let shards = if bound == 0 {
            0
        } else {
            (bound / 1024).clamp(1, SHARDS)
        };
        Self {
            bound,
            len: AtomicUsize::new(0),
            hasher: ahash::RandomState::new(),
            shards: (0..shards)
                .map(|_| Mutex::new(Map::with_hasher(ahash::RandomState::new())))
                .collect(),
            hits: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Map> {
        &self.shards[self.hasher.hash_one(key) as usize % self.shards.len()]
    }

    /// How many keys are remembered.
    pub(super) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// The refusal a hit of `cost` on `key` gets at `now` (ns), if one is
    /// remembered; counts it.
    #[inline]
    pub(super) fn refusal(&self, key: &[u8], cost: u64, now: u64) -> Option<Outcome> {
        if self.len.load(Relaxed) == 0 {
            return None;
        }
        let mut map = self.shard(key).lock();
        let entry = *map.get(key)?;
        if now >= entry.until {
            map.remove(key);
            self.len.fetch_sub(1, Relaxed);
            return None;
        }
        if cost < entry.cost {
            return None;
        }
        drop(map);
        self.hits.fetch_add(1, Relaxed);
        let retry_after = entry.until - now;
        Some(Outcome {
            banned: entry.banned,
            ..Outcome::from(Decision {
                allowed: false,
                limit: entry.limit,
                remaining: 0,
                reset_after: retry_after.max(entry.reset_at.saturating_sub(now)),
                retry_after,
            })
        })
    }

    /// Remembers what Redis answered a hit of `cost` on `key` sent at `at`
    /// (ns): a refusal until its retry time; an admission forgets the key.
    pub(super) fn remember(&self, key: &[u8], cost: u64, at: u64, decision: &Outcome) {
        if self.bound == 0 {
            return;
        }
        if decision.allowed {
            if self.len.load(Relaxed) != 0 {
                self.forget(key);
            }
            return;
        }
        if decision.retry_after == 0 {
            return;
        }
        let entry = Entry {
            // A ban refuses hits of any cost.
            cost: if decision.banned { 0 } else { cost },
            limit: decision.limit,
            until: at.saturating_add(decision.retry_after),
            reset_at: at.saturating_add(decision.reset_after),
            banned: decision.banned,
        };
        let mut map = self.shard(key).lock();
        if let Some(old) = map.get_mut(key) {
            // Keep whichever covers more: a cheaper refused cost that lasts
            // at least as long.
            if !(old.cost <= entry.cost && old.until >= entry.until && old.until > at) {
                *old = entry;
            }
            return;
        }
        if !self.reserve() {
            // Full: drop the shard's expired entries, then any one.
            let before = map.len();
            map.retain(|_, e| e.until > at);
            self.len.fetch_sub(before - map.len(), Relaxed);
            if !self.reserve() {
                let Some(victim) = map.keys().next().cloned() else {
                    return; // full with other shards' keys: skip
                };
                map.remove(&victim);
                map.insert(key.into(), entry);
                return;
            }
        }
        map.insert(key.into(), entry);
    }

    /// Takes one place under the bound, if there is one.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Relaxed, Relaxed, |n| (n < self.bound).then_some(n + 1))
            .is_ok()
    }

    /// Forgets `key` (reset, or admitted).
    pub(super) fn forget(&self, key: &[u8]) {
        if self.bound == 0 {
            return;
        }
        if self.shard(key).lock().remove(key).is_some() {
            self.len.fetch_sub(1, Relaxed);
        }
    }

    /// Forgets every key (clear).
    pub(super) fn forget_all(&self) {
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            self.len.fetch_sub(map.len(), Relaxed);
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(limit: u64, retry_after: u64, reset_after: u64) -> Outcome {
        Outcome::from(Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset_after,
            retry_after,
        })
    }

    #[test]
    fn answers_hits_of_at_least_the_cost_until_the_retry_time() {
        let cache = LocalCache::new(100);
        assert!(cache.refusal(b"k", 1, 0).is_none());
        cache.remember(b"k", 2, 1_000, &refused(5, 500, 2_000));
        assert!(cache.refusal(b"k", 1, 1_100).is_none()); // cheaper: to Redis
        let d = cache.refusal(b"k", 3, 1_100).unwrap();
        assert!(!d.allowed);
        assert_eq!((d.limit, d.remaining, d.retry_after), (5, 0, 400));
        assert_eq!(d.reset_after, 1_900);
        let d = cache.refusal(b"k", 2, 1_499).unwrap();
        assert_eq!(d.retry_after, 1);
        assert!(cache.refusal(b"k", 2, 1_500).is_none()); // expired: gone
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.hits.load(Relaxed), 2);
    }

    #[test]
    fn an_admission_or_a_reset_forgets_the_key() {
        let cache = LocalCache::new(100);
        cache.remember(b"k", 1, 0, &refused(5, 500, 500));
        cache.remember(b"j", 1, 0, &refused(5, 500, 500));
        let admitted = Outcome::from(Decision {
            allowed: true,
            ..refused(5, 0, 0).decision
        });
        cache.remember(b"k", 1, 10, &admitted);
        assert!(cache.refusal(b"k", 1, 20).is_none());
        assert!(cache.refusal(b"j", 1, 20).is_some());
        cache.forget(b"j");
        assert_eq!(cache.len(), 0);
        cache.remember(b"j", 1, 0, &refused(5, 500, 500));
        cache.forget_all();
        assert_eq!(cache.len(), 0);
        assert!(cache.refusal(b"j", 1, 20).is_none());
    }

    #[test]
    fn never_grows_past_the_bound() {
        for bound in [1, 3, 1_000, 5_000] {
            let cache = LocalCache::new(bound);
            for i in 0..(3 * bound as u64 + 10) {
                cache.remember(&i.to_le_bytes(), 1, i, &refused(5, 1_000_000, 0));
                assert!(cache.len() <= bound);
                let count: usize = cache.shards.iter().map(|s| s.lock().len()).sum();
                assert_eq!(count, cache.len());
            }
            assert_eq!(cache.len(), bound);
        }
        let off = LocalCache::new(0);
        off.remember(b"k", 1, 0, &refused(5, 500, 500));
        assert_eq!(off.len(), 0);
        assert!(off.refusal(b"k", 1, 1).is_none());
    }

    #[test]
    fn a_ban_answers_every_cost_and_keeps_its_flag() {
        let cache = LocalCache::new(100);
        let ban = Outcome {
            banned: true,
            ..refused(5, 1_000, 1_000)
        };
        cache.remember(b"k", 3, 0, &ban);
        let d = cache.refusal(b"k", 1, 10).unwrap();
        assert!(d.banned && !d.allowed);
        assert_eq!(d.retry_after, 990);
        assert!(!cache.refusal(b"j", 1, 10).is_some_and(|d| d.banned));
    }
}
