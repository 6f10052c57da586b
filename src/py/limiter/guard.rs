//! What stands in front of the store: the allow and deny lists and shadow
//! mode, the same for a memory and a Redis limiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::algorithm::Decision;
use crate::clock::Nanos;
use crate::lists::{KeyLists, Listed};
use crate::store::Outcome;

/// The lists and shadow mode of one limiter, and their counters.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    pub(crate) lists: KeyLists,
    pub(crate) shadow: bool,
    pub(crate) denied: AtomicU64,
    /// Hits admitted by the allow list.
    pub(crate) allow_listed: AtomicU64,
    pub(crate) shadow_refused: AtomicU64,
    /// Keys whose shadow refusal was logged, until when not to log again.
    pub(crate) shadow_logged: Mutex<HashMap<Box<[u8]>, Nanos>>,
}

/// Keys remembered for shadow logging before expired ones are dropped.
const SHADOW_LOG_KEYS: usize = 10_000;

impl Guard {
    /// Whether a list holds a key or shadow mode is on.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.shadow || self.lists.any()
    }

    /// The answer for a listed key, without the store: an allowed key is
    /// admitted with its whole allowance; a denied key is refused for a
    /// window (a retry will be refused too). A hit (`counted`) is counted
    /// by the list's counter, a peek is not.
    #[cold]
    pub(crate) fn answer(
        &self,
        listed: Listed,
        limit: u64,
        window: Nanos,
        counted: bool,
    ) -> Outcome {
        let counter = match listed {
            Listed::Allowed => &self.allow_listed,
            Listed::Denied => &self.denied,
        };
        if counted {
            counter.fetch_add(1, Relaxed);
        }
        match listed {
            Listed::Allowed => Outcome::from(Decision {
                allowed: true,
                limit,
                remaining: limit,
                reset_after: 0,
                retry_after: 0,
            }),
            Listed::Denied => Outcome {
                decision: Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_after: window,
                    retry_after: window,
                },
                banned: false,
                denied: true,
                shadow_refused: false,
            },
        }
    }

    /// Shadow mode: a refusal is admitted instead (it spent nothing) and
    /// flagged; what it reports is otherwise the real decision. The first
    /// such refusal of a key in each `window` is logged at INFO.
    #[inline]
    pub(crate) fn shadow(
        &self,
        mut outcome: Outcome,
        key: &[u8],
        now: impl FnOnce() -> Nanos,
        window: Nanos,
    ) -> Outcome {
        if self.shadow && !outcome.decision.allowed {
            self.shadow_refused.fetch_add(1, Relaxed);
            outcome.decision.allowed = true;
            outcome.shadow_refused = true;
            self.log_shadow(key, now(), window, &outcome);
        }
        outcome
    }

    #[cold]
    fn log_shadow(&self, key: &[u8], now: Nanos, window: Nanos, outcome: &Outcome) {
        let mut logged = self.shadow_logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.get(key).is_some_and(|&until| now < until) {
            return;
        }
        if logged.len() >= SHADOW_LOG_KEYS {
            logged.retain(|_, until| now < *until);
            if logged.len() >= SHADOW_LOG_KEYS {
                logged.clear();
            }
        }
        logged.insert(key.into(), now.saturating_add(window));
        drop(logged);
        tracing::info!(
            key = %String::from_utf8_lossy(key),
            banned = outcome.banned,
            retry_after = outcome.decision.retry_after as f64 / 1e9,
            "shadow mode admitted a hit the limit would refuse"
        );
    }
}
