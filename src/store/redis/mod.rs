//! The Redis store: one limit shared by every process and host that points
//! at the same server.
//!
//! Each decision is one Lua script (`*.lua` beside this file), run with
//! EVALSHA (the script is loaded again on NOSCRIPT), computing on the
//! server's `TIME` in integer microseconds with the same arithmetic as the
//! memory store. A refused hit writes nothing; every write sets a TTL of at
//! most twice the window. Sync decisions on a single server talk to Redis
//! from the calling thread over pooled connections of our own deadline-driven
//! client (see `resp`); awaitables (and sync calls on a cluster or over TLS)
//! share one multiplexed connection that reconnects by itself, and batch (see
//! `batch`). Every operation has one deadline, enforced here, and failures go
//! through a circuit breaker and an explicit policy (`OnError`).

mod batch;
mod breaker;
mod keys;
mod link;
mod resp;
mod url;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use batch::{Answer, Job, Pending, Queue, Reply};
use breaker::Breaker;
pub use breaker::BreakerState;
pub use keys::KeyLayout;
pub use link::{Link, LinkPending, Step};
pub use url::redact;

use crate::algorithm::Decision;
use crate::error::{Error, Result};
use crate::limiter::{AlgorithmKind, Spec};
use crate::runtime;

const PRELUDE: &str = include_str!("prelude.lua");
const DECIDE: &str = include_str!("decide.lua");

/// The script deciding `kind`, for redis-rs and for the sync client.
fn script_for(kind: AlgorithmKind) -> (redis::Script, resp::Script) {
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

/// Every number a script handles stays below this (Lua numbers are doubles).
pub const MAX_EXACT: u64 = 1 << 53;

/// What a failed Redis operation turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Admit the hit (fail open).
    Allow,
    /// Refuse the hit (fail closed).
    Deny,
    /// Raise the error to the caller.
    Raise,
}

/// A Redis operation that failed; the policy decides what the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis: {0}")]
pub struct StoreError(pub String);

/// Connection options of a Redis store.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` or `unix://` URL.
    pub url: String,
    /// Namespace of every key.
    pub key_prefix: String,
    /// Deadline of one operation, connecting included.
    pub timeout: Duration,
    /// What a failure turns into.
    pub on_error: OnError,
}

/// The URL scheme of a Redis Cluster: `redis+cluster://host:port,host:port`
/// (any node; the client discovers the rest).
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A server, or a cluster.
#[derive(Clone)]
enum Client {
    Single(Box<redis::Client>),
    Cluster(Box<ClusterClient>),
}

/// A connection to either; a multiplexed connection that reconnects by
/// itself, or a cluster connection that follows MOVED/ASK redirections.
#[derive(Clone)]
enum Conn {
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

fn open_client(url: &str, timeout: Duration) -> Result<Client> {
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

/// One rule as the scripts see it: limit, window (µs), burst.
#[derive(Debug, Clone, Copy)]
struct Rule {
    limit: u64,
    window_us: u64,
    burst: u64,
}

/// A limiter whose state lives in Redis.
pub struct RedisStore {
    client: Client,
    config: RedisConfig,
    script: redis::Script,
    /// The same script, for the sync client.
    sync_script: resp::Script,
    /// The server sync calls talk to with the sync client; `None` on a
    /// cluster or over TLS (their sync calls go through the runtime).
    endpoint: Option<resp::Endpoint>,
    /// The server as error messages name it.
    peer: String,
    rules: Vec<Rule>,
    layout: KeyLayout,
    /// Whether each rule keeps a second key (a sliding log's sum).
    sums: bool,
    /// The connection of this process's runtime generation (a forked child
    /// opens its own).
    connection: Mutex<Option<(u64, Conn)>>,
    /// Blocking connections for sync calls on a single server.
    blocking: Mutex<BlockingPool>,
    breaker: Breaker,
    /// Decisions waiting for the script call on the wire.
    queue: Queue,
    allowed: AtomicU64,
    blocked: AtomicU64,
    errors: AtomicU64,
}

impl RedisStore {
    /// A store for `spec` on the server at `config.url`. Connects lazily.
    pub fn new(spec: &Spec, config: RedisConfig) -> Result<Self> {
        // The blocking pool tells inherited connections by the fork generation.
        crate::fork::install();
        let client = open_client(&config.url, config.timeout)?;
        if config.key_prefix.len() > 64 || config.key_prefix.contains(['{', '}']) {
            return Err(Error::invalid(
                "key_prefix",
                "must be at most 64 bytes and contain no '{' or '}'",
            ));
        }
        let (endpoint, peer) = match &client {
            Client::Single(c) => {
                let endpoint = resp::Endpoint::of(c);
                let peer = match &endpoint {
                    Some(e) => e.name.clone(),
                    None => peer_name(c.get_connection_info().addr()),
                };
                (endpoint, peer)
            }
            Client::Cluster(_) => (None, "the cluster".to_owned()),
        };
        let mut rules = Vec::new();
        for quota in &spec.quotas {
            let window_us = quota.window() / 1000;
            let burst = spec.burst.unwrap_or(quota.limit());
            if quota.window() % 1000 != 0
                || u128::from(quota.limit()) * u128::from(window_us) >= u128::from(MAX_EXACT)
                || u128::from(burst) * u128::from(window_us) >= u128::from(MAX_EXACT)
            {
                return Err(Error::invalid(
                    "limit",
                    format!(
                        "times the window in microseconds must stay below 2^53 for the \
                         Redis store (Lua numbers are doubles); {} per {} s is too large",
                        quota.limit(),
                        quota.window() / crate::clock::NANOS_PER_SEC
                    ),
                ));
            }
            rules.push(Rule {
                limit: quota.limit(),
                window_us,
                burst,
            });
        }
        let (script, sync_script) = script_for(spec.kind);
        Ok(Self {
            client,
            script,
            sync_script,
            endpoint,
            peer,
            rules,
            layout: KeyLayout::new(&config.key_prefix, spec),
            sums: spec.kind == AlgorithmKind::SlidingLog,
            breaker: Breaker::new(),
            queue: Queue::default(),
            connection: Mutex::new(None),
            blocking: Mutex::new(BlockingPool::default()),
            config,
            allowed: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// The Redis keys holding `key`'s state, rule by rule: one per rule,
    /// and for a sliding log its sum beside it (`<rule key>:s`).
    pub fn keys(&self, key: &[u8]) -> Vec<String> {
        let mut keys = Vec::with_capacity(self.rules.len() * if self.sums { 2 } else { 1 });
        for i in 0..self.rules.len() {
            let rule_key = self.layout.key(key, i);
            let sum = self.sums.then(|| format!("{rule_key}:s"));
            keys.push(rule_key);
            keys.extend(sum);
        }
        keys
    }

    /// The failure policy.
    pub fn on_error(&self) -> OnError {
        self.config.on_error
    }

    /// The storage URL, passwords masked.
    pub fn url_shown(&self) -> String {
        redact(&self.config.url)
    }

    async fn connection(&self) -> std::result::Result<Conn, StoreError> {
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
                    .map_err(|e| StoreError(e.to_string()))?,
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

    /// Decides `job`: on a single server in a batch with whatever else is
    /// waiting (see `batch`); on a cluster, whose keys of different
    /// decisions sit in different slots, in a call of its own.
    async fn decide(
        self: &Arc<Self>,
        mode: &'static str,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Decision, StoreError> {
        let job = self.job(mode, key, cost, now_us);
        if matches!(self.client, Client::Cluster(_)) {
            return self.run_one(&job).await;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = Pending {
            job,
            reply: Reply::Channel(reply),
            deadline: std::time::Instant::now() + self.config.timeout,
        };
        let generation = runtime::live_generation().unwrap_or(0);
        if let Some(batch) = self.queue.push(pending, generation) {
            tokio::spawn(Arc::clone(self).run_batches(batch));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError("the decision was dropped".into())))
    }

    fn job(&self, mode: &'static str, key: &[u8], cost: u64, now_us: Option<u64>) -> Job {
        Job {
            mode,
            keys: self.keys(key),
            cost,
            now_us,
        }
    }

    /// Decides a hit like `hit`, without a task of its own: `done` gets the
    /// decision (the failure policy applied) on a runtime thread when its
    /// batch returns, or here at once if the breaker is open. Used by
    /// awaitables: a hundred concurrent ones wake the runtime once per
    /// batch, not once each.
    pub fn hit_then(
        self: &Arc<Self>,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
        done: impl FnOnce(std::result::Result<Decision, StoreError>) + Send + 'static,
    ) {
        if let Err(open) = self.breaker_closed() {
            return done(self.settle(Err(open), cost));
        }
        let store = Arc::clone(self);
        let finish = move |result: std::result::Result<Decision, StoreError>| {
            store.record(&result);
            done(store.settle(result, cost));
        };
        let job = self.job("hit", key, cost, now_us);
        let Ok((handle, generation)) = runtime::handle() else {
            return finish(Err(StoreError("the Tokio runtime could not start".into())));
        };
        if matches!(self.client, Client::Cluster(_)) {
            let store = Arc::clone(self);
            handle.spawn(async move {
                let call = tokio::time::timeout(store.config.timeout, store.run_one(&job));
                finish(call.await.unwrap_or_else(|_| Err(store.timed_out())));
            });
            return;
        }
        let pending = Pending {
            job,
            reply: Reply::Call(Answer::new(finish)),
            deadline: std::time::Instant::now() + self.config.timeout,
        };
        if let Some(batch) = self.queue.push(pending, generation) {
            handle.spawn(Arc::clone(self).run_batches(batch));
        }
    }

    /// A decision's result as its caller sees it: the failure policy applied
    /// to an error, and counted.
    fn settle(
        &self,
        result: std::result::Result<Decision, StoreError>,
        cost: u64,
    ) -> std::result::Result<Decision, StoreError> {
        let decision = match result {
            Ok(d) => d,
            Err(err) => self.policy(err, cost)?,
        };
        let counter = if decision.allowed {
            &self.allowed
        } else {
            &self.blocked
        };
        counter.fetch_add(1, Relaxed);
        Ok(decision)
    }

    /// The one message of an operation that ran out of time, on the sync
    /// and awaitable paths alike.
    fn timed_out(&self) -> StoreError {
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
    fn redis_err(&self, e: redis::RedisError) -> StoreError {
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
    fn sync_err(&self, failure: resp::Failure) -> StoreError {
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

    /// Runs batches until none waits, answering every decision in them.
    async fn run_batches(self: Arc<Self>, mut batch: Vec<Pending>) {
        let running = batch::Running::new(&self.queue);
        loop {
            // A decision whose deadline passed while it waited fails now;
            // the call gets what is left of the earliest deadline.
            let now = std::time::Instant::now();
            let (late, live): (Vec<Pending>, Vec<Pending>) =
                batch.drain(..).partition(|p| p.deadline <= now);
            for pending in late {
                pending.reply.send(Err(self.timed_out()));
            }
            batch = live;
            let result = match batch.iter().map(|p| p.deadline).min() {
                None => Ok(Vec::new()),
                Some(deadline) => {
                    let jobs: Vec<&Job> = batch.iter().map(|p| &p.job).collect();
                    match tokio::time::timeout(deadline - now, self.run_jobs(&jobs)).await {
                        Ok(result) => result,
                        Err(_) => Err(self.timed_out()),
                    }
                }
            };
            match result {
                Ok(decisions) => {
                    for (pending, decision) in batch.drain(..).zip(decisions) {
                        pending.reply.send(Ok(decision));
                    }
                }
                Err(err) => {
                    for pending in batch.drain(..) {
                        pending.reply.send(Err(err.clone()));
                    }
                }
            }
            match self.queue.next() {
                Some(next) => batch = next,
                None => {
                    running.finish();
                    return;
                }
            }
        }
    }

    /// One script call deciding `job` alone.
    async fn run_one(&self, job: &Job) -> std::result::Result<Decision, StoreError> {
        self.run_jobs(&[job])
            .await?
            .pop()
            .ok_or_else(|| StoreError("the script returned no decision".into()))
    }

    /// One script call deciding `jobs` in order (layout in prelude.lua).
    async fn run_jobs(&self, jobs: &[&Job]) -> std::result::Result<Vec<Decision>, StoreError> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        self.script_args(jobs, &mut invocation);
        let reply = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.redis_err(e))?;
        decisions(reply, jobs.len())
    }

    /// The keys and arguments of the script call deciding `jobs` in order,
    /// for either client.
    fn script_args(&self, jobs: &[&Job], to: &mut impl ScriptArgs) {
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
        for job in jobs {
            to.text(job.mode);
            to.int(job.cost);
            match job.now_us {
                Some(now) => to.int(now),
                None => to.text(""),
            };
        }
    }

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
    ) -> std::result::Result<Decision, StoreError> {
        // The deadline covers everything from here: pool, connect, login,
        // the call and a script reload.
        let deadline = resp::Deadline(Instant::now() + self.config.timeout);
        let Some(endpoint) = &self.endpoint else {
            // A cluster, or TLS: through the runtime, bounded by
            // tokio::time::timeout.
            let (handle, _) = runtime::handle()
                .map_err(|e| StoreError(format!("the Tokio runtime could not start: {e}")))?;
            return handle.block_on(self.guarded(self.decide(mode, key, cost, now_us)));
        };
        self.breaker_closed()?;
        let job = self.job(mode, key, cost, now_us);
        let mut args = resp::Args::default();
        self.script_args(&[&job], &mut args);
        let result = self.with_blocking(endpoint, deadline, |conn| {
            conn.eval(&self.sync_script, &args, deadline)
        });
        let result = result
            .and_then(|reply| reply.into_u64s().map_err(|f| self.sync_err(f)))
            .and_then(|reply| decisions(reply, 1))
            .and_then(|mut d| {
                d.pop()
                    .ok_or_else(|| StoreError("the script returned no decision".into()))
            });
        self.record(&result);
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

    /// An error (counted) while the breaker is open: the caller answers from
    /// the policy without touching the network.
    fn breaker_closed(&self) -> std::result::Result<(), StoreError> {
        if self.breaker.permits() {
            return Ok(());
        }
        self.errors.fetch_add(1, Relaxed);
        Err(breaker_open())
    }

    /// Runs `op` under the deadline and the breaker.
    async fn guarded<T, F>(&self, op: F) -> std::result::Result<T, StoreError>
    where
        F: std::future::Future<Output = std::result::Result<T, StoreError>>,
    {
        self.breaker_closed()?;
        let result = match tokio::time::timeout(self.config.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out()),
        };
        self.record(&result);
        result
    }

    /// Counts an operation's outcome and moves the breaker.
    fn record<T>(&self, result: &std::result::Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if self.breaker.success() {
                    crate::logs::warn_notice(
                        module_path!(),
                        format!(
                            "Redis at {} answers again; circuit breaker closed",
                            self.url_shown()
                        ),
                    );
                }
            }
            Err(err) => {
                self.errors.fetch_add(1, Relaxed);
                let (opened, new_outage) = self.breaker.failure();
                if new_outage {
                    // Logged once per outage: reopening after a probe saw
                    // PING answered but operations still fail is not news.
                    crate::logs::warn_notice(
                        module_path!(),
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
                    tracing::debug!("Redis answers the probe; circuit breaker closed");
                    return;
                }
            }
        });
    }

    fn policy(&self, err: StoreError, cost: u64) -> std::result::Result<Decision, StoreError> {
        let rule = self.rules[0];
        match self.config.on_error {
            OnError::Raise => Err(err),
            OnError::Allow => Ok(Decision {
                allowed: true,
                limit: rule.limit,
                remaining: rule.limit.saturating_sub(cost),
                reset_after: 0,
                retry_after: 0,
            }),
            OnError::Deny => Ok(Decision {
                allowed: false,
                limit: rule.limit,
                remaining: 0,
                reset_after: breaker::PROBE_INTERVAL.as_nanos() as u64,
                retry_after: breaker::PROBE_INTERVAL.as_nanos() as u64,
            }),
        }
    }

    /// What a hit of cost 1 would get, spending nothing.
    pub async fn peek(
        self: &Arc<Self>,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Decision, StoreError> {
        match self.guarded(self.decide("peek", key, 1, now_us)).await {
            Ok(d) => Ok(d),
            Err(err) => self.policy(err, 1),
        }
    }

    /// Decides a hit of `cost` on `key` (at `now_us` instead of the server's
    /// clock, for tests), spending it if admitted; blocks the calling thread
    /// (which should not hold the GIL). Awaitables use `hit_then`.
    pub fn hit_blocking(
        self: &Arc<Self>,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Decision, StoreError> {
        let result = self.decide_blocking("hit", key, cost, now_us);
        self.settle(result, cost)
    }

    /// `peek`, blocking the calling thread.
    pub fn peek_blocking(
        self: &Arc<Self>,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Decision, StoreError> {
        match self.decide_blocking("peek", key, 1, now_us) {
            Ok(d) => Ok(d),
            Err(err) => self.policy(err, 1),
        }
    }

    /// Deletes `key`'s state; whether it had any.
    pub async fn reset(&self, key: &[u8]) -> std::result::Result<bool, StoreError> {
        let keys = self.keys(key);
        self.guarded(async {
            let mut conn = self.connection().await?;
            let removed: u64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| StoreError(e.to_string()))?;
            Ok(removed > 0)
        })
        .await
    }

    /// Deletes every key of this limiter (its prefix and identity only),
    /// with SCAN, never KEYS. Returns how many keys went.
    pub async fn clear(&self) -> std::result::Result<u64, StoreError> {
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
        match tokio::time::timeout(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError("clear did not finish in time".into())),
        }
    }

    /// Hits decided here, refused here, and failed Redis operations.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.allowed.load(Relaxed),
            self.blocked.load(Relaxed),
            self.errors.load(Relaxed),
        )
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }
}

fn breaker_open() -> StoreError {
    StoreError("circuit breaker open: Redis failed repeatedly".into())
}

fn store_err(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
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

/// A server's address as messages show it.
fn peer_name(addr: &redis::ConnectionAddr) -> String {
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

/// Where the keys and arguments of a script call go: redis-rs's invocation
/// (awaitables) or the sync client's request.
trait ScriptArgs {
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

/// The five numbers per decision a script answers, as decisions.
fn decisions(reply: Vec<u64>, jobs: usize) -> std::result::Result<Vec<Decision>, StoreError> {
    if reply.len() != 5 * jobs {
        return Err(StoreError(format!(
            "the script answered {} numbers for {} decisions",
            reply.len(),
            jobs
        )));
    }
    Ok(reply
        .chunks_exact(5)
        .map(|r| Decision {
            allowed: r[0] == 1,
            limit: r[1],
            remaining: r[2],
            reset_after: r[3] * 1000,
            retry_after: r[4] * 1000,
        })
        .collect())
}

/// Idle blocking connections, and the fork generation they were made in.
#[derive(Default)]
struct BlockingPool {
    forks: u64,
    idle: Vec<resp::Conn>,
}

/// Idle blocking connections kept at most; more are closed when returned.
const MAX_IDLE: usize = 64;

impl BlockingPool {
    fn take(&mut self) -> Option<resp::Conn> {
        let forks = crate::fork::generation();
        if self.forks != forks {
            // Inherited across fork: the sockets are the parent's too, and
            // a reply to the parent's call could be read here. The copies
            // are left alone (never used, never closed).
            for conn in self.idle.drain(..) {
                std::mem::forget(conn);
            }
            self.forks = forks;
        }
        self.idle.pop()
    }

    fn put(&mut self, conn: resp::Conn) {
        if self.forks != crate::fork::generation() {
            std::mem::forget(conn); // made before a fork (see `take`)
        } else if self.idle.len() < MAX_IDLE {
            self.idle.push(conn);
        }
    }
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
    redis::from_redis_value(value).map_err(|e| StoreError(e.to_string()))
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
