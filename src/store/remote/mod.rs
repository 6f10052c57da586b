//! What every remote store (Redis, PostgreSQL) shares: the failure policy
//! (`OnError`), one-line errors (`StoreError`), the circuit breaker and its
//! probe, and the counters, latency and events of the calls (`Health`).
//!
//! A store owns one `Health` and runs each operation through it: refused at
//! once while the breaker is open (`breaker_closed`), bounded by the
//! deadline (`guarded`), its outcome recorded (`record`: the breaker moves,
//! an outage and its end are logged once and reported as events), and its
//! result turned into what the caller sees (`settle`: the policy applied to
//! an error, the decision counted).

pub mod breaker;
pub mod pool;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::algorithm::Decision;
use crate::events::{Events, Kind};
use crate::metrics::{Latency, LatencySnapshot, Tally, TallySnapshot};
use crate::runtime;
use crate::store::Outcome;

pub use breaker::{Breaker, BreakerState};

/// Which kind of server a remote store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Postgres,
}

impl Backend {
    /// The server's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Redis => "Redis",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The prefix of its errors (`redis: ...`), and `storage`'s answer.
    pub fn tag(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Postgres => "postgresql",
        }
    }
}

/// What a failed remote operation turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Admit the hit (fail open).
    Allow,
    /// Refuse the hit (fail closed).
    Deny,
    /// Raise the error to the caller.
    Raise,
}

/// A remote operation that failed, as one line; the policy decides what the
/// caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", .backend.tag())]
pub struct StoreError {
    pub backend: Backend,
    pub message: String,
}

impl StoreError {
    /// An error of `backend`, on one line (a server's text could hold line
    /// breaks).
    pub fn new(backend: Backend, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = if message.contains(['\r', '\n']) {
            message.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            message
        };
        Self { backend, message }
    }
}

/// A probe of the server: a future that says whether it answers.
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send + 'static>> + Send + Sync>;

/// The failure handling and the counters of one remote store's calls.
pub struct Health {
    backend: Backend,
    url_shown: String,
    /// The deadline of one operation, connecting included.
    pub timeout: Duration,
    pub on_error: OnError,
    /// The first rule's limit and window (ns): the policy's answers and the
    /// events' windows.
    first: (u64, u64),
    pub breaker: Breaker,
    pub tally: Tally,
    errors: AtomicU64,
    /// Round trips, from the call to its answer.
    pub latency: Latency,
    events: OnceLock<Arc<Events>>,
    log_target: &'static str,
    probe: Probe,
}

impl Health {
    /// The health of a store on `backend` at `url_shown` (passwords masked)
    /// whose first rule is `first` (limit, window in ns); `probe` tells
    /// whether the server answers again once the breaker opened.
    pub fn new(
        backend: Backend,
        url_shown: String,
        timeout: Duration,
        on_error: OnError,
        first: (u64, u64),
        log_target: &'static str,
        probe: Probe,
    ) -> Self {
        Self {
            backend,
            url_shown,
            timeout,
            on_error,
            first,
            breaker: Breaker::new(),
            tally: Tally::default(),
            errors: AtomicU64::new(0),
            latency: Latency::default(),
            events: OnceLock::new(),
            log_target,
            probe,
        }
    }

    /// The server's kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// An error of this store's server.
    pub fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError::new(self.backend, message)
    }

    /// The storage URL, passwords masked.
    pub fn url_shown(&self) -> &str {
        &self.url_shown
    }

    /// Hits decided through the store (the policy's answers included).
    pub fn tally(&self) -> TallySnapshot {
        self.tally.snapshot()
    }

    /// Failed operations (a call refused by the open breaker included).
    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }

    /// Round trips, from the call to its answer.
    pub fn latency(&self) -> LatencySnapshot {
        self.latency.snapshot()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Counts refusals as shadow mode's (see `Tally::set_shadow`).
    pub fn set_shadow(&self, on: bool) {
        self.tally.set_shadow(on);
    }

    /// Reports the store's refusals and outages to `events`.
    pub fn set_events(&self, events: Arc<Events>) {
        let _ = self.events.set(events);
    }

    /// The limiter's events, once set.
    pub fn events(&self) -> Option<&Arc<Events>> {
        self.events.get()
    }

    /// Whether the limiter's events are collected now.
    pub fn events_on(&self) -> bool {
        self.events.get().is_some_and(|events| events.enabled())
    }

    /// A refusal of `key`, for the events (when collected): blocked, and
    /// banned if a ban refused it. Times on the wall clock (or the manual
    /// clock's, in tests).
    #[inline]
    pub fn report(&self, key: &[u8], outcome: &Outcome, now_us: Option<u64>) {
        if let Some(events) = self.events.get() {
            if events.enabled() && !outcome.decision.allowed {
                let now = now_us.unwrap_or_else(crate::events::wall_us) * 1000;
                let retry = outcome.decision.retry_after;
                events.refused(
                    key,
                    now,
                    self.first.1,
                    retry,
                    outcome.banned.then_some(retry),
                );
            }
        }
    }

    /// A manual ban of `key` began (`banned_for`) or was lifted (None), for
    /// the events. Times on the wall clock (or the manual clock's).
    pub fn ban_changed(
        &self,
        key: &[u8],
        now_us: Option<u64>,
        banned_for: Option<crate::clock::Nanos>,
    ) {
        if let Some(events) = self.events.get() {
            let now = now_us.unwrap_or_else(crate::events::wall_us) * 1000;
            events.ban_changed(key, now, banned_for);
        }
    }

    /// A decision's result as its caller sees it: the failure policy applied
    /// to an error, and counted; `job` is the key (when events want it), the
    /// cost and the manual clock's time.
    pub fn settle(
        &self,
        result: Result<Outcome, StoreError>,
        job: (Option<&[u8]>, u64, Option<u64>),
    ) -> Result<Outcome, StoreError> {
        let (key, cost, now_us) = job;
        let decision = match result {
            Ok(d) => d,
            Err(err) => self.policy(err, cost)?,
        };
        self.tally.count(&decision.decision, decision.banned);
        if let Some(key) = key {
            self.report(key, &decision, now_us);
        }
        Ok(decision)
    }

    /// What a failed decision of `cost` answers under the policy.
    pub fn policy(&self, err: StoreError, cost: u64) -> Result<Outcome, StoreError> {
        let limit = self.first.0;
        let wait = breaker::PROBE_INTERVAL.as_nanos() as u64;
        match self.on_error {
            OnError::Raise => Err(err),
            OnError::Allow => Ok(Outcome::from(Decision {
                allowed: true,
                limit,
                remaining: limit.saturating_sub(cost),
                reset_after: 0,
                retry_after: 0,
            })),
            OnError::Deny => Ok(Outcome::from(Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after: wait,
                retry_after: wait,
            })),
        }
    }

    /// The one message of an operation that ran out of time, on the sync
    /// and awaitable paths alike.
    pub fn timed_out(&self) -> StoreError {
        let secs = self.timeout.as_secs_f64();
        let ms = (secs * 1e6).round() / 1000.0;
        self.error(format!(
            "operation timed out after {ms} ms (timeout={secs})"
        ))
    }

    /// An error (counted) while the breaker is open: the caller answers from
    /// the policy without touching the network.
    pub fn breaker_closed(&self) -> Result<(), StoreError> {
        if self.breaker.permits() {
            return Ok(());
        }
        self.errors.fetch_add(1, Relaxed);
        Err(self.error(format!(
            "circuit breaker open: {} failed repeatedly",
            self.backend.name()
        )))
    }

    /// Runs `op` under the breaker and the deadline, and records it.
    pub async fn guarded<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        self.breaker_closed()?;
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out()),
        };
        self.latency.record(started.elapsed());
        self.record(&result);
        result
    }

    /// Counts an operation's outcome and moves the breaker; an outage and
    /// its end are logged (WARNING) and reported once each.
    pub fn record<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if self.breaker.success() {
                    let message = format!(
                        "{} at {} answers again; circuit breaker closed",
                        self.backend.name(),
                        self.url_shown
                    );
                    if let Some(events) = self.events.get() {
                        events.storage(Kind::StorageRecovered, message.clone());
                    }
                    crate::logs::warn_notice(self.log_target, message);
                }
            }
            Err(err) => {
                self.errors.fetch_add(1, Relaxed);
                let (opened, new_outage) = self.breaker.failure();
                if new_outage {
                    if let Some(events) = self.events.get() {
                        events.storage(Kind::StorageUnavailable, err.to_string());
                    }
                    // Logged once per outage: reopening after a probe saw
                    // the server answer but operations still fail is not
                    // news.
                    crate::logs::warn_notice(
                        self.log_target,
                        format!(
                            "{} at {} failing; circuit breaker opened ({}) error={err}",
                            self.backend.name(),
                            self.url_shown,
                            match self.on_error {
                                OnError::Allow => "on_error='allow': hits are admitted unchecked",
                                OnError::Deny => "on_error='deny': hits are refused",
                                OnError::Raise => "on_error='raise': calls raise StorageError",
                            }
                        ),
                    );
                }
                if opened {
                    self.spawn_probe();
                }
            }
        }
    }

    /// Probes the server off the request path until it answers, then closes
    /// the breaker. Ends early if the store is dropped.
    fn spawn_probe(&self) {
        let Ok((handle, _)) = runtime::handle() else {
            return;
        };
        let probe = Arc::clone(&self.probe);
        let weak = self.breaker.downgrade();
        let (timeout, name) = (self.timeout, self.backend.name());
        handle.spawn(async move {
            loop {
                tokio::time::sleep(breaker::PROBE_INTERVAL).await;
                let Some(breaker) = weak.upgrade() else {
                    return; // the store is gone
                };
                if let Ok(true) = tokio::time::timeout(timeout, probe()).await {
                    // The outage is over when an operation succeeds (a
                    // read-only or full server answers a probe too).
                    breaker.close();
                    tracing::debug!("{name} answers the probe; circuit breaker closed");
                    return;
                }
            }
        });
    }
}

/// A limiter's remote store, whichever server it is on: what the binding
/// holds. Decisions, bans and clearing mean the same on both; what only one
/// server has (Redis's event-loop link and local cache) is reached through
/// its variant.
#[derive(Clone)]
pub enum RemoteStore {
    Redis(Arc<crate::store::redis::RedisStore>),
    Postgres(Arc<crate::store::postgres::PgStore>),
}

/// Dispatches `$call` to whichever store `$self` holds.
macro_rules! either {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            RemoteStore::Redis($s) => $call,
            RemoteStore::Postgres($s) => $call,
        }
    };
}

impl RemoteStore {
    /// The failure policy, breaker and counters of the store's calls.
    pub fn health(&self) -> &Health {
        either!(self, s => s.health())
    }

    /// `"redis"` or `"postgresql"`.
    pub fn kind(&self) -> &'static str {
        self.health().backend().tag()
    }

    /// The storage URL, passwords masked.
    pub fn url_shown(&self) -> String {
        either!(self, s => s.url_shown())
    }

    /// Bans begun by this process.
    pub fn bans_begun(&self) -> u64 {
        either!(self, s => s.bans_begun())
    }

    /// Answers from Redis's local over-limit cache, and keys it holds (none
    /// on PostgreSQL).
    pub fn local_cache(&self) -> (u64, usize) {
        match self {
            RemoteStore::Redis(s) => s.local_cache(),
            RemoteStore::Postgres(_) => (0, 0),
        }
    }

    /// A hit, blocking the calling thread; the failure policy applied.
    pub fn hit_blocking(
        &self,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> Result<Outcome, StoreError> {
        either!(self, s => s.hit_blocking(key, cost, now_us))
    }

    /// A peek, blocking the calling thread; the failure policy applied.
    pub fn peek_blocking(&self, key: &[u8], now_us: Option<u64>) -> Result<Outcome, StoreError> {
        either!(self, s => s.peek_blocking(key, now_us))
    }

    /// An awaitable peek.
    pub async fn peek(&self, key: &[u8], now_us: Option<u64>) -> Result<Outcome, StoreError> {
        either!(self, s => s.peek(key, now_us).await)
    }

    /// Drops `key`'s state; whether it had any.
    pub async fn reset(&self, key: &[u8]) -> Result<bool, StoreError> {
        either!(self, s => s.reset(key).await)
    }

    /// Drops every key of this limiter.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        either!(self, s => s.clear().await)
    }

    /// Bans `key` for `duration` (ns) from now.
    pub async fn ban(
        &self,
        key: &[u8],
        duration: crate::clock::Nanos,
        now_us: Option<u64>,
    ) -> Result<(), StoreError> {
        either!(self, s => s.ban(key, duration, now_us).await)
    }

    /// Lifts `key`'s ban; whether it was banned.
    pub async fn unban(&self, key: &[u8], now_us: Option<u64>) -> Result<bool, StoreError> {
        either!(self, s => s.unban(key, now_us).await)
    }

    /// How long `key` stays banned (ns).
    pub async fn banned_for(
        &self,
        key: &[u8],
        now_us: Option<u64>,
    ) -> Result<Option<crate::clock::Nanos>, StoreError> {
        either!(self, s => s.banned_for(key, now_us).await)
    }
}
