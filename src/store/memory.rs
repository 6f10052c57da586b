//! The in-process store: a sharded concurrent map from key to state.
//!
//! The hot path (a hit on a key that exists) looks the key up by borrowed
//! bytes, so it allocates nothing; it takes one shard lock, reads the clock
//! under it (so time never runs backwards for one key), does the algorithm's
//! integer arithmetic and bumps one relaxed atomic counter. Everything about
//! capacity (`max_keys`) lives on the miss path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::bans::{BanPolicy, Bans};
use super::key::Key;
use super::{OnFull, Outcome, Stats, SweepCursor};
use crate::algorithm::{Algorithm, Decision};
use crate::clock::{AnyClock, Clock, Nanos};
use crate::error::{Error, Result};
use crate::fork;
use crate::metrics::Tally;

/// Keys are bytes: any Python `str` (lone surrogates included) maps to
/// distinct bytes, and lookups borrow the caller's buffer. Short keys are
/// stored inline (see [`Key`]).
type Map<S> = DashMap<Key, S, ahash::RandomState>;

/// Buckets examined per shard lock while sweeping: a few microseconds of
/// lock hold, far under the millisecond budget.
pub const SWEEP_CHUNK: usize = 4096;

/// After a full round of the map finds no expired key, a full store skips
/// looking for one for this long (1 ms), so a flood of new keys stays cheap.
const EVICT_BACKOFF: Nanos = 1_000_000;

/// A sweep that removed at least this many keys returns freed memory to
/// the operating system.
const TRIM_AFTER: usize = 65_536;

/// Returns the allocator's free memory to the operating system. glibc keeps
/// freed heap memory (and, after a large block is freed, serves the next
/// large one from the heap too), so without this a limiter that shrinks
/// after a spike would not give the memory back.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only touches the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Buckets examined to find an expired key when a full store gets a new key.
const EVICT_SCAN: usize = 1024;

/// An [`Algorithm`] over an in-memory map of keys.
pub struct MemoryStore<A: Algorithm> {
    algorithm: A,
    clock: AnyClock,
    map: Map<A::State>,
    max_keys: Option<usize>,
    on_full: OnFull,
    /// Keys stored, for `max_keys`. Exact: every change to it is made while
    /// holding the write lock of the shard whose table gained or lost the
    /// entries, together with that change, so it equals the sum of the
    /// shards' lengths whenever no shard is being written, whatever runs at
    /// once (inserts, resets, sweeps, `clear`). Only the miss path reads it.
    len: AtomicUsize,
    evict_cursor: Mutex<SweepCursor>,
    /// No scan for expired keys before this time (after a fruitless round).
    next_evict_scan: AtomicU64,
    tally: Tally,
    rejected_full: AtomicU64,
    expired_removed: AtomicU64,
    cleanup_runs: AtomicU64,
    bans: Bans,
}

impl<A: Algorithm> MemoryStore<A> {
    /// An empty, unbounded store deciding with `algorithm` on `clock`'s time.
    pub fn new(algorithm: A, clock: AnyClock) -> Self {
        Self::bounded(algorithm, clock, None, OnFull::Deny)
    }

    /// An empty store holding at most `max_keys` keys (None: unbounded).
    pub fn bounded(
        algorithm: A,
        clock: AnyClock,
        max_keys: Option<usize>,
        on_full: OnFull,
    ) -> Self {
        Self {
            algorithm,
            clock,
            map: DashMap::with_hasher(ahash::RandomState::new()),
            max_keys,
            on_full,
            len: AtomicUsize::new(0),
            evict_cursor: Mutex::new(SweepCursor::default()),
            next_evict_scan: AtomicU64::new(0),
            tally: Tally::default(),
            rejected_full: AtomicU64::new(0),
            expired_removed: AtomicU64::new(0),
            cleanup_runs: AtomicU64::new(0),
            bans: Bans::new(None),
        }
    }

    /// Bans keys refused as `policy` says (None: only `ban()` bans).
    pub fn with_bans(mut self, policy: Option<BanPolicy>) -> Self {
        self.bans = Bans::new(policy);
        self
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

    /// Decides one hit of `cost` on `key`, spending it if admitted (a
    /// banned key is refused without touching its state).
    #[inline]
    pub fn hit(&self, key: &[u8], cost: u64) -> Result<Decision> {
        self.validate_cost(cost)?;
        if let Some(decision) = self.banned(key) {
            self.tally.refused(true);
            return Ok(decision);
        }
        let (decision, tracked) = match self.map.get_mut(key) {
            Some(mut state) => (
                self.algorithm.acquire(&mut state, self.clock.now(), cost),
                true,
            ),
            None => self.hit_new(key, cost),
        };
        if decision.allowed {
            self.tally.admitted(&decision);
            return Ok(decision);
        }
        Ok(self.refused(key, decision, tracked))
    }

    /// [`hit`](Self::hit), saying whether a ban refused it (or this
    /// refusal began one).
    #[inline]
    pub fn hit_outcome(&self, key: &[u8], cost: u64) -> Result<Outcome> {
        let decision = self.hit(key, cost)?;
        Ok(self.flagged(key, decision))
    }

    /// A decision with its ban flag: a refusal of a key banned now.
    #[inline]
    fn flagged(&self, key: &[u8], decision: Decision) -> Outcome {
        let mut outcome = Outcome::from(decision);
        if !decision.allowed {
            outcome.banned = self.bans.check(key, || self.clock.now()).is_some();
        }
        outcome
    }

    /// Counts a refusal, and a ban it may begin.
    #[inline(never)]
    fn refused(&self, key: &[u8], mut decision: Decision, tracked: bool) -> Decision {
        let mut began = false;
        if tracked && self.bans.policy().is_some() {
            if let Some(ban) = self.bans.refused(key, self.clock.now()) {
                // This refusal began a ban: the next admission waits for it.
                decision.retry_after = decision.retry_after.max(ban);
                decision.reset_after = decision.reset_after.max(ban);
                began = true;
            }
        }
        // A refusal that began a ban reports banned (see `flagged`): count
        // it as the ban's, as the Redis store does.
        self.tally.refused(began);
        decision
    }

    /// Counts refusals as shadow mode's (see [`Tally::set_shadow`]).
    pub fn set_shadow(&self, on: bool) {
        self.tally.set_shadow(on);
    }

    /// The decisions counted by result.
    pub fn tally(&self) -> crate::metrics::TallySnapshot {
        self.tally.snapshot()
    }

    /// The answer for a banned key, if `key` is banned now.
    #[inline]
    fn banned(&self, key: &[u8]) -> Option<Decision> {
        let left = self.bans.check(key, || self.clock.now())?;
        Some(Decision {
            allowed: false,
            limit: self.algorithm.limit(),
            remaining: 0,
            reset_after: left,
            retry_after: left,
        })
    }

    /// The miss path: the only place a key is copied. Another thread may have
    /// inserted the key since the lookup, so go through the entry.
    #[cold]
    #[inline(never)]
    /// Whether the key is tracked comes with the decision (a refusal of a
    /// full store's new key counts toward no ban).
    fn hit_new(&self, key: &[u8], cost: u64) -> (Decision, bool) {
        if let Some(max) = self.max_keys {
            if self.len.load(Relaxed) >= max && !self.make_room() {
                return (self.full(cost), false);
            }
        }
        match self.map.entry(key.into()) {
            Entry::Occupied(mut entry) => (
                self.algorithm
                    .acquire(entry.get_mut(), self.clock.now(), cost),
                true,
            ),
            Entry::Vacant(entry) => {
                let now = self.clock.now();
                let mut state = self.algorithm.fresh(now);
                let decision = self.algorithm.acquire(&mut state, now, cost);
                // A fresh state admits any valid cost; store only what spent.
                if decision.allowed {
                    // Counted under the shard lock the entry holds, so the
                    // count and the table change together. Another new key
                    // may have taken the last slot since the check above.
                    if !self.take_slot() {
                        drop(entry);
                        return (self.full(cost), false);
                    }
                    entry.insert(state);
                }
                // A fresh state refuses nothing valid: never a ban's start.
                (decision, true)
            }
        }
    }

    /// Counts one more key, unless that would exceed `max_keys`.
    #[inline]
    fn take_slot(&self) -> bool {
        match self.max_keys {
            None => {
                self.len.fetch_add(1, Relaxed);
                true
            }
            Some(max) => self
                .len
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .is_ok(),
        }
    }

    /// Tries to free a slot by removing expired keys, resuming a scan where
    /// the last one stopped. Live keys are never evicted: dropping one would
    /// hand its owner (or an attacker) a fresh allowance.
    fn make_room(&self) -> bool {
        let now = self.clock.now();
        if now < self.next_evict_scan.load(Relaxed) {
            return false;
        }
        let Ok(mut cursor) = self.evict_cursor.try_lock() else {
            return false;
        };
        // Examine up to EVICT_SCAN buckets, and at most one full round.
        let (mut examined, mut wrapped) = (0, false);
        while examined < EVICT_SCAN {
            let step = self.sweep_chunk(&mut cursor, EVICT_SCAN - examined);
            examined += step.examined;
            if step.removed > 0 {
                self.expired_removed.fetch_add(step.removed as u64, Relaxed);
                return true;
            }
            if step.done {
                *cursor = SweepCursor::default();
                if wrapped {
                    // A whole round found nothing: nothing expires sooner
                    // than time moves, so do not scan again for a while.
                    self.next_evict_scan.store(now + EVICT_BACKOFF, Relaxed);
                    break;
                }
                wrapped = true;
            }
        }
        false
    }

    /// The documented answer for a new key when the store is full.
    fn full(&self, cost: u64) -> Decision {
        self.rejected_full.fetch_add(1, Relaxed);
        let now = self.clock.now();
        let fresh = self.algorithm.fresh(now);
        match self.on_full {
            // Admitted as if new, but not tracked.
            OnFull::Allow => self.algorithm.decide(&fresh, now, cost),
            // Refused; a retry can only succeed once some key expires, which
            // takes at most a window.
            OnFull::Deny => Decision {
                allowed: false,
                remaining: 0,
                reset_after: self.algorithm.window(),
                retry_after: self.algorithm.window(),
                ..self.algorithm.peek(&fresh, now)
            },
        }
    }

    /// What a hit of cost 1 on `key` would see now, spending nothing.
    ///
    /// Drops what no longer counts (a sliding log's expired entries) as a
    /// hit would, so peeking a key that is never hit again scans its expired
    /// entries once, not on every call.
    pub fn peek(&self, key: &[u8]) -> Decision {
        self.peek_outcome(key).decision
    }

    /// [`peek`](Self::peek), saying whether a ban answers.
    pub fn peek_outcome(&self, key: &[u8]) -> Outcome {
        if let Some(decision) = self.banned(key) {
            return Outcome {
                banned: true,
                ..Outcome::from(decision)
            };
        }
        Outcome::from(match self.map.get_mut(key) {
            Some(mut state) => {
                let now = self.clock.now();
                self.algorithm.prune(&mut state, now);
                self.algorithm.peek(&state, now)
            }
            None => {
                let now = self.clock.now();
                self.algorithm.peek(&self.algorithm.fresh(now), now)
            }
        })
    }

    /// Calls `f` with `key`'s stored state, if it has any (under its shard's
    /// read lock: keep `f` short).
    pub fn with_state<R>(&self, key: &[u8], f: impl FnOnce(&A::State) -> R) -> Option<R> {
        self.map.get(key).map(|state| f(&state))
    }

    /// Drops `key`'s state, ban and refusals included. Returns whether it
    /// had rate state.
    pub fn reset(&self, key: &[u8]) -> bool {
        self.bans.unban(key, self.clock.now());
        // Through the entry, so the count drops under the same shard lock
        // as the key (`reset` is rare: copying the key here is fine).
        match self.map.entry(key.into()) {
            Entry::Occupied(entry) => {
                self.len.fetch_sub(1, Relaxed);
                entry.remove();
                true
            }
            Entry::Vacant(_) => false,
        }
    }

    /// Drops every key's state and gives the tables' memory back. Counters
    /// are kept.
    ///
    /// Each shard's table is swapped for an empty one (which allocates
    /// nothing) and the key count lowered by what it held, under that
    /// shard's lock; the old table is freed after the lock is released. So
    /// keys inserted, reset or swept meanwhile keep the count exact.
    pub fn clear(&self) {
        let _pass = fork::enter();
        self.bans.clear();
        let mut removed = 0;
        for shard in self.map.shards() {
            let mut table = shard.write();
            let old = std::mem::take(&mut *table);
            self.len.fetch_sub(old.len(), Relaxed);
            drop(table);
            removed += old.len();
            drop(old);
        }
        if removed >= TRIM_AFTER {
            release_free_memory();
        }
    }

    /// Examines up to `budget` buckets from `cursor` under one shard lock,
    /// removing expired keys, and advances the cursor.
    pub fn sweep_chunk(&self, cursor: &mut SweepCursor, budget: usize) -> SweepStep {
        let _pass = fork::enter();
        let shards = self.map.shards();
        let Some(shard) = shards.get(cursor.shard) else {
            return SweepStep {
                removed: 0,
                examined: 0,
                done: true,
                lock_held: std::time::Duration::ZERO,
            };
        };
        let now = self.clock.now();
        let mut table = shard.write();
        let locked_at = std::time::Instant::now();
        let buckets = table.buckets();
        if cursor.buckets != buckets {
            // The table was resized (or this is a new shard): start it over.
            cursor.buckets = buckets;
            cursor.bucket = 0;
        }
        let start = cursor.bucket;
        let end = start.saturating_add(budget).min(buckets);
        // Removed entries (and a replaced table) are freed after the lock is
        // released: freeing is the slow part, and must not stall the shard.
        let mut graveyard = Vec::new();
        for index in start..end {
            // SAFETY: `index < buckets()` of a table we hold the write lock
            // of; a full bucket holds an initialised entry, and removing it
            // moves no other entry.
            unsafe {
                if table.is_bucket_full(index) {
                    let bucket = table.bucket(index);
                    if self.algorithm.is_expired(bucket.as_ref().1.get(), now) {
                        graveyard.push(table.remove(bucket).0);
                    }
                }
            }
        }
        let removed = graveyard.len();
        cursor.bucket = end;
        let mut old_table = None;
        if end == buckets {
            // Give memory back once a shard is (nearly) empty: move the few
            // live entries into a small new table under the lock, and free
            // the big old one after it.
            if table.len() <= budget / 8 && buckets > 64 && table.len() * 8 < buckets {
                let hasher = self.map.hasher();
                let hash = |(k, _): &(Key, _)| hasher.hash_one(k);
                let mut old = std::mem::take(&mut *table);
                table.reserve(old.len(), hash);
                for item in old.drain() {
                    table.insert(hash(&item), item, hash);
                }
                old_table = Some(old);
            }
            cursor.shard += 1;
            cursor.bucket = 0;
            cursor.buckets = usize::MAX;
        }
        if removed > 0 {
            // Under the lock, with the removals (see `len`).
            self.len.fetch_sub(removed, Relaxed);
        }
        drop(table);
        let lock_held = locked_at.elapsed();
        drop(graveyard);
        drop(old_table);
        SweepStep {
            removed,
            examined: end - start,
            done: cursor.shard >= shards.len(),
            lock_held,
        }
    }

    /// Counts a finished sweep that removed `removed` keys, and after a
    /// large one hands the freed memory back to the operating system.
    pub fn record_sweep(&self, removed: usize) {
        {
            let _pass = fork::enter();
            self.bans.sweep(self.clock.now());
        }
        self.expired_removed.fetch_add(removed as u64, Relaxed);
        self.cleanup_runs.fetch_add(1, Relaxed);
        if removed >= TRIM_AFTER {
            release_free_memory();
        }
    }

    /// Removes every key whose state has expired, one short lock hold at a
    /// time. Returns how many went.
    pub fn cleanup_expired(&self) -> usize {
        let mut cursor = SweepCursor::default();
        let mut removed = 0;
        loop {
            let step = self.sweep_chunk(&mut cursor, SWEEP_CHUNK);
            removed += step.removed;
            if step.done {
                break;
            }
            // Let a thread waiting for this shard take it between chunks.
            std::thread::yield_now();
        }
        self.record_sweep(removed);
        removed
    }

    /// Number of keys holding state.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The key count `max_keys` is checked against. It equals [`len`]
    /// whenever no call is changing the store.
    ///
    /// [`len`]: MemoryStore::len
    pub fn counted_keys(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// The number of buckets the shards' tables hold: their capacity,
    /// occupied or not.
    pub fn table_buckets(&self) -> usize {
        self.map.shards().iter().map(|s| s.read().buckets()).sum()
    }

    /// Whether no key holds state.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let tally = self.tally.snapshot();
        Stats {
            allowed: tally.allowed,
            blocked: tally.blocked,
            active_keys: self.map.len() as u64,
            rejected_full: self.rejected_full.load(Relaxed),
            expired_removed: self.expired_removed.load(Relaxed),
            cleanup_runs: self.cleanup_runs.load(Relaxed),
            bans: self.bans.begun(),
            banned_keys: self.bans.banned_keys(self.clock.now()) as u64,
        }
    }

    /// Bans `key` for `duration` from now (replacing any ban it has).
    pub fn ban(&self, key: &[u8], duration: Nanos) -> Result<()> {
        super::bans::check_ban_length(duration)?;
        self.bans.ban(key, self.clock.now(), duration);
        Ok(())
    }

    /// Lifts `key`'s ban; whether it was banned.
    pub fn unban(&self, key: &[u8]) -> bool {
        self.bans.unban(key, self.clock.now())
    }

    /// How long `key` stays banned (None: not banned).
    pub fn banned_for(&self, key: &[u8]) -> Option<Nanos> {
        self.bans.check(key, || self.clock.now())
    }

    /// The time the store's clock reads now.
    pub fn now(&self) -> Nanos {
        self.clock.now()
    }
}

/// The outcome of one [`MemoryStore::sweep_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepStep {
    /// Keys removed by this chunk.
    pub removed: usize,
    /// Buckets examined.
    pub examined: usize,
    /// Whether the cursor has passed the last shard.
    pub done: bool,
    /// How long the shard's lock was held.
    pub lock_held: std::time::Duration,
}
