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
//! `batch`). Every operation has one deadline, and failures go through a
//! circuit breaker and an explicit policy (`OnError`; see `failure`).
//!
//! This file holds the store and its configuration; beside it: `client`
//! (reaching the server), `script` (the scripts and their calls),
//! `blocking` (the sync path), `awaited` (the runtime path), `link` (an
//! event loop's own connection), `failure` and `clear`.

mod awaited;
mod ban;
mod batch;
mod blocking;
mod clear;
mod client;
mod failure;
mod keys;
mod link;
mod local;
mod resp;
mod script;
mod url;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use std::sync::Mutex;
use std::time::Duration;

use batch::Queue;
use blocking::BlockingPool;
use client::{open_client, peer_name, Client, Conn};
pub use keys::KeyLayout;
pub use link::{Link, LinkPending, Step};
use script::script_for;
pub use url::redact;

use crate::error::{Error, Result};
use crate::limiter::{AlgorithmKind, Spec};
use crate::store::BanPolicy;
use crate::store::Outcome;

/// The target of the store's log events, whichever file below sends them.
const LOG_TARGET: &str = module_path!();

/// Every number a script handles stays below this (Lua numbers are doubles).
pub const MAX_EXACT: u64 = 1 << 53;

use crate::store::remote::{Backend, Health};
pub use crate::store::remote::{BreakerState, OnError, StoreError};

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
    /// Keys whose refusals are remembered locally (0: none; see `local`).
    pub local_cache_keys: usize,
}

/// The URL scheme of a Redis Cluster: `redis+cluster://host:port,host:port`
/// (any node; the client discovers the rest).
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A key's ban and its recent refusals, beside its state under `base`
/// (see `RedisStore::keys`).
fn ban_keys(base: &str) -> [String; 2] {
    [format!("{base}ban"), format!("{base}refusals")]
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
    /// The failure policy, breaker and counters (shared with every remote
    /// store).
    health: Health,
    /// Decisions waiting for the script call on the wire.
    queue: Queue,
    /// Refusals remembered until their retry time.
    local: local::LocalCache,
    /// When the scripts ban a key (None: only `ban()` does).
    ban: Option<BanPolicy>,
    /// Bans begun by this process's calls (automatic and manual).
    bans_begun: AtomicU64,
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
        let health = Health::new(
            Backend::Redis,
            redact(&config.url),
            config.timeout,
            config.on_error,
            (rules[0].limit, rules[0].window_us * 1000),
            LOG_TARGET,
            failure::probe(&client),
        );
        Ok(Self {
            client,
            script,
            sync_script,
            endpoint,
            peer,
            rules,
            layout: KeyLayout::new(&config.key_prefix, spec),
            sums: spec.kind == AlgorithmKind::SlidingLog,
            health,
            queue: Queue::default(),
            local: local::LocalCache::new(config.local_cache_keys),
            ban: spec.ban,
            bans_begun: AtomicU64::new(0),
            connection: Mutex::new(None),
            blocking: Mutex::new(BlockingPool::default()),
            config,
        })
    }

    /// The Redis keys holding `key`'s state: one per rule, and for a
    /// sliding log its sum beside it (`<rule key>:s`); then its ban
    /// (`ban`: the time it ends, µs) and its recent refusals (`refusals`:
    /// a list, newest first). Every decision script call reads the ban.
    pub fn keys(&self, key: &[u8]) -> Vec<String> {
        let base = self.layout.base(key);
        let mut keys = Vec::with_capacity(self.rules.len() * if self.sums { 2 } else { 1 } + 2);
        for i in 0..self.rules.len() {
            let rule_key = format!("{base}{i}");
            let sum = self.sums.then(|| format!("{rule_key}:s"));
            keys.push(rule_key);
            keys.extend(sum);
        }
        keys.extend(ban_keys(&base));
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

    /// The failure policy, breaker and counters of the store's calls.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// A refusal of a hit of `cost` on `key` remembered from Redis (see
    /// `local`), counted as refused: every decision path asks this first.
    #[inline]
    pub fn cached_refusal(&self, key: &[u8], cost: u64, now_us: Option<u64>) -> Option<Outcome> {
        if self.local.len() == 0 {
            return None;
        }
        let decision = self.local.refusal(key, cost, local::now_ns(now_us))?;
        self.health.tally.refused(decision.banned);
        self.health.report(key, &decision, now_us);
        Some(decision)
    }

    /// Remembers Redis's answer to `job` (hits only), where replies arrive.
    fn remember(&self, job: &batch::Job, decision: &Outcome) {
        // Under a ban policy every refusal must reach the script, which
        // counts it toward a ban: only the ban itself is remembered.
        if job.mode == "hit" && (self.ban.is_none() || decision.allowed || decision.banned) {
            self.local.remember(&job.key, job.cost, job.at, decision);
        }
    }

    /// Answers served from the local cache, and keys it holds.
    pub fn local_cache(&self) -> (u64, usize) {
        (self.local.hits.load(Relaxed), self.local.len())
    }
}
