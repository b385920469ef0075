//! The rows of the two logs: a decision and a clinician's feedback, as recorded and as stored
//! (with their place in the hash chain).

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::schema::{decisions, feedback};

/// One decision, as recorded. Field names are the column names (and the API's).
#[derive(Debug, Clone, Serialize, Deserialize, Insertable, Queryable, Selectable, PartialEq, utoipa::ToSchema)]
#[diesel(table_name = decisions)]
pub struct DecisionRecord {
    pub decision_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
    pub hook: String,
    pub hook_instance: String,
    pub service_id: String,
    pub client_iss: String,
    pub user_ref: Option<String>,
    pub patient_ref: String,
    pub order_refs: Value,
    pub study_uid: Option<String>,
    pub series: Value,
    pub model_version: Option<String>,
    pub member_hashes: Value,
    pub preprocessing_version: Option<String>,
    pub member_probabilities: Value,
    pub ensemble_probability: Option<f64>,
    pub calibrated_probability: Option<f64>,
    pub member_spread: Option<f64>,
    pub recommendation: Option<String>,
    pub outcome: String,
    pub silent: bool,
    pub reason: Option<String>,
    pub card_uuid: Option<Uuid>,
    pub stage_timings_ms: Value,
    /// The DiagnosticReport bundle as given with the card. New rows store it in their content
    /// (below), and reads put it back here; older rows hold it inline.
    pub report: Option<Value>,
    /// The [`DecisionContent`](super::content::DecisionContent) this decision shares with the
    /// others on the same analysis. Absent (and left out of the hashed content, so older rows
    /// keep their hashes) when the decision had no analysis or was recorded inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
    /// The OpenTelemetry trace id of the hook this decision answered (32 hex digits): its log
    /// lines and its trace carry the same. Absent on rows recorded before traces (and left out
    /// of their hashed content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A stored decision: the record plus its place in the chain.
#[derive(Debug, Clone, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = decisions)]
pub struct StoredDecision {
    pub seq: i64,
    #[diesel(embed)]
    #[serde(flatten)]
    pub record: DecisionRecord,
    pub content_hash: String,
    pub prev_hash: String,
}

/// Feedback on a card (CDS Hooks 2.0 §Feedback), linked to its decision by `card_uuid`.
#[derive(Debug, Clone, Serialize, Deserialize, Insertable, Queryable, Selectable, PartialEq)]
#[diesel(table_name = feedback)]
pub struct FeedbackRecord {
    pub feedback_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub card_uuid: Uuid,
    pub decision_id: Option<Uuid>,
    pub service_id: String,
    pub client_iss: String,
    pub outcome: String,
    #[serde(with = "time::serde::rfc3339")]
    pub outcome_at: OffsetDateTime,
    pub accepted_suggestions: Value,
    pub override_reason: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = feedback)]
pub struct StoredFeedback {
    pub seq: i64,
    #[diesel(embed)]
    #[serde(flatten)]
    pub record: FeedbackRecord,
    pub content_hash: String,
    pub prev_hash: String,
}

/// Timestamps are stored with microsecond precision; truncate before hashing so that the hash
/// computed now equals the hash recomputed from the stored row.
pub fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}
