//! Redis failures as one-line errors; the policy, breaker and counters they
//! go through are every remote store's (see `store::remote`).

use super::client::Client;
use super::{resp, RedisStore, StoreError};
use crate::store::remote::{Backend, Probe};

/// An error of the Redis store.
pub(super) fn error(message: impl Into<String>) -> StoreError {
    StoreError::new(Backend::Redis, message)
}

/// The breaker's probe: a PING answered.
pub(super) fn probe(client: &Client) -> Probe {
    let client = client.clone();
    std::sync::Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
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
            ping.await.is_ok()
        })
    })
}

impl RedisStore {
    /// A redis-rs error as one line, worded as the sync client words it: a
    /// timeout as `timed_out`, a reply that did not parse says the peer is
    /// not Redis, a dropped connection says so.
    pub(super) fn redis_err(&self, e: redis::RedisError) -> StoreError {
        if e.is_timeout() {
            self.health.timed_out()
        } else if e.kind() == redis::ErrorKind::Parse {
            not_resp(&self.peer)
        } else if e.is_connection_dropped() {
            error(format!("the server at {} closed the connection", self.peer))
        } else {
            error(e.to_string())
        }
    }

    /// A failure of the sync client as one line.
    pub(super) fn sync_err(&self, failure: resp::Failure) -> StoreError {
        let peer = &self.peer;
        match failure {
            resp::Failure::TimedOut => self.health.timed_out(),
            resp::Failure::NotResp => not_resp(peer),
            resp::Failure::Connect(e) => error(format!("could not connect to {peer}: {e}")),
            resp::Failure::Closed => error(format!("the server at {peer} closed the connection")),
            resp::Failure::Io(e) => error(format!("talking to the server at {peer}: {e}")),
            resp::Failure::Server(e) => error(e),
            resp::Failure::Unexpected(what) => error(format!("{what} ({peer})")),
        }
    }
}

/// The error of a peer whose bytes are not RESP.
fn not_resp(peer: &str) -> StoreError {
    error(format!(
        "the server at {peer} does not speak the Redis protocol (RESP)"
    ))
}
