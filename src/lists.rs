//! Allow and deny lists of exact keys, replaceable while hits run.
//!
//! An allowed key is admitted and never counted or stored; a denied key is
//! refused with no state kept. Both lists are swapped in whole (one atomic
//! pointer store), so a hit sees either the old lists or the new ones,
//! never a mix. While both are empty a hit pays one relaxed load.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// What a list says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// On the allow list: admit, count nothing.
    Allowed,
    /// On the deny list: refuse, keep nothing.
    Denied,
}

#[derive(Debug, Default)]
struct Sets {
    allow: HashSet<Box<[u8]>, ahash::RandomState>,
    deny: HashSet<Box<[u8]>, ahash::RandomState>,
    /// Both lists in one map (the deny list wins a key on both): a hit
    /// looks once.
    index: HashMap<Box<[u8]>, Listed, ahash::RandomState>,
}

impl Sets {
    fn new(
        allow: HashSet<Box<[u8]>, ahash::RandomState>,
        deny: HashSet<Box<[u8]>, ahash::RandomState>,
    ) -> Self {
        let mut index =
            HashMap::with_capacity_and_hasher(allow.len() + deny.len(), ahash::RandomState::new());
        index.extend(allow.iter().map(|k| (k.clone(), Listed::Allowed)));
        index.extend(deny.iter().map(|k| (k.clone(), Listed::Denied)));
        Self { allow, deny, index }
    }
}

/// The allow and deny lists of one limiter.
#[derive(Debug, Default)]
pub struct KeyLists {
    sets: ArcSwap<Sets>,
    any: AtomicBool,
    writer: Mutex<()>,
}

impl KeyLists {
    /// Empty lists.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether either list holds a key.
    #[inline]
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Which list `key` is on, if any (the deny list wins a key on both).
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Listed> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.sets.load().index.get(key).copied()
    }

    /// Replaces the allow list.
    pub fn set_allow(&self, keys: impl IntoIterator<Item = Box<[u8]>>) {
        let allow = keys.into_iter().collect();
        self.replace(|old| Sets::new(allow, old.deny.clone()));
    }

    /// Replaces the deny list.
    pub fn set_deny(&self, keys: impl IntoIterator<Item = Box<[u8]>>) {
        let deny = keys.into_iter().collect();
        self.replace(|old| Sets::new(old.allow.clone(), deny));
    }

    /// The allow list's keys (in no order).
    pub fn allow(&self) -> Vec<Box<[u8]>> {
        self.sets.load().allow.iter().cloned().collect()
    }

    /// The deny list's keys (in no order).
    pub fn deny(&self) -> Vec<Box<[u8]>> {
        self.sets.load().deny.iter().cloned().collect()
    }

    fn replace(&self, make: impl FnOnce(&Sets) -> Sets) {
        // Writers take turns, so `any` always describes the sets in place.
        let _turn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let new = make(&self.sets.load());
        let any = !new.allow.is_empty() || !new.deny.is_empty();
        self.sets.store(Arc::new(new));
        self.any.store(any, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<Box<[u8]>> {
        list.iter().map(|k| k.as_bytes().into()).collect()
    }

    #[test]
    fn lists_answer_and_are_replaced_whole() {
        let lists = KeyLists::new();
        assert_eq!(lists.get(b"a"), None);
        lists.set_allow(keys(&["a", "b"]));
        lists.set_deny(keys(&["b", "c"]));
        assert_eq!(lists.get(b"a"), Some(Listed::Allowed));
        assert_eq!(lists.get(b"b"), Some(Listed::Denied), "deny wins");
        assert_eq!(lists.get(b"c"), Some(Listed::Denied));
        assert_eq!(lists.get(b"d"), None);
        lists.set_allow(keys(&[]));
        assert_eq!(lists.get(b"a"), None);
        assert_eq!(lists.get(b"c"), Some(Listed::Denied));
        lists.set_deny(keys(&[]));
        assert_eq!(lists.get(b"c"), None);
        assert!(!lists.any.load(Ordering::Acquire));
    }

    #[test]
    fn readers_see_one_list_or_the_other_never_a_mix() {
        let lists = Arc::new(KeyLists::new());
        let (even, odd) = (keys(&["x", "y"]), keys(&["z"]));
        lists.set_allow(even.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reader = {
            let (lists, stop, seen) = (lists.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sets = lists.sets.load();
                    let (y, z) = (
                        sets.allow.contains(&b"y"[..]),
                        sets.allow.contains(&b"z"[..]),
                    );
                    assert!(y != z, "a mix of two lists");
                    assert!(lists.get(b"nobody").is_none());
                    assert!(lists.any.load(Ordering::Acquire), "lists ignored");
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Swap until the reader has looked many times, however the threads
        // are scheduled.
        let mut i = 0u64;
        while seen.load(Ordering::Relaxed) < 10_000 {
            lists.set_allow(if i % 2 == 0 {
                odd.clone()
            } else {
                even.clone()
            });
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        assert!(i > 0);
    }
}
