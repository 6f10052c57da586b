//! Sync decisions on a single server: from the calling thread, over a pool
//! of connections of the deadline-driven client (`resp`).

use std::sync::Arc;
use std::time::Instant;

use super::{resp, RedisStore, StoreError};
use crate::runtime;
use crate::store::Outcome;

impl RedisStore {
    /// Decides `mode` on `key` on the calling thread, blocking it: on a
    /// single server over a pooled connection of its own, the way a
    /// blocking client talks to Redis (no hand-off to the runtime and
    /// back); on a cluster through the runtime. The breaker and deadline
    /// apply as to an awaitable; errors are returned, not yet settled.
    fn decide_blocking(
        self: &Arc<Self>,
        mode: &'static str,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        // The deadline covers everything from here: pool, connect, login,
        // the call and a script reload.
        let deadline = resp::Deadline(Instant::now() + self.config.timeout);
        let Some(endpoint) = &self.endpoint else {
            // A cluster, or TLS: through the runtime, bounded by
            // tokio::time::timeout.
            let (handle, _) = runtime::handle().map_err(|e| {
                super::failure::error(format!("the Tokio runtime could not start: {e}"))
            })?;
            return handle.block_on(self.health.guarded(self.decide(mode, key, cost, now_us)));
        };
        self.health.breaker_closed()?;
        let job = self.job(mode, key, cost, now_us);
        let mut args = resp::Args::default();
        self.script_args(&[&job], &mut args);
        let started = std::time::Instant::now();
        let result = self.with_blocking(endpoint, deadline, |conn| {
            conn.eval(&self.sync_script, &args, deadline)
        });
        self.health.latency.record(started.elapsed());
        let result = result
            .and_then(|reply| reply.into_u64s().map_err(|f| self.sync_err(f)))
            .and_then(|reply| self.decisions(reply, 1))
            .and_then(|mut d| {
                d.pop()
                    .ok_or_else(|| super::failure::error("the script returned no decision"))
            });
        if let Ok(decision) = &result {
            self.remember(&job, decision);
        }
        self.health.record(&result);
        result
    }

    /// Runs `op` on an idle connection of the sync client (a new one if
    /// none is idle), by `deadline`; the connection goes back to the pool
    /// only if `op` succeeded and left nothing unread (after a timeout its
    /// reply may still come, and must never answer a later call).
    fn with_blocking<T>(
        &self,
        endpoint: &resp::Endpoint,
        deadline: resp::Deadline,
        op: impl FnOnce(&mut resp::Conn) -> std::result::Result<T, resp::Failure>,
    ) -> std::result::Result<T, StoreError> {
        let idle = {
            let _pass = crate::fork::enter();
            let mut pool = self.blocking.lock().unwrap_or_else(|e| e.into_inner());
            pool.take()
        };
        let mut conn = match idle {
            Some(conn) => conn,
            None => resp::Conn::connect(endpoint, deadline).map_err(|f| self.sync_err(f))?,
        };
        let value = op(&mut conn).map_err(|f| self.sync_err(f))?;
        if conn.is_clean() {
            let _pass = crate::fork::enter();
            self.blocking
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(conn);
        }
        Ok(value)
    }

    /// Decides a hit of `cost` on `key` (at `now_us` instead of the server's
    /// clock, for tests), spending it if admitted; blocks the calling thread
    /// (which should not hold the GIL). Awaitables use `hit_then`.
    pub fn hit_blocking(
        self: &Arc<Self>,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        if let Some(refused) = self.cached_refusal(key, cost, now_us) {
            return Ok(refused);
        }
        let result = self.decide_blocking("hit", key, cost, now_us);
        self.health.settle(result, (Some(key), cost, now_us))
    }

    /// `peek`, blocking the calling thread.
    pub fn peek_blocking(
        self: &Arc<Self>,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        match self.decide_blocking("peek", key, 1, now_us) {
            Ok(d) => Ok(d),
            Err(err) => self.health.policy(err, 1),
        }
    }
}

/// Idle blocking connections (at most 64).
pub(super) type BlockingPool = crate::store::remote::pool::IdlePool<resp::Conn, 64>;
