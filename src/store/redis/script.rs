//! The decision scripts and their calls: which script decides an
//! algorithm, the keys and arguments of a call, and the decisions in a reply.

use super::batch::Job;
use std::sync::atomic::Ordering::Relaxed;

use super::{resp, RedisStore, StoreError};
use crate::algorithm::Decision;
use crate::limiter::AlgorithmKind;
use crate::store::Outcome;

const PRELUDE: &str = include_str!("prelude.lua");
const DECIDE: &str = include_str!("decide.lua");

/// The script deciding `kind`, for redis-rs and for the sync client.
pub(super) fn script_for(kind: AlgorithmKind) -> (redis::Script, resp::Script) {
    let body = match kind {
        AlgorithmKind::Fixed => include_str!("fixed.lua"),
        AlgorithmKind::Sliding => include_str!("sliding.lua"),
        AlgorithmKind::SlidingLog => include_str!("sliding_log.lua"),
        AlgorithmKind::TokenBucket | AlgorithmKind::Gcra => include_str!("gcra.lua"),
    };
    let code = format!("{PRELUDE}\n{body}\n{DECIDE}");
    let script = redis::Script::new(&code);
    let sync = resp::Script::new(script.get_hash(), code);
    (script, sync)
}

impl RedisStore {
    pub(super) fn job(
        &self,
        mode: &'static str,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> Job {
        Job {
            mode,
            keys: self.keys(key),
            cost,
            now_us,
            key: key.into(),
            at: super::local::now_ns(now_us),
        }
    }

    /// The keys and arguments of the script call deciding `jobs` in order,
    /// for either client.
    pub(super) fn script_args(&self, jobs: &[&Job], to: &mut impl ScriptArgs) {
        for job in jobs {
            for key in &job.keys {
                to.key(key);
            }
        }
        to.int(self.rules.len() as u64);
        for rule in &self.rules {
            to.int(rule.limit);
            to.int(rule.window_us);
            to.int(rule.burst);
        }
        match self.ban {
            Some(ban) => {
                to.int(u64::from(ban.after));
                to.int(ban.within.div_ceil(1000));
                to.int(ban.duration.div_ceil(1000));
            }
            None => {
                to.int(0);
                to.int(0);
                to.int(0);
            }
        }
        for job in jobs {
            to.text(job.mode);
            to.int(job.cost);
            match job.now_us {
                Some(now) => to.int(now),
                None => to.text(""),
            };
        }
    }
}

/// Where the keys and arguments of a script call go: redis-rs's invocation
/// (awaitables) or the sync client's request.
pub(super) trait ScriptArgs {
    fn key(&mut self, key: &str);
    fn int(&mut self, n: u64);
    fn text(&mut self, text: &str);
}

impl ScriptArgs for redis::ScriptInvocation<'_> {
    fn key(&mut self, key: &str) {
        redis::ScriptInvocation::key(self, key);
    }
    fn int(&mut self, n: u64) {
        self.arg(n);
    }
    fn text(&mut self, text: &str) {
        self.arg(text);
    }
}

impl ScriptArgs for resp::Args {
    fn key(&mut self, key: &str) {
        resp::Args::key(self, key.as_bytes());
    }
    fn int(&mut self, n: u64) {
        resp::Args::int(self, n);
    }
    fn text(&mut self, text: &str) {
        self.arg(text.as_bytes());
    }
}

/// Numbers a script answers per decision: allowed, limit, remaining,
/// reset, retry (µs), and whether a ban refused it.
const REPLY_WIDTH: usize = 6;

impl RedisStore {
    /// The numbers a script answered for `jobs` decisions, as outcomes;
    /// counts the bans they began.
    pub(super) fn decisions(
        &self,
        reply: Vec<u64>,
        jobs: usize,
    ) -> std::result::Result<Vec<Outcome>, StoreError> {
        if reply.len() != REPLY_WIDTH * jobs {
            return Err(super::failure::error(format!(
                "the script answered {} numbers for {} decisions",
                reply.len(),
                jobs
            )));
        }
        Ok(reply
            .chunks_exact(REPLY_WIDTH)
            .map(|r| {
                if r[5] == 2 {
                    self.bans_begun.fetch_add(1, Relaxed);
                }
                Outcome {
                    banned: r[5] != 0,
                    ..Outcome::from(Decision {
                        allowed: r[0] == 1,
                        limit: r[1],
                        remaining: r[2],
                        reset_after: r[3] * 1000,
                        retry_after: r[4] * 1000,
                    })
                }
            })
            .collect())
    }
}
