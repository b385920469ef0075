//! `POST /notifications/imaging-study`: a study arrived in the PACS, so its analysis is queued
//! before anyone orders (at back-fill priority), and order-select finds the result ready.
//!
//! Who sends it: a bridge following the PACS's change feed (`scripts/orthanc_feed.py` for
//! Orthanc), or the EHR's FHIR server through an R4 Subscription (rest-hook on ImagingStudy).
//! The body is an ImagingStudy, or a Bundle of ImagingStudy resources and the Endpoints they
//! name. The sender is a trusted client (its JWT, `aud` this URL, exactly as for hooks), and each
//! study is queued under that client's key after the same choices a hook makes: a brain MR of a
//! `Patient/…` subject, within the look-back, pixels only from where the client may point. So a
//! later hook of the same client, for the same study and PACS, asks for the very same analysis.
//! Nothing is audited here (no decision is made); the queue records the job.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use time::OffsetDateTime;

use super::{hook::RequestError, outcome::CdsError, service::trust};
use crate::{
    fhir::study::choose_prior_study,
    pipeline::{PipelineError, Ticket},
    queue::Priority,
    state::AppState,
};

pub const PATH: &str = "/notifications/imaging-study";

/// Studies one notification may name.
const MAX_STUDIES: usize = 100;

/// The answer to a notification: each study's fate.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Arrivals {
    studies: Vec<Arrival>,
}

/// What happened to one study of a notification.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Arrival {
    #[serde(skip_serializing_if = "Option::is_none")]
    study_uid: Option<String>,
    /// `queued`, `ready` (analysed already) or `skipped`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn skipped(study_uid: Option<String>, reason: impl Into<String>) -> Arrival {
    Arrival { study_uid, status: "skipped", reason: Some(reason.into()) }
}

/// A study arrived at the PACS: queue its analysis at back-fill priority, so the hooks find it
/// ready.
#[utoipa::path(post, path = "/notifications/imaging-study", tag = "CDS Hooks", security(("ehr_jwt" = [])),
    request_body(content = Object, description = "An ImagingStudy, or a Bundle of ImagingStudy resources with their Endpoints (what an R4 Subscription rest-hook sends)", content_type = "application/json"),
    responses(
        (status = 202, description = "Each study queued, ready or skipped, and why", body = Arrivals),
        (status = 400, description = "Malformed body or a field the hook needs is missing or wrong; the OperationOutcome names it", body = crate::cds::outcome::OperationOutcome),
        (status = 401, description = "No JWT, or one this service does not trust for this endpoint (no detail is given)", body = crate::cds::outcome::OperationOutcome),
        (status = 413, description = "The body is over `server.max_request_bytes`", content_type = "text/plain"),
        (status = 503, description = "Too many analyses queued, or the audit trail is unavailable (nothing is answered that is not recorded); `Retry-After` says when to try again", body = crate::cds::outcome::OperationOutcome),
    ))]
pub async fn notify(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> Result<HttpResponse, CdsError> {
    let endpoint = format!("{}{PATH}", state.settings.server.public_base_url.as_str().trim_end_matches('/'));
    let client = trust(&req, &state, &endpoint).await?;
    let parsed = crate::offload::parse_off_runtime(body, |b| serde_json::from_slice::<Value>(b)).await;
    let body = parsed.map_err(|e| CdsError::Overloaded(e.to_string()))?.map_err(|e| RequestError::Malformed(e.to_string()))?;
    let resources = resources_of(&body)?;
    let studies: Vec<&Value> = resources.iter().filter(|r| r["resourceType"] == "ImagingStudy").collect();
    if studies.is_empty() || studies.len() > MAX_STUDIES {
        return Err(RequestError::Field { field: "ImagingStudy", problem: format!("must be sent 1 to {MAX_STUDIES} at a time; this notification holds {}", studies.len()) }.into());
    }
    let endpoints: Vec<Value> = resources.iter().filter(|r| r["resourceType"] == "Endpoint").cloned().collect();
    let default_dicomweb = Some(state.settings.dicomweb.default_base_url.as_str());
    let mut answers = Vec::with_capacity(studies.len());
    for resource in studies {
        let uid = resource["identifier"].as_array().and_then(|ids| ids.iter().find_map(|i| i["value"].as_str())).map(|v| v.trim_start_matches("urn:oid:").to_owned());
        let Some(patient_ref) = patient_of(resource) else {
            answers.push(skipped(uid, "the ImagingStudy's subject is not a Patient reference"));
            continue;
        };
        let mut one: Vec<Value> = endpoints.clone();
        one.push(resource.clone());
        let study = match choose_prior_study(&one, &patient_ref, OffsetDateTime::now_utc(), state.settings.imaging.lookback_days, default_dicomweb) {
            Ok(s) => s,
            Err(e) => {
                answers.push(skipped(uid, e.to_string()));
                continue;
            }
        };
        if let Err(refusal) = state.egress.study(&client.iss, &study) {
            tracing::warn!(issuer = %client.iss, %refusal, "refused a notified study's DICOMweb endpoint (egress policy)");
            answers.push(skipped(Some(study.study_uid), "its DICOMweb endpoint is not one this client may point at"));
            continue;
        }
        let study_uid = Some(study.study_uid.clone());
        match state.pipeline.request(&client.analysis_owner(), &patient_ref, &study, Priority::Backfill).await {
            Ok(Ticket::Ready(_)) => answers.push(Arrival { study_uid, status: "ready", reason: None }),
            Ok(Ticket::Queued(_)) => answers.push(Arrival { study_uid, status: "queued", reason: None }),
            Err(PipelineError::Overloaded(n)) => return Err(CdsError::Overloaded(format!("the analysis queue is full ({n}); send the notification again later"))),
            Err(PipelineError::Audit(e)) => return Err(CdsError::AuditUnavailable(e.to_string())),
        }
    }
    let queued = answers.iter().filter(|a| a.status == "queued").count();
    tracing::info!(issuer = %client.iss, studies = answers.len(), queued, "study-arrival notification");
    Ok(HttpResponse::Accepted().json(Arrivals { studies: answers }))
}

/// The resources a notification carries: the ImagingStudy itself, or a Bundle's entries.
fn resources_of(body: &Value) -> Result<Vec<Value>, RequestError> {
    match body["resourceType"].as_str() {
        Some("ImagingStudy") => Ok(vec![body.clone()]),
        Some("Bundle") => Ok(body["entry"].as_array().map(|e| e.iter().filter_map(|x| x.get("resource").cloned()).collect()).unwrap_or_default()),
        other => Err(RequestError::Field { field: "resourceType", problem: format!("must be ImagingStudy or Bundle, not {}", other.unwrap_or("missing")) }),
    }
}

/// `Patient/{id}` from the study's subject (relative, or absolute ending in `Patient/{id}`).
fn patient_of(study: &Value) -> Option<String> {
    let reference = study["subject"]["reference"].as_str()?;
    let at = reference.rfind("Patient/")?;
    let id = &reference[at + "Patient/".len()..];
    (!id.is_empty() && !id.contains('/')).then(|| format!("Patient/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_patient_is_read_from_a_relative_or_absolute_subject_reference_and_nothing_else() {
        let with = |r: &str| patient_of(&json!({ "subject": { "reference": r } }));
        assert_eq!(with("Patient/p-1").as_deref(), Some("Patient/p-1"));
        assert_eq!(with("https://ehr.example/fhir/Patient/p-1").as_deref(), Some("Patient/p-1"));
        assert_eq!(with("Group/g-1"), None);
        assert_eq!(with("Patient/"), None);
        assert_eq!(patient_of(&json!({})), None);
    }

    #[test]
    fn a_notification_is_an_imaging_study_or_a_bundle_of_resources() {
        assert_eq!(resources_of(&json!({ "resourceType": "ImagingStudy", "id": "s" })).unwrap().len(), 1);
        let bundle = json!({ "resourceType": "Bundle", "entry": [{ "resource": { "resourceType": "ImagingStudy" } }, { "resource": { "resourceType": "Endpoint" } }, {}] });
        assert_eq!(resources_of(&bundle).unwrap().len(), 2);
        assert!(resources_of(&json!({ "resourceType": "Patient" })).is_err());
    }
}
