//! The connection pool and schema migrations.
//!
//! Connections are pure-Rust (tokio-postgres under diesel-async): no libpq at build or run time.
//! Each connection's driver task is spawned on the process's main multi-thread runtime, not on
//! the actix worker that happened to ask for it, so that a worker shutting down never strands a
//! pooled connection (see the diesel-async/actix caveat in the crates research).

use std::time::Duration;

use diesel::{QueryableByName, sql_query, sql_types::Text};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig,
        deadpool::{Object, Pool},
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{
    error::{AuditError, acquire},
    writer::DecisionWriter,
};
use crate::config::DatabaseSettings;

/// The SQL in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A handle on the audit database: cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct Database {
    pool: Pool<AsyncPgConnection>,
    acquire_timeout: Duration,
    decisions: DecisionWriter,
}

impl Database {
    /// Builds the pool. No connection is opened until one is needed.
    pub fn connect(settings: &DatabaseSettings) -> Result<Database, AuditError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| AuditError::Pool("must be called inside a tokio runtime".into()))?;
        let mut config = ManagerConfig::default();
        // Set on every new connection: a statement waits for a lock, or runs, only so long.
        let limits = format!(
            "SET lock_timeout = {}; SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {}",
            settings.lock_timeout_ms,
            settings.statement_timeout_ms,
            settings.statement_timeout_ms.saturating_mul(2),
        );
        config.custom_setup = Box::new(move |url| {
            let url = url.to_owned();
            let runtime = runtime.clone();
            let limits = limits.clone();
            Box::pin(async move {
                runtime
                    .spawn(async move {
                        let mut conn = AsyncPgConnection::establish(&url).await?;
                        conn.batch_execute(&limits).await.map_err(|e| diesel::ConnectionError::BadConnection(format!("cannot set the session limits: {e}")))?;
                        Ok(conn)
                    })
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(format!("connection task failed: {e}")))?
            })
        });
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&settings.url, config);
        let acquire_timeout = Duration::from_secs(settings.acquire_timeout_s);
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .build()
            .map_err(|e| AuditError::Pool(e.to_string()))?;
        let decisions = DecisionWriter::start(pool.clone(), acquire_timeout);
        Ok(Database { pool, acquire_timeout, decisions })
    }

    /// Where decisions are appended (group commit; see [`super::writer`]).
    pub(crate) fn decision_writer(&self) -> &DecisionWriter {
        &self.decisions
    }

    /// Reports each batch the decision writer commits (size and lag) to `observer`.
    pub fn observe_writes(&self, observer: super::writer::WriteObserver) {
        self.decisions.observe(observer);
    }

    /// A pooled connection, or [`AuditError::Unavailable`] after the configured wait.
    pub async fn conn(&self) -> Result<Object<AsyncPgConnection>, AuditError> {
        acquire(&self.pool, self.acquire_timeout).await
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), AuditError> {
        let mut conn = self.conn().await?;
        sql_query("SELECT 1").execute(&mut conn).await.map_err(AuditError::query("pinging"))?;
        Ok(())
    }

    /// What `/readyz` reports of the database: whether it answers, and the migrations not yet
    /// applied (`["unknown"]` when they cannot be read).
    pub async fn readiness(&self) -> (bool, Vec<String>) {
        let answers = self.ping().await.map_err(|e| tracing::warn!(error = %e, "readiness: database unreachable")).is_ok();
        let pending = self.pending_migrations().await.unwrap_or_else(|_| vec!["unknown".into()]);
        (answers, pending)
    }

    /// Versions of the embedded migrations not yet applied (empty when the schema is current).
    pub async fn pending_migrations(&self) -> Result<Vec<String>, AuditError> {
        #[derive(QueryableByName)]
        struct Applied {
            #[diesel(sql_type = Text)]
            version: String,
        }
        let mut conn = self.conn().await?;
        let applied: Vec<Applied> = sql_query("SELECT version FROM __diesel_schema_migrations")
            .load(&mut conn)
            .await
            .unwrap_or_default();
        let applied: std::collections::HashSet<String> = applied.into_iter().map(|a| a.version).collect();
        Ok(migration_versions()
            .into_iter()
            .filter(|v| !applied.contains(v))
            .collect())
    }
}

/// Versions of the migrations compiled into this binary, e.g. `20261126000001`.
pub fn migration_versions() -> Vec<String> {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect())
        .unwrap_or_default()
}

/// Applies every pending migration. Blocking: call it from `spawn_blocking` or before the
/// server starts (the wrapper drives its own connection with `block_on`).
pub fn run_migrations(url: &str) -> Result<Vec<String>, AuditError> {
    use diesel::Connection;
    let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(url)
        .map_err(|e| AuditError::Migration(format!("cannot connect: {e}")))?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| AuditError::Migration(e.to_string()))?;
    Ok(applied.iter().map(|v| v.to_string()).collect())
}
