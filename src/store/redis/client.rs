//! Reaching the server: the client (one server or a cluster), the
//! multiplexed connection the runtime path shares, and the server's name in
//! messages.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{RedisStore, StoreError, CLUSTER_SCHEME};
use crate::error::{Error, Result};
use crate::runtime;

/// A server, or a cluster.
#[derive(Clone)]
pub(super) enum Client {
    Single(Box<redis::Client>),
    Cluster(Box<ClusterClient>),
}

/// A connection to either; a multiplexed connection that reconnects by
/// itself, or a cluster connection that follows MOVED/ASK redirections.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub(super) fn open_client(url: &str, timeout: Duration) -> Result<Client> {
    let bad =
        |e: redis::RedisError| Error::invalid("storage", format!("is not a usable Redis URL: {e}"));
    if let Some(nodes) = url.strip_prefix(CLUSTER_SCHEME) {
        let nodes: Vec<String> = nodes
            .trim_end_matches('/')
            .split(',')
            .filter(|n| !n.trim().is_empty())
            .map(|n| format!("redis://{}", n.trim()))
            .collect();
        if nodes.is_empty() {
            return Err(Error::invalid("storage", "names no cluster node"));
        }
        let client = ClusterClient::builder(nodes)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .build()
            .map_err(bad)?;
        return Ok(Client::Cluster(Box::new(client)));
    }
    redis::Client::open(url)
        .map(|c| Client::Single(Box::new(c)))
        .map_err(bad)
}

impl RedisStore {
    pub(super) async fn connection(&self) -> std::result::Result<Conn, StoreError> {
        let generation = runtime::live_generation().unwrap_or(0);
        {
            let slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((g, conn)) = slot.as_ref() {
                if *g == generation {
                    return Ok(conn.clone());
                }
            }
        }
        let conn = match &self.client {
            Client::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.config.timeout))
                    .set_response_timeout(Some(self.config.timeout))
                    .set_number_of_retries(1);
                Conn::Single(
                    ConnectionManager::new_with_config((**client).clone(), config)
                        .await
                        .map_err(|e| self.redis_err(e))?,
                )
            }
            Client::Cluster(client) => Conn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(|e| super::failure::error(e.to_string()))?,
            ),
        };
        let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, old)) = slot.replace((generation, conn.clone())) {
            if g != generation {
                // Belongs to a runtime inherited across fork: never touch it.
                std::mem::forget(old);
            }
        }
        Ok(conn)
    }
}

/// A server's address as messages show it.
pub(super) fn peer_name(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        redis::ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        _ => "the server".to_owned(),
    }
}
