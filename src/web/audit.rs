//! The compliance API: `GET /audit/decisions` (JSON pages, `?format=csv`, `?format=fhir` for an
//! AuditEvent Bundle) and `GET /audit/summary`. Staff tokens only (see [`super::staff`]).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{refusal::signin_or_deny, staff::View};
use crate::{
    audit::{
        StoredDecision,
        query::{DecisionFilter, decode_cursor},
    },
    cds::outcome::operation_outcome,
    state::AppState,
};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    pub filter: DecisionFilter,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
    pub format: Option<String>,
}

/// One page of the decision log, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DecisionList {
    pub decisions: Vec<StoredDecision>,
    /// The next page's path (with its cursor), absent on the last page.
    pub next: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(operation_outcome("transient", &format!("the audit trail is unavailable: {e}")))
}

/// The decision log, newest first, filtered; `format=csv` or `format=fhir` (an AuditEvent Bundle)
/// exports the page (compliance role only).
#[utoipa::path(get, path = "/audit/decisions", tag = "Compliance", security(("staff_jwt" = [])),
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "Recorded at or after (RFC 3339)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Recorded before (RFC 3339)"),
        ("patient" = Option<String>, Query, description = "`Patient/{id}`"),
        ("practitioner" = Option<String>, Query, description = "`Practitioner/{id}`"),
        ("recommendation" = Option<String>, Query, description = "`biopsy`, `resection` or `tumour-board`"),
        ("outcome" = Option<String>, Query, description = "`recommended`, `abstained`, `out-of-scope`, `unavailable`, `pending`"),
        ("model_version" = Option<String>, Query),
        ("feedback" = Option<String>, Query, description = "`accepted` or `overridden`: decisions with such feedback"),
        ("cursor" = Option<String>, Query, description = "From a previous page's `next`"),
        ("limit" = Option<i64>, Query, description = "Rows per page (1 to 1000; 100 by default)"),
        ("format" = Option<String>, Query, description = "`csv` or `fhir` to export"),
    ),
    responses(
        (status = 200, description = "A page of decisions", content(
            (DecisionList = "application/json"),
            (String = "text/csv"),
            (Object = "application/fhir+json"),
        )),
        (status = 400, description = "A filter or cursor this API cannot read", body = crate::cds::outcome::OperationOutcome),
        (status = 401, description = "No staff token (a browser is sent to sign in instead)", body = crate::cds::outcome::OperationOutcome),
        (status = 403, description = "The staff role does not open this view", body = crate::cds::outcome::OperationOutcome),
        (status = 503, description = "The audit trail is unavailable", body = crate::cds::outcome::OperationOutcome),
    ))]
pub async fn list(req: HttpRequest, q: web::Query<ListQuery>, state: web::Data<AppState>) -> HttpResponse {
    let view = if matches!(q.format.as_deref(), Some("csv" | "fhir")) { View::DecisionExport } else { View::DecisionLog };
    if let Err(e) = state.staff.authorize(&req, view).await {
        // The export links are followed in a browser: a refused one gets the pages' answers.
        return signin_or_deny(&req, &state, e);
    }
    if let Err(problem) = q.filter.check() {
        return HttpResponse::BadRequest().json(operation_outcome("invalid", &problem));
    }
    let cursor = match q.cursor.as_deref().map(decode_cursor) {
        Some(None) => return HttpResponse::BadRequest().json(operation_outcome("invalid", "cursor is not one this API gave")),
        Some(Some(c)) => Some(c),
        None => None,
    };
    let limit = q.limit.unwrap_or(100);
    let mut page = match state.db.list_decisions(&q.filter, cursor, limit).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    // Each row's report as its card carried it (rows share the analysis's template).
    page.decisions.iter_mut().for_each(crate::fhir::report::stamp_stored);
    match q.format.as_deref() {
        Some("csv") => HttpResponse::Ok().content_type("text/csv; charset=utf-8").insert_header(("Content-Disposition", "attachment; filename=\"decisions.csv\"")).body(to_csv(&page.decisions)),
        Some("fhir") => HttpResponse::Ok().content_type("application/fhir+json").json(audit_event_bundle(&page.decisions, &state)),
        _ => HttpResponse::Ok().json(DecisionList { next: page.next.as_ref().map(|c| format!("/audit/decisions?cursor={c}")), decisions: page.decisions }),
    }
}

/// Counts of the decisions a filter selects, by outcome and recommendation, with feedback.
#[utoipa::path(get, path = "/audit/summary", tag = "Compliance", security(("staff_jwt" = [])),
    params(
        ("from" = Option<String>, Query, format = DateTime),
        ("to" = Option<String>, Query, format = DateTime),
        ("patient" = Option<String>, Query),
        ("practitioner" = Option<String>, Query),
        ("recommendation" = Option<String>, Query),
        ("outcome" = Option<String>, Query),
        ("model_version" = Option<String>, Query),
        ("feedback" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "The counts", body = crate::audit::query::Summary),
        (status = 400, description = "A filter this API cannot read", body = crate::cds::outcome::OperationOutcome),
        (status = 401, description = "No staff token (a browser is sent to sign in instead)", body = crate::cds::outcome::OperationOutcome),
        (status = 403, description = "The staff role does not open this view", body = crate::cds::outcome::OperationOutcome),
        (status = 503, description = "The audit trail is unavailable", body = crate::cds::outcome::OperationOutcome),
    ))]
pub async fn summary(req: HttpRequest, q: web::Query<DecisionFilter>, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = state.staff.authorize(&req, View::DecisionLog).await {
        return signin_or_deny(&req, &state, e);
    }
    if let Err(problem) = q.check() {
        return HttpResponse::BadRequest().json(operation_outcome("invalid", &problem));
    }
    match state.db.summary(&q).await {
        Ok(s) => HttpResponse::Ok().json(s),
        Err(e) => unavailable(e),
    }
}

const CSV_COLUMNS: [&str; 18] = [
    "seq", "decision_id", "recorded_at", "hook", "hook_instance", "client_iss", "user_ref", "patient_ref", "study_uid", "model_version",
    "calibrated_probability", "member_spread", "recommendation", "outcome", "reason", "card_uuid", "content_hash", "trace_id",
];

fn csv_field(s: &str) -> String {
    // Quote everything; double inner quotes; neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn to_csv(rows: &[StoredDecision]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for d in rows {
        let r = &d.record;
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let num = |o: Option<f64>| o.map(|v| format!("{v:.4}")).unwrap_or_default();
        let fields = [
            d.seq.to_string(),
            r.decision_id.to_string(),
            r.recorded_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            r.hook.clone(),
            r.hook_instance.clone(),
            r.client_iss.clone(),
            opt(&r.user_ref),
            r.patient_ref.clone(),
            opt(&r.study_uid),
            opt(&r.model_version),
            num(r.calibrated_probability),
            num(r.member_spread),
            opt(&r.recommendation),
            r.outcome.clone(),
            opt(&r.reason),
            r.card_uuid.map(|u| u.to_string()).unwrap_or_default(),
            d.content_hash.clone(),
            opt(&r.trace_id),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// The page as a FHIR R4 Bundle of AuditEvents (one per decision).
pub fn audit_event_bundle(rows: &[StoredDecision], state: &AppState) -> Value {
    let base = state.settings.server.public_base_url.as_str().trim_end_matches('/').to_owned();
    let entries: Vec<Value> = rows
        .iter()
        .map(|d| {
            let r = &d.record;
            let outcome = if matches!(r.outcome.as_str(), "recommended" | "abstained" | "out-of-scope" | "pending") { "0" } else { "4" };
            let mut entity = vec![json!({ "what": { "reference": r.patient_ref }, "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" } })];
            if let Some(s) = &r.study_uid {
                entity.push(json!({ "what": { "identifier": { "system": "urn:dicom:uid", "value": format!("urn:oid:{s}") } }, "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" } }));
            }
            json!({
                "fullUrl": format!("{base}/audit/decisions/{}", r.decision_id),
                "resource": {
                    "resourceType": "AuditEvent",
                    "id": r.decision_id.to_string(),
                    "type": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112", "display": "Query" },
                    "subtype": [{ "system": "https://neurocds.org/fhir/CodeSystem/decision", "code": r.hook, "display": format!("CDS Hooks {}", r.hook) }],
                    "action": "E",
                    "recorded": r.recorded_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    "outcome": outcome,
                    "outcomeDesc": format!("{}{}", r.outcome, r.reason.as_ref().map(|x| format!(": {x}")).unwrap_or_default()),
                    "agent": [
                        { "who": { "identifier": { "system": "urn:ietf:rfc:3986", "value": r.client_iss } }, "requestor": false, "type": { "text": "CDS client (EHR)" } },
                        { "who": { "reference": r.user_ref.clone().unwrap_or_else(|| "Practitioner/unknown".into()) }, "requestor": true }
                    ],
                    "source": { "observer": { "display": "neurocds" } },
                    "entity": entity
                }
            })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "collection", "total": entries.len(), "entry": entries })
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn every_spreadsheet_formula_trigger_is_neutralised() {
        for trigger in ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"] {
            assert!(csv_field(trigger).starts_with("\"'"), "{trigger:?} -> {}", csv_field(trigger));
        }
        assert_eq!(csv_field("plain \"text\""), "\"plain \"\"text\"\"\"");
    }
}
