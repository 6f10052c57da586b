//! The PostgreSQL store: one limit shared by every process and host that
//! points at the same database.
//!
//! Each decision is one call of a server-side function (`decide.sql` and
//! one file per algorithm beside this one) that takes the key's advisory
//! lock, decides on the server's clock (`clock_timestamp()` in integer
//! microseconds) with the memory store's arithmetic, writes only an
//! admitted hit, and answers in the same round trip. Compound limits are
//! all-or-nothing in that call; bans are read and begun there too.
//!
//! The schema (`schema.sql`, version `SCHEMA_VERSION`) is installed in its
//! own PostgreSQL schema on first use, `UNLOGGED` by default. Sync calls run
//! on the calling thread over pooled connections, each driven by a small
//! runtime of its own; awaitables share a few connections on the process's
//! runtime, where concurrent calls pipeline (see `conn`). Every operation
//! has one deadline and goes through the failure layer every remote store
//! shares (`store::remote`).

mod conn;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::algorithm::Decision;
use crate::clock::Nanos;
use crate::error::{Error, Result};
use crate::limiter::{AlgorithmKind, Spec};
use crate::store::remote::{Backend, Health, OnError, StoreError};
use crate::store::{BanPolicy, Outcome};

pub use conn::Prepare;
use conn::{Connect, SchemaState, Shared, SyncPool};

/// The target of the store's log events.
const LOG_TARGET: &str = module_path!();

/// The version of the schema this release installs and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// The schema's SQL, in the order it is installed.
const SQL_FILES: [&str; 6] = [
    include_str!("schema.sql"),
    include_str!("fixed.sql"),
    include_str!("sliding.sql"),
    include_str!("sliding_log.sql"),
    include_str!("gcra.sql"),
    include_str!("decide.sql"),
];

/// Every number the functions handle stays within a bigint.
const MAX_EXACT: u128 = i64::MAX as u128;

/// How often the janitor sweeps a PostgreSQL store's expired rows unless
/// `cleanup_interval` says otherwise.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Deleted per statement by a sweep.
pub const SWEEP_BATCH: i32 = 1000;

/// The URL schemes of a PostgreSQL storage.
pub const SCHEMES: [&str; 2] = ["postgresql://", "postgres://"];

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL that installs (or upgrades to) this release's schema in `schema`,
/// with `UNLOGGED` tables unless `unlogged` is false: what a role without
/// `CREATE` needs a privileged role to run once.
pub fn schema_sql(schema: &str, unlogged: bool) -> String {
    let mut text = String::new();
    for file in SQL_FILES {
        text.push_str(file);
        text.push('\n');
    }
    let quoted = quote_ident(schema);
    let mut text = text
        .replace("__SCHEMA__", &quoted)
        .replace("__UNLOGGED__", if unlogged { "UNLOGGED" } else { "" });
    text.push_str(&format!(
        "DELETE FROM {quoted}.schema_version;\n\
         INSERT INTO {quoted}.schema_version (version) VALUES ({SCHEMA_VERSION});\n"
    ));
    text
}

/// The grants that let `role` use the store in `schema` (installed by
/// another role).
pub fn grant_sql(schema: &str, role: &str) -> String {
    let (s, r) = (quote_ident(schema), quote_ident(role));
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {r};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};\n\
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r};\n"
    )
}

/// Connection options of a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgresql://` or `postgres://` URL (libpq's URI form).
    pub url: String,
    /// The PostgreSQL schema holding the tables and functions.
    pub schema: String,
    /// Whether the tables are `UNLOGGED` (when this store creates them).
    pub unlogged: bool,
    /// Namespace of every key.
    pub key_prefix: String,
    /// Deadline of one operation, connecting included.
    pub timeout: Duration,
    /// What a failure turns into.
    pub on_error: OnError,
}

/// The statements the store runs, in its schema.
struct Sql {
    decide: String,
    ban: String,
    unban: String,
    banned_for: String,
    reset: String,
    sweep: String,
    clear_state: String,
    clear_bans: String,
    version: String,
}

/// The decision of a one-rule fixed window limiter without automatic bans,
/// as one statement (see the file).
const FIXED_ONE: &str = include_str!("fixed_one.sql");

impl Sql {
    /// The statements in `schema`; with `fixed_one`, the decision is the
    /// single statement of `FIXED_ONE` rather than a call of `decide()`.
    fn new(schema: &str, fixed_one: bool) -> Self {
        let s = quote_ident(schema);
        Self {
            decide: if fixed_one {
                FIXED_ONE.replace("__SCHEMA__", &s)
            } else {
                format!("SELECT * FROM {s}.decide($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            },
            ban: format!("SELECT {s}.ban($1, $2, $3)"),
            unban: format!("SELECT {s}.unban($1, $2)"),
            banned_for: format!("SELECT {s}.banned_for($1, $2)"),
            reset: format!("SELECT {s}.reset($1, $2)"),
            sweep: format!("SELECT {s}.sweep($1, $2)"),
            clear_state: format!("DELETE FROM {s}.state WHERE key >= $1 AND key < $2"),
            clear_bans: format!("DELETE FROM {s}.bans WHERE key >= $1 AND key < $2"),
            version: format!("SELECT max(version) FROM {s}.schema_version"),
        }
    }
}

/// One decision's own arguments (the rules are the store's).
struct Args {
    key: Vec<u8>,
    mode: &'static str,
    cost: i64,
    now: Option<i64>,
}

/// A limiter whose state lives in PostgreSQL.
pub struct PgStore {
    health: Health,
    config: PgConfig,
    connect: Arc<Connect>,
    sql: Sql,
    algorithm: &'static str,
    limits: Vec<i64>,
    windows: Vec<i64>,
    bursts: Vec<i64>,
    /// ban_after, ban_within (µs), ban length (µs); zeros: no automatic bans.
    ban: Vec<i64>,
    /// The first bytes of every key of this limiter (its prefix and
    /// identity): `clear()` deletes this range.
    tag: [u8; 8],
    /// The hash state after the length-prefixed prefix and identity.
    identity: Sha256,
    /// Whether this process has seen the schema at this release's version.
    schema: Arc<SchemaState>,
    /// Connections for sync calls.
    blocking: Mutex<SyncPool>,
    /// Connections for awaitables, on the process's runtime.
    shared: Shared,
    /// Bans begun by this process's calls (automatic and manual).
    bans_begun: AtomicU64,
    /// Sweeps completed, and the rows they deleted.
    sweeps: AtomicU64,
    swept: AtomicU64,
}

fn absorb(hasher: &mut Sha256, part: &[u8]) {
    hasher.update((part.len() as u64).to_be_bytes());
    hasher.update(part);
}

impl PgStore {
    /// A store for `spec` in the database at `config.url`. Connects lazily.
    pub fn new(spec: &Spec, config: PgConfig) -> Result<Self> {
        crate::fork::install();
        if config.schema.is_empty() || config.schema.len() > 63 || config.schema.contains('\0') {
            return Err(Error::invalid(
                "pg_schema",
                format!("must be 1 to 63 bytes with no NUL, got {:?}", config.schema),
            ));
        }
        if config.key_prefix.len() > 64 {
            return Err(Error::invalid("key_prefix", "must be at most 64 bytes"));
        }
        let connect = Arc::new(Connect::parse(&config.url, config.unlogged)?);
        let mut limits = Vec::new();
        let mut windows = Vec::new();
        let mut bursts = Vec::new();
        for quota in &spec.quotas {
            let window_us = quota.window() / 1000;
            let burst = spec.burst.unwrap_or(quota.limit());
            if quota.window() % 1000 != 0
                || u128::from(quota.limit().max(burst)) * u128::from(window_us) >= MAX_EXACT
            {
                return Err(Error::invalid(
                    "limit",
                    format!(
                        "times the window in microseconds must stay below 2^63 for the \
                         PostgreSQL store; {} per {} s is too large",
                        quota.limit(),
                        quota.window() / crate::clock::NANOS_PER_SEC
                    ),
                ));
            }
            limits.push(quota.limit() as i64);
            windows.push(window_us as i64);
            bursts.push(burst as i64);
        }
        let ban = match spec.ban {
            Some(BanPolicy {
                after,
                within,
                duration,
            }) => vec![
                i64::from(after),
                (within / 1000) as i64,
                duration.div_ceil(1000).max(1) as i64,
            ],
            None => vec![0, 0, 0],
        };
        let identity = format!("{:?}|{:?}|{:?}", spec.kind, spec.quotas, spec.burst).into_bytes();
        let mut hasher = Sha256::new();
        absorb(&mut hasher, config.key_prefix.as_bytes());
        absorb(&mut hasher, &identity);
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&hasher.clone().finalize()[..8]);
        let health = Health::new(
            Backend::Postgres,
            connect.shown.clone(),
            config.timeout,
            config.on_error,
            (spec.quotas[0].limit(), spec.quotas[0].window()),
            LOG_TARGET,
            connect.probe(config.timeout),
        );
        Ok(Self {
            health,
            sql: Sql::new(
                &config.schema,
                matches!(spec.kind, AlgorithmKind::Fixed) && limits.len() == 1 && ban[0] == 0,
            ),
            algorithm: match spec.kind {
                AlgorithmKind::Fixed => "fixed",
                AlgorithmKind::Sliding => "sliding",
                AlgorithmKind::SlidingLog => "sliding_log",
                AlgorithmKind::TokenBucket => "token_bucket",
                AlgorithmKind::Gcra => "gcra",
            },
            limits,
            windows,
            bursts,
            ban,
            tag,
            identity: hasher,
            schema: Arc::default(),
            blocking: Mutex::new(SyncPool::default()),
            shared: Shared::default(),
            bans_begun: AtomicU64::new(0),
            sweeps: AtomicU64::new(0),
            swept: AtomicU64::new(0),
            connect,
            config,
        })
    }

    /// The row key of `key`: the limiter's tag, then a digest of the
    /// length-prefixed prefix, identity and key (any key gives 24 bytes).
    pub fn row_key(&self, key: &[u8]) -> Vec<u8> {
        let mut hasher = self.identity.clone();
        absorb(&mut hasher, key);
        let digest = hasher.finalize();
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&digest[..16]);
        out
    }

    /// The failure policy, breaker and counters of the store's calls.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The failure policy.
    pub fn on_error(&self) -> OnError {
        self.config.on_error
    }

    /// The storage URL, password masked.
    pub fn url_shown(&self) -> String {
        self.connect.shown.clone()
    }

    /// The PostgreSQL schema.
    pub fn schema(&self) -> &str {
        &self.config.schema
    }

    /// Bans begun by this process (its decisions and its `ban()` calls).
    pub fn bans_begun(&self) -> u64 {
        self.bans_begun.load(Relaxed)
    }

    /// The answer of `decide()` as an outcome.
    fn outcome(&self, row: &Row) -> std::result::Result<Outcome, StoreError> {
        let read = || -> std::result::Result<Outcome, tokio_postgres::Error> {
            let allowed: bool = row.try_get(0)?;
            let limit: i64 = row.try_get(1)?;
            let remaining: i64 = row.try_get(2)?;
            let reset: i64 = row.try_get(3)?;
            let retry: i64 = row.try_get(4)?;
            let banned: i32 = row.try_get(5)?;
            if banned == 2 {
                self.bans_begun.fetch_add(1, Relaxed);
            }
            let us = |v: i64| (v.max(0) as u64).saturating_mul(1000);
            Ok(Outcome {
                banned: banned != 0,
                ..Outcome::from(Decision {
                    allowed,
                    limit: limit.max(0) as u64,
                    remaining: remaining.max(0) as u64,
                    reset_after: us(reset),
                    retry_after: us(retry),
                })
            })
        };
        read().map_err(|e| self.health.error(format!("an unexpected answer: {e}")))
    }

    /// The arguments of one `decide()` call of `mode` of `cost` on `key`.
    fn args(&self, mode: &'static str, key: &[u8], cost: u64, now_us: Option<u64>) -> Args {
        Args {
            key: self.row_key(key),
            mode,
            cost: cost as i64,
            now: now_us.map(|n| n as i64),
        }
    }

    /// The parameters of `decide()`, in its order.
    fn params<'a>(&'a self, args: &'a Args) -> [&'a (dyn ToSql + Sync); 9] {
        [
            &args.key,
            &self.algorithm,
            &self.limits,
            &self.windows,
            &self.bursts,
            &self.ban,
            &args.mode,
            &args.cost,
            &args.now,
        ]
    }

    /// Decides `mode` ("hit" or "peek") of `cost` on `key` at `now_us` (the
    /// server's clock when None), on the calling thread; not yet settled.
    fn decide_blocking(
        &self,
        mode: &'static str,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        let args = self.args(mode, key, cost, now_us);
        let row = self.blocking_decide(&self.params(&args))?;
        self.outcome(&row)
    }

    /// Decides a hit of `cost` on `key` (at `now_us` instead of the server's
    /// clock, for tests), spending it if admitted; blocks the calling thread
    /// (which should not hold the GIL).
    pub fn hit_blocking(
        &self,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        let result = self.decide_blocking("hit", key, cost, now_us);
        self.health.settle(result, (Some(key), cost, now_us))
    }

    /// What a hit of cost 1 would get, spending nothing; blocking.
    pub fn peek_blocking(
        &self,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        match self.decide_blocking("peek", key, 1, now_us) {
            Ok(d) => Ok(d),
            Err(err) => self.health.policy(err, 1),
        }
    }

    /// Decides `mode` on the runtime's shared connections; not yet settled.
    async fn decide(
        &self,
        mode: &'static str,
        key: &[u8],
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        let args = self.args(mode, key, cost, now_us);
        let params = self.params(&args);
        let row = self
            .health
            .guarded(self.shared_query(None, &params))
            .await?;
        self.outcome(&row)
    }

    /// An awaitable hit: the decision, the failure policy applied.
    pub async fn hit(
        self: Arc<Self>,
        key: Vec<u8>,
        cost: u64,
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        let result = self.decide("hit", &key, cost, now_us).await;
        self.health.settle(result, (Some(&key), cost, now_us))
    }

    /// An awaitable peek.
    pub async fn peek(
        &self,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Outcome, StoreError> {
        match self.decide("peek", key, 1, now_us).await {
            Ok(d) => Ok(d),
            Err(err) => self.health.policy(err, 1),
        }
    }

    /// Runs one statement of `sql` with `params` on a shared connection,
    /// under the breaker and the deadline.
    async fn run(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> std::result::Result<Row, StoreError> {
        self.health
            .guarded(self.shared_query(Some(sql), params))
            .await
    }

    /// Bans `key` for `duration` from now, in every process at once.
    pub async fn ban(
        &self,
        key: &[u8],
        duration: Nanos,
        now_us: Option<u64>,
    ) -> std::result::Result<(), StoreError> {
        let length = duration.div_ceil(1000).max(1) as i64;
        let now = now_us.map(|n| n as i64);
        self.run(&self.sql.ban, &[&self.row_key(key), &length, &now])
            .await?;
        self.bans_begun.fetch_add(1, Relaxed);
        self.health.ban_changed(key, now_us, Some(duration));
        Ok(())
    }

    /// Lifts `key`'s ban and forgets its refusals; whether it was banned.
    pub async fn unban(
        &self,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<bool, StoreError> {
        let now = now_us.map(|n| n as i64);
        let row = self
            .run(&self.sql.unban, &[&self.row_key(key), &now])
            .await?;
        let lifted: bool = row.try_get(0).unwrap_or(false);
        if lifted {
            self.health.ban_changed(key, now_us, None);
        }
        Ok(lifted)
    }

    /// How long `key` stays banned (None: not banned).
    pub async fn banned_for(
        &self,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Option<Nanos>, StoreError> {
        let now = now_us.map(|n| n as i64);
        let row = self
            .run(&self.sql.banned_for, &[&self.row_key(key), &now])
            .await?;
        let left: Option<i64> = row.try_get(0).unwrap_or(None);
        Ok(left.filter(|&l| l > 0).map(|l| l as u64 * 1000))
    }

    /// Drops `key`'s state and ban; whether it had live state.
    pub async fn reset(&self, key: &[u8]) -> std::result::Result<bool, StoreError> {
        let now: Option<i64> = None;
        let row = self
            .run(&self.sql.reset, &[&self.row_key(key), &now])
            .await?;
        Ok(row.try_get(0).unwrap_or(false))
    }

    /// Drops every key of this limiter (its tag's range of rows); how many
    /// rows went.
    pub async fn clear(&self) -> std::result::Result<u64, StoreError> {
        let low = self.tag.to_vec();
        let mut high = self.tag.to_vec();
        // The first key past the tag's range: the tag plus one, as bytes.
        let mut i = high.len();
        while i > 0 {
            i -= 1;
            if high[i] == 0xff {
                high[i] = 0;
            } else {
                high[i] += 1;
                break;
            }
        }
        let wrapped = i == 0 && high.iter().all(|&b| b == 0);
        if wrapped {
            high = vec![0xff; 25];
        }
        let deadline = Duration::from_secs(30).max(self.config.timeout);
        let op = async {
            let conn = self.shared_conn().await?;
            let mut gone = 0;
            for sql in [&self.sql.clear_state, &self.sql.clear_bans] {
                gone += conn
                    .client
                    .execute(sql.as_str(), &[&low, &high])
                    .await
                    .map_err(|e| self.pg_err(e))?;
            }
            Ok(gone)
        };
        // Clearing may take longer than one decision's deadline.
        match tokio::time::timeout(deadline, op).await {
            Ok(result) => result,
            Err(_) => Err(self.health.error("clear did not finish in time")),
        }
    }

    /// `sweep`, counted in `sweeps()` (the janitor's and
    /// `cleanup_expired()`'s).
    pub async fn sweep_recorded(&self) -> std::result::Result<u64, StoreError> {
        let gone = self.sweep().await?;
        self.sweeps.fetch_add(1, Relaxed);
        self.swept.fetch_add(gone, Relaxed);
        Ok(gone)
    }

    /// Sweeps completed and the rows they deleted.
    pub fn sweeps(&self) -> (u64, u64) {
        (self.sweeps.load(Relaxed), self.swept.load(Relaxed))
    }

    /// Deletes expired rows, `SWEEP_BATCH` per statement, until a batch
    /// finds fewer; how many went.
    async fn sweep(&self) -> std::result::Result<u64, StoreError> {
        let now: Option<i64> = None;
        let mut gone = 0u64;
        loop {
            let row = self.run(&self.sql.sweep, &[&SWEEP_BATCH, &now]).await?;
            let n: i64 = row.try_get(0).unwrap_or(0);
            gone += n.max(0) as u64;
            if n < i64::from(SWEEP_BATCH) {
                return Ok(gone);
            }
            tokio::task::yield_now().await;
        }
    }
}
