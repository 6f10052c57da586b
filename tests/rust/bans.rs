//! Temporary bans in the memory store: when they begin, what a banned key
//! sees, that its counters are left alone, and when they end.

use std::sync::{Arc, Barrier};
use std::thread;

use rust_py_rate_limit::clock::NANOS_PER_SEC as S;
use rust_py_rate_limit::{
    memory_limiter, AlgorithmKind, AnyClock, BanPolicy, FixedWindow, ManualClock, MemoryStore,
    Quota, Spec,
};

/// 2 hits per 10 s; 3 refusals within 10 s ban for 60 s.
fn store() -> (MemoryStore<FixedWindow>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(2, 10).unwrap();
    let policy = BanPolicy::new(3, 10 * S, 60 * S).unwrap();
    let s = MemoryStore::new(FixedWindow::new(quota), AnyClock::Manual(clock.clone()))
        .with_bans(Some(policy));
    (s, clock)
}

#[test]
fn the_third_refusal_bans_and_the_ban_ends_exactly() {
    let (s, clock) = store();
    assert!(s.hit(b"k", 1).unwrap().allowed);
    assert!(s.hit(b"k", 1).unwrap().allowed);
    for _ in 0..2 {
        let o = s.hit_outcome(b"k", 1).unwrap();
        assert!(!o.decision.allowed && !o.banned);
    }
    clock.advance(S);
    let third = s.hit_outcome(b"k", 1).unwrap();
    assert!(!third.decision.allowed && third.banned, "{third:?}");
    assert_eq!(third.decision.retry_after, 60 * S);
    let before = s.with_state(b"k", |st| format!("{st:?}")).unwrap();
    // Banned: refused without touching the counters, even after the window.
    clock.advance(30 * S);
    let o = s.hit_outcome(b"k", 1).unwrap();
    assert!(o.banned && !o.decision.allowed);
    assert_eq!(o.decision.retry_after, 30 * S);
    assert_eq!(s.with_state(b"k", |st| format!("{st:?}")).unwrap(), before);
    assert_eq!(s.banned_for(b"k"), Some(30 * S));
    assert!(s.peek_outcome(b"k").banned);
    // A nanosecond before the end: refused; at the end: admitted.
    clock.advance(30 * S - 1);
    assert!(s.hit_outcome(b"k", 1).unwrap().banned);
    clock.advance(1);
    let after = s.hit_outcome(b"k", 1).unwrap();
    assert!(after.decision.allowed && !after.banned);
    let stats = s.stats();
    assert_eq!((stats.bans, stats.banned_keys), (1, 0));
}

#[test]
fn refusals_spread_wider_than_the_span_do_not_ban() {
    let (s, clock) = store();
    let mut banned = false;
    for _ in 0..10 {
        for _ in 0..2 {
            assert!(s.hit(b"k", 1).unwrap().allowed);
        }
        // One refusal per 10 s window: never three within 10 s.
        banned |= s.hit_outcome(b"k", 1).unwrap().banned;
        clock.advance(10 * S);
    }
    assert!(!banned);
    assert_eq!(s.stats().bans, 0);
}

#[test]
fn manual_bans_reset_and_clear() {
    let (s, _clock) = store();
    s.ban(b"k", 5 * S).unwrap();
    assert!(s.hit_outcome(b"k", 1).unwrap().banned);
    assert!(s.unban(b"k"));
    assert!(!s.unban(b"k"));
    assert!(s.hit(b"k", 1).unwrap().allowed);
    s.ban(b"k", 5 * S).unwrap();
    assert!(s.reset(b"k"));
    assert_eq!(s.banned_for(b"k"), None, "reset lifts the ban");
    s.ban(b"x", 5 * S).unwrap();
    s.clear();
    assert_eq!(s.banned_for(b"x"), None, "clear lifts every ban");
    assert!(s
        .ban(b"k", 0)
        .unwrap_err()
        .to_string()
        .starts_with("seconds"));
}

#[test]
fn max_keys_never_lifts_a_ban() {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(1, 1).unwrap();
    let s = MemoryStore::bounded(
        FixedWindow::new(quota),
        AnyClock::Manual(clock.clone()),
        Some(2),
        rust_py_rate_limit::OnFull::Deny,
    );
    s.hit(b"bad", 1).unwrap();
    s.ban(b"bad", 100 * S).unwrap();
    clock.advance(2 * S);
    // The banned key's rate state expired; new keys evict it.
    assert!(s.hit(b"a", 1).unwrap().allowed);
    assert!(s.hit(b"b", 1).unwrap().allowed);
    assert!(s.hit_outcome(b"bad", 1).unwrap().banned);
}

#[test]
fn bans_in_compound_limits() {
    let clock = Arc::new(ManualClock::new());
    let spec = Spec::new(
        AlgorithmKind::Fixed,
        vec![
            Quota::per_seconds(1, 1).unwrap(),
            Quota::per_seconds(5, 60).unwrap(),
        ],
        None,
    )
    .unwrap()
    .with_bans(Some(BanPolicy::new(2, 60 * S, 30 * S).unwrap()));
    let lim = memory_limiter(&spec, AnyClock::Manual(clock.clone())).unwrap();
    assert!(lim.hit(b"k", 1).unwrap().allowed);
    assert!(!lim.hit_outcome(b"k", 1).unwrap().banned);
    let o = lim.hit_outcome(b"k", 1).unwrap();
    assert!(o.banned && o.decision.retry_after == 30 * S);
    clock.advance(29 * S);
    assert!(lim.hit_outcome(b"k", 1).unwrap().banned);
    assert_eq!(lim.banned_for(b"k"), Some(S));
}

#[test]
fn threads_hammering_one_key_begin_one_ban_and_admit_the_limit() {
    let clock = Arc::new(ManualClock::new());
    let quota = Quota::per_seconds(100, 60).unwrap();
    let s = Arc::new(
        MemoryStore::new(FixedWindow::new(quota), AnyClock::Manual(clock.clone()))
            .with_bans(Some(BanPolicy::new(5, 60 * S, 600 * S).unwrap())),
    );
    let start = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (s, start) = (s.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                (0..1_000)
                    .filter(|_| s.hit_outcome(b"k", 1).unwrap().decision.allowed)
                    .count()
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(admitted, 100);
    assert_eq!(s.stats().bans, 1, "exactly one ban begins");
    assert_eq!(s.stats().banned_keys, 1);
}
