//! The memory store driven through its public API under a manual clock.

use std::sync::Arc;
use std::thread;

use proptest::prelude::*;
use rust_py_rate_limit::clock::NANOS_PER_SEC as S;
use rust_py_rate_limit::{
    AnyClock, Clock, Error, FixedWindow, ManualClock, MemoryStore, OnFull, Quota, SweepCursor,
};

fn store(limit: u64, window_secs: u64) -> (MemoryStore<FixedWindow>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(limit, window_secs).unwrap();
    let store = MemoryStore::new(FixedWindow::new(quota), AnyClock::Manual(clock.clone()));
    (store, clock)
}

#[test]
fn admits_up_to_the_limit_per_key() {
    let (s, _) = store(3, 60);
    let got: Vec<bool> = (0..4).map(|_| s.hit(b"a", 1).unwrap().allowed).collect();
    assert_eq!(got, [true, true, true, false]);
    assert!(s.hit(b"b", 1).unwrap().allowed, "keys are independent");
    let st = s.stats();
    assert_eq!(
        (st.allowed, st.blocked, st.total_checks(), st.active_keys),
        (4, 1, 5, 2)
    );
}

#[test]
fn window_rolls_over_at_exactly_window_seconds() {
    let (s, clock) = store(2, 60);
    clock.advance(7 * S);
    s.hit(b"k", 2).unwrap();
    clock.advance(60 * S - 1);
    let d = s.hit(b"k", 1).unwrap();
    assert!(!d.allowed);
    assert_eq!((d.remaining, d.reset_after, d.retry_after), (0, 1, 1));
    assert_eq!(d.retry_after_secs(), 1, "never 0 while blocked");
    clock.advance(1);
    let d = s.hit(b"k", 1).unwrap();
    assert!(d.allowed);
    assert_eq!((d.remaining, d.reset_after, d.retry_after), (1, 60 * S, 0));
}

#[test]
fn decision_fields_are_exact() {
    let (s, clock) = store(100, 60);
    let d = s.hit(b"u", 1).unwrap();
    assert_eq!(
        (
            d.limit,
            d.remaining,
            d.reset_after_secs(),
            d.retry_after_secs()
        ),
        (100, 99, 60, 0)
    );
    clock.advance(18 * S);
    s.hit(b"u", 99).unwrap();
    let d = s.hit(b"u", 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(
        (d.remaining, d.reset_after_secs(), d.retry_after_secs()),
        (0, 42, 42)
    );
    clock.advance(S / 2);
    let d = s.peek(b"u");
    assert_eq!(
        (d.reset_after, d.reset_after_secs()),
        (41 * S + S / 2, 42),
        "rounded up"
    );
}

#[test]
fn peek_reads_without_spending() {
    let (s, _) = store(5, 60);
    assert_eq!(s.peek(b"new").remaining, 5);
    assert!(s.is_empty(), "peeking a new key stores nothing");
    s.hit(b"k", 2).unwrap();
    for _ in 0..3 {
        assert_eq!(s.peek(b"k").remaining, 3);
    }
    assert_eq!(s.stats().total_checks(), 1);
}

#[test]
fn reset_and_clear_drop_state() {
    let (s, _) = store(1, 60);
    s.hit(b"a", 1).unwrap();
    s.hit(b"b", 1).unwrap();
    assert!(!s.hit(b"a", 1).unwrap().allowed);
    assert!(s.reset(b"a"));
    assert!(!s.reset(b"a"));
    assert!(s.hit(b"a", 1).unwrap().allowed);
    s.clear();
    assert!(s.is_empty());
    assert!(s.hit(b"b", 1).unwrap().allowed);
}

#[test]
fn cleanup_removes_only_expired_keys() {
    let (s, clock) = store(10, 60);
    s.hit(b"old", 1).unwrap();
    clock.advance(30 * S);
    s.hit(b"young", 1).unwrap();
    clock.advance(30 * S - 1);
    assert_eq!(s.cleanup_expired(), 0);
    clock.advance(1);
    assert_eq!(s.cleanup_expired(), 1);
    assert_eq!(s.len(), 1);
    assert_eq!(s.peek(b"young").remaining, 9, "the survivor kept its count");
    clock.advance(30 * S);
    assert_eq!(s.cleanup_expired(), 1);
    assert!(s.is_empty());
}

#[test]
fn invalid_cost_is_an_error_and_changes_nothing() {
    let (s, _) = store(3, 60);
    s.hit(b"k", 1).unwrap();
    assert!(matches!(
        s.hit(b"k", 0),
        Err(Error::InvalidArgument { name: "cost", .. })
    ));
    assert_eq!(
        s.hit(b"k", 4),
        Err(Error::CostExceedsCapacity {
            cost: 4,
            capacity: 3
        })
    );
    assert!(matches!(
        s.hit(b"new", 4),
        Err(Error::CostExceedsCapacity { .. })
    ));
    assert_eq!(s.peek(b"k").remaining, 2);
    assert_eq!(s.len(), 1);
    assert_eq!(s.stats().total_checks(), 1);
}

#[test]
fn a_rejected_hit_on_a_new_key_stores_nothing() {
    // Only reachable by a cost above capacity, which is refused up front.
    let (s, _) = store(1, 60);
    let _ = s.hit(b"k", 2);
    assert!(s.is_empty());
}

#[test]
fn keys_are_bytes_any_length() {
    let (s, _) = store(1, 60);
    let huge = vec![b'x'; 1 << 20];
    for key in [&b""[..], &huge[..], "ключ🔑".as_bytes(), b"\xed\xa0\x80"] {
        assert!(s.hit(key, 1).unwrap().allowed);
        assert!(!s.hit(key, 1).unwrap().allowed);
    }
    assert_eq!(s.len(), 4);
}

#[test]
fn threads_on_one_key_admit_exactly_the_limit() {
    let (s, _) = store(10_000, 60);
    let s = Arc::new(s);
    let admitted: u64 = (0..8)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || {
                (0..5_000)
                    .filter(|_| s.hit(b"hot", 1).unwrap().allowed)
                    .count() as u64
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(admitted, 10_000);
    assert_eq!(s.stats().blocked, 30_000);
}

proptest! {
    /// Whatever the sequence of hits and clock steps, no window ever admits
    /// more than the limit, a refused hit changes nothing, and the reported
    /// remaining count matches what was spent.
    #[test]
    fn never_over_admits(
        limit in 1u64..20,
        window in 1u64..10,
        steps in prop::collection::vec((0u64..3 * S, 1u64..5), 1..200),
    ) {
        let (s, clock) = store(limit, window);
        let window_ns = window * S;
        let mut spent_in_window = 0;
        let mut window_start = None;
        for (dt, cost) in steps {
            clock.advance(dt);
            let now = clock.now();
            let cost = cost.min(limit);
            let before = s.peek(b"k");
            let d = s.hit(b"k", cost).unwrap();
            if window_start.is_none_or(|start| now - start >= window_ns) {
                window_start = Some(now);
                spent_in_window = 0;
            }
            prop_assert_eq!(d.allowed, spent_in_window + cost <= limit);
            if d.allowed {
                spent_in_window += cost;
                prop_assert_eq!(d.remaining, limit - spent_in_window);
            } else {
                prop_assert_eq!(s.peek(b"k"), before, "refused hit changed state");
                prop_assert!(d.retry_after > 0);
            }
            prop_assert!(spent_in_window <= limit);
        }
    }
}

fn bounded(
    limit: u64,
    window_secs: u64,
    max: usize,
    on_full: OnFull,
) -> (MemoryStore<FixedWindow>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(limit, window_secs).unwrap();
    let store = MemoryStore::bounded(
        FixedWindow::new(quota),
        AnyClock::Manual(clock.clone()),
        Some(max),
        on_full,
    );
    (store, clock)
}

#[test]
fn chunked_sweep_removes_every_expired_key_a_chunk_at_a_time() {
    let (s, clock) = store(1, 10);
    for i in 0..50_000u32 {
        s.hit(&i.to_le_bytes(), 1).unwrap();
    }
    clock.advance(5 * S);
    for i in 50_000..60_000u32 {
        s.hit(&i.to_le_bytes(), 1).unwrap();
    }
    clock.advance(5 * S);
    let mut cursor = SweepCursor::default();
    let (mut removed, mut chunks) = (0, 0);
    loop {
        let step = s.sweep_chunk(&mut cursor, 256);
        removed += step.removed;
        chunks += 1;
        assert!(step.removed <= 256);
        if step.done {
            break;
        }
    }
    assert_eq!(removed, 50_000);
    assert!(
        chunks > 60_000 / 256,
        "swept in many short steps, got {chunks}"
    );
    assert_eq!(s.len(), 10_000);
    assert!(
        !s.hit(&55_000u32.to_le_bytes(), 1).unwrap().allowed,
        "live keys kept their counts"
    );
    clock.advance(5 * S);
    assert_eq!(s.cleanup_expired(), 10_000);
    assert!(s.is_empty());
    let st = s.stats();
    assert_eq!((st.cleanup_runs, st.expired_removed), (1, 10_000));
}

#[test]
fn a_full_store_denies_new_keys_and_never_evicts_live_ones() {
    let (s, clock) = bounded(2, 60, 3, OnFull::Deny);
    for key in [b"a", b"b", b"c"] {
        assert!(s.hit(key, 2).unwrap().allowed);
    }
    // A flood of new keys: all refused, the limited keys untouched.
    for i in 0..1_000u32 {
        let d = s.hit(&i.to_le_bytes(), 1).unwrap();
        assert!(!d.allowed);
        assert!(d.retry_after > 0);
    }
    assert_eq!(s.stats().rejected_full, 1_000);
    assert_eq!(s.len(), 3);
    assert!(
        !s.hit(b"a", 1).unwrap().allowed,
        "a limited key stays limited"
    );
    // Once keys expire, new keys take their place.
    clock.advance(60 * S);
    assert!(s.hit(b"new", 1).unwrap().allowed);
    assert!(s.len() <= 3);
    assert!(s.stats().expired_removed >= 1);
}

#[test]
fn a_full_store_can_admit_new_keys_untracked() {
    let (s, _) = bounded(2, 60, 1, OnFull::Allow);
    assert!(s.hit(b"a", 2).unwrap().allowed);
    let d = s.hit(b"b", 1).unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 1);
    assert!(
        s.hit(b"b", 2).unwrap().allowed,
        "untracked: nothing was spent"
    );
    assert_eq!(s.len(), 1);
    assert_eq!(s.stats().rejected_full, 2);
    assert!(!s.hit(b"a", 1).unwrap().allowed);
}
