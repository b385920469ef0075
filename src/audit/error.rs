//! What can go wrong talking to the audit database, and the one way a connection is taken from
//! the pool (within a deadline, so a saturated pool is an error, not a hang).

use std::time::Duration;

use diesel_async::{
    AsyncPgConnection,
    pooled_connection::deadpool::{Object, Pool, PoolError},
};

/// What can go wrong talking to the audit database.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database: cannot build the connection pool: {0}")]
    Pool(String),
    #[error("audit database: no connection available: {0}")]
    Unavailable(String),
    #[error("audit database: query failed while {step}: {source}")]
    Query {
        step: &'static str,
        #[source]
        source: diesel::result::Error,
    },
    #[error("audit database: migrations failed: {0}")]
    Migration(String),
    #[error("audit database: appending a decision failed: {0}")]
    Append(String),
}

impl AuditError {
    pub fn query(step: &'static str) -> impl FnOnce(diesel::result::Error) -> AuditError {
        move |source| AuditError::Query { step, source }
    }
}

/// A connection from `pool`, or [`AuditError::Unavailable`] after `timeout`.
pub(crate) async fn acquire(pool: &Pool<AsyncPgConnection>, timeout: Duration) -> Result<Object<AsyncPgConnection>, AuditError> {
    match tokio::time::timeout(timeout, pool.get()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(PoolError::Backend(e))) => Err(AuditError::Unavailable(e.to_string())),
        Ok(Err(e)) => Err(AuditError::Unavailable(e.to_string())),
        Err(_) => Err(AuditError::Unavailable("timed out waiting for a connection".into())),
    }
}
