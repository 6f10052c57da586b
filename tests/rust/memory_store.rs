//! The memory store's key count, capacity and reads under `clear()`, sweeps
//! and inserts running at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use proptest::prelude::*;
use rust_py_rate_limit::clock::NANOS_PER_SEC as S;
use rust_py_rate_limit::{
    AnyClock, Clock, FixedWindow, ManualClock, MemoryStore, OnFull, Quota, SlidingLog, SweepCursor,
};

type Store = MemoryStore<FixedWindow>;

/// A store of at most `max` keys, one unit per key per second.
fn bounded(max: usize, on_full: OnFull) -> (Arc<Store>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(1, 1).unwrap();
    let store = MemoryStore::bounded(
        FixedWindow::new(quota),
        AnyClock::Manual(clock.clone()),
        Some(max),
        on_full,
    );
    (Arc::new(store), clock)
}

/// Checks that the count matches the entries, then that an emptied store
/// admits exactly `max` new keys (and turns the next one away).
fn assert_exact_and_usable(s: &Store, clock: &ManualClock, max: usize) {
    assert_eq!(
        s.counted_keys(),
        s.len(),
        "the key count drifted from the entries"
    );
    clock.advance(2 * S);
    s.cleanup_expired();
    assert!(s.is_empty());
    assert_eq!(s.counted_keys(), 0);
    let rejected = s.stats().rejected_full;
    let admitted = (0..=max)
        .filter(|i| s.hit(format!("fresh-{i}").as_bytes(), 1).unwrap().allowed)
        .count();
    assert_eq!(admitted, max, "an empty store admits exactly max_keys keys");
    assert_eq!(s.stats().rejected_full, rejected + 1);
    assert_eq!((s.len(), s.counted_keys()), (max, max));
}

/// The reproduction of the report: new keys, the janitor's sweeps and
/// `clear()` at once, round after round. After each round, with every
/// thread paused, the count must equal the entries: a count that drifted
/// leaves an empty store refusing every new key (or admitting more than
/// `max_keys`).
#[test]
fn clear_racing_sweeps_and_inserts_keeps_the_count_exact() {
    const MAX: usize = 20_000;
    const ROUNDS: usize = 300;
    let (s, clock) = bounded(MAX, OnFull::Deny);
    // Two inserters, the janitor and this thread, which clears.
    let start = Arc::new(Barrier::new(4));
    let end = Arc::new(Barrier::new(4));
    let next = Arc::new(AtomicU32::new(0));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (s, start, end, next) = (s.clone(), start.clone(), end.clone(), next.clone());
        threads.push(thread::spawn(move || {
            for _ in 0..ROUNDS {
                start.wait();
                for _ in 0..3_000 {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    s.hit(&i.to_le_bytes(), 1).unwrap();
                    if i % 7 == 0 {
                        s.reset(&i.wrapping_sub(3).to_le_bytes());
                    }
                }
                end.wait();
            }
        }));
    }
    {
        // The janitor: keys expire under it and it sweeps them.
        let (s, clock, start, end) = (s.clone(), clock.clone(), start.clone(), end.clone());
        threads.push(thread::spawn(move || {
            for _ in 0..ROUNDS {
                start.wait();
                for _ in 0..4 {
                    clock.advance(S / 2);
                    s.cleanup_expired();
                }
                end.wait();
            }
        }));
    }
    let mut drifted = Vec::new();
    for round in 0..ROUNDS {
        start.wait();
        for _ in 0..(round % 5) * 20 {
            thread::yield_now();
        }
        s.clear();
        end.wait();
        if s.counted_keys() != s.len() {
            drifted.push((round, s.counted_keys(), s.len()));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        drifted,
        [],
        "rounds whose count drifted: (round, count, keys)"
    );
    assert_exact_and_usable(&s, &clock, MAX);
}

#[derive(Debug, Clone)]
enum Op {
    Hit(u8),
    Reset(u8),
    Advance(u64),
    Sweep(usize),
    Cleanup,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<u8>().prop_map(Op::Hit),
        1 => any::<u8>().prop_map(Op::Reset),
        2 => (0..2 * S).prop_map(Op::Advance),
        2 => (1usize..64).prop_map(Op::Sweep),
        1 => Just(Op::Cleanup),
        1 => Just(Op::Clear),
    ]
}

/// Runs `ops` against `s`, with a sweep cursor that persists across them so
/// a sweep is interleaved with the other operations chunk by chunk.
fn run(
    s: &Store,
    clock: &ManualClock,
    ops: &[Op],
    base: u32,
    check_each: bool,
) -> Result<(), TestCaseError> {
    let mut cursor = SweepCursor::default();
    for op in ops {
        match *op {
            Op::Hit(k) => {
                s.hit(&(base + u32::from(k)).to_le_bytes(), 1).unwrap();
            }
            Op::Reset(k) => {
                s.reset(&(base + u32::from(k)).to_le_bytes());
            }
            Op::Advance(by) => {
                clock.advance(by);
            }
            Op::Sweep(budget) => {
                if s.sweep_chunk(&mut cursor, budget).done {
                    cursor = SweepCursor::default();
                }
            }
            Op::Cleanup => {
                s.cleanup_expired();
            }
            Op::Clear => s.clear(),
        }
        if check_each {
            prop_assert_eq!(s.counted_keys(), s.len(), "after {:?}", op);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of hits, resets, clock steps, chunked sweeps and
    /// clears: the count equals the entries after every step, a new key is
    /// admitted exactly while there is room, and `max_keys` is never
    /// exceeded.
    #[test]
    fn the_count_is_exact_after_every_operation(
        max in 1usize..40,
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let (s, clock) = bounded(max, OnFull::Deny);
        run(&s, &clock, &ops, 0, true)?;
        prop_assert!(s.len() <= max);
        assert_exact_and_usable(&s, &clock, max);
    }

    /// The same operations split over threads that run at once, round
    /// after round: whatever the interleaving, at the end of every round
    /// (all threads paused) the count equals the entries, and an emptied
    /// store admits exactly `max_keys` new keys.
    #[test]
    fn the_count_is_exact_under_any_interleaving(
        max in 1usize..3_000,
        ops in prop::collection::vec(prop::collection::vec(op(), 1..400), 3),
    ) {
        let (s, clock) = bounded(max, OnFull::Deny);
        let rounds = 30;
        let start = Arc::new(Barrier::new(ops.len() + 1));
        let end = Arc::new(Barrier::new(ops.len() + 1));
        let threads: Vec<_> = ops
            .into_iter()
            .enumerate()
            .map(|(n, ops)| {
                let (s, clock, start, end) = (s.clone(), clock.clone(), start.clone(), end.clone());
                thread::spawn(move || {
                    for round in 0..rounds {
                        start.wait();
                        // Each thread and round on its own keys, so keys
                        // pile up for the sweeps and clears to race.
                        let mut result = Ok(());
                        for rep in 0..10 {
                            let base = ((round * 10 + rep) * 3 + n) as u32 * 256;
                            result = result.and(run(&s, &clock, &ops, base, false));
                        }
                        end.wait();
                        result.unwrap();
                    }
                })
            })
            .collect();
        let mut drifted = Vec::new();
        for round in 0..rounds {
            start.wait();
            end.wait();
            if s.counted_keys() != s.len() {
                drifted.push((round, s.counted_keys(), s.len()));
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        prop_assert_eq!(drifted, [], "rounds whose count drifted: (round, count, keys)");
        prop_assert!(s.len() <= max, "{} keys stored, max_keys is {}", s.len(), max);
        assert_exact_and_usable(&s, &clock, max);
    }
}

/// `clear()` hands the tables' memory back: after clearing a million keys
/// the shards hold about as many buckets as a new store.
#[test]
fn clear_releases_the_tables_capacity() {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(1, 60).unwrap();
    let s = MemoryStore::new(FixedWindow::new(quota), AnyClock::Manual(clock));
    let empty = s.table_buckets();
    for i in 0..1_000_000u32 {
        s.hit(&i.to_le_bytes(), 1).unwrap();
    }
    assert!(s.table_buckets() >= 1_000_000);
    s.clear();
    assert!(s.is_empty());
    assert_eq!(s.counted_keys(), 0);
    assert!(
        s.table_buckets() <= empty + 64,
        "{} buckets kept after clear (a new store has {empty})",
        s.table_buckets()
    );
    // And the store works as before.
    assert!(s.hit(b"k", 1).unwrap().allowed);
    assert!(!s.hit(b"k", 1).unwrap().allowed);
}

/// `peek()` on a sliding log drops the expired entries, as a hit would, so
/// the next read does not walk them again.
#[test]
fn peek_prunes_a_sliding_log() {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(100_000, 10).unwrap();
    let s = MemoryStore::new(SlidingLog::new(quota), AnyClock::Manual(clock.clone()));
    for _ in 0..100_000 {
        s.hit(b"k", 1).unwrap();
        clock.advance(1_000);
    }
    assert_eq!(s.with_state(b"k", |log| log.len()), Some(100_000));
    clock.advance(10 * S);
    let d = s.peek(b"k");
    assert_eq!((d.allowed, d.remaining), (true, 100_000));
    assert_eq!(
        s.with_state(b"k", |log| log.len()),
        Some(0),
        "peek left the expired entries"
    );
    // Pruning changes no decision.
    assert_eq!(s.peek(b"k"), d);
    assert!(s.hit(b"k", 100_000).unwrap().allowed);
}

#[test]
fn peek_keeps_the_live_part_of_a_sliding_log() {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(10, 10).unwrap();
    let s = MemoryStore::new(SlidingLog::new(quota), AnyClock::Manual(clock.clone()));
    for _ in 0..10 {
        s.hit(b"k", 1).unwrap();
        clock.advance(S);
    }
    clock.advance(S / 2);
    // Entries at 0s..9s; at 10.5s the one at 0s is gone.
    let before = s.peek(b"k");
    assert_eq!(before.remaining, 1);
    assert_eq!(s.with_state(b"k", |log| log.len()), Some(9));
    assert_eq!(clock.now(), 10 * S + S / 2);
}

/// Keys short enough to be stored inline and keys on the heap, side by side
/// and across the boundary, are each their own key: found again by their
/// bytes, reset and swept like any other.
#[test]
fn inline_and_heap_keys_are_each_their_own() {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(2, 1).unwrap();
    let s = MemoryStore::new(FixedWindow::new(quota), AnyClock::Manual(clock.clone()));
    // Lengths 0..48, and pairs differing only in their last byte, around 15
    // and 16 bytes (the inline bound) in particular.
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for len in 0..48usize {
        let key: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let mut twin = key.clone();
        twin.push(0xff);
        keys.push(key);
        keys.push(twin);
    }
    keys.sort();
    keys.dedup();
    for key in &keys {
        assert!(s.hit(key, 1).unwrap().allowed);
    }
    assert_eq!(s.len(), keys.len());
    for key in &keys {
        let d = s.hit(key, 1).unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 0), "{key:?}");
        assert!(!s.hit(key, 1).unwrap().allowed);
    }
    let short = keys.iter().find(|k| k.len() == 15).unwrap();
    let long = keys.iter().find(|k| k.len() == 16).unwrap();
    assert!(s.reset(short) && s.reset(long));
    assert!(s.hit(short, 1).unwrap().allowed && s.hit(long, 1).unwrap().allowed);
    clock.advance(2 * S);
    s.cleanup_expired();
    assert!(s.is_empty());
}
