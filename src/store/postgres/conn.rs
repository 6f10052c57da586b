//! Reaching PostgreSQL: the parsed URL (`Connect`), connections with the
//! decision prepared, the sync pool (each connection driven by a
//! current-thread runtime of its own, on the calling thread), the shared
//! connections of awaitables, the schema check and install, and errors as
//! one line.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::{schema_sql, PgStore, SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::store::remote::{Probe, StoreError};

/// How to reach the server: the parsed URL, TLS, and names for messages.
pub(super) struct Connect {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The URL, password masked.
    pub(super) shown: String,
    /// The server as messages name it (`host:port` or a socket directory).
    peer: String,
    /// Whether the store's tables are unlogged.
    unlogged: bool,
}

impl Connect {
    /// Parses libpq's URI form (`postgresql://user:pass@host:port/db?...`,
    /// `postgresql:///db?host=/var/run/postgresql`), `sslmode` and
    /// `sslrootcert` as libpq reads them (see `tls`).
    pub(super) fn parse(url: &str, unlogged: bool) -> Result<Self> {
        let shown = crate::store::redis::redact(url);
        let (rest, tls) = super::tls::split(url)?;
        let mut config = Config::from_str(&rest).map_err(|e| {
            Error::invalid(
                "storage",
                format!("is not a usable PostgreSQL URL ({shown:?}): {e}"),
            )
        })?;
        if config.get_application_name().is_none() {
            config.application_name("rust_py_rate_limit");
        }
        let peer = config
            .get_hosts()
            .first()
            .map(|host| {
                let port = config.get_ports().first().copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(dir) => {
                        format!("{}/.s.PGSQL.{port}", dir.display())
                    }
                }
            })
            .unwrap_or_else(|| "the default PostgreSQL server".to_owned());
        Ok(Self {
            config,
            tls,
            shown,
            peer,
            unlogged,
        })
    }

    /// `config` with the statement timeout of `timeout` (the server stops a
    /// statement that outlives the caller's deadline), a connect timeout,
    /// and for unlogged tables commits that do not wait for the disk.
    fn with_timeout(&self, timeout: Duration, unlogged: bool) -> Config {
        let mut config = self.config.clone();
        let ms = timeout.as_millis().max(1);
        // Each statement of the functions must see the rows committed
        // before it (read committed), whatever the database's default
        // isolation: under repeatable read a decision waiting for the key's
        // lock would read the state as it was before the lock's holder
        // wrote it.
        let mut ours =
            format!("-c statement_timeout={ms} -c default_transaction_isolation=read\\ committed");
        if unlogged {
            // Unlogged state does not survive a crash anyway: a commit need
            // not wait for its WAL record to reach the disk.
            ours.push_str(" -c synchronous_commit=off");
        }
        let options = match config.get_options() {
            Some(given) => format!("{given} {ours}"),
            None => ours,
        };
        config.options(&options);
        config.connect_timeout(timeout);
        config
    }

    /// Opens a connection, its driver spawned on the current runtime.
    async fn open(&self, timeout: Duration) -> std::result::Result<Client, tokio_postgres::Error> {
        let config = self.with_timeout(timeout, self.unlogged);
        match &self.tls {
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            }
        }
    }

    /// The breaker's probe: a connection that answers `SELECT 1`.
    pub(super) fn probe(self: &Arc<Self>, timeout: Duration) -> Probe {
        let connect = Arc::clone(self);
        Arc::new(move || {
            let connect = Arc::clone(&connect);
            Box::pin(async move {
                match connect.open(timeout).await {
                    Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
                    Err(_) => false,
                }
            })
        })
    }
}

/// Why a store could not be prepared.
#[derive(Debug)]
pub enum Prepare {
    /// The server could not be reached (it may come up later).
    Unreachable(StoreError),
    /// The server answered, and the schema cannot be used or installed.
    Schema(StoreError),
}

/// The longest an install of the schema may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the schema is ready, shared with a background install.
#[derive(Default)]
pub(super) struct SchemaState {
    pub(super) ready: AtomicBool,
    installing: AtomicBool,
    /// Why the last background install failed.
    last_error: std::sync::Mutex<Option<String>>,
}

/// Installs the schema in one transaction on `client`, under an advisory
/// lock so that processes starting together install it once; the error as
/// one line (a missing privilege names the way out).
async fn install_on(
    client: &Client,
    schema: &str,
    unlogged: bool,
) -> std::result::Result<(), String> {
    let sql = format!(
        "SET statement_timeout = 0;\nBEGIN;\nSET LOCAL synchronous_commit = on;\n\
         SELECT pg_advisory_xact_lock(7263500411);\n{}COMMIT;",
        schema_sql(schema, unlogged)
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            let message = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string());
            if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                return Err(format!(
                    "the role cannot install the schema {schema:?} ({message}): run the SQL \
                     of rust_py_rate_limit.postgres_schema_sql({schema:?}) once as a role that \
                     can, or GRANT CREATE ON DATABASE to this role"
                ));
            }
            Err(format!(
                "installing the schema {schema:?} failed: {message}"
            ))
        }
    }
}

/// A connection with the decision prepared on it.
pub(super) struct PgConn {
    pub(super) client: Client,
    pub(super) decide: Statement,
    /// Calls on it now (awaitables only).
    in_flight: AtomicUsize,
}

/// The parameter types of `decide()`.
const DECIDE_TYPES: [Type; 9] = [
    Type::BYTEA,
    Type::TEXT,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
];

/// A connection for sync calls: driven by its own current-thread runtime,
/// so its I/O runs on whichever thread calls.
pub(super) struct SyncConn {
    conn: PgConn,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl SyncConn {
    fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("a live connection")
            .block_on(fut)
    }
}

impl Drop for SyncConn {
    fn drop(&mut self) {
        // The store may go from a runtime thread (its last awaitable), where
        // a runtime cannot be dropped the blocking way.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Idle sync connections (at most 16).
pub(super) type SyncPool = crate::store::remote::pool::IdlePool<SyncConn, 16>;

/// Awaitables' connections at most (concurrent calls pipeline on each).
const MAX_SHARED: usize = 2;

/// The awaitables' connections of one runtime generation.
#[derive(Default)]
pub(super) struct Shared {
    slots: std::sync::Mutex<(u64, Vec<Arc<PgConn>>)>,
    /// Held while a connection opens (one at a time).
    opening: tokio::sync::Mutex<()>,
}

/// Counts a call on a shared connection while it runs.
pub(super) struct InFlight(Arc<PgConn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for InFlight {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        &self.0
    }
}

impl PgStore {
    /// A tokio-postgres error as one line.
    pub(super) fn pg_err(&self, e: tokio_postgres::Error) -> StoreError {
        let peer = &self.connect.peer;
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if [
                SqlState::INVALID_SCHEMA_NAME,
                SqlState::UNDEFINED_TABLE,
                SqlState::UNDEFINED_FUNCTION,
            ]
            .contains(code)
                && self.schema.ready.swap(false, Ordering::AcqRel)
            {
                // The schema went (dropped, or lost by a crash before its
                // install reached the disk): install it again.
                return self.install_later();
            }
            let what = if *code == SqlState::QUERY_CANCELED {
                return self.health.error(format!(
                    "the server cancelled the statement ({}; statement_timeout={} ms)",
                    db.message(),
                    self.config.timeout.as_millis().max(1)
                ));
            } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
                "the server is read-only (a standby?)"
            } else if db.message().contains("during recovery") {
                // Unlogged tables do not exist on a standby at all.
                "the server is a standby in recovery, read-only"
            } else if *code == SqlState::T_R_SERIALIZATION_FAILURE {
                "a serialization failure"
            } else if *code == SqlState::T_R_DEADLOCK_DETECTED {
                "a deadlock"
            } else if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
            {
                "the server is shutting down or ended the connection"
            } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
                return self.health.error(format!(
                    "{}; the schema {:?} needs a role that may use it (see \
                     rust_py_rate_limit.postgres_schema_sql())",
                    db.message(),
                    self.config.schema
                ));
            } else {
                ""
            };
            let lead = if what.is_empty() {
                String::new()
            } else {
                format!("{what}: ")
            };
            return self
                .health
                .error(format!("{lead}{} (SQLSTATE {})", db.message(), code.code()));
        }
        if e.is_closed() {
            return self
                .health
                .error(format!("the connection to {peer} was closed"));
        }
        self.io_err(&e, &format!("talking to {peer}"))
    }

    /// An error below the protocol (I/O, TLS, a timeout) as one line after
    /// `doing`, with its cause.
    fn io_err(&self, e: &tokio_postgres::Error, doing: &str) -> StoreError {
        let text = e.to_string();
        if text.contains("timed out") || text.contains("timeout") {
            return self.health.timed_out();
        }
        let source = std::error::Error::source(e).map(|s| format!(": {s}"));
        self.health
            .error(format!("{doing}: {text}{}", source.unwrap_or_default()))
    }

    /// The schema check of a new connection: at this release's version, it
    /// is ready. A newer version is an error (this release cannot read it).
    /// Absent (or older), it is installed here when `install` (the
    /// connection made when the limiter is built, with a long deadline);
    /// otherwise in the background, once at a time, and this call fails.
    async fn ensure_schema(
        &self,
        client: &Client,
        install: bool,
    ) -> std::result::Result<(), StoreError> {
        if self.schema.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let version = match client.query_one(self.sql.version.as_str(), &[]).await {
            Ok(row) => row.try_get::<_, Option<i32>>(0).ok().flatten(),
            Err(e)
                if e.code() == Some(&SqlState::UNDEFINED_TABLE)
                    || e.code() == Some(&SqlState::INVALID_SCHEMA_NAME) =>
            {
                None
            }
            Err(e) => return Err(self.pg_err(e)),
        };
        match version {
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) if v > SCHEMA_VERSION => {
                return Err(self.health.error(format!(
                    "the schema {:?} is at version {v}, newer than this release's \
                     {SCHEMA_VERSION}: upgrade rust-py-rate-limit",
                    self.config.schema
                )))
            }
            _ if install => {
                install_on(client, &self.config.schema, self.config.unlogged)
                    .await
                    .map_err(|e| self.health.error(e))?;
            }
            _ => return Err(self.install_later()),
        }
        self.schema.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Starts installing the schema on the runtime (unless an install is
    /// running); the error of a call that found it missing.
    fn install_later(&self) -> StoreError {
        let schema = Arc::clone(&self.schema);
        let last = schema
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !schema.installing.swap(true, Ordering::AcqRel) {
            if let Ok((handle, _)) = crate::runtime::handle() {
                let connect = Arc::clone(&self.connect);
                let (name, unlogged) = (self.config.schema.clone(), self.config.unlogged);
                handle.spawn(async move {
                    let result = match connect.open(INSTALL_TIMEOUT).await {
                        Ok(client) => install_on(&client, &name, unlogged).await,
                        Err(e) => Err(e.to_string()),
                    };
                    match result {
                        Ok(()) => schema.ready.store(true, Ordering::Release),
                        Err(e) => {
                            *schema.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e)
                        }
                    }
                    schema.installing.store(false, Ordering::Release);
                });
            } else {
                schema.installing.store(false, Ordering::Release);
            }
        }
        self.health.error(match last {
            Some(e) => format!("the schema {:?} is not installed: {e}", self.config.schema),
            None => format!(
                "the schema {:?} is not installed yet; installing it",
                self.config.schema
            ),
        })
    }

    /// Opens a connection on the current runtime, checks the schema and
    /// prepares the decision.
    async fn open(&self) -> std::result::Result<PgConn, StoreError> {
        let client = self
            .connect
            .open(self.config.timeout)
            .await
            .map_err(|e| self.connect_err(e))?;
        self.ensure_schema(&client, false).await?;
        let decide = client
            .prepare_typed(&self.sql.decide, &DECIDE_TYPES)
            .await
            .map_err(|e| self.pg_err(e))?;
        Ok(PgConn {
            client,
            decide,
            in_flight: AtomicUsize::new(0),
        })
    }

    fn connect_err(&self, e: tokio_postgres::Error) -> StoreError {
        if e.as_db_error().is_some() {
            return self.pg_err(e);
        }
        self.io_err(&e, &format!("could not connect to {}", self.connect.peer))
    }

    /// Runs the decision with `params` on an idle sync connection (a new one if none is idle) on
    /// the calling thread, under the breaker and one deadline (connecting
    /// included), and records it. The connection goes back to the pool only
    /// after a success: after a timeout its reply may still come.
    pub(super) fn blocking_decide(
        &self,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Row, StoreError> {
        self.health.breaker_closed()?;
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        let result = self.blocking_run(deadline, params);
        self.health.latency.record(started.elapsed());
        self.health.record(&result);
        result
    }

    fn blocking_run(
        &self,
        deadline: Instant,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Row, StoreError> {
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut rolled_back = false;
        loop {
            let idle = {
                let _pass = crate::fork::enter();
                let mut pool = self.blocking.lock().unwrap_or_else(|e| e.into_inner());
                pool.take()
            };
            let pooled = idle.is_some();
            let conn = match idle {
                Some(conn) => conn,
                None => self.sync_conn(left())?,
            };
            let value = conn.block_on(async {
                let call = conn.conn.client.query_one(&conn.conn.decide, params);
                tokio::time::timeout(left(), call).await
            });
            let err = match value {
                Ok(Ok(row)) => {
                    self.put_back(conn);
                    return Ok(row);
                }
                Err(_) => return Err(self.health.timed_out()),
                Ok(Err(e)) => e,
            };
            if Self::ended(&err, &conn.conn.client) {
                // An idle connection the server ended (a restart, a
                // terminated backend) decided nothing: try a new one.
                if pooled && !left().is_zero() {
                    continue;
                }
            } else {
                // A statement error leaves the connection usable.
                self.put_back(conn);
                if !rolled_back && Self::rolled_back(&err) && !left().is_zero() {
                    rolled_back = true;
                    continue;
                }
            }
            return Err(self.pg_err(err));
        }
    }

    /// A new sync connection, opened within `left`.
    fn sync_conn(&self, left: Duration) -> std::result::Result<SyncConn, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.health.error(format!("could not start a runtime: {e}")))?;
        let opened = runtime
            .block_on(async { tokio::time::timeout(left, self.open()).await })
            .unwrap_or_else(|_| Err(self.health.timed_out()));
        match opened {
            Ok(conn) => Ok(SyncConn {
                conn,
                runtime: Some(runtime),
            }),
            Err(err) => {
                runtime.shutdown_background();
                Err(err)
            }
        }
    }

    fn put_back(&self, conn: SyncConn) {
        let _pass = crate::fork::enter();
        let mut pool = self.blocking.lock().unwrap_or_else(|e| e.into_inner());
        pool.put(conn);
    }

    /// Whether `err` on `client` means the server ended the connection
    /// (closed, or a FATAL shutdown): it decided nothing.
    fn ended(err: &tokio_postgres::Error, client: &Client) -> bool {
        client.is_closed()
            || err.is_closed()
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .iter()
            .any(|code| err.code() == Some(code))
    }

    /// Whether the server rolled the statement back for a serialization
    /// failure or a deadlock: it decided nothing, and the same call made
    /// again may pass (as PostgreSQL's manual advises).
    fn rolled_back(err: &tokio_postgres::Error) -> bool {
        [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ]
        .iter()
        .any(|code| err.code() == Some(code))
    }

    /// Runs `sql` (the decision when None) with `params` on a shared
    /// connection; one the server ended is dropped and the call made once
    /// more on another, and one the server rolled back (a deadlock, a
    /// serialization failure) made once more (within the caller's deadline).
    pub(super) async fn shared_query(
        &self,
        sql: Option<&str>,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Row, StoreError> {
        let (mut retried, mut rolled_back) = (false, false);
        loop {
            let conn = self.shared_conn().await?;
            let result = match sql {
                None => conn.client.query_one(&conn.decide, params).await,
                Some(sql) => conn.client.query_one(sql, params).await,
            };
            match result {
                Ok(row) => return Ok(row),
                Err(e) if !retried && Self::ended(&e, &conn.client) => {
                    retried = true;
                    let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots.1.retain(|c| !Arc::ptr_eq(c, &conn.0));
                }
                Err(e) if !rolled_back && Self::rolled_back(&e) => rolled_back = true,
                Err(e) => return Err(self.pg_err(e)),
            }
        }
    }

    /// A shared connection for an awaitable: the least busy of this
    /// runtime's, or a new one while all are busy and fewer than
    /// `MAX_SHARED` are open.
    pub(super) async fn shared_conn(&self) -> std::result::Result<InFlight, StoreError> {
        let generation = crate::runtime::live_generation().unwrap_or(0);
        loop {
            let (best, open) = {
                let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
                if slots.0 != generation {
                    // Another runtime's (before a fork): never touched.
                    for conn in slots.1.drain(..) {
                        std::mem::forget(conn);
                    }
                    slots.0 = generation;
                }
                slots.1.retain(|c| !c.client.is_closed());
                let best = slots
                    .1
                    .iter()
                    .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))
                    .cloned();
                (best, slots.1.len())
            };
            if let Some(conn) = &best {
                if open >= MAX_SHARED || conn.in_flight.load(Ordering::Relaxed) == 0 {
                    conn.in_flight.fetch_add(1, Ordering::Relaxed);
                    return Ok(InFlight(Arc::clone(conn)));
                }
            }
            // Open one (one at a time); a caller that waited may find it.
            let Ok(_opening) = self.shared.opening.try_lock() else {
                if let Some(conn) = best {
                    conn.in_flight.fetch_add(1, Ordering::Relaxed);
                    return Ok(InFlight(conn));
                }
                let _wait = self.shared.opening.lock().await;
                continue;
            };
            let conn = Arc::new(self.open().await?);
            conn.in_flight.fetch_add(1, Ordering::Relaxed);
            let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            if slots.0 == generation {
                slots.1.push(Arc::clone(&conn));
            }
            return Ok(InFlight(conn));
        }
    }

    /// Connects and checks (or installs) the schema now, with `deadline`:
    /// done when the limiter is built, so a missing privilege is an error
    /// there, not on a request. The error says whether the server was
    /// reached (`Prepare::Schema`) or not (`Prepare::Unreachable`).
    pub fn prepare_blocking(&self, deadline: Duration) -> std::result::Result<(), Prepare> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Prepare::Unreachable(self.health.error(format!("could not start a runtime: {e}")))
            })?;
        let result = runtime.block_on(async {
            let op = async {
                let client = self
                    .connect
                    .open(deadline)
                    .await
                    .map_err(|e| Prepare::Unreachable(self.connect_err(e)))?;
                self.ensure_schema(&client, true)
                    .await
                    .map_err(Prepare::Schema)
            };
            tokio::time::timeout(deadline, op)
                .await
                .unwrap_or_else(|_| Err(Prepare::Unreachable(self.health.timed_out())))
        });
        runtime.shutdown_background();
        result
    }
}
