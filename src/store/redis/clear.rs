//! Deleting state: one key's (`reset`), or every key of a limiter
//! (`clear`, with SCAN and UNLINK on every primary of a cluster).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Value};

use super::client::Conn;
use super::{RedisStore, StoreError};

impl RedisStore {
    /// Deletes `key`'s state; whether it had any.
    pub async fn reset(&self, key: &[u8]) -> std::result::Result<bool, StoreError> {
        let keys = self.keys(key);
        self.local.forget(key);
        let result = self
            .health
            .guarded(async {
                let mut conn = self.connection().await?;
                // The ban and refusals go too, but only rate state counts
                // as "had state" (as in the memory store).
                let (state, bans) = keys.split_at(keys.len() - 2);
                let (removed, _): (u64, u64) = redis::pipe()
                    .cmd("DEL")
                    .arg(state)
                    .cmd("DEL")
                    .arg(bans)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| super::failure::error(e.to_string()))?;
                Ok(removed > 0)
            })
            .await;
        // Again: a reply that was on the wire meanwhile may have put it back.
        self.local.forget(key);
        result
    }

    /// Deletes every key of this limiter (its prefix and identity only),
    /// with SCAN, never KEYS. Returns how many keys went.
    pub async fn clear(&self) -> std::result::Result<u64, StoreError> {
        self.local.forget_all();
        let pattern = self.layout.pattern();
        let deadline = self.config.timeout.max(Duration::from_secs(10));
        let work = async {
            match self.connection().await? {
                Conn::Single(mut conn) => scan_unlink(&mut conn, &pattern, None).await,
                Conn::Cluster(mut conn) => {
                    // SCAN walks one node: walk every primary.
                    let mut removed = 0;
                    for (host, port) in primaries(&mut conn).await? {
                        removed += scan_unlink(&mut conn, &pattern, Some((host, port))).await?;
                    }
                    Ok(removed)
                }
            }
        };
        let result = match tokio::time::timeout(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(super::failure::error("clear did not finish in time")),
        };
        self.local.forget_all();
        result
    }
}

fn store_err(e: redis::RedisError) -> StoreError {
    super::failure::error(e.to_string())
}

/// Runs `cmd` on the connection, on one cluster node if `node` is given.
async fn query<T: redis::FromRedisValue, C: ConnectionLike + RouteTo>(
    conn: &mut C,
    cmd: Cmd,
    node: Option<&(String, u16)>,
) -> std::result::Result<T, StoreError> {
    let value = match node {
        None => conn.req_packed_command(&cmd).await.map_err(store_err)?,
        Some((host, port)) => conn.route_to(cmd, host.clone(), *port).await?,
    };
    redis::from_redis_value(value).map_err(|e| super::failure::error(e.to_string()))
}

/// Sending a command to one node of a cluster.
trait RouteTo {
    fn route_to(
        &mut self,
        cmd: Cmd,
        host: String,
        port: u16,
    ) -> impl std::future::Future<Output = std::result::Result<Value, StoreError>> + Send;
}

impl RouteTo for ConnectionManager {
    async fn route_to(
        &mut self,
        cmd: Cmd,
        _: String,
        _: u16,
    ) -> std::result::Result<Value, StoreError> {
        self.req_packed_command(&cmd).await.map_err(store_err)
    }
}

impl RouteTo for ClusterConnection {
    async fn route_to(
        &mut self,
        cmd: Cmd,
        host: String,
        port: u16,
    ) -> std::result::Result<Value, StoreError> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        self.route_command(cmd, routing).await.map_err(store_err)
    }
}

/// Deletes the keys matching `pattern` with SCAN and UNLINK (on one node of
/// a cluster if given). Returns how many went.
async fn scan_unlink<C: ConnectionLike + RouteTo>(
    conn: &mut C,
    pattern: &str,
    node: Option<(String, u16)>,
) -> std::result::Result<u64, StoreError> {
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, batch): (u64, Vec<String>) = query(conn, scan, node.as_ref()).await?;
        // Keys of one batch can sit in different slots: unlink one by one
        // on a cluster (each is routed by its own slot).
        if node.is_some() {
            for key in &batch {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(key);
                removed += query::<u64, C>(conn, unlink, None).await?;
            }
        } else if !batch.is_empty() {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(&batch);
            removed += query::<u64, C>(conn, unlink, None).await?;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(removed);
        }
    }
}

/// The primaries of a cluster, from `CLUSTER NODES`.
async fn primaries(
    conn: &mut ClusterConnection,
) -> std::result::Result<Vec<(String, u16)>, StoreError> {
    let text: String = query(conn, redis::cmd("CLUSTER").arg("NODES").clone(), None).await?;
    let mut nodes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || !fields[2].contains("master") || fields[2].contains("fail") {
            continue;
        }
        // "host:port@cport[,hostname]"
        let addr = fields[1].split('@').next().unwrap_or("");
        if let Some((host, port)) = addr.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                nodes.push((host.to_owned(), port));
            }
        }
    }
    Ok(nodes)
}
