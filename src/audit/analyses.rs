//! Analyses in flight or finished, shared through the database so that hooks on any worker or
//! replica run one analysis per (patient, study, model) once and reuse its result.
//!
//! Unlike the decision log this table changes: a row goes `running` → `done` | `failed`. A failed
//! analysis (PACS down, say) is retried by the next hook; a `running` row older than
//! [`STALE_AFTER_S`] is taken over (its worker died).

use diesel::{
    QueryableByName,
    sql_types::{Jsonb, Nullable, Text},
};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::db::{AuditError, Database};

pub const STALE_AFTER_S: i64 = 300;

/// Identifies one analysis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnalysisKey {
    pub patient_ref: String,
    pub study_uid: String,
    pub model_version: String,
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

    /// Inserts a `running` row, or takes over a failed or stale one; true when this caller won.
    async fn try_claim(&self, conn: &mut diesel_async::AsyncPgConnection, key: &AnalysisKey) -> Result<bool, AuditError> {
        let taken: Vec<Row> = diesel::sql_query(
            "INSERT INTO analyses (patient_ref, study_uid, model_version, state, started_at) \
             VALUES ($1, $2, $3, 'running', now()) \
             ON CONFLICT (patient_ref, study_uid, model_version) DO UPDATE \
               SET state = 'running', started_at = now(), finished_at = NULL, result = NULL \
               WHERE analyses.state = 'failed' \
                  OR (analyses.state = 'running' AND analyses.started_at < now() - make_interval(secs => $4)) \
             RETURNING state, result",
        )
        .bind::<Text, _>(&key.patient_ref)
        .bind::<Text, _>(&key.study_uid)
        .bind::<Text, _>(&key.model_version)
        .bind::<diesel::sql_types::Double, _>(STALE_AFTER_S as f64)
        .load(conn)
        .await
        .map_err(AuditError::query("claiming an analysis"))?;
        Ok(!taken.is_empty())
    }

    /// `None` when no such analysis exists.
    pub async fn analysis_state(&self, key: &AnalysisKey) -> Result<Option<Claim>, AuditError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query("SELECT state, result FROM analyses WHERE patient_ref = $1 AND study_uid = $2 AND model_version = $3")
            .bind::<Text, _>(&key.patient_ref)
            .bind::<Text, _>(&key.study_uid)
            .bind::<Text, _>(&key.model_version)
            .load(&mut conn)
            .await
            .map_err(AuditError::query("reading an analysis"))?;
        Ok(rows.into_iter().next().map(|r| match (r.state.as_str(), r.result) {
            ("done", Some(v)) => Claim::Done(v),
            _ => Claim::Running,
        }))
    }

    /// Records the end of an analysis: `done` with its result, or `failed` (retried next time).
    pub async fn finish_analysis(&self, key: &AnalysisKey, done: bool, result: &Value) -> Result<(), AuditError> {
        let mut conn = self.conn().await?;
        diesel::sql_query("UPDATE analyses SET state = $4, finished_at = now(), result = $5 WHERE patient_ref = $1 AND study_uid = $2 AND model_version = $3")
            .bind::<Text, _>(&key.patient_ref)
            .bind::<Text, _>(&key.study_uid)
            .bind::<Text, _>(&key.model_version)
            .bind::<Text, _>(if done { "done" } else { "failed" })
            .bind::<Jsonb, _>(result)
            .execute(&mut conn)
            .await
            .map_err(AuditError::query("finishing an analysis"))?;
        Ok(())
    }
}
