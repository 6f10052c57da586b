//! Decision events: a bounded queue per limiter, filled by whichever thread
//! decides (without the GIL) and drained by one Python thread that hands
//! the events to callbacks in batches.
//!
//! Off until a callback is registered: then only refusals, bans and storage
//! outages reach this module, never an admission. A key's refusals make one
//! `Blocked` event per window of the first limit (a flood is one event; the
//! next one says how many refusals the previous one stood for), a ban makes
//! one `Banned` event. A full queue drops the event and counts it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::Nanos;
use crate::fork;

/// Events queued at most per limiter before new ones are dropped.
pub const CAPACITY: usize = 10_000;
/// Keys whose last event is remembered before expired ones are dropped.
const KEYS: usize = 10_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Blocked,
    Banned,
    Unbanned,
    StorageUnavailable,
    StorageRecovered,
}

impl Kind {
    /// The `event_type` of the event.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Blocked => "rate_limit_blocked",
            Kind::Banned => "rate_limit_banned",
            Kind::Unbanned => "rate_limit_unbanned",
            Kind::StorageUnavailable => "storage_unavailable",
            Kind::StorageRecovered => "storage_recovered",
        }
    }
}

/// One event, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    /// The limiter key (None for storage events).
    pub key: Option<Box<[u8]>>,
    /// Wall-clock time, microseconds since the Unix epoch.
    pub at_us: u64,
    /// Nanoseconds until the key is admitted again (blocked), or the ban's
    /// length (banned).
    pub retry_after: Nanos,
    /// For a blocked event: the refusals its key's previous blocked event
    /// stood for (itself included); 0 for the first.
    pub refusals_before: u64,
    /// For storage events: the error.
    pub detail: Option<String>,
}

/// What was last reported of one key.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// No new blocked event before this time (the limiter's clock).
    quiet_until: Nanos,
    /// Refusals since (and including) the last blocked event.
    refusals: u64,
    /// The ban reported lasts until this time.
    banned_until: Nanos,
}

/// The events of one limiter.
#[derive(Debug, Default)]
pub struct Events {
    on: AtomicBool,
    queue: Mutex<VecDeque<Event>>,
    dropped: AtomicU64,
    seen: Mutex<HashMap<Box<[u8]>, Seen, ahash::RandomState>>,
}

/// The wall clock in microseconds since the Unix epoch.
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Events {
    /// Whether events are collected: one relaxed load.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Starts or stops collecting (stopping forgets the keys' history).
    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Relaxed);
        if !on {
            let _pass = fork::enter();
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// Events dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Queues `event`, or drops and counts it when the queue is full.
    pub fn push(&self, event: Event) {
        let _pass = fork::enter();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() < CAPACITY {
            queue.push_back(event);
        } else {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Takes every queued event.
    pub fn drain(&self) -> Vec<Event> {
        let _pass = fork::enter();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.drain(..).collect()
    }

    /// A refusal of `key` at `now` (the limiter's clock), for `window` (the
    /// first limit's): a blocked event if it is the key's first refusal
    /// since its last event's window, and a banned event if a ban refused
    /// it (`ban_left`: how long the ban lasts) not reported yet.
    #[cold]
    pub fn refused(
        &self,
        key: &[u8],
        now: Nanos,
        window: Nanos,
        retry_after: Nanos,
        ban_left: Option<Nanos>,
    ) {
        let mut report = Vec::new();
        {
            let _pass = fork::enter();
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            // A known key (a flood's every refusal but the first) is one
            // lookup, no allocation.
            let entry = match seen.get_mut(key) {
                Some(entry) => entry,
                None => {
                    if seen.len() >= KEYS {
                        seen.retain(|_, s| now < s.quiet_until.max(s.banned_until));
                        if seen.len() >= KEYS {
                            // Still full of live keys: forget every other
                            // one, not all (each forgotten key may report
                            // its flood once more).
                            let mut n = 0_u32;
                            seen.retain(|_, _| {
                                n += 1;
                                n % 2 == 0
                            });
                        }
                    }
                    seen.entry(key.into()).or_default()
                }
            };
            if let Some(left) = ban_left {
                if now >= entry.banned_until {
                    entry.banned_until = now.saturating_add(left);
                    report.push((Kind::Banned, left, 0));
                }
            }
            if now >= entry.quiet_until {
                report.push((Kind::Blocked, retry_after, entry.refusals));
                entry.quiet_until = now.saturating_add(window);
                entry.refusals = 1;
            } else {
                entry.refusals += 1;
            }
        }
        if report.is_empty() {
            return;
        }
        let at_us = wall_us();
        for (kind, retry_after, refusals_before) in report {
            self.push(Event {
                kind,
                key: Some(key.into()),
                at_us,
                retry_after,
                refusals_before,
                detail: None,
            });
        }
    }

    /// A ban set (`ban()`) or lifted (`unban()`) by hand.
    pub fn ban_changed(&self, key: &[u8], now: Nanos, banned_for: Option<Nanos>) {
        if !self.enabled() {
            return;
        }
        {
            let _pass = fork::enter();
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = seen.get_mut(key) {
                entry.banned_until = banned_for.map_or(0, |left| now.saturating_add(left));
            } else if let Some(left) = banned_for {
                if seen.len() < KEYS {
                    let entry = Seen {
                        banned_until: now.saturating_add(left),
                        ..Seen::default()
                    };
                    seen.insert(key.into(), entry);
                }
            }
        }
        self.push(Event {
            kind: if banned_for.is_some() {
                Kind::Banned
            } else {
                Kind::Unbanned
            },
            key: Some(key.into()),
            at_us: wall_us(),
            retry_after: banned_for.unwrap_or(0),
            refusals_before: 0,
            detail: None,
        });
    }

    /// The storage failed (an outage began) or answers again.
    pub fn storage(&self, kind: Kind, detail: String) {
        if !self.enabled() {
            return;
        }
        self.push(Event {
            kind,
            key: None,
            at_us: wall_us(),
            retry_after: 0,
            refusals_before: 0,
            detail: Some(detail),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;

    #[test]
    fn a_flood_is_one_event_per_window() {
        let events = Events::default();
        events.set_enabled(true);
        for i in 0..10_000 {
            events.refused(b"k", i * 1000, 60 * S, 30 * S, None);
        }
        let drained = events.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].kind, Kind::Blocked);
        assert_eq!(drained[0].refusals_before, 0);
        // The next window: one event, carrying the flood's count.
        events.refused(b"k", 60 * S, 60 * S, 30 * S, None);
        let drained = events.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].refusals_before, 10_000);
    }

    #[test]
    fn a_ban_is_reported_once_and_a_full_queue_drops() {
        let events = Events::default();
        events.set_enabled(true);
        for i in 0..5 {
            events.refused(b"k", i, 60 * S, 30 * S, Some(30 * S));
        }
        let kinds: Vec<Kind> = events.drain().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [Kind::Banned, Kind::Blocked]);
        for i in 0..(CAPACITY as u64 + 5) {
            events.storage(Kind::StorageUnavailable, format!("{i}"));
        }
        assert_eq!(events.drain().len(), CAPACITY);
        assert_eq!(events.dropped(), 5);
    }
}
