//! When Redis fails: the deadline, the circuit breaker and its probe, the
//! failure policy (`OnError`), the counters, and one-line error messages.

use std::sync::atomic::Ordering::Relaxed;

use crate::events::Kind;

use super::breaker;
use super::client::Client;
use super::{resp, OnError, RedisStore, StoreError, LOG_TARGET};
use crate::algorithm::Decision;
use crate::runtime;
use crate::store::Outcome;

impl RedisStore {
    /// A decision's result as its caller sees it: the failure policy applied
    /// to an error, and counted.
    pub(super) fn settle(
        &self,
        result: std::result::Result<Outcome, StoreError>,
        job: (Option<&[u8]>, u64, Option<u64>),
    ) -> std::result::Result<Outcome, StoreError> {
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

    /// The one message of an operation that ran out of time, on the sync
    /// and awaitable paths alike.
    pub(super) fn timed_out(&self) -> StoreError {
        let timeout = self.config.timeout;
        let ms = timeout.as_secs_f64() * 1000.0;
        StoreError(format!(
            "operation timed out after {} ms (timeout={})",
            (ms * 1000.0).round() / 1000.0,
            timeout.as_secs_f64()
        ))
    }

    /// A redis-rs error as one line, worded as the sync client words it: a
    /// timeout as `timed_out`, a reply that did not parse says the peer is
    /// not Redis, a dropped connection says so.
    pub(super) fn redis_err(&self, e: redis::RedisError) -> StoreError {
        if e.is_timeout() {
            self.timed_out()
        } else if e.kind() == redis::ErrorKind::Parse {
            not_resp(&self.peer)
        } else if e.is_connection_dropped() {
            StoreError(format!("the server at {} closed the connection", self.peer))
        } else {
            one_line(e.to_string())
        }
    }

    /// A failure of the sync client as one line.
    pub(super) fn sync_err(&self, failure: resp::Failure) -> StoreError {
        let peer = &self.peer;
        match failure {
            resp::Failure::TimedOut => self.timed_out(),
            resp::Failure::NotResp => not_resp(peer),
            resp::Failure::Connect(e) => StoreError(format!("could not connect to {peer}: {e}")),
            resp::Failure::Closed => {
                StoreError(format!("the server at {peer} closed the connection"))
            }
            resp::Failure::Io(e) => StoreError(format!("talking to the server at {peer}: {e}")),
            resp::Failure::Server(e) => one_line(e),
            resp::Failure::Unexpected(what) => StoreError(format!("{what} ({peer})")),
        }
    }

    /// An error (counted) while the breaker is open: the caller answers from
    /// the policy without touching the network.
    pub(super) fn breaker_closed(&self) -> std::result::Result<(), StoreError> {
        if self.breaker.permits() {
            return Ok(());
        }
        self.errors.fetch_add(1, Relaxed);
        Err(breaker_open())
    }

    /// Runs `op` under the deadline and the breaker.
    pub(super) async fn guarded<T, F>(&self, op: F) -> std::result::Result<T, StoreError>
    where
        F: std::future::Future<Output = std::result::Result<T, StoreError>>,
    {
        self.breaker_closed()?;
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.config.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out()),
        };
        self.latency.record(started.elapsed());
        self.record(&result);
        result
    }

    /// Counts an operation's outcome and moves the breaker.
    pub(super) fn record<T>(&self, result: &std::result::Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if self.breaker.success() {
                    let message = format!(
                        "Redis at {} answers again; circuit breaker closed",
                        self.url_shown()
                    );
                    if let Some(events) = self.events.get() {
                        events.storage(Kind::StorageRecovered, message.clone());
                    }
                    crate::logs::warn_notice(LOG_TARGET, message);
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
                    // PING answered but operations still fail is not news.
                    crate::logs::warn_notice(
                        LOG_TARGET,
                        format!(
                            "Redis at {} failing; circuit breaker opened ({}) error={err}",
                            self.url_shown(),
                            match self.config.on_error {
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
        let client = self.client.clone();
        let weak = self.breaker.downgrade();
        let timeout = self.config.timeout;
        handle.spawn(async move {
            loop {
                tokio::time::sleep(breaker::PROBE_INTERVAL).await;
                let Some(breaker) = weak.upgrade() else {
                    return; // the limiter is gone
                };
                let ping = async {
                    match &client {
                        Client::Single(c) => {
                            let mut conn = c.get_multiplexed_async_connection().await?;
                            redis::cmd("PING").query_async::<String>(&mut conn).await
                        }
                        Client::Cluster(c) => {
                            let mut conn = c.get_async_connection().await?;
                            redis::cmd("PING").query_async::<String>(&mut conn).await
                        }
                    }
                };
                if let Ok(Ok(_)) = tokio::time::timeout(timeout, ping).await {
                    // The outage is over when an operation succeeds (a
                    // read-only or full server answers PING too).
                    breaker.close();
                    tracing::debug!(
                        target: LOG_TARGET,
                        "Redis answers the probe; circuit breaker closed"
                    );
                    return;
                }
            }
        });
    }

    pub(super) fn policy(
        &self,
        err: StoreError,
        cost: u64,
    ) -> std::result::Result<Outcome, StoreError> {
        let rule = self.rules[0];
        match self.config.on_error {
            OnError::Raise => Err(err),
            OnError::Allow => Ok(Outcome::from(Decision {
                allowed: true,
                limit: rule.limit,
                remaining: rule.limit.saturating_sub(cost),
                reset_after: 0,
                retry_after: 0,
            })),
            OnError::Deny => Ok(Outcome::from(Decision {
                allowed: false,
                limit: rule.limit,
                remaining: 0,
                reset_after: breaker::PROBE_INTERVAL.as_nanos() as u64,
                retry_after: breaker::PROBE_INTERVAL.as_nanos() as u64,
            })),
        }
    }
}

fn breaker_open() -> StoreError {
    StoreError("circuit breaker open: Redis failed repeatedly".into())
}

/// The error of a peer whose bytes are not RESP.
fn not_resp(peer: &str) -> StoreError {
    StoreError(format!(
        "the server at {peer} does not speak the Redis protocol (RESP)"
    ))
}

/// `message` on one line (a server's text could hold line breaks).
fn one_line(message: String) -> StoreError {
    if !message.contains(['\r', '\n']) {
        return StoreError(message);
    }
    StoreError(message.split_whitespace().collect::<Vec<_>>().join(" "))
}
