//! Analyses in flight or finished, shared through the database so that hooks on any worker or
//! replica run one analysis per (patient, study, model, client, DICOMweb source) once and reuse
//! its result.
//!
//! Unlike the decision log this table changes: a row goes `running` → `done` | `failed`.
//!
//! - The key binds a result to who asked (issuer and tenant) and to where the pixels came from:
//!   what one caller's prefetch pointed at never decides another caller's answer, and a hook
//!   whose study resolves to another PACS runs its own analysis.
//! - Only a result that the pixels settle is final ([`Finality::Final`]). One the data did not
//!   settle (a series missing: the PACS may still be ingesting) is served until its time-to-live
//!   runs out, then redone ([`Finality::Expires`]).
//! - A failure (PACS down, time-out) is retried by a later hook after a back-off that doubles
//!   with each attempt ([`Finality::Retry`]); meanwhile hooks get the failure at once.
//! - A `running` row older than [`STALE_AFTER_S`] is taken over (its worker died).

use diesel::{
    QueryableByName,
    sql_types::{Jsonb, Nullable, Text},
};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::{AuditError, Database};

pub const STALE_AFTER_S: i64 = 300;

/// Identifies one analysis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnalysisKey {
    pub patient_ref: String,
    pub study_uid: String,
    pub model_version: String,
    /// The client that asked: its issuer, and `#tenant` when the token names one.
    pub client: String,
    /// The DICOMweb base URL(s) the study resolved to, sorted, space-separated.
    pub source: String,
}

/// How long a finished analysis stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Finality {
    /// The pixels settled it: served to every later hook with the same key.
    Final,
    /// Served for this many seconds, then redone.
    Expires { seconds: u64 },
    /// Failed: the next attempt may start after `base × 2^(attempts − 1)` seconds, at most
    /// `max`.
    Retry { base_seconds: u64, max_seconds: u64 },
}

/// What a hook finds when it asks to run an analysis.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This caller must run it.
    Mine,
    /// Someone else is running it.
    Running,
    /// Finished; the stored result.
    Done(Value),
    /// Failed recently, and the back-off has not run out: the failure, not to be cached.
    Failed(Value),
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    result: Option<Value>,
}

impl Database {
    pub async fn claim_analysis(&self, key: &AnalysisKey) -> Result<Claim, AuditError> {
        // Give the connection back before reading the state: holding one while waiting for a
        // second deadlocks the pool under load (every holder waits for a free connection).
        let taken = {
            let mut conn = self.conn().await?;
            self.try_claim(&mut conn, key).await?
        };
        if taken {
            return Ok(Claim::Mine);
        }
        self.analysis_state(key).await.map(|c| c.unwrap_or(Claim::Running))
    }

    /// Inserts a `running` row, or takes over a failed one whose back-off ran out, an expired
    /// one or a stale one; true when this caller won.
    async fn try_claim(&self, conn: &mut diesel_async::AsyncPgConnection, key: &AnalysisKey) -> Result<bool, AuditError> {
        let taken: Vec<Row> = diesel::sql_query(
            "INSERT INTO analyses (patient_ref, study_uid, model_version, client, source, state, started_at) \
             VALUES ($1, $2, $3, $5, $6, 'running', now()) \
             ON CONFLICT (patient_ref, study_uid, model_version, client, source) DO UPDATE \
               SET state = 'running', started_at = now(), finished_at = NULL, result = NULL \
               WHERE (analyses.state IN ('failed', 'done') AND analyses.until_at IS NOT NULL AND analyses.until_at <= now()) \
                  OR (analyses.state = 'running' AND analyses.started_at < now() - make_interval(secs => $4)) \
             RETURNING state, result",
        )
        .bind::<Text, _>(&key.patient_ref)
        .bind::<Text, _>(&key.study_uid)
        .bind::<Text, _>(&key.model_version)
        .bind::<diesel::sql_types::Double, _>(STALE_AFTER_S as f64)
        .bind::<Text, _>(&key.client)
        .bind::<Text, _>(&key.source)
        .load(conn)
        .await
        .map_err(AuditError::query("claiming an analysis"))?;
        Ok(!taken.is_empty())
    }

    /// `None` when no such analysis exists.
    pub async fn analysis_state(&self, key: &AnalysisKey) -> Result<Option<Claim>, AuditError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT state, result FROM analyses \
             WHERE patient_ref = $1 AND study_uid = $2 AND model_version = $3 AND client = $4 AND source = $5",
        )
        .bind::<Text, _>(&key.patient_ref)
        .bind::<Text, _>(&key.study_uid)
        .bind::<Text, _>(&key.model_version)
        .bind::<Text, _>(&key.client)
        .bind::<Text, _>(&key.source)
        .load(&mut conn)
        .await
        .map_err(AuditError::query("reading an analysis"))?;
        Ok(rows.into_iter().next().map(|r| match (r.state.as_str(), r.result) {
            ("done", Some(v)) => Claim::Done(v),
            ("failed", Some(v)) => Claim::Failed(v),
            _ => Claim::Running,
        }))
    }

    /// The latest finished analysis of a study for a client's decision (the case report): any
    /// tenant of the issuer, any source.
    pub async fn latest_analysis_for(&self, patient_ref: &str, study_uid: &str, model_version: &str, client_iss: &str) -> Result<Option<Value>, AuditError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT state, result FROM analyses \
             WHERE patient_ref = $1 AND study_uid = $2 AND model_version = $3 AND state = 'done' \
               AND (client = $4 OR starts_with(client, $4 || '#')) \
             ORDER BY finished_at DESC LIMIT 1",
        )
        .bind::<Text, _>(patient_ref)
        .bind::<Text, _>(study_uid)
        .bind::<Text, _>(model_version)
        .bind::<Text, _>(client_iss)
        .load(&mut conn)
        .await
        .map_err(AuditError::query("reading an analysis"))?;
        Ok(rows.into_iter().next().and_then(|r| r.result))
    }

    /// Records the end of an analysis: `done` (final or until it expires) with its result, or
    /// `failed` (retried after the back-off).
    pub async fn finish_analysis(&self, key: &AnalysisKey, finality: Finality, result: &Value) -> Result<(), AuditError> {
        let mut conn = self.conn().await?;
        let (state, seconds_sql) = match finality {
            Finality::Final => ("done", "NULL::double precision".to_string()),
            Finality::Expires { seconds } => ("done", format!("{seconds}::double precision")),
            // attempts counts failures in a row; a success (the row is then `done`) resets it.
            Finality::Retry { base_seconds, max_seconds } => {
                ("failed", format!("least({max_seconds}::double precision, {base_seconds}::double precision * power(2, least(analyses.attempts, 20)))"))
            }
        };
        let attempts = if state == "failed" { "analyses.attempts + 1" } else { "0" };
        let sql = format!(
            "UPDATE analyses SET state = $6, finished_at = now(), result = $7, \
               until_at = now() + make_interval(secs => {seconds_sql}), attempts = {attempts} \
             WHERE patient_ref = $1 AND study_uid = $2 AND model_version = $3 AND client = $4 AND source = $5"
        );
        diesel::sql_query(sql)
            .bind::<Text, _>(&key.patient_ref)
            .bind::<Text, _>(&key.study_uid)
            .bind::<Text, _>(&key.model_version)
            .bind::<Text, _>(&key.client)
            .bind::<Text, _>(&key.source)
            .bind::<Text, _>(state)
            .bind::<Jsonb, _>(result)
            .execute(&mut conn)
            .await
            .map_err(AuditError::query("finishing an analysis"))?;
        Ok(())
    }
}
