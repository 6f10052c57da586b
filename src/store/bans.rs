//! Temporary bans: a key refused `after` times within `within` is banned
//! for `duration`, and every hit of a banned key is refused without
//! touching its counters.
//!
//! Bans live beside the rate state, in a map of their own, so that neither
//! evicting an expired key (`max_keys`) nor a sweep of rate state can lift
//! a ban, and so that a store with no ban and no recent refusal pays one
//! relaxed load per hit and nothing more.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::key::Key;
use crate::clock::{Nanos, MAX_TIME, NANOS_PER_SEC};
use crate::error::{Error, Result};

/// The most refusals a policy can count before banning: each refusing key
/// keeps up to this many timestamps.
pub const MAX_BAN_AFTER: u64 = 10_000;

/// The longest ban or counting span, in seconds (as a window's bound).
pub const MAX_BAN_SECONDS: u64 = 1_000_000_000;

/// Checks the length of a manual ban (`seconds`, as the caller spells it).
pub fn check_ban_length(duration: Nanos) -> Result<()> {
    if duration == 0 || duration > MAX_BAN_SECONDS * NANOS_PER_SEC {
        return Err(Error::invalid(
            "seconds",
            format!("must be more than 0 and at most {MAX_BAN_SECONDS} seconds"),
        ));
    }
    Ok(())
}

/// When to ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Refusals that begin a ban.
    pub after: u32,
    /// The span they must fall within.
    pub within: Nanos,
    /// How long a ban lasts.
    pub duration: Nanos,
}

impl BanPolicy {
    /// Checks the values (names as the caller spells them).
    pub fn new(after: u64, within: Nanos, duration: Nanos) -> Result<Self> {
        if !(1..=MAX_BAN_AFTER).contains(&after) {
            return Err(Error::invalid(
                "ban_after",
                format!("must be between 1 and {MAX_BAN_AFTER}, got {after}"),
            ));
        }
        let max = MAX_BAN_SECONDS * NANOS_PER_SEC;
        for (name, value) in [("ban_within", within), ("ban_seconds", duration)] {
            if value == 0 || value > max {
                return Err(Error::invalid(
                    name,
                    format!("must be more than 0 and at most {MAX_BAN_SECONDS} seconds"),
                ));
            }
        }
        Ok(Self {
            after: after as u32,
            within,
            duration,
        })
    }
}

/// One key's ban and its recent refusals.
#[derive(Debug, Default)]
struct Record {
    /// Banned while `now < until` (0: not banned).
    until: Nanos,
    /// Times of the latest refusals, oldest first, at most `after`.
    refusals: VecDeque<Nanos>,
}

impl Record {
    /// Whether the record still means anything at `now`.
    fn live(&self, now: Nanos, within: Nanos) -> bool {
        self.until > now
            || self
                .refusals
                .back()
                .is_some_and(|&t| now.saturating_sub(t) < within)
    }
}

/// The bans of one store.
pub struct Bans {
    policy: Option<BanPolicy>,
    map: DashMap<Key, Record, ahash::RandomState>,
    /// Records in the map, changed under the shard lock with the map: while
    /// it is 0 a hit does not look.
    len: AtomicUsize,
    begun: AtomicU64,
}

impl Bans {
    /// No bans yet; `policy` bans automatically (None: only `ban()` does).
    pub fn new(policy: Option<BanPolicy>) -> Self {
        Self {
            policy,
            map: DashMap::with_hasher(ahash::RandomState::new()),
            len: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
        }
    }

    /// The automatic policy, if any.
    pub fn policy(&self) -> Option<BanPolicy> {
        self.policy
    }

    /// How long `key` stays banned after `now()` (None: not banned). The
    /// hot path: one relaxed load, and no clock read, while no key has a
    /// record.
    #[inline]
    pub fn check(&self, key: &[u8], now: impl FnOnce() -> Nanos) -> Option<Nanos> {
        if self.len.load(Relaxed) == 0 {
            return None;
        }
        self.banned_for(key, now())
    }

    /// How long `key` stays banned after `now` (None: not banned).
    pub fn banned_for(&self, key: &[u8], now: Nanos) -> Option<Nanos> {
        let record = self.map.get(key)?;
        (record.until > now).then(|| record.until - now)
    }

    /// Counts a refusal of `key` at `now`; the ban's length when this one
    /// began a ban. A key already banned begins no second ban, so threads
    /// refused at once begin exactly one.
    pub fn refused(&self, key: &[u8], now: Nanos) -> Option<Nanos> {
        let policy = self.policy?;
        let mut record = match self.map.get_mut(key) {
            Some(record) => record,
            None => match self.map.entry(Key::from(key)) {
                Entry::Occupied(entry) => entry.into_ref(),
                Entry::Vacant(entry) => {
                    self.len.fetch_add(1, Relaxed);
                    entry.insert(Record::default())
                }
            },
        };
        if record.until > now {
            return None;
        }
        let within = policy.within;
        while record
            .refusals
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= within)
        {
            record.refusals.pop_front();
        }
        if record.refusals.len() + 1 < policy.after as usize {
            record.refusals.push_back(now);
            return None;
        }
        record.refusals.clear();
        record.until = now.saturating_add(policy.duration).min(MAX_TIME);
        self.begun.fetch_add(1, Relaxed);
        Some(record.until - now)
    }

    /// Bans `key` from `now` for `duration` (replacing any ban it has).
    pub fn ban(&self, key: &[u8], now: Nanos, duration: Nanos) {
        let until = now.saturating_add(duration).min(MAX_TIME);
        match self.map.entry(Key::from(key)) {
            Entry::Occupied(mut entry) => entry.get_mut().until = until,
            Entry::Vacant(entry) => {
                self.len.fetch_add(1, Relaxed);
                entry.insert(Record {
                    until,
                    ..Record::default()
                });
            }
        }
        self.begun.fetch_add(1, Relaxed);
    }

    /// Lifts `key`'s ban and forgets its refusals; whether it was banned.
    pub fn unban(&self, key: &[u8], now: Nanos) -> bool {
        match self.map.remove(key) {
            Some((_, record)) => {
                self.len.fetch_sub(1, Relaxed);
                record.until > now
            }
            None => false,
        }
    }

    /// Keys banned at `now` (a scan: for statistics).
    pub fn banned_keys(&self, now: Nanos) -> usize {
        if self.len.load(Relaxed) == 0 {
            return 0;
        }
        self.map.iter().filter(|r| r.until > now).count()
    }

    /// Bans begun (automatic and manual).
    pub fn begun(&self) -> u64 {
        self.begun.load(Relaxed)
    }

    /// Drops the records that no longer mean anything; how many went.
    pub fn sweep(&self, now: Nanos) -> usize {
        if self.len.load(Relaxed) == 0 {
            return 0;
        }
        let within = self.policy.map_or(0, |p| p.within);
        let mut removed = 0;
        self.map.retain(|_, record| {
            let keep = record.live(now, within);
            if !keep {
                // Under the shard's write lock, with the removal.
                self.len.fetch_sub(1, Relaxed);
                removed += 1;
            }
            keep
        });
        removed
    }

    /// Drops every ban and refusal.
    pub fn clear(&self) {
        self.map.retain(|_, _| {
            self.len.fetch_sub(1, Relaxed);
            false
        });
        self.map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = NANOS_PER_SEC;

    fn bans(after: u64, within: u64, duration: u64) -> Bans {
        Bans::new(Some(
            BanPolicy::new(after, within * S, duration * S).unwrap(),
        ))
    }

    #[test]
    fn the_nth_refusal_within_the_span_bans() {
        let b = bans(3, 10, 60);
        assert_eq!(b.refused(b"k", 0), None);
        assert_eq!(b.refused(b"k", 5 * S), None);
        assert_eq!(b.refused(b"k", 10 * S - 1), Some(60 * S));
        assert_eq!(b.check(b"k", || 10 * S), Some(60 * S - 1));
        assert_eq!(b.begun(), 1);
        assert_eq!(b.banned_keys(10 * S), 1);
        // Ends exactly at its end.
        assert_eq!(b.check(b"k", || 70 * S - 2), Some(1));
        assert_eq!(b.check(b"k", || 70 * S - 1), None);
    }

    #[test]
    fn refusals_outside_the_span_do_not_ban() {
        let b = bans(3, 10, 60);
        assert_eq!(b.refused(b"k", 0), None);
        assert_eq!(b.refused(b"k", 5 * S), None);
        // The first one is exactly `within` old: out of the span.
        assert_eq!(b.refused(b"k", 10 * S), None);
        assert_eq!(b.check(b"k", || 10 * S), None);
        assert_eq!(b.refused(b"k", 11 * S), Some(60 * S));
        assert_eq!(b.refused(b"other", 11 * S), None);
    }

    #[test]
    fn a_banned_key_begins_no_second_ban_and_keys_are_apart() {
        let b = bans(1, 10, 60);
        assert_eq!(b.refused(b"a", 0), Some(60 * S));
        assert_eq!(b.refused(b"a", S), None);
        assert_eq!(b.check(b"b", || S), None);
        assert_eq!(b.begun(), 1);
    }

    #[test]
    fn manual_ban_unban_and_sweep() {
        let b = Bans::new(None);
        assert_eq!(b.check(b"k", || 0), None);
        assert_eq!(b.refused(b"k", 0), None, "no policy: no automatic ban");
        b.ban(b"k", 0, 30 * S);
        assert_eq!(b.banned_for(b"k", 10 * S), Some(20 * S));
        assert!(b.unban(b"k", 10 * S));
        assert!(!b.unban(b"k", 10 * S));
        assert_eq!(b.check(b"k", || 10 * S), None);
        b.ban(b"x", 0, 5 * S);
        b.ban(b"y", 0, 50 * S);
        assert_eq!(b.sweep(10 * S), 1);
        assert_eq!((b.banned_keys(10 * S), b.begun()), (1, 3));
        b.clear();
        assert_eq!(b.check(b"y", || 10 * S), None);
        assert_eq!(b.len.load(Relaxed), 0);
    }

    #[test]
    fn threads_refused_at_once_begin_one_ban() {
        let b = std::sync::Arc::new(bans(5, 10, 60));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|_| b.refused(b"k", S).is_some()).count()
                })
            })
            .collect();
        let begun: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!((begun, b.begun()), (1, 1));
    }

    #[test]
    fn bad_policies_name_the_argument() {
        let err = |r: Result<BanPolicy>| r.unwrap_err().to_string();
        assert!(err(BanPolicy::new(0, S, S)).starts_with("ban_after must be between 1"));
        assert!(err(BanPolicy::new(MAX_BAN_AFTER + 1, S, S)).starts_with("ban_after"));
        assert!(err(BanPolicy::new(1, 0, S)).starts_with("ban_within"));
        assert!(err(BanPolicy::new(1, S, 0)).starts_with("ban_seconds"));
        let too_long = (MAX_BAN_SECONDS + 1) * S;
        assert!(err(BanPolicy::new(1, S, too_long)).starts_with("ban_seconds"));
    }
}
