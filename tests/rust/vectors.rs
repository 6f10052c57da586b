//! The shared decision vectors (tests/vectors/decisions.json) against the
//! memory store. The Python suite runs the same file through the binding.

use std::sync::Arc;

use rust_py_rate_limit::clock::{Clock, NANOS_PER_SEC};
use rust_py_rate_limit::{memory_limiter, AlgorithmKind, AnyClock, ManualClock, Quota, Spec};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().expect("an unsigned integer")
}

#[test]
fn every_vector_decides_exactly() {
    let text = include_str!("../vectors/decisions.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    let mut kinds = std::collections::HashSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let kind = AlgorithmKind::parse(case["algorithm"].as_str().unwrap()).unwrap();
        kinds.insert(case["algorithm"].as_str().unwrap().to_owned());
        let quotas = case["limits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| Quota::new(u(&l[0]), u(&l[1]) * NANOS_PER_SEC).unwrap())
            .collect();
        let burst = case["burst"].as_u64();
        let clock = Arc::new(ManualClock::new());
        let limiter = memory_limiter(
            &Spec::new(kind, quotas, burst).unwrap(),
            AnyClock::Manual(clock.clone()),
        )
        .unwrap();
        for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let at = u(&step["at_ns"]);
            clock.advance(at - clock.now());
            let d = limiter.hit(b"key", u(&step["cost"])).unwrap();
            let got = (d.allowed, d.remaining, d.retry_after, d.reset_after);
            let want = (
                step["allowed"].as_bool().unwrap(),
                u(&step["remaining"]),
                u(&step["retry_after_ns"]),
                u(&step["reset_after_ns"]),
            );
            assert_eq!(got, want, "{name}: step {i} at {at} ns");
        }
    }
    for kind in AlgorithmKind::NAMES {
        assert!(kinds.contains(kind), "no vector for {kind}");
    }
}
