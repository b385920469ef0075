//! `POST /cds-services/{id}/feedback` (CDS Hooks 2.0 §Feedback): what the clinician did with a
//! card, stored against the decision the card came from. Only the client that was given the
//! card, at the service that gave it, may say what happened to it: feedback on any other card
//! is 404 and stores nothing, so no client can move another's override rates.
//!
//! ```json
//! { "feedback": [ { "card": "<card uuid>", "outcome": "overridden",
//!     "overrideReason": { "reason": { "code": "clinical-picture-differs", "system": "…" },
//!                         "userComment": "…" },
//!     "outcomeTimestamp": "2026-11-26T10:00:00Z" } ] }
//! ```

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{discovery, hook::RequestError, outcome::CdsError, service::trust};
use crate::{
    audit::{FeedbackRecord, records::now_micros},
    state::AppState,
};

/// The feedback request (CDS Hooks 2.0 §Feedback).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = FeedbackRequest)]
pub(crate) struct Body {
    feedback: Vec<Item>,
}

/// What happened to one card.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Feedback)]
pub(crate) struct Item {
    /// The card's `uuid`.
    #[schema(value_type = uuid::Uuid)]
    card: String,
    /// `accepted` or `overridden`.
    #[schema(example = "overridden")]
    outcome: String,
    /// Required when accepted: `{"id": <suggestion uuid>}` each.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    accepted_suggestions: Vec<Value>,
    /// `{"reason": <one of the card's overrideReasons>, "userComment": "..."}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    override_reason: Option<Value>,
    #[schema(format = DateTime)]
    outcome_timestamp: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> CdsError {
    CdsError::BadRequest(RequestError::Field { field, problem: problem.into() })
}

/// What the clinician did with a card this service gave this client.
#[utoipa::path(post, path = "/cds-services/{id}/feedback", tag = "CDS Hooks", security(("ehr_jwt" = [])),
    params(("id" = super::discovery::ServiceId, Path, description = "The service that gave the card")),
    request_body(content = Body, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (every item, or none)", body = Object),
        (status = 400, description = "Malformed body or a field the hook needs is missing or wrong; the OperationOutcome names it", body = crate::cds::outcome::OperationOutcome),
        (status = 401, description = "No JWT, or one this service does not trust for this endpoint (no detail is given)", body = crate::cds::outcome::OperationOutcome),
        (status = 404, description = "No such service, or a card this service did not give this client (the two are answered alike)", body = super::outcome::OperationOutcome),
        (status = 413, description = "The body is over `server.max_request_bytes`", content_type = "text/plain"),
        (status = 503, description = "Too many analyses queued, or the audit trail is unavailable (nothing is answered that is not recorded); `Retry-After` says when to try again", body = crate::cds::outcome::OperationOutcome),
    ))]
pub async fn feedback(req: HttpRequest, path: web::Path<String>, body: web::Bytes, state: web::Data<AppState>) -> Result<HttpResponse, CdsError> {
    let service_id = path.into_inner();
    let endpoint = format!("{}/{}/feedback", state.settings.cds_services_url(), service_id);
    let client = trust(&req, &state, &endpoint).await?;
    discovery::hook_for(&service_id).ok_or_else(|| CdsError::UnknownService(service_id.clone()))?;
    let body: Body = serde_json::from_slice(&body).map_err(|e| CdsError::BadRequest(RequestError::Malformed(e.to_string())))?;
    if body.feedback.is_empty() {
        return Err(bad("feedback", "is empty"));
    }
    // Check every item before storing any, so a bad batch stores nothing.
    let mut records = Vec::with_capacity(body.feedback.len());
    for item in body.feedback {
        let card = Uuid::parse_str(&item.card).map_err(|_| bad("feedback.card", "must be the uuid of a card"))?;
        if !matches!(item.outcome.as_str(), "accepted" | "overridden") {
            return Err(bad("feedback.outcome", "must be accepted or overridden"));
        }
        if item.outcome == "accepted" && item.accepted_suggestions.is_empty() {
            return Err(bad("feedback.acceptedSuggestions", "is required when the outcome is accepted"));
        }
        if item.outcome == "overridden" && !item.accepted_suggestions.is_empty() {
            return Err(bad("feedback.acceptedSuggestions", "must be absent when the outcome is overridden"));
        }
        // cds-fb-3: an overrideReason, when given, carries the Coding the clinician chose.
        if let Some(reason) = &item.override_reason {
            let code = reason.pointer("/reason/code").and_then(Value::as_str).filter(|c| !c.trim().is_empty());
            if code.is_none() {
                return Err(bad("feedback.overrideReason", "must carry reason.code (a Coding from the card's overrideReasons) when present"));
            }
        }
        let outcome_at = time::OffsetDateTime::parse(&item.outcome_timestamp, &time::format_description::well_known::Rfc3339)
            .map_err(|_| bad("feedback.outcomeTimestamp", "must be an RFC 3339 date-time"))?;
        let outcome_at = outcome_at.to_offset(time::UtcOffset::UTC);
        let outcome_at = outcome_at.replace_nanosecond(outcome_at.nanosecond() / 1000 * 1000).unwrap_or(outcome_at);
        let decision = state.db.decision_by_card(card).await.map_err(|e| CdsError::AuditUnavailable(e.to_string()))?;
        let Some(decision) = decision.filter(|d| d.record.client_iss == client.iss && d.record.service_id == service_id) else {
            tracing::warn!(card = %card, iss = %client.iss, "feedback on a card this service did not give this client");
            return Err(CdsError::UnknownCard(card));
        };
        records.push(FeedbackRecord {
            feedback_id: Uuid::new_v4(),
            recorded_at: now_micros(),
            card_uuid: card,
            decision_id: Some(decision.record.decision_id),
            service_id: service_id.clone(),
            client_iss: client.iss.clone(),
            outcome: item.outcome,
            outcome_at,
            accepted_suggestions: json!(item.accepted_suggestions),
            override_reason: item.override_reason,
        });
    }
    for r in &records {
        state.db.append_feedback(r).await.map_err(|e| CdsError::AuditUnavailable(e.to_string()))?;
        state.metrics.feedback(&r.outcome);
    }
    Ok(HttpResponse::Ok().json(json!({})))
}
