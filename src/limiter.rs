//! Choosing an algorithm and building a limiter from a spec: the one place
//! that turns names and rates into a concrete store behind a trait object.

use std::sync::Arc;

use crate::algorithm::{
    Algorithm, Compound, Decision, FixedWindow, Gcra, SlidingLog, SlidingWindow,
};
use crate::clock::AnyClock;
use crate::clock::Nanos;
use crate::error::{Error, Result};
use crate::rate::Quota;
use crate::store::{BanPolicy, MemoryStore, OnFull, Outcome, Stats, SweepCursor, SweepStep};

/// The algorithms a user can select, by canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmKind {
    /// `"fixed"` (alias `"fixed_window"`).
    Fixed,
    /// `"sliding"` (alias `"sliding_window"`).
    Sliding,
    /// `"sliding_log"`.
    SlidingLog,
    /// `"token_bucket"`.
    TokenBucket,
    /// `"gcra"` (alias `"leaky_bucket"`).
    Gcra,
}

impl AlgorithmKind {
    /// The canonical names, in documentation order.
    pub const NAMES: [&'static str; 5] =
        ["fixed", "sliding", "sliding_log", "token_bucket", "gcra"];

    /// Looks an algorithm up by name or alias.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "fixed" | "fixed_window" => Self::Fixed,
            "sliding" | "sliding_window" => Self::Sliding,
            "sliding_log" => Self::SlidingLog,
            "token_bucket" => Self::TokenBucket,
            "gcra" | "leaky_bucket" => Self::Gcra,
            other => {
                return Err(Error::invalid(
                    "algorithm",
                    format!(
                        "must be one of 'fixed', 'sliding', 'sliding_log', 'token_bucket', \
                         'gcra' (aliases: 'fixed_window', 'sliding_window', 'leaky_bucket'), \
                         got {other:?}"
                    ),
                ))
            }
        })
    }

    /// Whether the algorithm takes a `burst`.
    pub fn has_burst(self) -> bool {
        matches!(self, Self::TokenBucket | Self::Gcra)
    }
}

/// Everything that defines a limiter's decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The algorithm.
    pub kind: AlgorithmKind,
    /// One quota, or several for a compound limit.
    pub quotas: Vec<Quota>,
    /// Bucket capacity for token_bucket / gcra; defaults to the limit.
    pub burst: Option<u64>,
    /// At most this many keys (None: unbounded).
    pub max_keys: Option<usize>,
    /// What to do with a new key when `max_keys` are stored.
    pub on_full: OnFull,
    /// When to ban a key automatically (None: only by `ban()`).
    pub ban: Option<BanPolicy>,
}

impl Spec {
    /// Validates the combination.
    pub fn new(kind: AlgorithmKind, quotas: Vec<Quota>, burst: Option<u64>) -> Result<Self> {
        if quotas.is_empty() {
            return Err(Error::invalid("rate", "needs at least one limit"));
        }
        if let Some(burst) = burst {
            if !kind.has_burst() {
                return Err(Error::invalid(
                    "burst",
                    "only applies to the 'token_bucket' and 'gcra' algorithms",
                ));
            }
            if quotas.len() > 1 {
                return Err(Error::invalid(
                    "burst",
                    "cannot be combined with a compound rate (each limit's burst is its limit)",
                ));
            }
            // At most MAX_LIMIT, and refilled within the longest window, so
            // every time a decision reports is exact.
            Gcra::check_burst(&quotas[0], burst)?;
        }
        Ok(Self {
            kind,
            quotas,
            burst,
            max_keys: None,
            on_full: OnFull::Deny,
            ban: None,
        })
    }

    /// Bans keys refused as `policy` says.
    pub fn with_bans(mut self, policy: Option<BanPolicy>) -> Self {
        self.ban = policy;
        self
    }

    /// Bounds the number of stored keys.
    pub fn with_max_keys(mut self, max_keys: Option<usize>, on_full: OnFull) -> Result<Self> {
        if max_keys == Some(0) {
            return Err(Error::invalid(
                "max_keys",
                "must be a positive integer or None, got 0",
            ));
        }
        self.max_keys = max_keys;
        self.on_full = on_full;
        Ok(self)
    }
}

/// A limiter whatever its algorithm and store: what the binding holds.
pub trait Limiter: Send + Sync {
    /// Decides one hit of `cost` on `key`, spending it if admitted.
    fn hit(&self, key: &[u8], cost: u64) -> Result<Decision>;
    /// [`hit`](Limiter::hit), saying whether a ban refused it.
    fn hit_outcome(&self, key: &[u8], cost: u64) -> Result<Outcome>;
    /// What `key` looks like now, spending nothing.
    fn peek(&self, key: &[u8]) -> Decision;
    /// [`peek`](Limiter::peek), saying whether a ban answers.
    fn peek_outcome(&self, key: &[u8]) -> Outcome;
    /// Bans `key` for `duration` from now.
    fn ban(&self, key: &[u8], duration: Nanos) -> Result<()>;
    /// Lifts `key`'s ban; whether it was banned.
    fn unban(&self, key: &[u8]) -> bool;
    /// How long `key` stays banned (None: not banned).
    fn banned_for(&self, key: &[u8]) -> Option<Nanos>;
    /// Drops `key`'s state; whether it had any.
    fn reset(&self, key: &[u8]) -> bool;
    /// Drops every key's state.
    fn clear(&self);
    /// Removes expired keys; how many went.
    fn cleanup_expired(&self) -> usize;
    /// Counters.
    fn stats(&self) -> Stats;
    /// The decisions counted by result.
    fn tally(&self) -> crate::metrics::TallySnapshot;
    /// Counts refusals as shadow mode's (set once, when built).
    fn set_shadow(&self, on: bool);
    /// The algorithm's canonical name.
    fn algorithm(&self) -> &'static str;
    /// One short step of a sweep of expired keys (see
    /// [`MemoryStore::sweep_chunk`]).
    fn sweep_chunk(&self, cursor: &mut SweepCursor, budget: usize) -> SweepStep;
    /// Counts a finished sweep.
    fn record_sweep(&self, removed: usize);
    /// The largest cost a single hit can ever be admitted with.
    fn capacity(&self) -> u64;
    /// Checks that `cost` is one a hit could ever be admitted with.
    fn validate_cost(&self, cost: u64) -> Result<()>;
}

impl<A: Algorithm> Limiter for MemoryStore<A> {
    fn tally(&self) -> crate::metrics::TallySnapshot {
        MemoryStore::tally(self)
    }
    fn set_shadow(&self, on: bool) {
        MemoryStore::set_shadow(self, on);
    }
    #[inline]
    fn hit(&self, key: &[u8], cost: u64) -> Result<Decision> {
        MemoryStore::hit(self, key, cost)
    }
    #[inline]
    fn hit_outcome(&self, key: &[u8], cost: u64) -> Result<Outcome> {
        MemoryStore::hit_outcome(self, key, cost)
    }
    fn peek(&self, key: &[u8]) -> Decision {
        MemoryStore::peek(self, key)
    }
    fn peek_outcome(&self, key: &[u8]) -> Outcome {
        MemoryStore::peek_outcome(self, key)
    }
    fn ban(&self, key: &[u8], duration: Nanos) -> Result<()> {
        MemoryStore::ban(self, key, duration)
    }
    fn unban(&self, key: &[u8]) -> bool {
        MemoryStore::unban(self, key)
    }
    fn banned_for(&self, key: &[u8]) -> Option<Nanos> {
        MemoryStore::banned_for(self, key)
    }
    fn reset(&self, key: &[u8]) -> bool {
        MemoryStore::reset(self, key)
    }
    fn clear(&self) {
        MemoryStore::clear(self)
    }
    fn cleanup_expired(&self) -> usize {
        MemoryStore::cleanup_expired(self)
    }
    fn stats(&self) -> Stats {
        MemoryStore::stats(self)
    }
    fn algorithm(&self) -> &'static str {
        self.algorithm().name()
    }
    fn sweep_chunk(&self, cursor: &mut SweepCursor, budget: usize) -> SweepStep {
        MemoryStore::sweep_chunk(self, cursor, budget)
    }
    fn record_sweep(&self, removed: usize) {
        MemoryStore::record_sweep(self, removed)
    }
    fn capacity(&self) -> u64 {
        self.algorithm().capacity()
    }
    fn validate_cost(&self, cost: u64) -> Result<()> {
        MemoryStore::validate_cost(self, cost)
    }
}

fn store<A: Algorithm>(parts: Vec<A>, clock: AnyClock, spec: &Spec) -> Result<Arc<dyn Limiter>> {
    if parts.is_empty() {
        return Err(Error::invalid("rate", "needs at least one limit"));
    }
    let (max, on_full) = (spec.max_keys, spec.on_full);
    Ok(if parts.len() == 1 {
        let single = parts.into_iter().next().expect("one part");
        Arc::new(MemoryStore::bounded(single, clock, max, on_full).with_bans(spec.ban))
    } else {
        Arc::new(
            MemoryStore::bounded(Compound::new(parts), clock, max, on_full).with_bans(spec.ban),
        )
    })
}

/// An in-memory limiter for `spec`, reading `clock`. Fails only for a spec
/// that [`Spec::new`] would have refused.
pub fn memory_limiter(spec: &Spec, clock: AnyClock) -> Result<Arc<dyn Limiter>> {
    let quotas = spec.quotas.iter().copied();
    let burst = |q: Quota| spec.burst.unwrap_or(q.limit());
    match spec.kind {
        AlgorithmKind::Fixed => store(quotas.map(FixedWindow::new).collect(), clock, spec),
        AlgorithmKind::Sliding => store(quotas.map(SlidingWindow::new).collect(), clock, spec),
        AlgorithmKind::SlidingLog => store(quotas.map(SlidingLog::new).collect(), clock, spec),
        AlgorithmKind::TokenBucket => store(
            quotas
                .map(|q| Gcra::token_bucket(q, burst(q)))
                .collect::<Result<_>>()?,
            clock,
            spec,
        ),
        AlgorithmKind::Gcra => store(
            quotas
                .map(|q| Gcra::new(q, burst(q)))
                .collect::<Result<_>>()?,
            clock,
            spec,
        ),
    }
}
