//! rust-py-rate-limit: rate-limit decisions in Rust, for Python.
//!
//! The core has no Python in it: [`clock`] supplies time, [`rate`] validates
//! quotas, [`algorithm`] holds the pure arithmetic of each algorithm, and
//! [`store`] keeps per-key state. The `python` feature adds the PyO3 binding
//! in `py`, the only module that touches Python.

pub mod algorithm;
pub mod clock;
mod error;
pub mod events;
pub mod fork;
pub mod janitor;
pub mod limiter;
pub mod lists;
pub mod logs;
pub mod metrics;
pub mod rate;
pub mod runtime;
pub mod store;

#[cfg(feature = "python")]
mod py;

pub use algorithm::{Algorithm, Compound, Decision, FixedWindow, Gcra, SlidingLog, SlidingWindow};
pub use clock::{AnyClock, Clock, ManualClock, MonotonicClock, Nanos};
pub use error::{Error, Result};
pub use limiter::{memory_limiter, AlgorithmKind, Limiter, Spec};
pub use rate::{parse_rates, Quota};
pub use store::{BanPolicy, MemoryStore, OnFull, Outcome, Stats, SweepCursor};
