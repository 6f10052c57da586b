//! What stands in front of the store: the allow and deny lists and shadow
//! mode, the same for a memory and a Redis limiter.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    pub(crate) shadow_refused: AtomicU64,
}

impl Guard {
    /// The answer for a listed key, without the store: an allowed key is
    /// admitted with its whole allowance and counted nowhere; a denied key
    /// is refused for a window (a retry will be refused too).
    #[inline]
    pub(crate) fn listed(&self, key: &[u8], limit: u64, window: Nanos) -> Option<Outcome> {
        let listed = self.lists.get(key)?;
        Some(match listed {
            Listed::Allowed => Outcome::from(Decision {
                allowed: true,
                limit,
                remaining: limit,
                reset_after: 0,
                retry_after: 0,
            }),
            Listed::Denied => {
                self.denied.fetch_add(1, Relaxed);
                Outcome {
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
                }
            }
        })
    }

    /// Shadow mode: a refusal is admitted instead (it spent nothing) and
    /// flagged; what it reports is otherwise the real decision.
    #[inline]
    pub(crate) fn shadow(&self, mut outcome: Outcome) -> Outcome {
        if self.shadow && !outcome.decision.allowed {
            self.shadow_refused.fetch_add(1, Relaxed);
            outcome.decision.allowed = true;
            outcome.shadow_refused = true;
        }
        outcome
    }
}
