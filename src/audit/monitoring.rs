//! What model monitoring reads from the decision log: each analysis once, as its last finished
//! decision recorded it, with what the analysis's shared content says for monitoring (the
//! inputs and the reason class; see `cds::service`).

use diesel::{
    QueryableByName,
    sql_types::{BigInt, Double, Jsonb, Nullable, Text, Timestamptz},
};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;

use super::{AuditError, Database};

/// One analysis, as its latest decision recorded it.
#[derive(Debug, Clone, QueryableByName)]
pub struct MonitoredAnalysis {
    #[diesel(sql_type = Timestamptz)]
    pub recorded_at: OffsetDateTime,
    /// `name@version`.
    #[diesel(sql_type = Text)]
    pub model_version: String,
    #[diesel(sql_type = Text)]
    pub outcome: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub recommendation: Option<String>,
    #[diesel(sql_type = Nullable<Double>)]
    pub calibrated_probability: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub member_spread: Option<f64>,
    /// `{"inputs": …, "reason_class": …}`; `None` for decisions recorded before monitoring.
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub monitoring: Option<Value>,
}

impl Database {
    /// Analyses decided since `since`, newest first, at most `limit`. An analysis is a patient's
    /// study under one model: the hooks on it (order-select, then order-sign, …) count once, by
    /// the last decision that had its result (an `unavailable` or `pending` answer counts only
    /// when no later hook got one). Placeholders of hooks whose budget ran out before any
    /// analysis (model version `@`) and decisions on no study are not analyses.
    pub async fn monitored_analyses(&self, since: OffsetDateTime, limit: i64) -> Result<Vec<MonitoredAnalysis>, AuditError> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "SELECT * FROM (
                 SELECT DISTINCT ON (d.patient_ref, d.study_uid, d.model_version)
                        d.recorded_at, d.model_version, d.outcome, d.recommendation,
                        d.calibrated_probability, d.member_spread, c.content -> 'monitoring' AS monitoring
                   FROM decisions d LEFT JOIN decision_contents c ON c.content_sha256 = d.content_sha256
                  WHERE d.recorded_at >= $1 AND d.study_uid IS NOT NULL
                    AND d.model_version IS NOT NULL AND d.model_version <> '@'
                  ORDER BY d.patient_ref, d.study_uid, d.model_version,
                           d.outcome IN ('unavailable', 'pending'), d.seq DESC
             ) latest
             ORDER BY recorded_at DESC
             LIMIT $2",
        )
        .bind::<Timestamptz, _>(since)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(AuditError::query("reading analyses for model monitoring"))
    }
}
